//! A status callback as the handler receives it: the request target, a newline, then the
//! form body. Decoding it and reading the event never panic; a signature made over the
//! decoded parameters verifies, under any URL variant Twilio may have signed, and stops
//! verifying once the body carries one more parameter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::config::PublicUrl;
use statushook::secret::Secret;
use statushook::domain::{Source, StatusEvent};
use statushook::fuzzing;
use statushook::twilio::signature::{self, Keys, SignatureError};

const SETTINGS: &str = "key=KS1,algorithm=HMAC_SHA256";

fuzz_target!(|data: &[u8]| {
    let (target, body) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"/twilio/status"[..], data),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    // A request target always starts with '/'.
    if !target.starts_with('/') {
        return;
    }
    let public_url = PublicUrl::parse("https://hooks.example.com").expect("a valid public URL");
    let url = public_url.join(target);
    // A name or value that is not UTF-8 is the handler's 400: nothing to verify.
    let Some(params) = fuzzing::callback_params(body) else {
        return;
    };

    if let Ok(event) = StatusEvent::from_params(params.clone(), Source::Callback) {
        assert_eq!(
            event.params(),
            &params[..],
            "parameters are kept as they arrived"
        );
    }

    let token = Secret::new("12345");
    let keys = Keys {
        auth_tokens: vec![token.clone()],
        shared_keys: vec![("KS1".into(), token.clone())],
        ..Keys::default()
    };
    for signed_url in fuzzing::url_variants(&url) {
        let sha1 = signature::sign_sha1(&token, &signed_url, &params);
        assert_eq!(
            signature::verify(&keys, &url, &params, Some(&sha1), None),
            Ok(()),
            "signed over {signed_url:?}, received at {url:?}"
        );
    }
    let sha1 = signature::sign_sha1(&token, &url, &params);
    let sha256 = signature::sign_sha256(&token, &url, &params);
    assert_eq!(
        signature::verify(&keys, &url, &params, Some(&sha256), Some(SETTINGS)),
        Ok(())
    );
    // Announcing SHA-256 and sending the token's SHA-1 signature is no way in.
    assert_eq!(
        signature::verify(&keys, &url, &params, Some(&sha1), Some(SETTINGS)),
        Err(SignatureError::Mismatch)
    );

    // One more parameter changes the signed string, unless that exact pair was already
    // there (a repeated name and value is signed once).
    let already_there = params.iter().any(|(n, v)| n == "Tampered" && v == "1");
    let Some(tampered) = fuzzing::callback_params(&[body, b"&Tampered=1"].concat()) else {
        return;
    };
    if !already_there {
        assert_eq!(
            signature::verify(&keys, &url, &tampered, Some(&sha1), None),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            signature::verify(&keys, &url, &tampered, Some(&sha256), Some(SETTINGS)),
            Err(SignatureError::Mismatch)
        );
    }

    // The body read as a signature header: anything goes in, no panic comes out.
    let header = String::from_utf8_lossy(body);
    let _ = signature::verify(&keys, &url, &params, Some(&header), None);
});
