//! Twilio request signatures (`X-Twilio-Signature`), verified exactly as Twilio computes them.
//!
//! This module is pure: no actix, no I/O, no clock. The caller hands it the URL Twilio called
//! (the configured public URL plus the request target as received), the percent-decoded form
//! parameters as bytes in the order they arrived, and the header values; it answers whether
//! one of the configured keys signed exactly that.
//!
//! The signed string is the URL followed, for each parameter name in byte order, by the name
//! and its value. A repeated name contributes each of its distinct values in byte order, the
//! name repeated before each. Parameters are bytes, not strings: a percent-escape that is not
//! UTF-8 is signed as the byte it decodes to, as Twilio's libraries do, so that the check is
//! byte-exact and deciding what to do with such a value is left to the caller, after it.
//!
//! Twilio's own libraries accept a URL with its port removed, or with the scheme's default
//! port added, because proxies and load balancers disagree on whether `:443` is part of the
//! URL; we try the same variants, so a deployment behind any of them verifies the same way
//! Twilio's helper libraries would. User info (`user:pass@`) is part of the signed URL and is
//! never mistaken for a port.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Every key a signature may have been made with.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Account auth tokens (HMAC-SHA1): the primary, then a secondary during a rotation.
    pub auth_tokens: Vec<Secret>,
    /// Auth tokens of further accounts and subaccounts, by `AC…` account SID: a callback is
    /// also checked under the token of the account its `AccountSid` parameter names.
    pub account_tokens: Vec<(String, Secret)>,
    /// Webhook shared keys, by key id.
    pub shared_keys: Vec<(String, Secret)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signature settings name an unknown shared key")]
    UnknownKey,
    #[error("the signature settings name an unsupported algorithm or lack a key")]
    BadSettings,
    #[error("the body does not match the bodySHA256 query parameter")]
    BodyHashMismatch,
}

/// Verifies a form-encoded request.
///
/// `params` are the percent-decoded names and values, as bytes. `settings` is the
/// `X-Twilio-Webhooks-Signature-Settings` header, if any: `key=…` names the shared key that
/// signed, `algorithm=…` the HMAC (`HMAC_SHA1` when not given). Without a key id, the auth
/// token of the account named by `AccountSid`, then the primary and secondary tokens are
/// tried.
pub fn verify<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    keys: &Keys,
    url: &str,
    params: &[(N, V)],
    signature: Option<&str>,
    settings: Option<&str>,
) -> Result<(), SignatureError> {
    let account = params
        .iter()
        .find(|(name, _)| name.as_ref() == b"AccountSid")
        .map(|(_, value)| value.as_ref());
    verify_signed(
        keys,
        url,
        &canonical_params(params),
        account.into_iter(),
        signature,
        settings,
    )
}

/// Verifies a request with a JSON (or other non-form) body, as Twilio Event Streams sends
/// it.
///
/// Twilio signs such requests over the URL alone, which carries a `bodySHA256` query
/// parameter holding the hex SHA-256 of the body; the body is then checked against it, in
/// constant time too (as the helper libraries do: `scmp` in twilio-node, `compare` in
/// twilio-python; and case-sensitively, as they do). `accounts` are the `AC…` SIDs the body
/// names (a stream event's `data.accountSid`): besides the primary and secondary tokens,
/// the token configured for each of them is tried. A body that names an account does not
/// make a signature valid: it only chooses which configured token to try.
pub fn verify_with_body_hash(
    keys: &Keys,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
    settings: Option<&str>,
    accounts: &[&str],
) -> Result<(), SignatureError> {
    verify_signed(
        keys,
        url,
        &[],
        accounts.iter().map(|sid| sid.as_bytes()),
        signature,
        settings,
    )?;
    let claimed = query_param(url, "bodySHA256").ok_or(SignatureError::BodyHashMismatch)?;
    if constant_time_eq(claimed.as_bytes(), body_sha256(body).as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// The hex SHA-256 of a body, as Twilio puts it in `bodySHA256`.
pub fn body_sha256(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// Whether the signature header matches the signed string (`url` then `signed_params`)
/// under one of the candidate keys, for one of the URL's variants.
fn verify_signed<'a>(
    keys: &Keys,
    url: &str,
    signed_params: &[u8],
    accounts: impl Iterator<Item = &'a [u8]>,
    signature: Option<&str>,
    settings: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let settings = Settings::parse(settings.unwrap_or_default())?;
    let candidates = candidate_keys(keys, &settings, accounts)?;
    // A header that is not base64 cannot match anything; decoding once here keeps the
    // comparison below a plain constant-time MAC check.
    let expected = BASE64
        .decode(signature.trim())
        .map_err(|_| SignatureError::Mismatch)?;
    // The URL as given is tried first and nearly always matches; the port variants are
    // only built when it does not.
    let matches_any_variant = |key: &Secret| {
        let matches = |candidate: &str| match settings.algorithm {
            Algorithm::Sha1 => mac_matches::<Hmac<Sha1>>(key, candidate, signed_params, &expected),
            Algorithm::Sha256 => {
                mac_matches::<Hmac<Sha256>>(key, candidate, signed_params, &expected)
            }
        };
        matches(url)
            || url_variants(url)
                .iter()
                .skip(1)
                .any(|candidate| matches(candidate))
    };
    if candidates
        .into_iter()
        .any(|(_, key)| matches_any_variant(key))
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Computes the signature Twilio would send, base64-encoded, for tests and for `simulate`.
pub fn sign_sha1<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    token: &Secret,
    url: &str,
    params: &[(N, V)],
) -> String {
    sign::<Hmac<Sha1>, N, V>(token, url, params)
}

/// Computes the HMAC-SHA256 signature made with a webhook shared key.
pub fn sign_sha256<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    key: &Secret,
    url: &str,
    params: &[(N, V)],
) -> String {
    sign::<Hmac<Sha256>, N, V>(key, url, params)
}

/// The URL as given, then without its port, then with the scheme's default port: the forms
/// Twilio's helper libraries accept. Duplicates are dropped so no MAC is computed twice.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    if let Some(parts) = UrlParts::split(url) {
        for variant in [parts.without_port(), parts.with_default_port()]
            .into_iter()
            .flatten()
        {
            if !variants.contains(&variant) {
                variants.push(variant);
            }
        }
    }
    variants
}

/// The HMAC a signature settings header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha256,
}

/// `X-Twilio-Webhooks-Signature-Settings`: comma-separated `name=value` parts, a part
/// without `=` ignored (so a trailing comma is harmless), the algorithm `HMAC_SHA1` unless
/// stated, and an empty header the same as none. Lenient where leniency cannot let a forgery
/// through: the header is not signed, and dropping it only falls back to the auth tokens.
#[derive(Debug, PartialEq, Eq)]
struct Settings<'a> {
    key: Option<&'a str>,
    algorithm: Algorithm,
}

impl<'a> Settings<'a> {
    fn parse(header: &'a str) -> Result<Self, SignatureError> {
        let mut key = None;
        let mut algorithm = Algorithm::Sha1;
        for (name, value) in header.split(',').filter_map(|part| part.split_once('=')) {
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("key") {
                key = Some(value);
            } else if name.eq_ignore_ascii_case("algorithm") {
                algorithm = match value.to_ascii_uppercase().as_str() {
                    "HMAC_SHA1" => Algorithm::Sha1,
                    "HMAC_SHA256" => Algorithm::Sha256,
                    _ => return Err(SignatureError::BadSettings),
                };
            }
        }
        Ok(Settings { key, algorithm })
    }
}

/// The keys that may have signed, in the order they are tried.
///
/// A key id in the settings names the one key that signed, whatever the algorithm. Twilio's
/// helper libraries (twilio-python's `RequestValidator`, twilio-node's `validateRequest`)
/// do not read the settings header at all: they compute HMAC-SHA1 under whichever secret
/// they are given. So `key=K1` without an algorithm is HMAC-SHA1 under K1's secret, as a
/// validator built with that secret would check it. Without a key id, SHA-1 means an
/// account's auth token: the ones of the accounts the request names (a callback's
/// `AccountSid`, the `data.accountSid` of stream events), then the primary and the
/// secondary. SHA-256 has never been made with an auth token, so without a key id it is
/// refused.
fn candidate_keys<'k, 'a>(
    keys: &'k Keys,
    settings: &Settings<'_>,
    accounts: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<(KeyName, &'k Secret)>, SignatureError> {
    if let Some(id) = settings.key {
        let (_, secret) = keys
            .shared_keys
            .iter()
            .find(|(known, _)| known == id)
            .ok_or(SignatureError::UnknownKey)?;
        return Ok(vec![(KeyName::Shared(id.to_owned()), secret)]);
    }
    if settings.algorithm == Algorithm::Sha256 {
        return Err(SignatureError::BadSettings);
    }
    let mut candidates: Vec<(KeyName, &Secret)> = Vec::new();
    for sid in accounts {
        let token = keys
            .account_tokens
            .iter()
            .find(|(known, _)| known.as_bytes() == sid);
        if let Some((known, token)) = token {
            if !candidates
                .iter()
                .any(|(_, seen)| std::ptr::eq(*seen, token))
            {
                candidates.push((KeyName::Account(known.clone()), token));
            }
        }
    }
    candidates.extend(
        keys.auth_tokens
            .iter()
            .enumerate()
            .map(|(index, token)| (KeyName::AuthToken(index), token)),
    );
    Ok(candidates)
}

/// Byte equality whose time depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A key by the name an operator knows it by, for log lines; never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyName {
    /// `TWILIO_ACCOUNT_TOKENS`' token of this account.
    Account(String),
    /// `TWILIO_AUTH_TOKEN` (0), then `TWILIO_AUTH_TOKEN_SECONDARY` (1).
    AuthToken(usize),
    /// A shared key of `STATUSHOOK_SHARED_KEYS`, by its id.
    Shared(String),
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyName::Account(sid) => write!(f, "account {sid}"),
            KeyName::AuthToken(0) => f.write_str("primary"),
            KeyName::AuthToken(1) => f.write_str("secondary"),
            KeyName::AuthToken(index) => write!(f, "auth token {}", index + 1),
            KeyName::Shared(id) => write!(f, "shared key {id}"),
        }
    }
}

/// The keys a verification of `params` tries, by name (`account AC…`, `primary`,
/// `secondary`, `shared key ID`) and never by value, for the log line of a refusal. A
/// shared key id that is not configured is named with that said.
pub fn key_names<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    keys: &Keys,
    params: &[(N, V)],
    settings: Option<&str>,
) -> Vec<String> {
    let Ok(settings) = Settings::parse(settings.unwrap_or_default()) else {
        return Vec::new();
    };
    let account = params
        .iter()
        .find(|(name, _)| name.as_ref() == b"AccountSid")
        .map(|(_, value)| value.as_ref());
    match candidate_keys(keys, &settings, account.into_iter()) {
        Ok(candidates) => candidates
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect(),
        Err(SignatureError::UnknownKey) => settings
            .key
            .map(|id| format!("shared key {id} (not in STATUSHOOK_SHARED_KEYS)"))
            .into_iter()
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn sign<M: Mac + hmac::digest::KeyInit, N: AsRef<[u8]>, V: AsRef<[u8]>>(
    key: &Secret,
    url: &str,
    params: &[(N, V)],
) -> String {
    let mut mac = keyed::<M>(key);
    mac.update(url.as_bytes());
    mac.update(&canonical_params(params));
    BASE64.encode(mac.finalize().into_bytes())
}

fn mac_matches<M: Mac + hmac::digest::KeyInit>(
    key: &Secret,
    url: &str,
    signed_params: &[u8],
    expected: &[u8],
) -> bool {
    let mut mac = keyed::<M>(key);
    mac.update(url.as_bytes());
    mac.update(signed_params);
    // `verify_slice` compares in constant time.
    mac.verify_slice(expected).is_ok()
}

fn keyed<M: Mac + hmac::digest::KeyInit>(key: &Secret) -> M {
    // HMAC takes keys of any length, so this cannot fail.
    <M as hmac::digest::KeyInit>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

/// The parameter part of the signed string: names in byte order, each distinct value of a
/// name in byte order, every value preceded by its name.
fn canonical_params<N: AsRef<[u8]>, V: AsRef<[u8]>>(params: &[(N, V)]) -> Vec<u8> {
    let mut pairs: Vec<(&[u8], &[u8])> = params
        .iter()
        .map(|(name, value)| (name.as_ref(), value.as_ref()))
        .collect();
    // Sorting the (name, value) pairs sorts names first, then values within a name, both
    // by bytes (for UTF-8, the same as by code point, which is how Twilio sorts); `dedup`
    // then drops a value repeated under the same name.
    pairs.sort_unstable();
    pairs.dedup();
    let len = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(len);
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
    out
}

/// A URL cut around its port, without re-encoding anything.
struct UrlParts<'a> {
    scheme: &'a str,
    /// `scheme://` plus any user info and the host, exactly as written.
    head: &'a str,
    port: Option<&'a str>,
    /// Path, query and fragment, exactly as written.
    tail: &'a str,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Option<Self> {
        let scheme_end = url.find("://")?;
        let scheme = &url[..scheme_end];
        let authority_start = scheme_end + 3;
        let authority_len = url[authority_start..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - authority_start);
        let authority_end = authority_start + authority_len;
        let authority = &url[authority_start..authority_end];
        // User info (`user:pass@`) ends at the last '@'; its ':' is not a port. The port
        // follows the last ':' of the host, unless that ':' is inside an IPv6 literal.
        let host_start = authority.rfind('@').map_or(0, |at| at + 1);
        let host = &authority[host_start..];
        let literal_end = host.rfind(']').map_or(0, |i| i + 1);
        let port_colon = host[literal_end..]
            .rfind(':')
            .map(|i| host_start + literal_end + i);
        let (head_end, port) = match port_colon {
            Some(colon) => (authority_start + colon, Some(&authority[colon + 1..])),
            None => (authority_end, None),
        };
        // A port that is not a number is not a URL we can vary; only the URL as given is tried.
        if port.is_some_and(|port| !port.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        Some(UrlParts {
            scheme,
            head: &url[..head_end],
            port,
            tail: &url[authority_end..],
        })
    }

    fn without_port(&self) -> Option<String> {
        self.port.map(|_| format!("{}{}", self.head, self.tail))
    }

    fn with_default_port(&self) -> Option<String> {
        if self.port.is_some() {
            return None;
        }
        let default = match self.scheme.to_ascii_lowercase().as_str() {
            "https" => "443",
            "http" => "80",
            _ => return None,
        };
        Some(format!("{}:{}{}", self.head, default, self.tail))
    }
}

fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const NO_PARAMS: &[(&str, &str)] = &[];

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        token: String,
        url: String,
        params: Vec<(String, String)>,
        signature: String,
        algorithm: Option<String>,
        body: Option<String>,
    }

    fn vectors() -> Vec<Vector> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/signature-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("signature vectors are readable");
        serde_json::from_str::<Vectors>(&text)
            .expect("signature vectors parse")
            .vectors
    }

    fn token_keys(token: &str) -> Keys {
        Keys {
            auth_tokens: vec![Secret::new(token)],
            ..Keys::default()
        }
    }

    #[test]
    fn every_known_answer_vector_verifies_and_signs() {
        let vectors = vectors();
        assert!(vectors.len() >= 12, "expected the full vector set");
        for v in &vectors {
            let key = Secret::new(&v.token);
            match (v.algorithm.as_deref(), v.body.as_deref()) {
                (Some("HMAC_SHA256"), _) => {
                    let keys = Keys {
                        shared_keys: vec![("KS1".into(), key.clone())],
                        ..Keys::default()
                    };
                    assert_eq!(
                        sign_sha256(&key, &v.url, &v.params),
                        v.signature,
                        "{}",
                        v.name
                    );
                    let settings = "key=KS1,algorithm=HMAC_SHA256";
                    let result =
                        verify(&keys, &v.url, &v.params, Some(&v.signature), Some(settings));
                    assert_eq!(result, Ok(()), "{}", v.name);
                }
                (_, Some(body)) => {
                    let keys = token_keys(&v.token);
                    let result = verify_with_body_hash(
                        &keys,
                        &v.url,
                        body.as_bytes(),
                        Some(&v.signature),
                        None,
                        &[],
                    );
                    assert_eq!(result, Ok(()), "{}", v.name);
                    let tampered = format!("{body} ");
                    let result = verify_with_body_hash(
                        &keys,
                        &v.url,
                        tampered.as_bytes(),
                        Some(&v.signature),
                        None,
                        &[],
                    );
                    assert_eq!(result, Err(SignatureError::BodyHashMismatch), "{}", v.name);
                }
                _ => {
                    assert_eq!(
                        sign_sha1(&key, &v.url, &v.params),
                        v.signature,
                        "{}",
                        v.name
                    );
                    let result = verify(
                        &token_keys(&v.token),
                        &v.url,
                        &v.params,
                        Some(&v.signature),
                        None,
                    );
                    assert_eq!(result, Ok(()), "{}", v.name);
                }
            }
        }
    }

    #[derive(Deserialize)]
    struct BodyVectors {
        vectors: Vec<BodyVector>,
    }

    /// A JSON-body case of the helper libraries' test suites (`tests/data/json-body-vectors.json`).
    #[derive(Deserialize)]
    struct BodyVector {
        library: String,
        test: String,
        kind: String,
        body: String,
        body_sha256: Option<String>,
        token: Option<String>,
        url: Option<String>,
        signature: Option<String>,
        valid: bool,
    }

    #[test]
    fn every_json_body_vector_of_twilio_node_and_twilio_python_gets_the_libraries_verdict() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/json-body-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("JSON-body vectors are readable");
        let vectors = serde_json::from_str::<BodyVectors>(&text)
            .expect("JSON-body vectors parse")
            .vectors;
        assert_eq!(vectors.len(), 10, "8 of twilio-node, 2 of twilio-python");
        for v in &vectors {
            let case = format!("{}: {}", v.library, v.test);
            let result = match v.kind.as_str() {
                // The body against a claimed hash alone: put the claim in a URL signed
                // with a known token, so that only the body check can fail.
                "body_hash" => {
                    let claimed = v.body_sha256.as_deref().expect("a claimed hash");
                    let url = format!("https://mycompany.com/myapp.php?bodySHA256={claimed}");
                    let signature = sign_sha1(&Secret::new("12345"), &url, NO_PARAMS);
                    let keys = token_keys("12345");
                    verify_with_body_hash(
                        &keys,
                        &url,
                        v.body.as_bytes(),
                        Some(&signature),
                        None,
                        &[],
                    )
                }
                "request" => verify_with_body_hash(
                    &token_keys(v.token.as_deref().expect("a token")),
                    v.url.as_deref().expect("a URL"),
                    v.body.as_bytes(),
                    v.signature.as_deref(),
                    None,
                    &[],
                ),
                other => panic!("{case}: unknown kind {other}"),
            };
            assert_eq!(result.is_ok(), v.valid, "{case}: {result:?}");
        }
    }

    #[test]
    fn a_json_body_verifies_under_the_token_of_an_account_it_names_and_no_other() {
        let url = "https://example.com/twilio/events?bodySHA256=";
        let body = br#"[{"data":{"accountSid":"AC000000000000000000000000000000aa"}}]"#;
        let url = format!("{url}{}", body_sha256(body));
        let sub = "AC000000000000000000000000000000aa";
        let keys = Keys {
            auth_tokens: vec![Secret::new("primary")],
            account_tokens: vec![(sub.into(), Secret::new("token-a"))],
            ..Keys::default()
        };
        let by_sub = sign_sha1(&Secret::new("token-a"), &url, NO_PARAMS);
        let by_primary = sign_sha1(&Secret::new("primary"), &url, NO_PARAMS);
        let by_other = sign_sha1(&Secret::new("token-b"), &url, NO_PARAMS);
        let verify = |signature: &str, accounts: &[&str]| {
            verify_with_body_hash(&keys, &url, body, Some(signature), None, accounts)
        };
        assert_eq!(verify(&by_sub, &[sub]), Ok(()));
        assert_eq!(verify(&by_primary, &[sub]), Ok(()));
        assert_eq!(verify(&by_sub, &[]), Err(SignatureError::Mismatch));
        assert_eq!(verify(&by_other, &[sub]), Err(SignatureError::Mismatch));
        // The hash is compared as the libraries compare it: exactly, so upper case fails.
        let upper = format!(
            "https://example.com/twilio/events?bodySHA256={}",
            body_sha256(body).to_ascii_uppercase()
        );
        let signed_upper = sign_sha1(&Secret::new("primary"), &upper, NO_PARAMS);
        assert_eq!(
            verify_with_body_hash(&keys, &upper, body, Some(&signed_upper), None, &[]),
            Err(SignatureError::BodyHashMismatch)
        );
    }

    #[test]
    fn a_url_with_a_custom_port_also_verifies_a_signature_made_without_it() {
        let v = vectors()
            .into_iter()
            .find(|v| v.name == "basic")
            .expect("basic vector");
        let with_port = v.url.replace("mycompany.com", "mycompany.com:1234");
        let result = verify(
            &token_keys(&v.token),
            &with_port,
            &v.params,
            Some(&v.signature),
            None,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_url_without_port_also_verifies_a_signature_made_with_the_default_port() {
        let v = vectors()
            .into_iter()
            .find(|v| v.name == "https default port added")
            .expect("default port vector");
        let bare = v.url.replace(":443", "");
        let result = verify(
            &token_keys(&v.token),
            &bare,
            &v.params,
            Some(&v.signature),
            None,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn wrong_token_tampered_value_and_garbage_header_are_mismatches() {
        let v = vectors()
            .into_iter()
            .find(|v| v.name == "basic")
            .expect("basic vector");
        let wrong = verify(
            &token_keys("54321"),
            &v.url,
            &v.params,
            Some(&v.signature),
            None,
        );
        assert_eq!(wrong, Err(SignatureError::Mismatch));
        let mut tampered = v.params.clone();
        tampered[2].1 = "9999".into();
        let result = verify(
            &token_keys(&v.token),
            &v.url,
            &tampered,
            Some(&v.signature),
            None,
        );
        assert_eq!(result, Err(SignatureError::Mismatch));
        let garbage = verify(&token_keys(&v.token), &v.url, &v.params, Some("%%%"), None);
        assert_eq!(garbage, Err(SignatureError::Mismatch));
        let missing = verify(&token_keys(&v.token), &v.url, &v.params, None, None);
        assert_eq!(missing, Err(SignatureError::Missing));
    }

    #[test]
    fn the_secondary_token_verifies_during_a_rotation() {
        let v = vectors()
            .into_iter()
            .find(|v| v.name == "basic")
            .expect("basic vector");
        let keys = Keys {
            auth_tokens: vec![Secret::new("new-primary"), Secret::new(&v.token)],
            ..Keys::default()
        };
        assert_eq!(
            verify(&keys, &v.url, &v.params, Some(&v.signature), None),
            Ok(())
        );
    }

    #[test]
    fn signature_settings_must_name_a_configured_key_and_sha256() {
        let keys = Keys {
            auth_tokens: vec![Secret::new("12345")],
            shared_keys: vec![("KS1".into(), Secret::new("12345"))],
            ..Keys::default()
        };
        let url = "https://example.com/twilio/status";
        let unknown = verify(
            &keys,
            url,
            NO_PARAMS,
            Some("AAAA"),
            Some("key=KS9,algorithm=HMAC_SHA256"),
        );
        assert_eq!(unknown, Err(SignatureError::UnknownKey));
        let other_algorithm = verify(
            &keys,
            url,
            NO_PARAMS,
            Some("AAAA"),
            Some("key=KS1,algorithm=MD5"),
        );
        assert_eq!(other_algorithm, Err(SignatureError::BadSettings));
        // A SHA-1 signature made with the token must not pass when SHA-256 was announced.
        let sha1 = sign_sha1(&Secret::new("12345"), url, NO_PARAMS);
        let downgraded = verify(
            &keys,
            url,
            NO_PARAMS,
            Some(&sha1),
            Some("key=KS1,algorithm=HMAC_SHA256"),
        );
        assert_eq!(downgraded, Err(SignatureError::Mismatch));
    }

    #[test]
    fn the_keys_tried_are_named_and_never_shown() {
        let keys = Keys {
            auth_tokens: vec![Secret::new("s3cr3t-1"), Secret::new("s3cr3t-2")],
            account_tokens: vec![(
                "AC0123456789abcdef0123456789abcdef".into(),
                Secret::new("s3cr3t-3"),
            )],
            shared_keys: vec![("K1".into(), Secret::new("s3cr3t-4"))],
        };
        let params = [("AccountSid", "AC0123456789abcdef0123456789abcdef")];
        assert_eq!(
            key_names(&keys, &params, None),
            [
                "account AC0123456789abcdef0123456789abcdef",
                "primary",
                "secondary"
            ]
        );
        assert_eq!(
            key_names(&keys, NO_PARAMS, Some("key=K1,algorithm=HMAC_SHA256")),
            ["shared key K1"]
        );
        assert_eq!(
            key_names(&keys, NO_PARAMS, Some("key=K9")),
            ["shared key K9 (not in STATUSHOOK_SHARED_KEYS)"]
        );
        assert!(key_names(&keys, NO_PARAMS, Some("algorithm=MD5")).is_empty());
    }

    #[test]
    fn url_variants_cut_only_the_port() {
        assert_eq!(
            url_variants("https://h.example:8443/p?q=a:b"),
            vec![
                "https://h.example:8443/p?q=a:b",
                "https://h.example/p?q=a:b"
            ]
        );
        assert_eq!(
            url_variants("http://[::1]/x"),
            vec!["http://[::1]/x", "http://[::1]:80/x"]
        );
        assert_eq!(
            url_variants("https://user@h.example/x"),
            vec!["https://user@h.example/x", "https://user@h.example:443/x"]
        );
    }

    fn basic() -> Vector {
        vectors()
            .into_iter()
            .find(|v| v.name == "basic")
            .expect("basic vector")
    }

    /// Known answers from twilio-node's own test suite ("should validate urls with
    /// credentials", "... with just username", "... with credentials by adding port").
    #[test]
    fn a_url_with_user_info_verifies_as_given_and_with_the_default_port() {
        let v = basic();
        let keys = token_keys(&v.token);
        let with_credentials = "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2";
        let cases = [
            (with_credentials, "CukzLTc1tT5dXEDIHm/tKBanW10="),
            // Signed with :443 added after the host, not after the password.
            (with_credentials, "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="),
            (
                "https://user@mycompany.com/myapp.php?foo=1&bar=2",
                "2YRLlVAflCqxaNicjMpJcSTgzSs=",
            ),
            // The public URL says :443, the signature was made without it.
            (
                "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
                "CukzLTc1tT5dXEDIHm/tKBanW10=",
            ),
        ];
        for (url, signature) in cases {
            assert_eq!(
                verify(&keys, url, &v.params, Some(signature), None),
                Ok(()),
                "{url} signed {signature}"
            );
        }
        assert_eq!(
            url_variants(with_credentials),
            vec![
                with_credentials.to_owned(),
                "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2".to_owned(),
            ]
        );
    }

    #[test]
    fn the_settings_header_is_read_as_the_helper_libraries_read_it() {
        let url = "https://example.com/twilio/status";
        let token = Secret::new("the-auth-token");
        let shared = Secret::new("the-shared-key");
        let keys = Keys {
            auth_tokens: vec![token.clone()],
            shared_keys: vec![("K1".into(), shared.clone())],
            ..Keys::default()
        };
        let by_shared_256 = sign_sha256(&shared, url, NO_PARAMS);
        let by_shared_1 = sign_sha1(&shared, url, NO_PARAMS);
        let by_token_1 = sign_sha1(&token, url, NO_PARAMS);
        let by_token_256 = sign_sha256(&token, url, NO_PARAMS);
        type Case<'a> = (&'a str, &'a str, Result<(), SignatureError>);
        let cases: &[Case] = &[
            ("key=K1,algorithm=HMAC_SHA256", &by_shared_256, Ok(())),
            // A part without '=' is ignored, and so is an empty one.
            ("key=K1,algorithm=HMAC_SHA256,extra", &by_shared_256, Ok(())),
            ("key=K1,algorithm=HMAC_SHA256,", &by_shared_256, Ok(())),
            (
                " key = K1 , algorithm = hmac_sha256 ",
                &by_shared_256,
                Ok(()),
            ),
            // The algorithm defaults to HMAC_SHA1, under the key the header names.
            ("key=K1", &by_shared_1, Ok(())),
            ("key=K1,algorithm=HMAC_SHA1", &by_shared_1, Ok(())),
            ("key=K1", &by_token_1, Err(SignatureError::Mismatch)),
            (
                "key=K1,algorithm=HMAC_SHA256",
                &by_shared_1,
                Err(SignatureError::Mismatch),
            ),
            // No key id: the auth tokens, as without the header.
            ("algorithm=HMAC_SHA1", &by_token_1, Ok(())),
            ("", &by_token_1, Ok(())),
            ("  ", &by_token_1, Ok(())),
            ("nonsense", &by_token_1, Ok(())),
            ("", &by_shared_1, Err(SignatureError::Mismatch)),
            (
                "algorithm=HMAC_SHA256",
                &by_token_256,
                Err(SignatureError::BadSettings),
            ),
            (
                "key=K9,algorithm=HMAC_SHA256",
                &by_shared_256,
                Err(SignatureError::UnknownKey),
            ),
            (
                "key=,algorithm=HMAC_SHA256",
                &by_shared_256,
                Err(SignatureError::UnknownKey),
            ),
            (
                "key=K1,algorithm=MD5",
                &by_shared_256,
                Err(SignatureError::BadSettings),
            ),
        ];
        for (settings, signature, expected) in cases {
            let result = verify(&keys, url, NO_PARAMS, Some(signature), Some(settings));
            assert_eq!(&result, expected, "settings {settings:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_signed_as_the_bytes_they_decode_to() {
        // Computed independently: base64(HMAC-SHA1("12345", url + "Body" + b"caf\xe9" +
        // "MessageSid" + sid)).
        let url = "https://mycompany.com/twilio/status";
        let params: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (
                b"MessageSid".to_vec(),
                b"SM0123456789abcdef0123456789abcdef".to_vec(),
            ),
            (b"Body".to_vec(), b"caf\xe9".to_vec()),
        ];
        let known = "m+jyaRSTRDAAXJXeL/HP0ng1Xto=";
        assert_eq!(sign_sha1(&Secret::new("12345"), url, &params), known);
        assert_eq!(
            verify(&token_keys("12345"), url, &params, Some(known), None),
            Ok(())
        );
        // The replacement character is another value, and another signature.
        let replaced: Vec<(String, String)> = params
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            verify(&token_keys("12345"), url, &replaced, Some(known), None),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_callback_verifies_under_the_token_of_the_account_it_names() {
        let url = "https://example.com/twilio/status";
        let sub_a = "AC000000000000000000000000000000aa";
        let sub_b = "AC000000000000000000000000000000bb";
        let keys = Keys {
            auth_tokens: vec![Secret::new("primary")],
            account_tokens: vec![
                (sub_a.into(), Secret::new("token-a")),
                (sub_b.into(), Secret::new("token-b")),
            ],
            ..Keys::default()
        };
        let from = |account: &str| vec![("AccountSid", account.to_owned())];
        let cases = [
            (sub_a, "token-a", Ok(())),
            (sub_b, "token-b", Ok(())),
            (sub_a, "primary", Ok(())),
            (sub_a, "token-b", Err(SignatureError::Mismatch)),
            (
                "AC000000000000000000000000000000cc",
                "token-a",
                Err(SignatureError::Mismatch),
            ),
        ];
        for (account, token, expected) in cases {
            let params = from(account);
            let signature = sign_sha1(&Secret::new(token), url, &params);
            let result = verify(&keys, url, &params, Some(&signature), None);
            assert_eq!(result, expected, "{account} signed with {token}");
        }
    }
}
