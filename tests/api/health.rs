//! `/healthz`, `/readyz` and `/metrics`.

use crate::support::metrics::metric;
use crate::support::spawn::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer_200_without_a_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn metrics_count_callbacks_by_outcome_and_messages_by_status() {
    use crate::support::fixtures::{callback, encode, new_sid, with, FORM};
    let app = spawn_app().await;
    let sid = new_sid();
    let sent = callback(&sid, "sent");
    assert_eq!(app.post_callback(&sent).await.status(), 200);
    assert_eq!(app.post_callback(&sent).await.status(), 200);
    let forged = app
        .post_raw(
            "/twilio/status",
            encode(&sent),
            &[("Content-Type", FORM), ("X-Twilio-Signature", "AAAA")],
        )
        .await;
    assert_eq!(forged.status(), 403);
    let no_status: Vec<_> = sent
        .iter()
        .filter(|(k, _)| k != "MessageStatus")
        .cloned()
        .collect();
    assert_eq!(app.post_callback(&no_status).await.status(), 400);
    let huge = with(sent.clone(), "Padding", &"x".repeat(70_000));
    assert_eq!(app.post_callback(&huge).await.status(), 413);
    let typed = app
        .post_raw(
            "/twilio/status",
            "{}",
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(typed.status(), 415);

    let text = app.metrics().await;
    for (outcome, expected) in [
        ("stored", 1.0),
        ("duplicate", 1.0),
        ("forged", 1.0),
        ("malformed", 1.0),
        ("too_large", 1.0),
        ("unsupported_media_type", 1.0),
        ("store_error", 0.0),
    ] {
        let name = format!("statushook_callbacks_total{{outcome=\"{outcome}\"}}");
        assert_eq!(metric(&text, &name), expected, "{name}");
    }
    assert_eq!(metric(&text, "statushook_signature_failures_total"), 1.0);
    assert_eq!(metric(&text, "statushook_duplicates_total"), 1.0);
    assert_eq!(
        metric(&text, "statushook_callback_duration_seconds_count"),
        6.0
    );
    assert_eq!(metric(&text, "statushook_messages{status=\"sent\"}"), 1.0);
    assert!(metric(&text, "statushook_group_commit_size_count") >= 1.0);
    assert!(metric(&text, "statushook_store_bytes") > 0.0);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_keeps_the_callers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("answered");
    assert!(response.headers().get("x-request-id").is_some());
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.headers()["x-request-id"], "trace-42");
}
