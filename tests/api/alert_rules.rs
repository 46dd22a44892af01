//! What `deploy/prometheus/alerts.yaml` reads from `/metrics`: stored transitions by source
//! and status (callbacks, Event Streams, sends), failures by error code and outcomes by
//! account, each bounded in the label values it adds; and every metric and label value the rules name, exposed by a real server,
//! so that renaming one fails here rather than silently in Prometheus.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use statushook::metrics::{MAX_ACCOUNTS, MAX_ERROR_CODES};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::fixtures::{callback, new_sid, with, ACCOUNT_SID};
use crate::support::metrics::metric;
use crate::support::receiver::SECRET;
use crate::support::spawn::{spawn_app, spawn_app_with, Settings};
use crate::support::streams::{new_event_id, status_event};
use crate::support::twilio::{created, hello, twilio_app};

/// The label values of `label` on the samples of `name` in the `/metrics` text.
fn label_values(text: &str, name: &str, label: &str) -> Vec<String> {
    samples(text)
        .into_iter()
        .filter(|(sample, _)| sample == name)
        .filter_map(|(_, labels)| labels.get(label).cloned())
        .collect()
}

#[tokio::test]
async fn error_codes_and_accounts_past_their_caps_are_counted_as_other() {
    let app = spawn_app().await;
    // One failure more than either cap allows, each with a code and an account of its own.
    let failures = MAX_ERROR_CODES.max(MAX_ACCOUNTS) + 1;
    for n in 0..failures {
        let account = format!("AC{n:032x}");
        let params = with(
            callback(&new_sid(), "undelivered"),
            "ErrorCode",
            &(30000 + n).to_string(),
        );
        let params: Vec<_> = params
            .into_iter()
            .map(|(name, value)| match name.as_str() {
                "AccountSid" => (name, account.clone()),
                _ => (name, value),
            })
            .collect();
        assert_eq!(app.post_callback(&params).await.status(), 200);
        // Twilio's second delivery of the same callback adds nothing.
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }
    let delivered = new_sid();
    assert_eq!(
        app.post_callback(&callback(&delivered, "delivered"))
            .await
            .status(),
        200
    );
    let streamed = status_event(&new_event_id(), &new_sid(), "failed", Some(30003));
    assert_eq!(app.post_events(&streamed.to_string()).await.status(), 200);

    let text = app.metrics().await;
    let failures = failures as f64;
    assert_eq!(
        metric(
            &text,
            r#"statushook_transitions_total{source="callback",status="undelivered"}"#
        ),
        failures,
        "each stored failure once, duplicates not"
    );
    assert_eq!(
        metric(
            &text,
            r#"statushook_transitions_total{source="callback",status="delivered"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"statushook_transitions_total{source="event_stream",status="failed"}"#
        ),
        1.0
    );

    let codes = label_values(&text, "statushook_failures_total", "error_code");
    assert_eq!(codes.len(), MAX_ERROR_CODES + 1, "{codes:?}");
    assert!(
        codes.contains(&"30000".to_owned()),
        "the first code keeps its own"
    );
    assert!(codes.contains(&"other".to_owned()));
    let counted: f64 = codes
        .iter()
        .map(|code| {
            metric(
                &text,
                &format!(r#"statushook_failures_total{{error_code="{code}"}}"#),
            )
        })
        .sum();
    assert_eq!(counted, failures + 1.0, "every failure under some code");
    assert_eq!(
        metric(&text, r#"statushook_failures_total{error_code="other"}"#),
        failures - MAX_ERROR_CODES as f64,
        "the codes past the cap"
    );
    assert_eq!(
        metric(&text, r#"statushook_failures_total{error_code="30003"}"#),
        2.0,
        "a code seen early keeps its label, whatever the source"
    );

    let accounts: HashSet<String> =
        label_values(&text, "statushook_account_outcomes_total", "account_sid")
            .into_iter()
            .collect();
    assert_eq!(accounts.len(), MAX_ACCOUNTS + 1, "{accounts:?}");
    assert!(accounts.contains(&format!("AC{:032x}", 0)));
    assert!(
        !accounts.contains(ACCOUNT_SID),
        "the test account came last"
    );
    assert_eq!(
        metric(
            &text,
            r#"statushook_account_outcomes_total{account_sid="other",outcome="failed"}"#
        ),
        failures + 1.0 - MAX_ACCOUNTS as f64
    );
    assert_eq!(
        metric(
            &text,
            r#"statushook_account_outcomes_total{account_sid="other",outcome="delivered"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn sends_count_as_sender_transitions_and_a_refused_send_as_a_failure_with_its_code() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .respond_with(created(&sid))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    assert_eq!(app.post_json("/v1/messages", &hello()).await.status(), 201);
    assert_eq!(app.post_json("/v1/messages", &hello()).await.status(), 422);
    assert_eq!(
        app.post_callback(&callback(&sid, "sent")).await.status(),
        200
    );

    let text = app.metrics().await;
    for (series, expected) in [
        (
            r#"statushook_transitions_total{source="sender",status="queued"}"#,
            1.0,
        ),
        (
            r#"statushook_transitions_total{source="sender",status="failed"}"#,
            1.0,
        ),
        (
            r#"statushook_transitions_total{source="callback",status="sent"}"#,
            1.0,
        ),
        (
            r#"statushook_transitions_total{source="reconciler",status="delivered"}"#,
            0.0,
        ),
        (r#"statushook_failures_total{error_code="21211"}"#, 1.0),
        (
            r#"statushook_account_outcomes_total{account_sid="AC0123456789abcdef0123456789abcdef",outcome="failed"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&text, series), expected, "{series}");
    }
}

#[tokio::test]
async fn every_metric_and_label_value_the_alerting_rules_read_is_exposed() {
    // Forwarding on, so that its gauges are shown; nothing is stored, so nothing is sent.
    let app = spawn_app_with(Settings {
        env: vec![
            ("STATUSHOOK_FORWARD_URL", "http://127.0.0.1:9/hooks".into()),
            ("STATUSHOOK_FORWARD_SECRET", SECRET.into()),
        ],
        ..Settings::default()
    })
    .await;
    let text = app.metrics().await;
    let exposed = samples(&text);
    let rules = include_str!("../../deploy/prometheus/alerts.yaml");

    let selectors = selectors(rules);
    assert!(selectors.len() > 20, "the rules read {selectors:?}");
    for (name, matchers) in selectors {
        let with_name: Vec<&HashMap<String, String>> = exposed
            .iter()
            .filter(|(sample, _)| *sample == name)
            .map(|(_, labels)| labels)
            .collect();
        assert!(
            !with_name.is_empty(),
            "the rules read {name}, which /metrics lacks"
        );
        for (label, values) in matchers {
            for value in values {
                assert!(
                    with_name
                        .iter()
                        .any(|labels| labels.get(&label) == Some(&value)),
                    "the rules read {name}{{{label}=\"{value}\"}}, which /metrics lacks"
                );
            }
        }
    }
}

/// A label and the values a matcher requires of it, each on some sample.
type Matcher = (String, Vec<String>);

/// Every `statushook_…` metric the text names, with the label values its `=` and `=~`
/// matchers require (each alternative of a `=~` made of plain words). `job` and `instance`
/// are Prometheus's own labels; `exported_job` is statushook's `job`, renamed at the scrape.
fn selectors(rules: &str) -> Vec<(String, Vec<Matcher>)> {
    let rules = rules.replace("\\\"", "\"");
    let mut found = Vec::new();
    let mut rest = rules.as_str();
    while let Some(start) = rest.find("statushook_") {
        let before = rest[..start].chars().next_back();
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/') {
            continue;
        }
        let name = tail[..end].to_owned();
        let mut matchers = Vec::new();
        if let Some(inside) = rest.strip_prefix('{').and_then(|r| r.split('}').next()) {
            for matcher in inside.split(',') {
                let Some((label, value)) = matcher.split_once('=') else {
                    continue;
                };
                // `!=` and `!~` require nothing (a `!~` has no `=` and never gets here).
                if label.ends_with('!') {
                    continue;
                }
                let value = value.trim_start_matches('~').trim().trim_matches('"');
                let label = match label.trim() {
                    "job" | "instance" => continue,
                    "exported_job" => "job",
                    label => label,
                };
                let values = value.split('|').map(str::to_owned).collect();
                matchers.push((label.to_owned(), values));
            }
        }
        found.push((name, matchers));
    }
    found
}

/// The samples of a `/metrics` text: each name with its labels.
fn samples(text: &str) -> Vec<(String, HashMap<String, String>)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let series = line.rsplit_once(' ')?.0;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(label, value)| (label.to_owned(), value.trim_matches('"').to_owned()))
                .collect();
            Some((name.to_owned(), labels))
        })
        .collect()
}
