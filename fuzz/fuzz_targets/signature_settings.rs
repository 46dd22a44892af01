//! The `X-Twilio-Webhooks-Signature-Settings` header. Reading it never panics; a header
//! that names a key makes a SHA-256 signature under exactly that key verify, and one that
//! does not is refused as malformed before any MAC is computed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::config::Secret;
use statushook::fuzzing;
use statushook::signature::{self, Keys, SignatureError};

const URL: &str = "https://hooks.example.com/twilio/status";

fuzz_target!(|data: &[u8]| {
    let Ok(settings) = std::str::from_utf8(data) else {
        return;
    };
    let key = Secret::new("12345");
    let params = vec![
        (
            "MessageSid".to_owned(),
            "SM0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let sha256 = signature::sign_sha256(&key, URL, &params);
    match fuzzing::shared_key_id(settings) {
        Ok(id) => {
            assert!(!id.is_empty() && id == id.trim(), "key id {id:?}");
            let keys = Keys {
                auth_tokens: vec![key.clone()],
                shared_keys: vec![(id.to_owned(), key.clone())],
            };
            assert_eq!(
                signature::verify(&keys, URL, &params, Some(&sha256), Some(settings)),
                Ok(())
            );
            let sha1 = signature::sign_sha1(&key, URL, &params);
            assert_eq!(
                signature::verify(&keys, URL, &params, Some(&sha1), Some(settings)),
                Err(SignatureError::Mismatch)
            );
            let others = Keys {
                auth_tokens: vec![key.clone()],
                shared_keys: vec![(format!("{id}x"), key.clone())],
            };
            assert_eq!(
                signature::verify(&others, URL, &params, Some(&sha256), Some(settings)),
                Err(SignatureError::UnknownKey)
            );
        }
        Err(error) => {
            assert_eq!(error, SignatureError::BadSettings);
            let keys = Keys {
                auth_tokens: vec![key.clone()],
                shared_keys: vec![("KS1".into(), key.clone())],
            };
            assert_eq!(
                signature::verify(&keys, URL, &params, Some(&sha256), Some(settings)),
                Err(SignatureError::BadSettings)
            );
        }
    }
});
