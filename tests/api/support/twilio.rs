//! Twilio's side of sending, for the tests that send against an HTTP mock of its API:
//! the answer to a message created, a message to send, and a test app that sends to the
//! mock.

use serde_json::{json, Value};
use wiremock::{MockServer, ResponseTemplate};

use super::fixtures::ACCOUNT_SID;
use super::spawn::{spawn_app_with, Settings, TestApp};

/// Twilio's `201` to CreateMessage, for a message `sid`.
pub fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": sid, "status": "queued", "account_sid": ACCOUNT_SID,
        "from": "+15005550006", "to": "+15005550009", "messaging_service_sid": null,
        "body": "hello", "num_segments": "1", "num_media": "0", "api_version": "2010-04-01",
        "error_code": null, "error_message": null, "date_created": "Thu, 26 Nov 2026 09:00:00 +0000"
    }))
}

/// A test app that sends through `twilio`, with the settings `extra` on top.
pub async fn twilio_app(twilio: &MockServer, extra: Vec<(&'static str, String)>) -> TestApp {
    let mut env = vec![
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("TWILIO_API_BASE", twilio.uri()),
        ("STATUSHOOK_TWILIO_TIMEOUT", "2s".to_owned()),
    ];
    env.extend(extra);
    spawn_app_with(Settings {
        env,
        ..Settings::default()
    })
    .await
}

/// The body of the simplest `POST /v1/messages`.
pub fn hello() -> Value {
    json!({"to": "+15005550009", "from": "+15005550006", "body": "hello"})
}
