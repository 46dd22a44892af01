//! `Idempotency-Key` on `POST /v1/messages`: a key sends at most once, its answer is given
//! again for 24 hours, also after a crash and a restart, and a request cut off by a crash is
//! never sent a second time.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::binary::start_binary_with_env;
use crate::support::fixtures::{new_sid, ACCOUNT_SID, API_TOKEN};
use crate::support::spawn::TestApp;
use crate::support::twilio::{created, hello, twilio_app};

const KEY: &str = "Idempotency-Key";

/// An answer as the caller saw it: status, body text and whether it was a replay.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
    replayed: bool,
}

async fn post_with_key(client: &reqwest::Client, address: &str, body: &Value, key: &str) -> Answer {
    let response = client
        .post(format!("{address}/v1/messages"))
        .bearer_auth(API_TOKEN)
        .header(KEY, key)
        .json(body)
        .send()
        .await
        .expect("the request is answered");
    Answer {
        status: response.status().as_u16(),
        replayed: response
            .headers()
            .get("Idempotent-Replayed")
            .is_some_and(|value| value == "true"),
        body: response.text().await.expect("a body"),
    }
}

async fn send(app: &TestApp, body: &Value, key: &str) -> Answer {
    post_with_key(&app.client, &app.address, body, key).await
}

fn json_of(answer: &Answer) -> Value {
    serde_json::from_str(&answer.body).expect("a JSON answer")
}

#[tokio::test]
async fn the_same_key_sends_once_and_gets_the_first_answer_again_whatever_it_was() {
    let refusal = json!({"code": 21211, "message": "The 'To' number is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400});
    let failure = json!({"code": 20500, "message": "Internal Server Error", "more_info": null, "status": 500});
    let cases = [
        (created(&new_sid()), 201),
        (ResponseTemplate::new(400).set_body_json(refusal), 422),
        (ResponseTemplate::new(500).set_body_json(failure), 502),
    ];
    for (twilio_answer, expected) in cases {
        let twilio = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(twilio_answer)
            .expect(1)
            .mount(&twilio)
            .await;
        let app = twilio_app(&twilio, vec![]).await;

        let first = send(&app, &hello(), "order-1234").await;
        let again = send(&app, &hello(), "order-1234").await;

        assert_eq!(first.status, expected, "{}", first.body);
        assert!(!first.replayed);
        assert_eq!(again.status, first.status);
        assert_eq!(again.body, first.body, "the answer given again differs");
        assert!(again.replayed, "a replay is marked Idempotent-Replayed");
        let requests = twilio.received_requests().await.expect("requests");
        assert_eq!(requests.len(), 1, "Twilio was called twice for one key");
    }
}

#[tokio::test]
async fn another_key_or_no_key_sends_again() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created(&new_sid()))
        .expect(3)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    assert_eq!(send(&app, &hello(), "a").await.status, 201);
    assert_eq!(send(&app, &hello(), "b").await.status, 201);
    assert_eq!(app.post_json("/v1/messages", &hello()).await.status(), 201);
}

#[tokio::test]
async fn the_same_key_with_other_parameters_is_a_422_naming_the_header() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created(&new_sid()))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    assert_eq!(send(&app, &hello(), "k-1").await.status, 201);

    let mut other = hello();
    other["body"] = json!("goodbye");
    let answer = send(&app, &other, "k-1").await;

    assert_eq!(answer.status, 422, "{}", answer.body);
    let body = json_of(&answer);
    assert_eq!(body["parameter"], KEY);
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("different request"));
    // The same parameters in another order and spacing are the same request.
    let reordered = r#"{ "body":"hello",  "from":"+15005550006", "to":"+15005550009" }"#;
    let response = app
        .client
        .post(format!("{}/v1/messages", app.address))
        .bearer_auth(API_TOKEN)
        .header(KEY, "k-1")
        .header("Content-Type", "application/json")
        .body(reordered)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_naming_the_header_and_sends_nothing() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created(&new_sid()))
        .expect(0)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;
    for (key, why) in [
        ("", "empty"),
        (&*"k".repeat(256), "longer than 255"),
        ("two words", "a space"),
    ] {
        let answer = send(&app, &hello(), key).await;
        assert_eq!(answer.status, 400, "{why}: {}", answer.body);
        assert_eq!(json_of(&answer)["parameter"], KEY, "{why}");
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_key_send_exactly_once() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .respond_with(created(&sid).set_delay(Duration::from_millis(800)))
        .expect(1)
        .mount(&twilio)
        .await;
    let app = twilio_app(&twilio, vec![]).await;

    let body = hello();
    let answers = join_all((0..8).map(|_| send(&app, &body, "burst"))).await;

    let requests = twilio.received_requests().await.expect("requests");
    assert_eq!(requests.len(), 1, "one key sent {} times", requests.len());
    let sent: Vec<_> = answers.iter().filter(|a| a.status == 201).collect();
    assert!(!sent.is_empty(), "{answers:?}");
    assert!(sent.iter().all(|a| json_of(a)["sid"] == sid.as_str()));
    for answer in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(answer.status, 409, "{answer:?}");
        let body = json_of(answer);
        assert_eq!(body["parameter"], KEY);
        assert!(body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("still being sent"));
    }
}

#[tokio::test]
async fn a_key_is_freed_when_twilio_could_not_be_reached_so_its_retry_sends() {
    // A port with nothing listening: every attempt is refused before anything is sent.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let nobody = MockServer::start().await;
    let app = twilio_app(
        &nobody,
        vec![("TWILIO_API_BASE", format!("http://127.0.0.1:{port}"))],
    )
    .await;

    let refused = send(&app, &hello(), "retry-me").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(json_of(&refused)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("nothing was sent"));

    // Twilio is back on that port: the retry under the same key sends.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port again");
    let twilio = MockServer::builder().listener(listener).start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .respond_with(created(&sid))
        .expect(1)
        .mount(&twilio)
        .await;
    let sent = send(&app, &hello(), "retry-me").await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(json_of(&sent)["sid"], sid.as_str());
}

fn binary_env(twilio: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
        ("TWILIO_API_BASE", twilio.uri()),
    ]
}

#[tokio::test]
async fn a_keys_answer_survives_kill_9_and_a_restart_and_is_given_again_without_sending() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    Mock::given(method("POST"))
        .respond_with(created(&sid))
        .expect(1)
        .mount(&twilio)
        .await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let client = reqwest::Client::new();

    let (mut first, address) = start_binary_with_env(data.path(), &binary_env(&twilio)).await;
    let answered = post_with_key(&client, &address, &hello(), "survives").await;
    assert_eq!(answered.status, 201, "{}", answered.body);
    first.start_kill().expect("SIGKILL is sent");
    first.wait().await.expect("reaped");

    let (_second, address) = start_binary_with_env(data.path(), &binary_env(&twilio)).await;
    let again = post_with_key(&client, &address, &hello(), "survives").await;

    assert_eq!(again.status, 201);
    assert_eq!(again.body, answered.body);
    assert!(again.replayed);
    assert_eq!(twilio.received_requests().await.expect("requests").len(), 1);
}

/// Answers like `template`, and tells `hits` each time a request arrives.
struct Notifying {
    template: ResponseTemplate,
    hits: mpsc::UnboundedSender<()>,
}

impl Respond for Notifying {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let _ = self.hits.send(());
        self.template.clone()
    }
}

#[tokio::test]
async fn a_retry_after_a_crash_mid_send_is_told_the_outcome_is_unknown_and_sends_nothing() {
    let twilio = MockServer::start().await;
    let (hits, mut hit) = mpsc::unbounded_channel();
    Mock::given(method("POST"))
        .respond_with(Notifying {
            // Twilio takes its time: the process dies before it answers.
            template: created(&new_sid()).set_delay(Duration::from_secs(60)),
            hits,
        })
        .mount(&twilio)
        .await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let client = reqwest::Client::new();

    let (mut first, address) = start_binary_with_env(data.path(), &binary_env(&twilio)).await;
    let in_flight = {
        let (client, address) = (client.clone(), address.clone());
        tokio::spawn(async move {
            client
                .post(format!("{address}/v1/messages"))
                .bearer_auth(API_TOKEN)
                .header(KEY, "cut-off")
                .json(&hello())
                .send()
                .await
        })
    };
    hit.recv().await.expect("the request reaches Twilio");
    first.start_kill().expect("SIGKILL is sent");
    first.wait().await.expect("reaped");
    assert!(
        in_flight.await.expect("joined").is_err(),
        "the cut-off request got an answer"
    );

    let (_second, address) = start_binary_with_env(data.path(), &binary_env(&twilio)).await;
    for _ in 0..2 {
        let retry = post_with_key(&client, &address, &hello(), "cut-off").await;
        assert_eq!(retry.status, 504, "{}", retry.body);
        let body = json_of(&retry);
        assert_eq!(body["parameter"], KEY);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("may have been created"),
            "{body}"
        );
    }
    assert_eq!(
        twilio.received_requests().await.expect("requests").len(),
        1,
        "the key sent again after the crash"
    );
}
