//! Alerts through HTTP: rules put and refused, alerts that fire once and resolve once,
//! `min_messages`, `silence` with the reconciler covering its messages, and the three
//! channels: webhooks verified by the `standardwebhooks` package (the forwarding tests'
//! receiver), Slack and PagerDuty checked against their documented shapes by local stand-ins.
//! Each runs on the store of the test run (sled, or PostgreSQL in scripts/test's second
//! run); the change of leader is in `alerts_failover.rs`.

use std::time::Duration;

use tokio::time::Instant;

use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::alerts::{
    alert_env, drain, failed, notifications, passes, sids, webhook_to, Alerting, Stand, ROUTING_KEY,
};
use crate::support::fixtures::{callback, new_sid, ACCOUNT_SID, API_TOKEN, PUBLIC_URL};
use crate::support::metrics::metric;
use crate::support::poll;
use crate::support::receiver::Receiver;
use crate::support::spawn::{spawn_app_with, Settings, TestApp};
use crate::support::twilio::{created, hello, twilio_app};

const READ_TOKEN: &str = "test-read-token-0123456789abcdef01234567";

async fn alerting_app(extra: Vec<(&'static str, String)>) -> TestApp {
    let mut env = alert_env();
    env.extend(extra);
    spawn_app_with(Settings {
        env,
        ..Settings::default()
    })
    .await
}

fn alerting(app: &TestApp) -> Alerting<'_> {
    Alerting {
        client: &app.client,
        address: &app.address,
    }
}

async fn post_all(app: &TestApp, callbacks: impl IntoIterator<Item = Vec<(String, String)>>) {
    for params in callbacks {
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }
}

#[tokio::test]
async fn a_failure_rate_fires_once_on_a_burst_and_resolves_once_under_resolve_below() {
    let mut receiver = Receiver::start().await;
    let app = alerting_app(vec![]).await;
    let alerting = alerting(&app);
    alerting
        .rule(
            "carrier",
            json!({"metric": "failure_rate", "threshold": 0.5, "resolve_below": 0.2,
                "window": "1h", "min_messages": 10, "notify": [webhook_to(&receiver)]}),
        )
        .await;

    let failures = sids(10);
    post_all(&app, failures.iter().map(|sid| failed(sid, 30003))).await;
    post_all(&app, sids(2).iter().map(|sid| callback(sid, "delivered"))).await;
    receiver
        .wait_until("the firing notification", |d| !notifications(d).is_empty())
        .await;
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);
    let firing = receiver.deliveries[0].clone();
    assert_eq!(firing.body["type"], "alert.firing");
    let data = &firing.body["data"];
    assert_eq!(data["rule"], "carrier");
    assert_eq!(data["metric"], "failure_rate");
    assert!(data["value"].as_f64().is_some_and(|v| v >= 0.5), "{data}");
    assert!(data["messages"].as_u64().is_some_and(|n| n >= 10), "{data}");
    assert_eq!(
        (data["threshold"].clone(), data["resolve_below"].clone()),
        (json!(0.5), json!(0.2))
    );
    assert_eq!(data["window"], "1h");
    assert_eq!(
        data["top_errors"][0],
        json!({"code": 30003, "count": 10, "description": "Unreachable destination handset",
            "url": "https://www.twilio.com/docs/api/errors/30003"})
    );
    let samples = data["sample_sids"].as_array().expect("samples");
    assert!((1..=5).contains(&samples.len()), "{data}");
    assert!(
        samples.iter().all(|sid| failures.iter().any(|f| sid == f)),
        "{data}"
    );
    let link = data["url"].as_str().expect("a link to the dashboard");
    assert!(
        link.starts_with(&format!(
            "{PUBLIC_URL}/ui/#/messages?status=failed&status=undelivered&since="
        )),
        "{link}"
    );
    assert!(
        firing.id.starts_with("alert_carrier_") && firing.id.ends_with("_firing"),
        "{}",
        firing.id
    );

    // Still failing, and more: evaluated again and again, it says nothing more.
    post_all(&app, sids(3).iter().map(|sid| failed(sid, 30005))).await;
    passes(&alerting, 5).await;
    // 13 failures of 35: under the threshold, above resolve_below: still firing.
    post_all(&app, sids(20).iter().map(|sid| callback(sid, "delivered"))).await;
    passes(&alerting, 5).await;
    let alert = alerting.alert("carrier").await;
    assert_eq!(alert["state"], "firing", "{alert}");
    drain(&mut receiver).await;
    assert_eq!(
        notifications(&receiver.deliveries).len(),
        1,
        "{:?}",
        notifications(&receiver.deliveries)
    );

    // 13 of 66 is under 0.2: it resolves, once.
    post_all(&app, sids(31).iter().map(|sid| callback(sid, "delivered"))).await;
    receiver
        .wait_until("the resolved notification", |d| notifications(d).len() >= 2)
        .await;
    passes(&alerting, 5).await;
    drain(&mut receiver).await;
    assert_eq!(
        notifications(&receiver.deliveries),
        [
            ("alert.firing".to_owned(), "carrier".to_owned()),
            ("alert.resolved".to_owned(), "carrier".to_owned())
        ]
    );
    let resolved = &receiver.deliveries[1];
    assert!(resolved.body["data"]["value"]
        .as_f64()
        .is_some_and(|v| v < 0.2));
    assert_eq!(resolved.body["data"]["since"], firing.body["data"]["since"]);
    assert!(resolved.body["data"]["resolved_at"].is_string());
    assert_eq!(resolved.id, firing.id.replace("_firing", "_resolved"));

    let alert = alerting.alert("carrier").await;
    assert_eq!(alert["state"], "ok");
    let history: Vec<&str> = alert["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|change| change["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(history, ["resolved", "firing"]);
    assert_eq!(
        alert["notifications"],
        json!({"pending": 0, "last_error": null})
    );
}

#[tokio::test]
async fn a_rate_over_fewer_than_min_messages_does_not_fire() {
    let mut receiver = Receiver::start().await;
    let app = alerting_app(vec![]).await;
    let alerting = alerting(&app);
    alerting
        .rule(
            "quiet",
            json!({"metric": "failure_rate", "threshold": 0.5, "window": "1h",
                "min_messages": 10, "notify": [webhook_to(&receiver)]}),
        )
        .await;
    post_all(&app, sids(9).iter().map(|sid| failed(sid, 30003))).await;
    passes(&alerting, 5).await;
    let alert = alerting.alert("quiet").await;
    assert_eq!(
        (
            alert["state"].clone(),
            alert["value"].clone(),
            alert["messages"].clone()
        ),
        (json!("ok"), json!(1.0), json!(9)),
        "{alert}"
    );
    drain(&mut receiver).await;
    assert!(
        receiver.deliveries.is_empty(),
        "{:?}",
        notifications(&receiver.deliveries)
    );

    // The tenth makes it count.
    post_all(&app, [failed(&new_sid(), 30003)]).await;
    receiver
        .wait_until("the firing notification", |d| !notifications(d).is_empty())
        .await;
    assert_eq!(receiver.deliveries[0].body["data"]["messages"], 10);
}

#[tokio::test]
async fn slack_and_pagerduty_get_their_documented_payloads_on_firing_and_resolving() {
    let slack = Stand::slack().await;
    let pagerduty = Stand::pagerduty().await;
    let app = alerting_app(vec![]).await;
    let alerting = alerting(&app);
    alerting
        .rule(
            "filtered",
            json!({"metric": "failure_rate", "threshold": 0.5, "window": "1h", "min_messages": 3,
            "notify": [
                {"type": "slack", "url": slack.url("/services/T000/B000/XXXX")},
                {"type": "pagerduty", "routing_key": ROUTING_KEY,
                 "url": pagerduty.url("/v2/enqueue"), "severity": "error"}
            ]}),
        )
        .await;
    let failures = sids(3);
    post_all(&app, failures.iter().map(|sid| failed(sid, 30007))).await;
    let fired = slack.wait_for(1).await;
    let triggered = pagerduty.wait_for(1).await;

    // Slack's incoming webhooks take a JSON object whose `text` is the message.
    let text = slack_text(&fired[0]);
    assert!(text.contains("`filtered` is firing"), "{text}");
    assert!(
        text.contains("100.0% of 3 messages failed in the last 1h"),
        "{text}"
    );
    assert!(text.contains("30007 Message filtered (3)"), "{text}");
    assert!(
        failures.iter().any(|sid| text.contains(sid.as_str())),
        "{text}"
    );
    assert!(
        text.contains(&format!("<{PUBLIC_URL}/ui/#/messages?")),
        "{text}"
    );

    let trigger = &triggered[0];
    assert_pagerduty_event(trigger);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(trigger["payload"]["source"], "hooks.example.com");
    let summary = trigger["payload"]["summary"].as_str().expect("summary");
    assert!(summary.contains("filtered"), "{summary}");
    assert_eq!(
        trigger["payload"]["custom_details"]["top_errors"][0]["code"],
        30007
    );
    assert!(trigger["links"][0]["href"]
        .as_str()
        .is_some_and(|href| href.starts_with(PUBLIC_URL)));
    for request in pagerduty
        .server
        .received_requests()
        .await
        .unwrap_or_default()
    {
        assert_eq!(request.headers["content-type"], "application/json");
    }

    post_all(&app, sids(10).iter().map(|sid| callback(sid, "delivered"))).await;
    let resolved = slack.wait_for(2).await;
    let events = pagerduty.wait_for(2).await;
    let text = slack_text(&resolved[1]);
    assert!(text.contains("`filtered` resolved"), "{text}");
    let resolve = &events[1];
    assert_pagerduty_event(resolve);
    assert_eq!(
        resolve,
        &json!({"routing_key": ROUTING_KEY, "event_action": "resolve",
            "dedup_key": trigger["dedup_key"]})
    );
    passes(&alerting, 5).await;
    assert_eq!(slack.bodies().await.len(), 2);
    assert_eq!(pagerduty.bodies().await.len(), 2);
}

fn slack_text(body: &Value) -> String {
    let object = body.as_object().expect("a JSON object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["text"], "{body}");
    let text = body["text"].as_str().expect("text").to_owned();
    assert!(!text.is_empty());
    text
}

/// What PagerDuty's Events API v2 requires of an event (developer.pagerduty.com,
/// "Send an Alert Event"): a 32-character `routing_key`, an `event_action` of `trigger`,
/// `acknowledge` or `resolve`, a `dedup_key` of at most 255 characters (required but for a
/// trigger), and with a trigger a `payload` whose `summary` (at most 1024 characters),
/// `source` and `severity` (`critical`, `error`, `warning` or `info`) are required and
/// whose `timestamp`, when given, is ISO 8601.
fn assert_pagerduty_event(event: &Value) {
    assert_eq!(
        event["routing_key"].as_str().map(str::len),
        Some(32),
        "{event}"
    );
    let action = event["event_action"].as_str().unwrap_or_default();
    assert!(
        ["trigger", "acknowledge", "resolve"].contains(&action),
        "{event}"
    );
    let key = event["dedup_key"].as_str().expect("a dedup_key");
    assert!((1..=255).contains(&key.len()), "{event}");
    if action == "trigger" {
        let payload = &event["payload"];
        let summary = payload["summary"].as_str().expect("a summary");
        assert!((1..=1024).contains(&summary.chars().count()), "{event}");
        assert!(
            payload["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
        let severity = payload["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "error", "warning", "info"].contains(&severity),
            "{event}"
        );
        if let Some(timestamp) = payload["timestamp"].as_str() {
            assert!(
                chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
                "{event}"
            );
        }
    } else {
        assert!(event.get("payload").is_none(), "{event}");
    }
}

#[tokio::test]
async fn a_receiver_down_then_up_gets_the_notification_once() {
    let mut receiver = Receiver::start().await;
    receiver.command("down").await;
    let app = alerting_app(vec![]).await;
    let alerting = alerting(&app);
    alerting
        .rule(
            "outage",
            json!({"metric": "failures", "threshold": 2, "window": "1h",
                "notify": [webhook_to(&receiver)]}),
        )
        .await;
    post_all(&app, sids(2).iter().map(|sid| failed(sid, 30008))).await;
    let alert = alerting
        .alert_when("outage", "a notification failing", |alert| {
            alert["state"] == "firing" && alert["notifications"]["last_error"].is_string()
        })
        .await;
    assert_eq!(alert["notifications"]["pending"], 1, "{alert}");

    receiver.command("up").await;
    receiver
        .wait_until("the notification", |d| !notifications(d).is_empty())
        .await;
    alerting
        .alert_when("outage", "nothing left to send", |alert| {
            alert["notifications"]["pending"] == 0
        })
        .await;
    passes(&alerting, 5).await;
    drain(&mut receiver).await;
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);
    assert_eq!(
        notifications(&receiver.deliveries),
        [("alert.firing".to_owned(), "outage".to_owned())]
    );
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "statushook_alerts_firing"), 1.0);
    let attempts = |outcome: &str| {
        metric(
            &metrics,
            &format!("statushook_alert_notifications_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(attempts("delivered"), 1.0);
    assert!(attempts("unreachable") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn a_rule_deleted_while_firing_resolves_once() {
    let mut receiver = Receiver::start().await;
    let app = alerting_app(vec![]).await;
    let alerting = alerting(&app);
    alerting
        .rule(
            "doomed",
            json!({"metric": "failures", "threshold": 1, "window": "1h",
                "notify": [webhook_to(&receiver)]}),
        )
        .await;
    post_all(&app, [failed(&new_sid(), 30003)]).await;
    receiver
        .wait_until("the firing notification", |d| !notifications(d).is_empty())
        .await;
    assert_eq!(alerting.delete_rule("doomed").await.status(), 204);
    receiver
        .wait_until("the resolved notification", |d| notifications(d).len() >= 2)
        .await;
    let resolved = &receiver.deliveries[1];
    assert_eq!(resolved.body["type"], "alert.resolved");
    assert_eq!(resolved.body["data"]["reason"], "its rule was deleted");
    passes(&alerting, 3).await;
    drain(&mut receiver).await;
    assert_eq!(notifications(&receiver.deliveries).len(), 2);
    assert_eq!(alerting.alerts().await["alerts"], json!([]));
}

/// Twilio's CreateMessage, answering each message with a SID of its own.
struct Creates;

impl Respond for Creates {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        created(&new_sid())
    }
}

/// Twilio's Fetch Message, answering that the message was delivered.
struct Delivered;

impl Respond for Delivered {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let sid = request
            .url
            .path()
            .rsplit('/')
            .next()
            .and_then(|file| file.strip_suffix(".json"))
            .unwrap_or_default()
            .to_owned();
        ResponseTemplate::new(200).set_body_json(json!({
            "sid": sid, "status": "delivered", "account_sid": ACCOUNT_SID,
            "from": "+15005550006", "to": "+15005550009", "error_code": null,
            "api_version": "2010-04-01"
        }))
    }
}

#[tokio::test]
async fn silence_fires_when_sends_go_on_without_callbacks_and_the_reconciler_covers_them() {
    let mut receiver = Receiver::start().await;
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/Messages\.json$"))
        .respond_with(Creates)
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"/Messages/SM[0-9a-f]{32}\.json$"))
        .respond_with(Delivered)
        .mount(&twilio)
        .await;
    let mut env = alert_env();
    // Without the alert, the reconciler would not look at these messages for an hour.
    env.extend([
        ("STATUSHOOK_RECONCILE_AFTER", "1h".to_owned()),
        ("STATUSHOOK_RECONCILE_RATE", "50".to_owned()),
    ]);
    let app = twilio_app(&twilio, env).await;
    let alerting = alerting(&app);
    alerting
        .rule(
            "silent",
            json!({"metric": "silence", "threshold": 3, "window": "1m",
                "notify": [webhook_to(&receiver)]}),
        )
        .await;

    // Messages go out through the sender and no callback ever comes. A window is whole
    // minutes: the first messages count once a minute has passed since the end of the
    // minute they were sent in.
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(200);
    while alerting.alert("silent").await["state"] != "firing" {
        assert!(
            Instant::now() < deadline,
            "no silence alert; {} sent",
            sent.len()
        );
        let response = app.post_json("/v1/messages", &hello()).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("JSON");
        sent.push(body["sid"].as_str().expect("a sid").to_owned());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    receiver
        .wait_until("the firing notification", |d| !notifications(d).is_empty())
        .await;
    let data = receiver.deliveries[0].body["data"].clone();
    assert_eq!(data["metric"], "silence");
    assert!(data["value"].as_f64().is_some_and(|v| v >= 3.0), "{data}");
    let samples: Vec<String> = data["sample_sids"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|sid| sid.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !samples.is_empty() && samples.iter().all(|sid| sent.contains(sid)),
        "{data}"
    );

    // The reconciler's next pass fetched them from Twilio, long before
    // STATUSHOOK_RECONCILE_AFTER; corrected, they still count as silent.
    for sid in &samples {
        poll::until("the reconciler to fetch a message of the alert", || async {
            let message = app.message_json(sid).await;
            match message["status"] == "delivered" {
                true => Ok(()),
                false => Err(message.to_string()),
            }
        })
        .await;
        let message = app.message_json(sid).await;
        let sources: Vec<&str> = message["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["source"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(sources, ["sender", "reconciler"], "{message}");
    }
    passes(&alerting, 5).await;
    let alert = alerting.alert("silent").await;
    assert_eq!(alert["state"], "firing", "{alert}");
    drain(&mut receiver).await;
    assert_eq!(
        notifications(&receiver.deliveries),
        [("alert.firing".to_owned(), "silent".to_owned())]
    );
}

#[tokio::test]
async fn malformed_rules_are_400_naming_the_field() {
    let app = alerting_app(vec![]).await;
    let alerting = alerting(&app);
    let valid = json!({"metric": "failures", "threshold": 5, "window": "5m",
        "notify": [{"type": "webhook", "url": "https://hooks.example.com/a",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]});
    let with = |field: &str, value: Value| {
        let mut rule = valid.clone();
        rule[field] = value;
        rule
    };
    let cases = [
        (json!("a rule"), "body", "must be a JSON object"),
        (
            with("metric", json!("latency")),
            "metric",
            "failure_rate, failures or silence",
        ),
        (
            with("threshold", json!("five")),
            "threshold",
            "must be a number",
        ),
        (with("threshold", json!(0)), "threshold", "more than 0"),
        (
            with("resolve_below", json!(6)),
            "resolve_below",
            "not be above threshold",
        ),
        (with("window", json!("90s")), "window", "such as 5m, 2h"),
        (
            with("min_messages", json!(3)),
            "min_messages",
            "failure_rate only",
        ),
        (
            with("filter", json!({"account_sid": "AC12"})),
            "filter.account_sid",
            "AC followed",
        ),
        (
            with("notify", json!([{"type": "email"}])),
            "notify[0].type",
            "webhook, slack or pagerduty",
        ),
        (
            with(
                "notify",
                json!([{"type": "webhook", "url": "https://h.example/a", "secret": "hunter2"}]),
            ),
            "notify[0].secret",
            "whsec_",
        ),
        (
            with(
                "notify",
                json!([{"type": "slack", "url": "hooks.slack.com/x"}]),
            ),
            "notify[0].url",
            "http:// or https://",
        ),
        (
            with(
                "notify",
                json!([{"type": "pagerduty", "routing_key": "abc"}]),
            ),
            "notify[0].routing_key",
            "32-character",
        ),
        (with("thresold", json!(5)), "thresold", "not a field"),
    ];
    for (body, field, problem) in cases {
        let response = alerting.put_rule("bad", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("JSON");
        let message = error["error"].as_str().expect("an error");
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{body}: {message}"
        );
        assert!(
            message.contains(problem),
            "{message} should say {problem:?}"
        );
        assert_eq!(error["parameter"], field, "{error}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    let not_json = app
        .client
        .put(format!("{}/v1/alerts/rules/bad", app.address))
        .bearer_auth(API_TOKEN)
        .body("{\"metric\":")
        .send()
        .await
        .expect("answered");
    assert_eq!(not_json.status(), 400);
    let response = alerting.put_rule("-bad", &valid).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["parameter"], "name", "{error}");
    let rules = app.json("/v1/alerts/rules").await;
    assert_eq!(rules, json!({"rules": []}), "nothing refused was stored");
}

#[tokio::test]
async fn rules_are_created_replaced_listed_and_deleted_and_the_read_token_sees_no_secret() {
    let app = alerting_app(vec![("STATUSHOOK_READ_TOKEN", READ_TOKEN.into())]).await;
    let alerting = alerting(&app);
    let rule = json!({"metric": "failure_rate", "threshold": 0.1, "window": "15m",
    "filter": {"from": "+15005550006"},
    "notify": [
        {"type": "webhook", "url": "https://hooks.example.com/alerts?token=s3cr3t",
         "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        {"type": "pagerduty", "routing_key": ROUTING_KEY}
    ]});
    let created = alerting.put_rule("eu-sms", &rule).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/v1/alerts/rules/eu-sms");
    let mut stored = rule.clone();
    stored["name"] = json!("eu-sms");
    assert_eq!(created.json::<Value>().await.expect("JSON"), stored);
    let replaced = alerting
        .put_rule(
            "eu-sms",
            &json!({"metric": "failures", "threshold": 3, "window": "1h", "notify": []}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    alerting.rule("eu-sms", rule.clone()).await;
    assert_eq!(
        app.json("/v1/alerts/rules").await,
        json!({"rules": [stored.clone()]})
    );
    assert_eq!(app.json("/v1/alerts/rules/eu-sms").await, stored);

    let read = |path: &str| {
        app.client
            .get(format!("{}{path}", app.address))
            .bearer_auth(READ_TOKEN)
            .send()
    };
    let shown = read("/v1/alerts/rules")
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    for secret in ["s3cr3t", "MfKQ9r8G", ROUTING_KEY, "/alerts"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(
        shown.contains("https://hooks.example.com/[redacted]"),
        "{shown}"
    );
    assert_eq!(read("/v1/alerts").await.expect("answered").status(), 200);
    let refused = app
        .client
        .delete(format!("{}/v1/alerts/rules/eu-sms", app.address))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 403);

    assert_eq!(alerting.delete_rule("eu-sms").await.status(), 204);
    assert_eq!(alerting.delete_rule("eu-sms").await.status(), 404);
    assert_eq!(
        app.get_authorized("/v1/alerts/rules/eu-sms").await.status(),
        404
    );
    assert_eq!(app.get("/v1/alerts").await.status(), 401);
}
