//! Standard Webhooks signing, pure: no I/O, no clock.
//!
//! A forwarded webhook carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! bytes of the `whsec_` secret after base64-decoding the part that follows the prefix. That
//! is what the `standardwebhooks` libraries (and Svix's) verify; the tests below check the
//! libraries' own known answer.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// Standard base64 that accepts the secret with or without its `=` padding, as the
/// libraries do (they append `==` before decoding).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The key of forwarded webhooks' signatures. Never printed: `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// Parses `whsec_` followed by base64 (padding optional). The error says what is wrong
    /// without repeating the value.
    pub fn parse(raw: &str) -> Result<SigningSecret, String> {
        let encoded = raw
            .trim()
            .strip_prefix(PREFIX)
            .ok_or("must start with whsec_ (a Standard Webhooks secret)")?;
        let key = LENIENT
            .decode(encoded)
            .map_err(|_| "the part after whsec_ is not valid base64")?;
        if key.is_empty() {
            return Err("the part after whsec_ is empty".into());
        }
        Ok(SigningSecret(key))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The `webhook-signature` header value for one delivery attempt: `v1,` and the base64
/// HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &SigningSecret, id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&secret.0) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer of the `standardwebhooks` libraries' "sign function works" test.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signing_matches_the_standard_webhooks_known_answer() {
        let secret = SigningSecret::parse(SECRET).expect("a valid secret");
        assert_eq!(sign(&secret, ID, TIMESTAMP, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn any_change_to_id_timestamp_body_or_key_changes_the_signature() {
        let secret = SigningSecret::parse(SECRET).expect("a valid secret");
        let other = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx").expect("valid");
        for changed in [
            sign(&secret, "msg_other", TIMESTAMP, BODY.as_bytes()),
            sign(&secret, ID, TIMESTAMP + 1, BODY.as_bytes()),
            sign(&secret, ID, TIMESTAMP, br#"{"test": 2432232315}"#),
            sign(&other, ID, TIMESTAMP, BODY.as_bytes()),
        ] {
            assert_ne!(changed, EXPECTED);
        }
    }

    #[test]
    fn secrets_are_whsec_and_base64_with_or_without_padding() {
        // "c2VjcmV0IQ" is "secret!" without its padding.
        let padded = SigningSecret::parse("whsec_c2VjcmV0IQ==").expect("padded");
        let unpadded = SigningSecret::parse("whsec_c2VjcmV0IQ").expect("unpadded");
        assert_eq!(padded, unpadded);
        assert_eq!(padded.0, b"secret!");
        for (raw, problem) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
            ("whsec_", "empty"),
            ("whsec_not base64!", "base64"),
        ] {
            let error = SigningSecret::parse(raw).expect_err(raw);
            assert!(error.contains(problem), "{raw}: {error}");
            assert!(
                !error.contains("base64!"),
                "the value is not repeated: {error}"
            );
        }
        assert_eq!(format!("{padded:?}"), "[redacted]");
    }
}
