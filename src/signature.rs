//! Twilio request signatures (`X-Twilio-Signature`), verified exactly as Twilio computes them.
//!
//! This module is pure: no actix, no I/O, no clock. The caller hands it the URL Twilio called
//! (the configured public URL plus the request target as received), the decoded form
//! parameters in the order they arrived, and the header values; it answers whether one of the
//! configured keys signed exactly that.
//!
//! The signed string is the URL followed, for each parameter name in byte order, by the name
//! and its value. A repeated name contributes each of its distinct values in byte order, the
//! name repeated before each. Twilio's own libraries accept a URL with its port removed, or
//! with the scheme's default port added, because proxies and load balancers disagree on
//! whether `:443` is part of the URL; we try the same variants, so a deployment behind any of
//! them verifies the same way Twilio's helper libraries would.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Every key a signature may have been made with.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Account auth tokens (HMAC-SHA1): the primary, then a secondary during a rotation.
    pub auth_tokens: Vec<Secret>,
    /// Webhook shared keys (HMAC-SHA256), by key id.
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
    #[error("the signature settings are malformed or name an unsupported algorithm")]
    BadSettings,
    #[error("the body does not match the bodySHA256 query parameter")]
    BodyHashMismatch,
}

/// Verifies a form-encoded request.
///
/// `settings` is the `X-Twilio-Webhooks-Signature-Settings` header, if any: it switches the
/// check to HMAC-SHA256 under the named shared key. Without it, any configured auth token
/// may have signed the request with HMAC-SHA1.
pub fn verify(
    keys: &Keys,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
    settings: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    // A header that is not base64 cannot match anything; decoding once here keeps the
    // comparison below a plain constant-time MAC check.
    let expected = BASE64
        .decode(signature.trim())
        .map_err(|_| SignatureError::Mismatch)?;
    let signed_params = canonical_params(params);
    // The URL as given is tried first and nearly always matches; the port variants are
    // only built when it does not.
    let matches_any_variant = |matches: &dyn Fn(&str) -> bool| {
        matches(url)
            || url_variants(url)
                .iter()
                .skip(1)
                .any(|candidate| matches(candidate))
    };

    match settings {
        Some(settings) => {
            let key_id = shared_key_id(settings)?;
            let (_, secret) = keys
                .shared_keys
                .iter()
                .find(|(id, _)| id == key_id)
                .ok_or(SignatureError::UnknownKey)?;
            let matched = matches_any_variant(&|candidate| {
                mac_matches::<Hmac<Sha256>>(secret, candidate, &signed_params, &expected)
            });
            matched.then_some(()).ok_or(SignatureError::Mismatch)
        }
        None => {
            let matched = keys.auth_tokens.iter().any(|token| {
                matches_any_variant(&|candidate| {
                    mac_matches::<Hmac<Sha1>>(token, candidate, &signed_params, &expected)
                })
            });
            matched.then_some(()).ok_or(SignatureError::Mismatch)
        }
    }
}

/// Verifies a request with a JSON (or other non-form) body.
///
/// Twilio signs such requests over the URL alone, which carries a `bodySHA256` query
/// parameter holding the hex SHA-256 of the body; the body is then checked against it.
pub fn verify_with_body_hash(
    keys: &Keys,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
    settings: Option<&str>,
) -> Result<(), SignatureError> {
    verify(keys, url, &[], signature, settings)?;
    let claimed = query_param(url, "bodySHA256").ok_or(SignatureError::BodyHashMismatch)?;
    let actual = hex(&Sha256::digest(body));
    // Both sides are public (the hash is in the URL), so a plain comparison is fine here.
    if claimed.eq_ignore_ascii_case(&actual) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// Computes the signature Twilio would send, base64-encoded, for tests and for `simulate`.
pub fn sign_sha1(token: &Secret, url: &str, params: &[(String, String)]) -> String {
    sign::<Hmac<Sha1>>(token, url, params)
}

/// Computes the HMAC-SHA256 signature made with a webhook shared key.
pub fn sign_sha256(key: &Secret, url: &str, params: &[(String, String)]) -> String {
    sign::<Hmac<Sha256>>(key, url, params)
}

fn sign<M: Mac + hmac::digest::KeyInit>(
    key: &Secret,
    url: &str,
    params: &[(String, String)],
) -> String {
    let mut mac = keyed::<M>(key);
    mac.update(url.as_bytes());
    mac.update(canonical_params(params).as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn mac_matches<M: Mac + hmac::digest::KeyInit>(
    key: &Secret,
    url: &str,
    signed_params: &str,
    expected: &[u8],
) -> bool {
    let mut mac = keyed::<M>(key);
    mac.update(url.as_bytes());
    mac.update(signed_params.as_bytes());
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
fn canonical_params(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // Sorting the (name, value) pairs sorts names first, then values within a name, both
    // by bytes; `dedup` then drops a value repeated under the same name.
    pairs.sort_unstable();
    pairs.dedup();
    let len = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    let mut out = String::with_capacity(len);
    for (name, value) in pairs {
        out.push_str(name);
        out.push_str(value);
    }
    out
}

/// The URL as given, then without its port, then with the scheme's default port: the forms
/// Twilio's helper libraries accept. Duplicates are dropped so no MAC is computed twice.
pub(crate) fn url_variants(url: &str) -> Vec<String> {
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
        // The port follows the last ':' unless that ':' is inside an IPv6 literal.
        let host_end = authority.rfind(']').map_or(0, |i| i + 1);
        let port_colon = authority[host_end..].rfind(':').map(|i| host_end + i);
        let (head_end, port) = match port_colon {
            Some(colon) => (authority_start + colon, Some(&authority[colon + 1..])),
            None => (authority_end, None),
        };
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

/// The `key` of `X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256`.
pub(crate) fn shared_key_id(settings: &str) -> Result<&str, SignatureError> {
    let mut key = None;
    let mut algorithm = None;
    for part in settings.split(',') {
        let (name, value) = part.split_once('=').ok_or(SignatureError::BadSettings)?;
        match name.trim() {
            "key" => key = Some(value.trim()),
            "algorithm" => algorithm = Some(value.trim()),
            _ => {}
        }
    }
    match (key, algorithm) {
        (Some(key), Some(algorithm))
            if !key.is_empty() && algorithm.eq_ignore_ascii_case("HMAC_SHA256") =>
        {
            Ok(key)
        }
        _ => Err(SignatureError::BadSettings),
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
            shared_keys: vec![],
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
                        auth_tokens: vec![],
                        shared_keys: vec![("KS1".into(), key.clone())],
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
                    );
                    assert_eq!(result, Ok(()), "{}", v.name);
                    let tampered = format!("{body} ");
                    let result = verify_with_body_hash(
                        &keys,
                        &v.url,
                        tampered.as_bytes(),
                        Some(&v.signature),
                        None,
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
            shared_keys: vec![],
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
        };
        let url = "https://example.com/twilio/status";
        let unknown = verify(
            &keys,
            url,
            &[],
            Some("AAAA"),
            Some("key=KS9,algorithm=HMAC_SHA256"),
        );
        assert_eq!(unknown, Err(SignatureError::UnknownKey));
        let other_algorithm = verify(&keys, url, &[], Some("AAAA"), Some("key=KS1,algorithm=MD5"));
        assert_eq!(other_algorithm, Err(SignatureError::BadSettings));
        // A SHA-1 signature made with the token must not pass when SHA-256 was announced.
        let sha1 = sign_sha1(&Secret::new("12345"), url, &[]);
        let downgraded = verify(
            &keys,
            url,
            &[],
            Some(&sha1),
            Some("key=KS1,algorithm=HMAC_SHA256"),
        );
        assert_eq!(downgraded, Err(SignatureError::Mismatch));
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
}
