//! The `X-Twilio-Webhooks-Signature-Settings` header. Whatever it says, reading it never
//! panics, and no header makes a signature verify that no configured key made; a header
//! naming the configured shared key with HMAC_SHA256 makes that key's signature verify.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::secret::Secret;
use statushook::twilio::signature::{self, Keys};

const URL: &str = "https://hooks.example.com/twilio/status";

fuzz_target!(|data: &[u8]| {
    let Ok(settings) = std::str::from_utf8(data) else {
        return;
    };
    let key = Secret::new("12345");
    let keys = Keys {
        auth_tokens: vec![key.clone()],
        shared_keys: vec![("KS1".into(), key.clone())],
        ..Keys::default()
    };
    let params = vec![
        (
            "MessageSid".to_owned(),
            "SM0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let stranger = Secret::new("not-a-configured-key");
    for forged in [
        signature::sign_sha1(&stranger, URL, &params),
        signature::sign_sha256(&stranger, URL, &params),
    ] {
        assert!(signature::verify(&keys, URL, &params, Some(&forged), Some(settings)).is_err());
    }
    // Unless the header names a key or an algorithm itself (as the parser reads names:
    // trimmed, in any case), putting the configured key and SHA-256 in front of it makes
    // that key's SHA-256 signature verify.
    let names_its_own = settings
        .split(',')
        .filter_map(|part| part.split_once('='))
        .any(|(name, _)| {
            let name = name.trim();
            name.eq_ignore_ascii_case("key") || name.eq_ignore_ascii_case("algorithm")
        });
    let named = format!("key=KS1,algorithm=HMAC_SHA256,{settings}");
    if !names_its_own {
        let sha256 = signature::sign_sha256(&key, URL, &params);
        assert_eq!(
            signature::verify(&keys, URL, &params, Some(&sha256), Some(&named)),
            Ok(())
        );
    }
});
