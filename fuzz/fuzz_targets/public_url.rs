//! The configured public URL (first line) and a request target (the rest), and the URL
//! variants a signature is checked against. Nothing panics; a parsed public URL reads
//! back as itself; the variants always start with the URL as given, hold no duplicate,
//! and never touch the request target.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::config::PublicUrl;
use statushook::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (raw, target) = text.split_once('\n').unwrap_or((text, "/twilio/status"));

    check_variants(text);
    let Ok(public_url) = PublicUrl::parse(raw) else {
        return;
    };
    let base = public_url.join("");
    assert!(
        base.starts_with("https://") || base.starts_with("http://"),
        "{base:?}"
    );
    assert!(
        !base.ends_with('/') && !base.contains(['?', '#']),
        "{base:?}"
    );
    assert_eq!(
        PublicUrl::parse(&base).as_ref(),
        Ok(&public_url),
        "a public URL reads back as itself"
    );
    if !target.starts_with('/') {
        return;
    }
    let url = public_url.join(target);
    for variant in check_variants(&url) {
        assert!(variant.ends_with(target), "{variant:?} lost {target:?}");
    }
});

fn check_variants(url: &str) -> Vec<String> {
    let variants = fuzzing::url_variants(url);
    assert_eq!(variants.first().map(String::as_str), Some(url));
    assert!(variants.len() <= 3, "{variants:?}");
    for (i, variant) in variants.iter().enumerate() {
        assert!(!variants[..i].contains(variant), "{variants:?}");
    }
    variants
}
