//! `GET /v1/messages/{sid}`: bearer auth, errors and the JSON shape.

use crate::support::fixtures::{callback, new_sid, with, ACCOUNT_SID, API_TOKEN};
use crate::support::spawn::spawn_app;

#[tokio::test]
async fn the_api_requires_the_bearer_token() {
    let app = spawn_app().await;
    let url = format!("{}/v1/messages/{}", app.address, new_sid());
    let cases = [
        (None, "no header"),
        (Some("Bearer wrong-token".to_owned()), "wrong token"),
        (Some(format!("Basic {API_TOKEN}")), "wrong scheme"),
        (Some(format!("Bearer {API_TOKEN}x")), "token with a suffix"),
    ];
    for (header, case) in cases {
        let mut request = app.client.get(&url);
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), 401, "{case}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(app.get_message(&new_sid()).await.status(), 404);
}

#[tokio::test]
async fn a_malformed_sid_is_a_400_naming_it_and_an_unknown_one_a_404() {
    let app = spawn_app().await;
    let response = app.get_message("SMnothex").await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("SMnothex"),
        "{body}"
    );
    assert_eq!(app.get_message(&new_sid()).await.status(), 404);
}

#[tokio::test]
async fn a_message_is_shown_with_its_fields_and_events_in_the_contract_shape() {
    let app = spawn_app().await;
    let sid = new_sid();
    let sent = callback(&sid, "sent");
    let undelivered = with(
        with(callback(&sid, "undelivered"), "ErrorCode", "30003"),
        "RawDlrDoneDate",
        "2611260901",
    );
    assert_eq!(app.post_callback(&sent).await.status(), 200);
    assert_eq!(app.post_callback(&undelivered).await.status(), 200);

    let message = app.message_json(&sid).await;

    assert_eq!(message["sid"], sid.as_str());
    assert_eq!(message["account_sid"], ACCOUNT_SID);
    assert_eq!(message["from"], "+15005550006");
    assert_eq!(message["to"], "+15005550009");
    assert_eq!(message["messaging_service_sid"], serde_json::Value::Null);
    assert_eq!(message["status"], "undelivered");
    assert_eq!(message["error_code"], 30003);
    let created = message["created_at"].as_str().expect("created_at");
    let updated = message["updated_at"].as_str().expect("updated_at");
    for time in [created, updated] {
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{time}"
        );
    }
    assert!(created < updated);
    let events = message["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["status"], "sent");
    assert_eq!(events[0]["error_code"], serde_json::Value::Null);
    assert_eq!(events[0]["source"], "callback");
    assert_eq!(events[0]["raw_dlr_done_date"], serde_json::Value::Null);
    assert_eq!(events[0]["received_at"], created);
    assert_eq!(events[1]["error_code"], 30003);
    assert_eq!(events[1]["raw_dlr_done_date"], "2611260901");
    assert_eq!(events[1]["received_at"], updated);
    assert_eq!(events[1]["params"]["ErrorCode"], "30003");
}
