//! Conformance with Twilio's own OpenAPI description: Prism serves
//! `tests/data/twilio_api_v2010.json` with `--errors`, so it answers 422 to any request the
//! description forbids. `scripts/test` installs Prism (`npm ci` in `tests/prism`).
//!
//! Prism cannot read an array sent as repeated form keys (`MediaUrl=a&MediaUrl=b`, the way
//! Twilio's API and its official libraries send arrays): it keeps the last value and then
//! refuses it as "must be array" (stoplightio/prism#2473). The two array parameters,
//! `MediaUrl` and `PersistentAction`, are therefore left out here; their encoding is
//! checked byte for byte against the HTTP mock in `sender.rs`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use statushook::config::TwilioCredentials;
use statushook::domain::MessageSid;
use statushook::secret::Secret;
use statushook::twilio::client::{RetryPolicy, TwilioClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::fixtures::ACCOUNT_SID;
use crate::support::spawn::{spawn_app_with, Settings};

const PRISM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/prism/node_modules/.bin/prism"
);
const DESCRIPTION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/twilio_api_v2010.json"
);

async fn start_prism() -> (Child, String) {
    assert!(
        std::path::Path::new(PRISM).exists(),
        "Prism is not installed: run scripts/test, which installs it with npm ci in tests/prism"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port();
    let mut child = Command::new(PRISM)
        .args([
            "mock",
            "--errors",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            DESCRIPTION,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("Prism starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listening = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("readable output") {
            if line.contains("Prism is listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "Prism did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn a_send_with_every_parameter_prism_accepts_conforms_to_twilios_api_description() {
    let (_prism, base) = start_prism().await;

    // Prism is strict: a request the description forbids is refused with 422.
    let refused = reqwest::Client::new()
        .post(format!(
            "{base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        ))
        .basic_auth(ACCOUNT_SID, Some("token"))
        .form(&[
            ("To", "+15005550009"),
            ("Body", "x"),
            ("ValidityPeriod", "soon"),
        ])
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 422);

    let app = spawn_app_with(Settings {
        env: vec![
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("TWILIO_API_BASE", base.clone()),
        ],
        ..Settings::default()
    })
    .await;
    let every_parameter = json!({
        "to": "+15005550009",
        "messaging_service_sid": "MG0123456789abcdef0123456789abcdef",
        "body": "Every parameter — ünïcödé 👋",
        "content_sid": "HX0123456789abcdef0123456789abcdef",
        "content_variables": "{\"1\":\"Ada\"}",
        "status_callback": "https://hooks.example.com/twilio/status?tenant=acme",
        "application_sid": "AP0123456789abcdef0123456789abcdef",
        "max_price": 0.75,
        "provide_feedback": true,
        "attempt": 2,
        "validity_period": 3600,
        "force_delivery": false,
        "content_retention": "retain",
        "address_retention": "obfuscate",
        "smart_encoded": true,
        "traffic_type": "free",
        "shorten_urls": true,
        "schedule_type": "fixed",
        "send_at": "2026-12-24T09:00:00Z",
        "send_as_mms": false,
        "risk_check": "disable",
        "fallback_from": "+15005550006"
    });
    let response = app.post_json("/v1/messages", &every_parameter).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().expect("a sid").to_owned();
    assert_eq!(
        app.message_json(&sid).await["events"][0]["source"],
        "sender"
    );

    // The default callback, with its connection overrides, is a URI the description accepts.
    let minimal = json!({"to": "+15005550009", "from": "+15005550006", "body": "hi"});
    assert_eq!(app.post_json("/v1/messages", &minimal).await.status(), 201);

    // Fetch Message, which the reconciler uses, conforms too.
    let client = TwilioClient::new(
        TwilioCredentials {
            account_sid: ACCOUNT_SID.into(),
            username: ACCOUNT_SID.into(),
            password: Secret::new("token"),
            api_base: base,
        },
        RetryPolicy::default(),
    )
    .expect("a client");
    let fetched = client
        .fetch_message(&MessageSid::parse(&sid).expect("sid"))
        .await
        .expect("fetched");
    assert!(fetched["status"].is_string(), "{fetched}");
}
