//! Diagnosis without gaps: every `403` and `400` of `/twilio/status` reaches the service's
//! log with its reason, a burst included (repeats summarised, never dropped); the `403`
//! line names the URLs and keys tried (never a key's value) and the public URL in force,
//! and reads differently for a wrong URL and a wrong token; `/metrics` counts each reason.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use statushook::secret::Secret;
use statushook::twilio::signature::{sign_sha1, sign_sha256};
use tokio::process::Child;

use crate::support::binary::{serve, Binary, KeptLog};
use crate::support::fixtures::{callback, encode, new_sid, AUTH_TOKEN, FORM, PUBLIC_URL};
use crate::support::poll::eventually;

/// The real binary, serving, with every entry of its log after its start-up line kept.
struct Logged {
    _child: Child,
    address: String,
    lines: KeptLog,
}

impl Logged {
    /// Starts `statushook serve` on a store of its own (PostgreSQL under
    /// `STATUSHOOK_TEST_STORE=postgres`), with `env` added.
    async fn start(data_dir: &Path, env: &[(&str, String)]) -> Logged {
        let Binary {
            child,
            address,
            log,
            ..
        } = serve(data_dir, env).await;
        Logged {
            _child: child,
            address,
            lines: log.keep(),
        }
    }

    fn log(&self) -> Vec<Value> {
        self.lines.entries()
    }

    /// The log lines with this message.
    fn lines_saying(&self, message: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }

    async fn post(
        &self,
        target: &str,
        params: &[(String, String)],
        headers: &[(&str, String)],
    ) -> u16 {
        let mut request = reqwest::Client::new()
            .post(format!("{}{target}", self.address))
            .header("Content-Type", FORM)
            .body(encode(params));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.expect("answered").status().as_u16()
    }

    /// Waits until a request log line for `count` requests to `/twilio/status` is in the
    /// log: every line logged while handling them is in it by then.
    async fn logged_requests(&self, count: usize) {
        eventually("the request log lines", || async {
            self.log()
                .iter()
                .filter(|line| line["message"] == "request" && line["path"] == "/twilio/status")
                .count()
                >= count
        })
        .await;
    }
}

fn signed(url: &str, token: &str, params: &[(String, String)]) -> String {
    sign_sha1(&Secret::new(token), url, params)
}

#[tokio::test]
async fn a_burst_of_403s_with_different_reasons_leaves_every_reason_in_the_log() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let service = Logged::start(
        data.path(),
        &[("STATUSHOOK_SHARED_KEYS", "K1=s3cr3t-shared".into())],
    )
    .await;
    let params = callback(&new_sid(), "sent");
    let url = format!("{PUBLIC_URL}/twilio/status?ref=person%40example.com");
    let target = "/twilio/status?ref=person%40example.com";
    let other_host = "other.example.net";
    // Within a second, as fast as they can be sent.
    let answers = vec![
        // No signature at all.
        service.post(target, &params, &[]).await,
        service.post(target, &params, &[]).await,
        // Signed with another token, for the right URL.
        service
            .post(
                target,
                &params,
                &[("X-Twilio-Signature", signed(&url, "not-the-token", &params))],
            )
            .await,
        // Signed with the right token for the URL the Host header names, not the public URL.
        service
            .post(
                target,
                &params,
                &[
                    ("Host", other_host.to_owned()),
                    (
                        "X-Twilio-Signature",
                        signed(
                            &format!("https://{other_host}{target}"),
                            AUTH_TOKEN,
                            &params,
                        ),
                    ),
                ],
            )
            .await,
        // A shared key id that is not configured.
        service
            .post(
                target,
                &params,
                &[
                    (
                        "X-Twilio-Signature",
                        sign_sha256(&Secret::new("s3cr3t-shared"), &url, &params),
                    ),
                    (
                        "X-Twilio-Webhooks-Signature-Settings",
                        "key=K9,algorithm=HMAC_SHA256".into(),
                    ),
                ],
            )
            .await,
        // An algorithm that does not exist.
        service
            .post(
                target,
                &params,
                &[
                    ("X-Twilio-Signature", signed(&url, AUTH_TOKEN, &params)),
                    (
                        "X-Twilio-Webhooks-Signature-Settings",
                        "algorithm=HMAC_MD5".into(),
                    ),
                ],
            )
            .await,
    ];
    assert!(answers.iter().all(|status| *status == 403), "{answers:?}");
    service.logged_requests(answers.len()).await;

    let refusals = service.lines_saying("callback refused with 403");
    let reasons: BTreeSet<&str> = refusals
        .iter()
        .filter_map(|line| line["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from([
            "no_signature",
            "signature_mismatch",
            "wrong_url",
            "unknown_shared_key",
            "bad_signature_settings",
        ]),
        "{refusals:#?}"
    );
    let by_reason = |reason: &str| {
        refusals
            .iter()
            .find(|line| line["reason"] == reason)
            .cloned()
            .expect("logged")
    };
    for line in &refusals {
        assert_eq!(line["public_url"], PUBLIC_URL, "{line}");
        let text = line.to_string();
        assert!(!text.contains("person"), "the query is not logged: {text}");
        assert!(!text.contains(AUTH_TOKEN), "no token is logged: {text}");
        assert!(!text.contains("s3cr3t"), "no key is logged: {text}");
    }
    let mismatch = by_reason("signature_mismatch");
    let tried_urls = mismatch["tried_urls"].as_str().unwrap_or_default();
    assert!(
        tried_urls.contains("https://hooks.example.com/twilio/status")
            && tried_urls.contains("https://hooks.example.com:443/twilio/status"),
        "the URL variants tried: {mismatch}"
    );
    assert!(
        mismatch["tried_keys"]
            .as_str()
            .unwrap_or_default()
            .contains("primary"),
        "the keys tried, by name: {mismatch}"
    );
    let wrong_url = by_reason("wrong_url");
    let (url_hint, token_hint) = (
        wrong_url["hint"].as_str().unwrap_or_default(),
        mismatch["hint"].as_str().unwrap_or_default(),
    );
    assert!(
        url_hint.contains(other_host) && url_hint.contains("STATUSHOOK_PUBLIC_URL"),
        "{wrong_url}"
    );
    assert!(token_hint.contains("auth token"), "{mismatch}");
    assert_ne!(
        url_hint, token_hint,
        "a wrong URL and a wrong token read differently"
    );
    assert!(
        by_reason("unknown_shared_key")["tried_keys"]
            .as_str()
            .unwrap_or_default()
            .contains("shared key K9"),
        "the shared key id is named"
    );

    // The repeated reason is summarised once its window closes, not dropped.
    eventually("the summary of the repeated refusal", || async {
        service
            .log()
            .iter()
            .any(|line| line["kind"] == "403 no_signature" && line["repeats"] == 1)
    })
    .await;

    let metrics = reqwest::get(format!("{}/metrics", service.address))
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    for (reason, count) in [
        ("no_signature", 2),
        ("signature_mismatch", 1),
        ("wrong_url", 1),
        ("unknown_shared_key", 1),
        ("bad_signature_settings", 1),
    ] {
        let line =
            format!("statushook_refusals_total{{status=\"403\",reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn every_400_reason_of_a_signed_callback_reaches_the_log() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let service = Logged::start(data.path(), &[]).await;
    let url = format!("{PUBLIC_URL}/twilio/status");
    let without = |name: &str| -> Vec<(String, String)> {
        callback(&new_sid(), "sent")
            .into_iter()
            .filter(|(key, _)| key != name)
            .collect()
    };
    let bad_sid: Vec<(String, String)> = callback("SMnot-a-sid", "sent");
    let cases = [without("MessageSid"), bad_sid, without("MessageStatus")];
    for params in &cases {
        let status = service
            .post(
                "/twilio/status",
                params,
                &[("X-Twilio-Signature", signed(&url, AUTH_TOKEN, params))],
            )
            .await;
        assert_eq!(status, 400);
    }
    service.logged_requests(cases.len()).await;
    let reasons: BTreeSet<String> = service
        .lines_saying("callback refused with 400")
        .iter()
        .filter_map(|line| line["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        reasons,
        BTreeSet::from([
            "missing_message_sid".to_owned(),
            "bad_message_sid".to_owned(),
            "missing_message_status".to_owned(),
        ])
    );
}
