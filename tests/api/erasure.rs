//! A privacy erasure means it: `DELETE /v1/messages?phone=+1…` erases the number in every
//! channel form a message carries it in, refuses what is not a number, and once it has
//! answered, nothing of the erased messages is forwarded, also what waited for a retry.

use serde_json::{json, Value};

use crate::support::fixtures::{callback, new_sid, API_TOKEN};
use crate::support::receiver::{acknowledged, Receiver, Service};
use crate::support::spawn::{spawn_app_with, Settings, TestApp};

const NUMBER: &str = "+14155550199";

/// A callback of `sid` to `to` and from `from`.
fn between(sid: &str, status: &str, to: &str, from: &str) -> Vec<(String, String)> {
    callback(sid, status)
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "To" => (name, to.to_owned()),
            "From" => (name, from.to_owned()),
            _ => (name, value),
        })
        .collect()
}

async fn post(app: &TestApp, params: &[(String, String)]) {
    assert_eq!(app.post_callback(params).await.status(), 200);
}

async fn erase(app: &TestApp, query: &str) -> reqwest::Response {
    app.client
        .delete(format!("{}/v1/messages?{query}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn an_erasure_by_e164_number_removes_its_whatsapp_and_rcs_forms_too() {
    let app = spawn_app_with(Settings::default()).await;
    let whatsapp_to = new_sid();
    let whatsapp_from = new_sid();
    let rcs_to = new_sid();
    let sms_from = new_sid();
    let other_number = new_sid();
    let business = "whatsapp:+15005550006";
    let cases = [
        (
            &whatsapp_to,
            format!("whatsapp:{NUMBER}"),
            business.to_owned(),
        ),
        (
            &whatsapp_from,
            business.to_owned(),
            format!("whatsapp:{NUMBER}"),
        ),
        (
            &rcs_to,
            format!("rcs:{NUMBER}"),
            "rcs:acme_agent".to_owned(),
        ),
        (&sms_from, "+15005550009".to_owned(), NUMBER.to_owned()),
        // A number that merely contains this one is someone else's.
        (
            &other_number,
            format!("whatsapp:{NUMBER}1"),
            business.to_owned(),
        ),
    ];
    for (sid, to, from) in &cases {
        post(&app, &between(sid, "sent", to, from)).await;
        post(&app, &between(sid, "delivered", to, from)).await;
    }

    let response = erase(&app, "phone=%2B14155550199").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"deleted": 4}),
        "every message holding the number, in any channel form, and only those"
    );
    for sid in [&whatsapp_to, &whatsapp_from, &rcs_to, &sms_from] {
        assert!(!app.is_stored(sid).await, "{sid} is erased");
    }
    assert!(app.is_stored(&other_number).await);
    for filter in [
        format!("to=whatsapp%3A%2B{}", &NUMBER[1..]),
        format!("from=whatsapp%3A%2B{}", &NUMBER[1..]),
        format!("to=rcs%3A%2B{}", &NUMBER[1..]),
    ] {
        let listed: Value = app
            .get_authorized(&format!("/v1/messages?{filter}"))
            .await
            .json()
            .await
            .expect("JSON");
        assert_eq!(listed["messages"], json!([]), "{filter}");
    }
}

#[tokio::test]
async fn a_phone_that_is_not_an_e164_number_is_refused_and_erases_nothing() {
    let app = spawn_app_with(Settings::default()).await;
    let sid = new_sid();
    post(&app, &between(&sid, "sent", NUMBER, "+15005550006")).await;
    for (query, why) in [
        ("phone=4155550199", "no +"),
        ("phone=14155550199", "no + (digits only)"),
        (
            "phone=whatsapp%3A%2B14155550199",
            "a channel form, not a number",
        ),
        ("phone=%2B1%20415%20555%200199", "spaces"),
        ("phone=%2B", "no digits"),
        ("phone=%2B1415555019912345", "more than 15 digits"),
        ("phone=", "empty"),
        ("phone=+14155550199", "an unencoded +"),
    ] {
        let response = erase(&app, query).await;
        assert_eq!(response.status(), 400, "{why}: {query}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["parameter"], "phone", "{why}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("%2B"),
            "{why}: says how to write it: {error}"
        );
    }
    assert!(app.is_stored(&sid).await, "nothing was erased");
}

#[tokio::test]
async fn transitions_waiting_for_a_retry_are_not_forwarded_once_their_message_is_erased() {
    let mut receiver = Receiver::start().await;
    receiver.command("down").await;
    let app = spawn_app_with(Settings {
        env: receiver.env(),
        ..Settings::default()
    })
    .await;
    let service = Service::of(&app);
    let erased: Vec<String> = (0..3).map(|_| new_sid()).collect();
    let kept = new_sid();
    for sid in &erased {
        post(
            &app,
            &between(sid, "sent", &format!("whatsapp:{NUMBER}"), "+15005550006"),
        )
        .await;
        post(
            &app,
            &between(
                sid,
                "delivered",
                &format!("whatsapp:{NUMBER}"),
                "+15005550006",
            ),
        )
        .await;
    }
    post(
        &app,
        &between(&kept, "sent", "+15005550009", "+15005550006"),
    )
    .await;
    // Every message's first transition has been tried and failed: they wait for a retry,
    // in memory and in the saved progress.
    service
        .forwarding_when("every message tried and waiting", |status| {
            status["pending"] == 7 && status["deliveries"]["unreachable"].as_u64().unwrap_or(0) >= 4
        })
        .await;

    let response = erase(&app, "phone=%2B14155550199").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("JSON")["deleted"], 3);
    receiver.command("up").await;

    receiver
        .wait_until("the kept message forwarded", |d| acknowledged(d).len() == 1)
        .await;
    service
        .forwarding_when("nothing left waiting", |status| status["depth"] == 0)
        .await;
    // Everything the receiver was sent has been reported by the time it acknowledges this.
    receiver.command("delay 0").await;
    let sids: Vec<&str> = receiver.deliveries.iter().map(|d| d.sid()).collect();
    assert_eq!(sids, [kept.as_str()], "{:?}", receiver.summary());
    for delivery in &receiver.deliveries {
        let body = delivery.body.to_string();
        assert!(
            !body.contains(&NUMBER[1..]),
            "the number was forwarded: {body}"
        );
    }
}
