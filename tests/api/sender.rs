//! Sending: `POST /v1/messages` and `statushook send` against a real HTTP mock of Twilio.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use base64::Engine;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::binary::BINARY;
use crate::support::fixtures::{
    callback, event_statuses, new_sid, ACCOUNT_SID, API_TOKEN, AUTH_TOKEN,
};
use crate::support::spawn::{spawn_app_with, Settings};
use crate::support::twilio::{created, hello, twilio_app};

const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const API_KEY: &str = "SK0123456789abcdef0123456789abcdef";
const DEFAULT_CALLBACK: &str = "https://hooks.example.com/twilio/status#rc=5&rp=ct,rt,5xx";

fn form_of(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn a_message_is_sent_with_the_exact_form_and_recorded_at_once() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(created(&sid))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;

    let response = app
        .post_json(
            "/v1/messages",
            &json!({
                "to": "+15005550009", "from": "+15005550006", "body": "Grüße 👋 & 100% + more",
                "media_url": ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"],
                "send_as_mms": true, "validity_period": 600, "persistent_action": ["geo:37.7,-122.4"]
            }),
        )
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["sid"], sid.as_str());
    let requests = twilio.received_requests().await.expect("recorded requests");
    let request = &requests[0];
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        request.headers["authorization"],
        basic(ACCOUNT_SID, AUTH_TOKEN).as_str()
    );
    let expected: Vec<(String, String)> = [
        ("To", "+15005550009"),
        ("From", "+15005550006"),
        ("Body", "Grüße 👋 & 100% + more"),
        ("MediaUrl", "https://cdn.example.com/a.png"),
        ("MediaUrl", "https://cdn.example.com/b.png"),
        ("StatusCallback", DEFAULT_CALLBACK),
        ("ValidityPeriod", "600"),
        ("PersistentAction", "geo:37.7,-122.4"),
        ("SendAsMms", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form_of(request), expected);

    // Recorded before any callback: the lookup shows the sender's event.
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "queued");
    assert_eq!(message["to"], "+15005550009");
    assert_eq!(message["events"][0]["source"], "sender");
}

#[tokio::test]
async fn an_api_key_is_preferred_for_basic_auth() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(created(&new_sid()))
        .mount(&twilio)
        .await;
    let app = twilio_app(
        &twilio,
        vec![
            ("TWILIO_API_KEY", API_KEY.into()),
            ("TWILIO_API_SECRET", "key-secret".into()),
        ],
    )
    .await;
    assert_eq!(app.post_json("/v1/messages", &hello()).await.status(), 201);
    let requests = twilio.received_requests().await.expect("requests");
    assert_eq!(
        requests[0].headers["authorization"],
        basic(API_KEY, "key-secret").as_str()
    );
}

#[tokio::test]
async fn the_registered_callback_with_its_overrides_verifies_when_twilio_calls_it() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(created(&sid))
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    assert_eq!(app.post_json("/v1/messages", &hello()).await.status(), 201);
    let requests = twilio.received_requests().await.expect("requests");
    let registered = form_of(&requests[0])
        .into_iter()
        .find(|(k, _)| k == "StatusCallback")
        .expect("a callback")
        .1;
    assert_eq!(registered, DEFAULT_CALLBACK);

    // Twilio calls the URL without its fragment (no HTTP request carries one) and signs it so.
    let called = registered.split('#').next().expect("a URL");
    let params = callback(&sid, "delivered");
    let response = app.post_signed_by(AUTH_TOKEN, called, &params).await;
    assert_eq!(response.status(), 200);
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "delivered");
    assert_eq!(event_statuses(&message), ["queued", "delivered"]);

    // A caller's own StatusCallback is passed on unchanged.
    let own = json!({"to": "+15005550009", "from": "+15005550006", "body": "x", "status_callback": "https://mine.example/cb"});
    assert_eq!(app.post_json("/v1/messages", &own).await.status(), 201);
    let requests = twilio.received_requests().await.expect("requests");
    assert!(form_of(&requests[1])
        .contains(&("StatusCallback".into(), "https://mine.example/cb".into())));
}

#[tokio::test]
async fn every_validation_rule_answers_422_naming_the_parameter_and_sends_nothing() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created(&new_sid()))
        .expect(0)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    let with = |extra: Value| {
        let mut body = hello();
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                body.as_object_mut().expect("object").remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let media: Vec<String> = (0..11)
        .map(|i| format!("https://cdn.example.com/{i}.png"))
        .collect();
    let cases = [
        (with(json!({"to": ""})), "To"),
        (with(json!({"from": null})), "From"),
        (
            with(json!({"messaging_service_sid": "MG0123456789abcdef0123456789abcdef"})),
            "From",
        ),
        (with(json!({"body": null})), "Body"),
        (with(json!({"body": "x".repeat(1601)})), "Body"),
        (with(json!({"media_url": media})), "MediaUrl"),
        (
            with(json!({"media_url": ["ftp://cdn.example.com/a.png"]})),
            "MediaUrl",
        ),
        (
            with(json!({"from": null, "messaging_service_sid": "MG123"})),
            "MessagingServiceSid",
        ),
        (with(json!({"content_sid": "HXnothex"})), "ContentSid"),
        (with(json!({"application_sid": "AP0123"})), "ApplicationSid"),
        (with(json!({"validity_period": 0})), "ValidityPeriod"),
        (with(json!({"validity_period": 36001})), "ValidityPeriod"),
        (
            with(json!({"content_retention": "keep"})),
            "ContentRetention",
        ),
        (
            with(json!({"address_retention": "retain-all"})),
            "AddressRetention",
        ),
        (with(json!({"traffic_type": "paid"})), "TrafficType"),
        (with(json!({"risk_check": "maybe"})), "RiskCheck"),
        (
            with(json!({"schedule_type": "later", "send_at": "2026-12-01T09:00:00Z"})),
            "ScheduleType",
        ),
        (
            with(json!({"send_at": "2026-12-01T09:00:00Z"})),
            "ScheduleType",
        ),
        (with(json!({"schedule_type": "fixed"})), "SendAt"),
        (
            with(json!({"schedule_type": "fixed", "send_at": "tomorrow"})),
            "SendAt",
        ),
        (
            with(json!({"schedule_type": "fixed", "send_at": "2026-12-01T09:00:00Z"})),
            "MessagingServiceSid",
        ),
        (
            with(json!({"content_variables": "{\"1\":\"x\"}"})),
            "ContentVariables",
        ),
        (with(json!({"shorten_urls": true})), "ShortenUrls"),
        (
            with(json!({"status_callback": "not a url"})),
            "StatusCallback",
        ),
        (with(json!({"attempt": 0})), "Attempt"),
    ];
    for (body, parameter) in cases {
        let response = app.post_json("/v1/messages", &body).await;
        assert_eq!(response.status(), 422, "{parameter}: {body}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["parameter"], parameter, "{body}");
    }
    // A JSON body error names the field, not a line and column.
    for (body, field, error) in [
        (
            json!({"from": "+15005550006", "body": "x"}),
            "to",
            "to: is required",
        ),
        (
            with(json!({"colour": "blue"})),
            "colour",
            "colour: is not a parameter of CreateMessage",
        ),
        (
            with(json!({"validity_period": "ten"})),
            "validity_period",
            "validity_period: expected an integer",
        ),
        (
            with(json!({"media_url": ["https://cdn.example.com/a.png", 7]})),
            "media_url[1]",
            "media_url[1]: expected a string",
        ),
    ] {
        let response = app.post_json("/v1/messages", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["parameter"], field, "{answer}");
        let text = answer["error"].as_str().unwrap_or_default();
        assert!(text.starts_with(error), "{answer}");
        assert!(!text.contains("line"), "{answer}");
    }
    let response = app
        .post_raw(
            "/v1/messages",
            "{\"to\": ",
            &[("Authorization", &format!("Bearer {API_TOKEN}"))],
        )
        .await;
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("json");
    assert!(answer["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("the body is not valid JSON"));
}

fn twilio_error(code: i64, message: &str, status: u16) -> Value {
    json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status})
}

async fn answer_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

fn error_text(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(twilio_error(20429, "Too Many Requests", 429)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .respond_with(created(&sid))
        .with_priority(2)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;

    let started = std::time::Instant::now();
    let (status, answer) = answer_of(app.post_json("/v1/messages", &hello()).await).await;

    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["sid"], sid.as_str());
    let requests = twilio.received_requests().await.expect("requests");
    assert_eq!(requests.len(), 2, "one 429, then the message");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
}

#[tokio::test]
async fn a_twilio_5xx_is_answered_502_after_one_attempt_saying_the_message_may_exist() {
    for status in [500, 502, 503, 504] {
        let twilio = MockServer::start().await;
        let error = twilio_error(20500, "Internal Server Error", status);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(error.clone()))
            .expect(1)
            .mount(&twilio)
            .await;
        let app = twilio_app(&twilio, vec![]).await;

        let (answered, answer) = answer_of(app.post_json("/v1/messages", &hello()).await).await;

        assert_eq!(answered, 502, "Twilio's {status}: {answer}");
        assert!(
            error_text(&answer).contains("may have been created"),
            "{answer}"
        );
        for field in ["code", "message", "more_info", "status"] {
            assert_eq!(answer[field], error[field], "{field}");
        }
        let requests = twilio.received_requests().await.expect("requests");
        assert_eq!(requests.len(), 1, "Twilio's {status} was retried");
    }
}

#[tokio::test]
async fn a_twilio_refusal_is_answered_422_with_its_fields_and_recorded_as_failed_under_a_local_sid()
{
    let twilio = MockServer::start().await;
    let error = twilio_error(
        21211,
        "The 'To' number +15005550001 is not a valid phone number.",
        400,
    );
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(error.clone()))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    let attempt = json!({"to": "+15005550001", "from": "+15005550006", "body": "hello"});

    let (status, answer) = answer_of(app.post_json("/v1/messages", &attempt).await).await;

    assert_eq!(status, 422, "{answer}");
    for field in ["code", "message", "more_info", "status"] {
        assert_eq!(answer[field], error[field], "{field}");
    }
    // No SID comes from Twilio: the attempt is recorded under one statushook minted.
    let sid = answer["sid"].as_str().expect("a sid in the answer");
    let message = app.message_json(sid).await;
    assert_eq!(message["status"], "failed");
    assert_eq!(message["error_code"], 21211);
    assert_eq!(message["to"], "+15005550001");
    assert_eq!(message["from"], "+15005550006");
    assert_eq!(message["account_sid"], ACCOUNT_SID);
    assert_eq!(message["events"][0]["source"], "sender");
    assert_eq!(message["events"][0]["params"]["LocalSid"], "true");
    let listed = app
        .get_authorized("/v1/messages?status=failed&to=%2B15005550001")
        .await;
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(listed["messages"][0]["sid"], sid);
}

#[tokio::test]
async fn twilio_refusing_statushooks_credentials_is_a_502_and_records_nothing() {
    for status in [401, 403] {
        let twilio = MockServer::start().await;
        let error = twilio_error(20003, "Authenticate", status);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(error.clone()))
            .expect(1)
            .mount(&twilio)
            .await;
        let app = twilio_app(&twilio, vec![]).await;

        let (answered, answer) = answer_of(app.post_json("/v1/messages", &hello()).await).await;

        assert_eq!(answered, 502, "Twilio's {status}: {answer}");
        assert!(error_text(&answer).contains("credentials"), "{answer}");
        assert_eq!(answer["code"], 20003);
        assert!(answer.get("sid").is_none(), "{answer}");
        let listed: Value = app
            .get_authorized("/v1/messages")
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(listed["messages"], json!([]));
    }
}

#[tokio::test]
async fn a_twilio_that_does_not_answer_in_time_gives_a_504_without_a_retry() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created(&new_sid()).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![("STATUSHOOK_TWILIO_TIMEOUT", "300ms".into())]).await;
    let (status, answer) = answer_of(app.post_json("/v1/messages", &hello()).await).await;
    assert_eq!(status, 504);
    assert!(
        error_text(&answer).contains("may have been created"),
        "{answer}"
    );
}

/// A TCP server on port 0 that hands each connection to `serve` and counts them.
async fn tcp_server<F, Fut>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (address.to_string(), connections)
}

#[tokio::test]
async fn a_connection_that_fails_before_the_request_is_sent_is_retried() {
    // The server hangs up at once, so the TLS handshake fails: no byte of the request can
    // have been sent, and every attempt is a connect error.
    let (address, connections) = tcp_server(|stream| async move { drop(stream) }).await;
    let twilio = MockServer::start().await;
    let app = twilio_app(
        &twilio,
        vec![("TWILIO_API_BASE", format!("https://{address}"))],
    )
    .await;

    let (status, answer) = answer_of(app.post_json("/v1/messages", &hello()).await).await;

    assert_eq!(status, 502, "{answer}");
    assert!(error_text(&answer).contains("nothing was sent"), "{answer}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        4,
        "every attempt should have been made"
    );
}

#[tokio::test]
async fn a_connection_lost_after_the_request_was_sent_is_not_retried() {
    // The server reads the whole request, then hangs up without answering: Twilio may have
    // created the message.
    let (address, connections) = tcp_server(|mut stream| async move {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        while !whole_request(&received) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    let twilio = MockServer::start().await;
    let app = twilio_app(
        &twilio,
        vec![("TWILIO_API_BASE", format!("http://{address}"))],
    )
    .await;

    let (status, answer) = answer_of(app.post_json("/v1/messages", &hello()).await).await;

    assert_eq!(status, 502, "{answer}");
    assert!(
        error_text(&answer).contains("may have been created"),
        "{answer}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1, "it was retried");
}

/// True once `received` holds the headers and the `Content-Length` bytes of body.
fn whole_request(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}

#[tokio::test]
async fn sending_without_twilio_credentials_is_a_503_saying_so() {
    let app = spawn_app_with(Settings::default()).await;
    let response = app.post_json("/v1/messages", &hello()).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("TWILIO_ACCOUNT_SID"));
}

/// Runs `statushook send ARGS` against the mock, off the async runtime.
async fn run_send(twilio: &MockServer, args: &[&str]) -> std::process::Output {
    let mut command = send_command(twilio);
    command.args(args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("runs")
}

fn send_command(twilio: &MockServer) -> std::process::Command {
    let mut command = std::process::Command::new(BINARY);
    command
        .arg("send")
        .env_clear()
        .env("STATUSHOOK_PUBLIC_URL", "https://hooks.example.com")
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("TWILIO_API_BASE", twilio.uri());
    command
}

#[tokio::test]
async fn the_send_command_prints_the_created_message_or_twilios_error() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .respond_with(created(&sid))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    let error = json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(error))
        .with_priority(2)
        .mount(&twilio)
        .await;

    let args = [
        "--to",
        "+15005550009",
        "--from",
        "+15005550006",
        "--media-url",
        "https://cdn.example.com/a.png",
        "--media-url",
        "https://cdn.example.com/b.png",
        "--send-as-mms",
        "true",
        "--validity-period",
        "60",
    ];
    let ok = run_send(&twilio, &args).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let printed: Value = serde_json::from_slice(&ok.stdout).expect("JSON on stdout");
    assert_eq!(printed["sid"], sid.as_str());
    let requests = twilio.received_requests().await.expect("requests");
    let form = form_of(&requests[0]);
    assert_eq!(form.iter().filter(|(k, _)| k == "MediaUrl").count(), 2);
    assert!(form.contains(&("SendAsMms".into(), "true".into())));
    assert!(form.contains(&("StatusCallback".into(), DEFAULT_CALLBACK.into())));

    let failed = run_send(&twilio, &args).await;
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("21610") && stderr.contains("unsubscribed recipient"),
        "{stderr}"
    );

    let invalid = send_command(&twilio)
        .args(["--to", "+15005550009", "--body", "x"])
        .output()
        .expect("runs");
    assert_eq!(invalid.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("From"));
    assert_eq!(
        twilio.received_requests().await.expect("requests").len(),
        2,
        "the invalid send reached Twilio"
    );
}

#[tokio::test]
async fn twilios_own_callback_is_kept_after_the_senders_record_of_the_same_status() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(created(&sid))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    assert_eq!(app.post_json("/v1/messages", &hello()).await.status(), 201);
    // Twilio reports `queued` too, with parameters of its own: it is not a duplicate of
    // the record statushook made when it sent the message.
    let mut form = callback(&sid, "queued");
    form.push(("ChannelPrefix".into(), "sms".into()));
    assert_eq!(app.post_callback(&form).await.status(), 200);
    let message = app.message_json(&sid).await;
    let events = message["events"].as_array().expect("events");
    let sources: Vec<&str> = events
        .iter()
        .map(|e| e["source"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(sources, ["sender", "callback"]);
    assert_eq!(events[1]["params"]["ChannelPrefix"], "sms");
    // Twilio's second delivery of that callback is a duplicate.
    assert_eq!(app.post_callback(&form).await.status(), 200);
    assert_eq!(
        event_statuses(&app.message_json(&sid).await),
        ["queued", "queued"]
    );
}
