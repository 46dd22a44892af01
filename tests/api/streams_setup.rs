//! `statushook streams setup` and `streams status` against a mock of Twilio's Event Streams
//! API: the sink and the subscription are created once, found on the next run (which
//! changes nothing), and completed when a subscription lacks some types.

use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::binary::run;
use crate::support::fixtures::ACCOUNT_SID;

const PUBLIC_URL: &str = "https://hooks.example.com";
const DESTINATION: &str = "https://hooks.example.com/twilio/events";
const SINK: &str = "DG0123456789abcdef0123456789abcdef";
const SUBSCRIPTION: &str = "DF0123456789abcdef0123456789abcdef";
const TYPES: [&str; 6] = [
    "com.twilio.messaging.message.queued",
    "com.twilio.messaging.message.sent",
    "com.twilio.messaging.message.delivered",
    "com.twilio.messaging.message.undelivered",
    "com.twilio.messaging.message.failed",
    "com.twilio.messaging.message.read",
];

/// Runs `statushook streams <command>` against the mock; answers (success, stdout, stderr).
async fn streams(twilio: &MockServer, command: &str) -> (bool, Value, String) {
    let base = twilio.uri();
    let command = command.to_owned();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(
            &["streams", &command],
            &[
                ("STATUSHOOK_PUBLIC_URL", PUBLIC_URL),
                ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
                ("TWILIO_AUTH_TOKEN", "the-auth-token"),
                ("TWILIO_EVENTS_API_BASE", &base),
            ],
        )
    })
    .await
    .expect("the command ran");
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (ok, json, stderr)
}

fn sink(destination: &str, sid: &str) -> Value {
    json!({
        "sid": sid, "status": "active", "sink_type": "webhook",
        "description": "a sink",
        "sink_configuration": {"destination": destination, "method": "POST", "batch_events": true},
        "date_created": "2026-11-26T09:00:00Z", "date_updated": "2026-11-26T09:00:00Z",
        "url": format!("https://events.twilio.com/v1/Sinks/{sid}"), "links": {}
    })
}

fn page(key: &str, items: Vec<Value>, next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        key: items,
        "meta": {"page": 0, "page_size": 1000, "key": key, "next_page_url": next,
                 "url": "https://events.twilio.com/v1/x", "first_page_url": "https://events.twilio.com/v1/x",
                 "previous_page_url": null}
    }))
}

fn subscription() -> Value {
    json!({
        "sid": SUBSCRIPTION, "account_sid": ACCOUNT_SID, "sink_sid": SINK,
        "description": "statushook: message status events",
        "date_created": "2026-11-26T09:00:00Z", "date_updated": "2026-11-26T09:00:00Z",
        "url": format!("https://events.twilio.com/v1/Subscriptions/{SUBSCRIPTION}"), "links": {}
    })
}

fn subscribed(types: &[&str]) -> Vec<Value> {
    types
        .iter()
        .map(|kind| json!({"account_sid": ACCOUNT_SID, "type": kind, "schema_version": 7, "subscription_sid": SUBSCRIPTION}))
        .collect()
}

async fn schema(twilio: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1/Schemas/Messaging.MessageStatus"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "Messaging.MessageStatus", "latest_version": 7, "links": {}}),
        ))
        .mount(twilio)
        .await;
}

/// The values of `name` in a form-encoded request body.
fn form_values(request: &Request, name: &str) -> Vec<String> {
    form_urlencoded::parse(&request.body)
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

#[tokio::test]
async fn setup_creates_the_sink_and_subscription_once_and_a_second_run_changes_nothing() {
    let twilio = MockServer::start().await;
    // A fresh account: another sink, no subscription.
    Mock::given(method("GET"))
        .and(path("/v1/Sinks"))
        .respond_with(page(
            "sinks",
            vec![sink(
                "https://elsewhere.example.com/hook",
                "DGffffffffffffffffffffffffffffffff",
            )],
            None,
        ))
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/Sinks"))
        .and(body_string_contains("SinkType=webhook"))
        .respond_with(ResponseTemplate::new(201).set_body_json(sink(DESTINATION, SINK)))
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Subscriptions"))
        .and(query_param("SinkSid", SINK))
        .respond_with(page("subscriptions", vec![], None))
        .mount(&twilio)
        .await;
    schema(&twilio).await;
    Mock::given(method("POST"))
        .and(path("/v1/Subscriptions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(subscription()))
        .expect(1)
        .mount(&twilio)
        .await;

    let (ok, report, stderr) = streams(&twilio, "setup").await;

    assert!(ok, "{stderr}");
    assert_eq!(report["sink"]["sid"], SINK);
    assert_eq!(report["sink_created"], true);
    assert_eq!(report["subscription_created"], true);
    let requests = twilio.received_requests().await.expect("recorded");
    let created_sink = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/Sinks")
        .expect("a sink was created");
    let configuration: Value =
        serde_json::from_str(&form_values(created_sink, "SinkConfiguration")[0]).expect("JSON");
    assert_eq!(
        configuration,
        json!({"destination": DESTINATION, "method": "POST", "batch_events": true})
    );
    let created_subscription = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/Subscriptions")
        .expect("a subscription was created");
    assert_eq!(form_values(created_subscription, "SinkSid"), [SINK]);
    let types: Vec<Value> = form_values(created_subscription, "Types")
        .iter()
        .map(|t| serde_json::from_str(t).expect("a JSON type"))
        .collect();
    let expected: Vec<Value> = TYPES
        .iter()
        .map(|kind| json!({"type": kind, "schema_version": 7}))
        .collect();
    assert_eq!(types, expected);
    assert!(
        created_sink
            .headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("Basic ")),
        "Basic auth"
    );
    twilio.verify().await;

    // The second run: the sink (on a second page) and the subscription exist.
    twilio.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/Sinks"))
        .and(query_param("PageToken", "PT1"))
        .respond_with(page("sinks", vec![sink(DESTINATION, SINK)], None))
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Sinks"))
        .respond_with(page(
            "sinks",
            vec![sink(
                "https://elsewhere.example.com/hook",
                "DGffffffffffffffffffffffffffffffff",
            )],
            Some("https://events.twilio.com/v1/Sinks?PageSize=1000&Page=1&PageToken=PT1"),
        ))
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Subscriptions"))
        .and(query_param("SinkSid", SINK))
        .respond_with(page("subscriptions", vec![subscription()], None))
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1/Subscriptions/{SUBSCRIPTION}/SubscribedEvents"
        )))
        .respond_with(page("types", subscribed(&TYPES), None))
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&twilio)
        .await;

    let (ok, report, stderr) = streams(&twilio, "setup").await;

    assert!(ok, "{stderr}");
    assert_eq!(report["sink"]["sid"], SINK);
    assert_eq!(report["sink_created"], false);
    assert_eq!(report["subscription_created"], false);
    assert_eq!(report["types_added"], json!([]));
    twilio.verify().await;

    let (ok, status, stderr) = streams(&twilio, "status").await;
    assert!(ok, "{stderr}");
    assert_eq!(status["sink"]["sid"], SINK);
    assert_eq!(status["destination"], DESTINATION);
    assert_eq!(status["missing_types"], json!([]));
    assert_eq!(status["subscriptions"][0]["sid"], SUBSCRIPTION);
}

#[tokio::test]
async fn setup_adds_only_the_types_a_subscription_lacks_and_status_reports_a_missing_sink() {
    let twilio = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/Sinks"))
        .respond_with(page("sinks", vec![sink(DESTINATION, SINK)], None))
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Subscriptions"))
        .respond_with(page("subscriptions", vec![subscription()], None))
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1/Subscriptions/{SUBSCRIPTION}/SubscribedEvents"
        )))
        .respond_with(page("types", subscribed(&TYPES[..3]), None))
        .mount(&twilio)
        .await;
    schema(&twilio).await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/Subscriptions/{SUBSCRIPTION}/SubscribedEvents"
        )))
        .respond_with(|request: &Request| {
            let kind = form_values(request, "Type").pop().unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(json!({"type": kind, "schema_version": 7}))
        })
        .expect(3)
        .mount(&twilio)
        .await;

    let (ok, status, _) = streams(&twilio, "status").await;
    assert!(!ok, "status fails while types are missing");
    assert_eq!(status["missing_types"], json!(TYPES[3..]));

    let (ok, report, stderr) = streams(&twilio, "setup").await;

    assert!(ok, "{stderr}");
    assert_eq!(report["types_added"], json!(TYPES[3..]));
    assert_eq!(report["subscription_created"], false);
    twilio.verify().await;

    let nothing = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/Sinks"))
        .respond_with(page("sinks", vec![], None))
        .mount(&nothing)
        .await;
    let (ok, status, _) = streams(&nothing, "status").await;
    assert!(!ok, "no sink is a failed status");
    assert_eq!(status["sink"], Value::Null);
    assert_eq!(status["missing_types"], json!(TYPES));
}
