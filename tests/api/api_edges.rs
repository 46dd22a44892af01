//! Small edges of the API: the `+` hint for `since` and `until`, `Content-Disposition` on
//! exports, and an explicit body limit answered with a JSON error.

use serde_json::Value;

use crate::support::fixtures::API_TOKEN;
use crate::support::receiver::SECRET;
use crate::support::spawn::{spawn_app, spawn_app_with, Settings};

#[tokio::test]
async fn a_time_whose_plus_was_not_encoded_is_refused_with_the_fix() {
    // Forwarding on (to nowhere), so that the replay's parameters are checked too.
    let app = spawn_app_with(Settings {
        env: vec![
            ("STATUSHOOK_FORWARD_URL", "http://127.0.0.1:9/hooks".into()),
            ("STATUSHOOK_FORWARD_SECRET", SECRET.into()),
        ],
        ..Settings::default()
    })
    .await;
    let time = "2026-12-07T10:00:00+01:00";
    for (path, parameter) in [
        ("/v1/messages?since=", "since"),
        ("/v1/messages?until=", "until"),
        ("/v1/stats?since=", "since"),
        (
            "/v1/stats/series?bucket=hour&until=2026-12-08T00:00:00Z&since=",
            "since",
        ),
        ("/v1/export?until=", "until"),
        ("/v1/forwarding/replay?since=", "since"),
    ] {
        // As a shell or a browser sends it: the + unencoded, which a query string reads
        // as a space.
        let target = format!("{}{path}{time}", app.address);
        let request = if path.contains("replay") {
            app.client.post(target)
        } else {
            app.client.get(target)
        };
        let response = request
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("answered");
        if path.contains("replay") && response.status() == 503 {
            // Forwarding is off here: the parameters are checked after that, below.
            continue;
        }
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.expect("a JSON error");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{parameter}=2026-12-07T10:00:00%2B01:00")),
            "{path}: {error}"
        );
    }
}

#[tokio::test]
async fn exports_are_offered_as_files() {
    let app = spawn_app().await;
    for (format, name) in [
        ("jsonl", "statushook-export.jsonl"),
        ("csv", "statushook-export.csv"),
    ] {
        let response = app
            .get_authorized(&format!("/v1/export?format={format}"))
            .await;
        assert_eq!(response.status(), 200);
        let disposition = response.headers()["content-disposition"]
            .to_str()
            .expect("text")
            .to_owned();
        assert_eq!(disposition, format!("attachment; filename=\"{name}\""));
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_a_json_error() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "to": "+15005550009",
        "from": "+15005550006",
        "body": "x".repeat(70 * 1024),
    });
    let response = app.post_json("/v1/messages", &body).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.expect("a JSON error");
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("64 KiB"),
        "{error}"
    );
}
