//! The edges of callback verification, through HTTP: bytes that are not UTF-8, public URLs
//! with user info, the signature settings header, and the tokens of subaccounts.

use serde_json::Value;
use statushook::secret::Secret;
use statushook::twilio::signature;

use crate::support::fixtures::{callback, encode, new_sid, with, ACCOUNT_SID, AUTH_TOKEN, FORM};
use crate::support::spawn::{spawn_app, spawn_app_with, Settings};

/// `params` as Twilio would post them, then one more pair written percent-encoded by hand,
/// signed over the bytes it decodes to (as Twilio's libraries sign).
fn with_raw_pair(
    params: &[(String, String)],
    encoded: &str,
    decoded: (&[u8], &[u8]),
    token: &str,
    url: &str,
) -> (String, String) {
    let mut bytes: Vec<(Vec<u8>, Vec<u8>)> = params
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    bytes.push((decoded.0.to_vec(), decoded.1.to_vec()));
    let signature = signature::sign_sha1(&Secret::new(token), url, &bytes);
    (format!("{}&{encoded}", encode(params)), signature)
}

#[tokio::test]
async fn a_signed_value_or_name_that_is_not_utf8_is_refused_with_400_naming_it_and_stores_nothing()
{
    let app = spawn_app().await;
    let url = "https://hooks.example.com/twilio/status";
    // The pair as written in the body, the bytes it decodes to, and the parameter named.
    type Case = (&'static str, (&'static [u8], &'static [u8]), &'static str);
    let cases: [Case; 3] = [
        ("Body=caf%E9", (b"Body", b"caf\xe9"), "Body"),
        ("Body=%FF%FE", (b"Body", b"\xff\xfe"), "Body"),
        ("Na%E9me=x", (b"Na\xe9me", b"x"), "Na%E9me"),
    ];
    for (encoded, decoded, parameter) in cases {
        let sid = new_sid();
        let (body, signature) =
            with_raw_pair(&callback(&sid, "sent"), encoded, decoded, AUTH_TOKEN, url);
        let response = app
            .post_raw(
                "/twilio/status",
                body,
                &[("Content-Type", FORM), ("X-Twilio-Signature", &signature)],
            )
            .await;
        assert_eq!(response.status(), 400, "{encoded}");
        let error: Value = response.json().await.expect("a JSON error");
        assert_eq!(error["parameter"], parameter, "{encoded}: {error}");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains("UTF-8")),
            "{error}"
        );
        assert!(!app.is_stored(&sid).await, "{encoded} must store nothing");
    }
}

#[tokio::test]
async fn bytes_that_are_not_utf8_are_checked_against_the_signature_before_anything_else() {
    let app = spawn_app().await;
    let url = "https://hooks.example.com/twilio/status";
    let sid = new_sid();
    let params = callback(&sid, "sent");
    // Signed by another token: refused as forged (403), not as malformed (400).
    let (body, forged) = with_raw_pair(
        &params,
        "Body=caf%E9",
        (b"Body", b"caf\xe9"),
        "another-token",
        url,
    );
    let response = app
        .post_raw(
            "/twilio/status",
            body.clone(),
            &[("Content-Type", FORM), ("X-Twilio-Signature", &forged)],
        )
        .await;
    assert_eq!(response.status(), 403);
    // Signed over U+FFFD in place of the byte: that is not what was sent, so it is forged.
    let lossy = with(params.clone(), "Body", "caf\u{fffd}");
    let lossy_signature = app.sign("/twilio/status", &lossy);
    let response = app
        .post_raw(
            "/twilio/status",
            body,
            &[
                ("Content-Type", FORM),
                ("X-Twilio-Signature", &lossy_signature),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(!app.is_stored(&sid).await);
}

#[tokio::test]
async fn a_public_url_with_user_info_verifies_with_and_without_the_default_port() {
    let cases = [
        (
            "https://user:pass@hooks.example.com",
            "https://user:pass@hooks.example.com:443/twilio/status",
        ),
        (
            "https://user:pass@hooks.example.com",
            "https://user:pass@hooks.example.com/twilio/status",
        ),
        (
            "https://user:pass@hooks.example.com:443",
            "https://user:pass@hooks.example.com/twilio/status",
        ),
        (
            "https://user@hooks.example.com",
            "https://user@hooks.example.com:443/twilio/status",
        ),
    ];
    for (public_url, signed_url) in cases {
        let app = spawn_app_with(Settings {
            public_url: Some(public_url),
            ..Settings::default()
        })
        .await;
        let params = callback(&new_sid(), "sent");
        let response = app.post_signed_by(AUTH_TOKEN, signed_url, &params).await;
        assert_eq!(
            response.status(),
            200,
            "public URL {public_url}, signed {signed_url}"
        );
    }
}

#[tokio::test]
async fn the_signature_settings_header_is_read_as_twilios_libraries_read_it() {
    let app = spawn_app_with(Settings {
        env: vec![("STATUSHOOK_SHARED_KEYS", "K1=the-shared-key".into())],
        ..Settings::default()
    })
    .await;
    let url = "https://hooks.example.com/twilio/status";
    let shared = Secret::new("the-shared-key");
    let token = Secret::new(AUTH_TOKEN);
    type Signer = fn(&Secret, &str, &[(String, String)]) -> String;
    let sha256: Signer = signature::sign_sha256;
    let sha1: Signer = signature::sign_sha1;
    let cases: [(&str, Signer, &Secret, u16); 9] = [
        ("key=K1,algorithm=HMAC_SHA256,extra", sha256, &shared, 200),
        ("key=K1,algorithm=HMAC_SHA256,", sha256, &shared, 200),
        ("key=K1,algorithm=HMAC_SHA1", sha1, &shared, 200),
        ("key=K1", sha1, &shared, 200),
        ("algorithm=HMAC_SHA1", sha1, &token, 200),
        ("", sha1, &token, 200),
        ("key=K1", sha1, &token, 403),
        ("key=K9,algorithm=HMAC_SHA256", sha256, &shared, 403),
        ("key=K1,algorithm=HMAC_MD5", sha256, &shared, 403),
    ];
    for (settings, sign, key, expected) in cases {
        let sid = new_sid();
        let params = callback(&sid, "sent");
        let signature = sign(key, url, &params);
        let headers = [
            ("Content-Type", FORM),
            ("X-Twilio-Signature", signature.as_str()),
            ("X-Twilio-Webhooks-Signature-Settings", settings),
        ];
        let response = app
            .post_raw("/twilio/status", encode(&params), &headers)
            .await;
        assert_eq!(response.status(), expected, "settings {settings:?}");
        assert_eq!(app.is_stored(&sid).await, expected == 200, "{settings:?}");
    }
}

const SUBACCOUNT_A: &str = "AC000000000000000000000000000000aa";
const SUBACCOUNT_B: &str = "AC000000000000000000000000000000bb";

#[tokio::test]
async fn a_subaccounts_callback_verifies_under_its_token_and_not_under_another_subaccounts() {
    let app = spawn_app_with(Settings {
        env: vec![(
            "TWILIO_ACCOUNT_TOKENS",
            format!("{SUBACCOUNT_A}=token-of-a,{SUBACCOUNT_B}=token-of-b"),
        )],
        ..Settings::default()
    })
    .await;
    let url = "https://hooks.example.com/twilio/status";
    let cases = [
        (SUBACCOUNT_A, "token-of-a", 200),
        (SUBACCOUNT_B, "token-of-b", 200),
        (SUBACCOUNT_A, AUTH_TOKEN, 200),
        (SUBACCOUNT_A, "token-of-b", 403),
        (ACCOUNT_SID, "token-of-a", 403),
    ];
    for (account, token, expected) in cases {
        let sid = new_sid();
        let params: Vec<(String, String)> = callback(&sid, "sent")
            .into_iter()
            .map(|(name, value)| {
                let value = if name == "AccountSid" {
                    account.to_owned()
                } else {
                    value
                };
                (name, value)
            })
            .collect();
        let response = app.post_signed_by(token, url, &params).await;
        assert_eq!(response.status(), expected, "{account} signed with {token}");
        assert_eq!(app.is_stored(&sid).await, expected == 200);
    }
}
