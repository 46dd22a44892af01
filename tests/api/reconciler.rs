//! The reconciler against an HTTP mock of Twilio's Fetch Message.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::fixtures::{callback, event_statuses, new_sid, with, ACCOUNT_SID};
use crate::support::metrics::metric;
use crate::support::poll::eventually;
use crate::support::spawn::{spawn_app_with, Settings, TestApp};

fn fetch_path(sid: &str) -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json")
}

fn resource(sid: &str, status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "sid": sid, "status": status, "account_sid": ACCOUNT_SID,
        "from": "+15005550006", "to": "+15005550009", "error_code": null, "api_version": "2010-04-01"
    }))
}

async fn reconciling_app(twilio: &MockServer, rate: &str) -> TestApp {
    spawn_app_with(Settings {
        env: vec![
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("TWILIO_API_BASE", twilio.uri()),
            ("STATUSHOOK_RECONCILE_AFTER", "200ms".into()),
            ("STATUSHOOK_RECONCILE_RATE", rate.into()),
        ],
        ..Settings::default()
    })
    .await
}

#[tokio::test]
async fn a_message_stuck_in_sent_becomes_delivered_and_final_messages_are_never_fetched() {
    let twilio = MockServer::start().await;
    let stuck = new_sid();
    let done = new_sid();
    Mock::given(method("GET"))
        .and(path(fetch_path(&stuck)))
        .respond_with(resource(&stuck, "delivered"))
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(fetch_path(&done)))
        .respond_with(resource(&done, "delivered"))
        .expect(0)
        .mount(&twilio)
        .await;
    let app = reconciling_app(&twilio, "50").await;
    assert_eq!(
        app.post_callback(&callback(&done, "delivered"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_callback(&callback(&stuck, "sent")).await.status(),
        200
    );

    eventually("the reconciler to correct the stuck message", || async {
        app.message_json(&stuck).await["status"] == "delivered"
    })
    .await;

    let message = app.message_json(&stuck).await;
    assert_eq!(event_statuses(&message), ["sent", "delivered"]);
    assert_eq!(message["events"][1]["source"], "reconciler");
    // Several more passes: the corrected message is final now and is not fetched again;
    // the mock's expectations (exactly one fetch, none of the delivered one) are checked
    // when it is dropped.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "statushook_reconciler_corrections_total"),
        1.0
    );
    assert_eq!(metric(&metrics, "statushook_reconciler_fetches_total"), 1.0);
    // What the silence alert reads: a status the callbacks missed.
    assert_eq!(
        metric(
            &metrics,
            r#"statushook_transitions_total{source="reconciler",status="delivered"}"#
        ),
        1.0
    );

    // Twilio's own `delivered` callback, arriving late, is not swallowed by the
    // reconciler's event of the same status: it is kept with all its parameters.
    let late = with(
        callback(&stuck, "delivered"),
        "RawDlrDoneDate",
        "2611260907",
    );
    assert_eq!(app.post_callback(&late).await.status(), 200);
    let message = app.message_json(&stuck).await;
    assert_eq!(event_statuses(&message), ["sent", "delivered", "delivered"]);
    assert_eq!(message["events"][2]["source"], "callback");
    assert_eq!(
        message["events"][2]["params"]["RawDlrDoneDate"],
        "2611260907"
    );
}

#[tokio::test]
async fn fetches_respect_the_configured_rate() {
    let twilio = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"/Messages/SM[0-9a-f]{32}\.json$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"sid": "SM00000000000000000000000000000000", "status": "sent"}),
            ),
        )
        .mount(&twilio)
        .await;
    let rate = 4.0;
    let app = reconciling_app(&twilio, "4").await;
    let started = Instant::now();
    for _ in 0..8 {
        assert_eq!(
            app.post_callback(&callback(&new_sid(), "sent"))
                .await
                .status(),
            200
        );
    }

    let fetched = || async { twilio.received_requests().await.map_or(0, |r| r.len()) };
    eventually("four fetches", || async { fetched().await >= 4 }).await;

    let count = fetched().await as f64;
    let allowed = rate * started.elapsed().as_secs_f64() + 1.0;
    assert!(
        count <= allowed,
        "{count} fetches in {:?} exceeds {rate}/s",
        started.elapsed()
    );
}
