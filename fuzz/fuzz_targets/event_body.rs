//! A Twilio Event Streams request as the handler receives it: the request target (without
//! `bodySHA256`), a newline, then the body. The signature Twilio would make — the URL with
//! the body's hash appended, signed alone — verifies, under any token the body's accounts
//! choose and under every URL variant; it stops verifying once the body changes by a byte,
//! or when the hash in the URL is another body's. Reading the body never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::config::PublicUrl;
use statushook::fuzzing::{self, cloudevents};
use statushook::secret::Secret;
use statushook::twilio::signature::{self, Keys, SignatureError};

const NONE: &[(&str, &str)] = &[];

fuzz_target!(|data: &[u8]| {
    let (target, body) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (&b"/twilio/events"[..], data),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    // A request target starts with '/'; one that already names a bodySHA256 or has a
    // fragment would hide the hash appended here.
    if !target.starts_with('/') || target.contains("bodySHA256") || target.contains('#') {
        return;
    }
    let public_url = PublicUrl::parse("https://hooks.example.com").expect("a valid public URL");
    let separator = if target.contains('?') { '&' } else { '?' };
    let url = public_url.join(&format!(
        "{target}{separator}bodySHA256={}",
        signature::body_sha256(body)
    ));
    let parsed = cloudevents::parse(body);
    let accounts = parsed.as_ref().map(cloudevents::accounts).unwrap_or_default();

    let token = Secret::new("12345");
    let keys = Keys {
        auth_tokens: vec![token.clone()],
        ..Keys::default()
    };
    for signed_url in fuzzing::url_variants(&url) {
        let sha1 = signature::sign_sha1(&token, &signed_url, NONE);
        assert_eq!(
            signature::verify_with_body_hash(&keys, &url, body, Some(&sha1), None, &accounts),
            Ok(()),
            "signed over {signed_url:?}, received at {url:?}"
        );
    }
    let sha1 = signature::sign_sha1(&token, &url, NONE);
    let longer = [body, b" "].concat();
    assert_eq!(
        signature::verify_with_body_hash(&keys, &url, &longer, Some(&sha1), None, &accounts),
        Err(SignatureError::BodyHashMismatch)
    );
    if let Some((last, rest)) = body.split_last() {
        let changed = [rest, &[last ^ 1]].concat();
        assert_eq!(
            signature::verify_with_body_hash(&keys, &url, &changed, Some(&sha1), None, &accounts),
            Err(SignatureError::BodyHashMismatch)
        );
    }
    // Another token, named by no configured account, is no way in.
    let other = signature::sign_sha1(&Secret::new("54321"), &url, NONE);
    assert_eq!(
        signature::verify_with_body_hash(&keys, &url, body, Some(&other), None, &accounts),
        Err(SignatureError::Mismatch)
    );
    // The body read as a signature header: anything goes in, no panic comes out.
    let header = String::from_utf8_lossy(body);
    let _ = signature::verify_with_body_hash(&keys, &url, body, Some(&header), None, &accounts);
});
