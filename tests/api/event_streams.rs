//! `POST /twilio/events`: Twilio Event Streams through HTTP — what is accepted, what is
//! refused, what is stored, and how stream events and status callbacks of one message meet.

use serde_json::{json, Value};
use statushook::secret::Secret;
use statushook::twilio::signature;

use crate::support::fixtures::{callback, new_sid, ACCOUNT_SID, AUTH_TOKEN, FORM};
use crate::support::metrics::metric;
use crate::support::receiver::{Receiver, Service};
use crate::support::spawn::{spawn_app, spawn_app_with, Settings, TestApp};
use crate::support::streams::{
    new_event_id, other_event, sign_url, sign_url_with, status_event, target_for,
};

const JSON: &str = "application/json";

/// Posts `body` to `target` with `signature` (if any) and `content_type`.
async fn post(
    app: &TestApp,
    target: &str,
    body: &str,
    content_type: &str,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(signature) = signature {
        headers.push(("X-Twilio-Signature", signature));
    }
    app.post_raw(target, body.to_owned(), &headers).await
}

fn sources(message: &Value) -> Vec<String> {
    message["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["source"].as_str().expect("a source").to_owned())
        .collect()
}

#[tokio::test]
async fn a_signed_event_is_stored_as_a_transition_with_every_field_and_answered_with_an_empty_200()
{
    let app = spawn_app().await;
    let (sid, id) = (new_sid(), new_event_id());
    let event = status_event(&id, &sid, "undelivered", Some(30003));

    let response = app.post_events(&event.to_string()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("a body").len(), 0);
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "undelivered");
    assert_eq!(message["error_code"], 30003);
    assert_eq!(message["account_sid"], ACCOUNT_SID);
    assert_eq!(message["from"], "+15005550006");
    assert_eq!(message["to"], "+15005550009");
    let stored = &message["events"][0];
    assert_eq!(stored["source"], "event_stream");
    assert_eq!(stored["status"], "undelivered");
    assert_eq!(stored["error_code"], 30003);
    let params = &stored["params"];
    assert_eq!(params["id"], id.as_str());
    assert_eq!(params["type"], "com.twilio.messaging.message.undelivered");
    assert_eq!(params["dataschema"], event["dataschema"]);
    assert_eq!(params["data.messageStatus"], "UNDELIVERED");
    assert_eq!(params["data.errorCode"], "30003");
    assert_eq!(params["data.numberOfSegments"], "1");
    assert_eq!(params["data.tags"], r#"{"campaign":"winter"}"#);
    assert_eq!(params["data.body"], "hello");
}

#[tokio::test]
async fn a_batch_is_stored_whole_each_message_ending_in_its_highest_status() {
    let app = spawn_app().await;
    let (a, b) = (new_sid(), new_sid());
    let batch = json!([
        status_event(&new_event_id(), &a, "delivered", None),
        status_event(&new_event_id(), &b, "queued", None),
        status_event(&new_event_id(), &a, "sent", None),
        status_event(&new_event_id(), &b, "failed", Some(30008)),
        status_event(&new_event_id(), &a, "queued", None),
    ]);

    let response = app.post_events(&batch.to_string()).await;

    assert_eq!(response.status(), 200);
    let a = app.message_json(&a).await;
    assert_eq!(a["status"], "delivered");
    assert_eq!(a["events"].as_array().map(Vec::len), Some(3));
    let b = app.message_json(&b).await;
    assert_eq!(b["status"], "failed");
    assert_eq!(b["error_code"], 30008);
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "statushook_event_stream_events_total{outcome=\"stored\"}"
        ),
        5.0
    );
}

/// The JSON-body cases of twilio-node's and twilio-python's test suites
/// (`tests/data/json-body-vectors.json`).
#[derive(serde::Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    library: String,
    test: String,
    kind: String,
    body: String,
    body_sha256: Option<String>,
    token: Option<String>,
    url: Option<String>,
    signed: Option<String>,
    signed_params: Option<std::collections::BTreeMap<String, String>>,
    valid: bool,
}

/// Each vector is played against the service at its own path: the libraries' URLs are
/// `https://mycompany.com/myapp.php?…`, the service's `/twilio/events?…`, so the path is
/// replaced in the URL received and in the string signed, and the signature made again
/// the way the vector's was (the same token, the same port variant, the same form
/// parameters if any). Everything else — the query, the body, the hash claimed, the
/// tampering — is the vector's. A valid vector's signature is accepted: its body, which is
/// not a CloudEvent, then gets `400`; an invalid one gets `403`.
#[tokio::test]
async fn every_json_body_vector_of_twilio_node_and_twilio_python_gets_the_libraries_verdict() {
    let app = spawn_app_with(Settings {
        public_url: Some("https://mycompany.com"),
        env: vec![("TWILIO_AUTH_TOKEN", "12345".to_owned())],
    })
    .await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/json-body-vectors.json"
    ))
    .expect("the vectors are readable");
    let vectors: Vectors = serde_json::from_str(&text).expect("the vectors parse");
    assert_eq!(vectors.vectors.len(), 10);
    let at_service = |url: &str| url.replace("/myapp.php", "/twilio/events");
    for v in &vectors.vectors {
        let case = format!("{}: {}", v.library, v.test);
        let (target, signature) = match v.kind.as_str() {
            "body_hash" => {
                let claimed = v.body_sha256.as_deref().expect("a hash");
                let target = format!("/twilio/events?bodySHA256={claimed}");
                let signature = sign_url_with("12345", &format!("https://mycompany.com{target}"));
                (target, signature)
            }
            _ => {
                let url = at_service(v.url.as_deref().expect("a URL"));
                let target = url
                    .strip_prefix("https://mycompany.com")
                    .expect("the vector's host")
                    .to_owned();
                let signed = at_service(v.signed.as_deref().expect("the signed string"));
                let params: Vec<(String, String)> = v
                    .signed_params
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let token = Secret::new(v.token.as_deref().expect("a token"));
                (target, signature::sign_sha1(&token, &signed, &params))
            }
        };
        let response = post(&app, &target, &v.body, JSON, Some(&signature)).await;
        let status = response.status().as_u16();
        if v.valid {
            let error: Value = response.json().await.expect("a JSON error");
            assert_eq!(status, 400, "{case}: the signature verifies: {error}");
        } else {
            assert_eq!(status, 403, "{case}: the signature is refused");
        }
    }
}

#[tokio::test]
async fn a_tampered_or_unsigned_body_is_refused_with_403_and_stores_nothing() {
    let app = spawn_app().await;
    let sid = new_sid();
    let body = status_event(&new_event_id(), &sid, "delivered", None).to_string();
    let target = target_for("/twilio/events", body.as_bytes());
    let good = sign_url(&format!("{}{target}", app.public_url));
    let tampered = body.replace("DELIVERED", "FAILED");
    let retargeted = target_for("/twilio/events", tampered.as_bytes());
    let no_hash = sign_url(&format!("{}/twilio/events", app.public_url));
    let cases: Vec<(&str, String, String, Option<String>)> = vec![
        (
            "the body changed",
            target.clone(),
            tampered.clone(),
            Some(good.clone()),
        ),
        (
            "the body and its hash changed, the signature not",
            retargeted.clone(),
            tampered.clone(),
            Some(good.clone()),
        ),
        ("no signature", target.clone(), body.clone(), None),
        (
            "another token",
            target.clone(),
            body.clone(),
            Some(sign_url_with(
                "not-the-token",
                &format!("{}{target}", app.public_url),
            )),
        ),
        (
            "no bodySHA256 in the URL",
            "/twilio/events".into(),
            body.clone(),
            Some(no_hash),
        ),
        (
            "a form signature of the URL",
            target.clone(),
            body.clone(),
            Some(signature::sign_sha1(
                &Secret::new(AUTH_TOKEN),
                &format!("{}{target}", app.public_url),
                &[("MessageSid", sid.as_str())],
            )),
        ),
    ];
    for (case, target, body, signature) in cases {
        let response = post(&app, &target, &body, JSON, signature.as_deref()).await;
        assert_eq!(response.status(), 403, "{case}");
    }
    assert!(!app.is_stored(&sid).await, "nothing is stored");
    let response = post(&app, &target, &body, JSON, Some(&good)).await;
    assert_eq!(response.status(), 200, "the untouched request is stored");
}

#[tokio::test]
async fn a_signature_made_with_or_without_the_port_verifies_as_for_callbacks() {
    // (public URL, the URL Twilio signed, as a function of the request target)
    let cases: [(&'static str, &'static str); 3] = [
        ("https://hooks.example.com:443", "https://hooks.example.com"),
        ("https://hooks.example.com", "https://hooks.example.com:443"),
        (
            "https://hooks.example.com:8443",
            "https://hooks.example.com",
        ),
    ];
    for (public_url, signed_base) in cases {
        let app = spawn_app_with(Settings {
            public_url: Some(public_url),
            ..Settings::default()
        })
        .await;
        let sid = new_sid();
        let body = status_event(&new_event_id(), &sid, "sent", None).to_string();
        let target = target_for("/twilio/events", body.as_bytes());
        let signature = sign_url(&format!("{signed_base}{target}"));
        let response = post(&app, &target, &body, JSON, Some(&signature)).await;
        assert_eq!(
            response.status(),
            200,
            "{public_url} signed as {signed_base}"
        );
        assert!(app.is_stored(&sid).await);
        let elsewhere = sign_url(&format!("https://other.example.com{target}"));
        let response = post(&app, &target, &body, JSON, Some(&elsewhere)).await;
        assert_eq!(response.status(), 403, "another host is no port variant");
    }
}

#[tokio::test]
async fn the_same_event_id_again_adds_nothing_alone_or_in_a_batch() {
    let app = spawn_app().await;
    let sid = new_sid();
    let sent = status_event(&new_event_id(), &sid, "sent", None);
    let delivered = status_event(&new_event_id(), &sid, "delivered", None);

    assert_eq!(app.post_events(&sent.to_string()).await.status(), 200);
    assert_eq!(app.post_events(&sent.to_string()).await.status(), 200);
    let batch = json!([sent.clone(), delivered.clone(), delivered.clone()]);
    assert_eq!(app.post_events(&batch.to_string()).await.status(), 200);

    let message = app.message_json(&sid).await;
    let ids: Vec<&str> = message["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["params"]["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(
        ids,
        [
            sent["id"].as_str().expect("id"),
            delivered["id"].as_str().expect("id")
        ]
    );
    // The id alone decides: the same id with other content is the same event.
    let mut rewritten = sent.clone();
    rewritten["data"]["messageStatus"] = json!("FAILED");
    rewritten["data"]["errorCode"] = json!(30008);
    assert_eq!(app.post_events(&rewritten.to_string()).await.status(), 200);
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "delivered");
    assert_eq!(message["events"].as_array().map(Vec::len), Some(2));

    let metrics = app.metrics().await;
    let count = |outcome: &str| {
        metric(
            &metrics,
            &format!("statushook_event_stream_events_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!((count("stored"), count("duplicate")), (2.0, 4.0));
}

#[tokio::test]
async fn a_callback_and_a_stream_event_of_one_transition_are_one_transition_with_both_in_the_history(
) {
    let mut receiver = Receiver::start().await;
    let app = spawn_app_with(Settings {
        env: receiver.env(),
        ..Settings::default()
    })
    .await;
    let (first_callback, first_stream) = (new_sid(), new_sid());

    // A callback, then the stream event of the same transition; and the reverse.
    assert_eq!(
        app.post_callback(&callback(&first_callback, "delivered"))
            .await
            .status(),
        200
    );
    let echo = status_event(&new_event_id(), &first_callback, "delivered", None);
    assert_eq!(app.post_events(&echo.to_string()).await.status(), 200);
    let event = status_event(&new_event_id(), &first_stream, "delivered", None);
    assert_eq!(app.post_events(&event.to_string()).await.status(), 200);
    assert_eq!(
        app.post_callback(&callback(&first_stream, "delivered"))
            .await
            .status(),
        200
    );
    // A later status by stream is a transition of its own.
    let read = status_event(&new_event_id(), &first_callback, "read", None);
    assert_eq!(app.post_events(&read.to_string()).await.status(), 200);

    let message = app.message_json(&first_callback).await;
    assert_eq!(
        sources(&message),
        ["callback", "event_stream", "event_stream"]
    );
    assert_eq!(message["status"], "read");
    let message = app.message_json(&first_stream).await;
    assert_eq!(sources(&message), ["event_stream", "callback"]);
    assert_eq!(message["status"], "delivered");
    assert_eq!(
        message["updated_at"], message["events"][0]["received_at"],
        "the second report moves nothing"
    );

    // The change feed lists each transition once, and `next` moves past the echoes.
    let feed = app.json("/v1/events?after=0&limit=1000").await;
    let listed: Vec<(String, String, String)> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|entry| {
            (
                entry["data"]["sid"].as_str().unwrap_or_default().to_owned(),
                entry["data"]["event"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                entry["data"]["event"]["source"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let expected = [
        (
            first_callback.clone(),
            "delivered".to_owned(),
            "callback".to_owned(),
        ),
        (
            first_stream.clone(),
            "delivered".to_owned(),
            "event_stream".to_owned(),
        ),
        (
            first_callback.clone(),
            "read".to_owned(),
            "event_stream".to_owned(),
        ),
    ];
    assert_eq!(listed, expected);
    let after = feed["next"].as_u64().expect("next");
    let rest = app.json(&format!("/v1/events?after={after}")).await;
    assert_eq!(rest["events"], json!([]), "nothing is left behind `next`");
    assert_eq!(rest["next"].as_u64(), Some(after));

    // Forwarded once each.
    let service = Service::of(&app);
    service
        .forwarding_when("every transition acknowledged", |s| s["depth"] == 0)
        .await;
    receiver
        .wait_until("three forwards", |d| {
            d.iter().filter(|d| d.answer == 200).count() >= 3
        })
        .await;
    let forwarded: Vec<(String, String)> = receiver
        .deliveries
        .iter()
        .map(|d| (d.sid().to_owned(), d.status().to_owned()))
        .collect();
    assert_eq!(forwarded.len(), 3, "{forwarded:?}");
    for (sid, status, _) in &expected {
        assert!(
            forwarded.contains(&(sid.clone(), status.clone())),
            "{sid} {status} forwarded: {forwarded:?}"
        );
    }
}

#[tokio::test]
async fn events_of_types_not_stored_are_answered_200_and_counted_by_type() {
    let app = spawn_app().await;
    let sid = new_sid();
    let batch = json!([
        other_event(
            &new_event_id(),
            "com.twilio.voice.status-callback.call.completed"
        ),
        other_event(&new_event_id(), "com.example.unheard-of"),
        status_event(&new_event_id(), &sid, "sent", None),
    ]);
    assert_eq!(app.post_events(&batch.to_string()).await.status(), 200);
    let alone = other_event(
        &new_event_id(),
        "com.twilio.voice.status-callback.call.completed",
    );
    assert_eq!(app.post_events(&alone.to_string()).await.status(), 200);

    assert!(app.is_stored(&sid).await);
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "statushook_event_stream_ignored_total{type=\"com.twilio.voice.status-callback.call.completed\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "statushook_event_stream_ignored_total{type=\"other\"}"
        ),
        1.0
    );
    assert!(
        !metrics.contains("com.example.unheard-of"),
        "an unknown type is no label of its own"
    );
    assert_eq!(
        metric(
            &metrics,
            "statushook_event_stream_events_total{outcome=\"ignored\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn a_batch_with_unreadable_members_stores_the_others_counts_the_rest_and_answers_200() {
    let app = spawn_app().await;
    let (good, bad) = (new_sid(), new_sid());
    let mut no_status = status_event(&new_event_id(), &bad, "sent", None);
    no_status["data"]
        .as_object_mut()
        .expect("data")
        .remove("messageStatus");
    let batch = json!([
        status_event(&new_event_id(), &good, "delivered", None),
        {"hello": "world"},
        no_status,
        42,
        status_event(&new_event_id(), "SM123", "sent", None),
    ]);

    assert_eq!(app.post_events(&batch.to_string()).await.status(), 200);

    assert_eq!(app.message_json(&good).await["status"], "delivered");
    assert!(!app.is_stored(&bad).await);
    let metrics = app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "statushook_event_stream_events_total{outcome=\"invalid\"}"
        ),
        4.0
    );
}

#[tokio::test]
async fn a_signed_body_that_is_not_cloudevents_json_is_refused_with_400_and_stores_nothing() {
    let app = spawn_app().await;
    let sid = new_sid();
    let mut no_sid = status_event(&new_event_id(), &sid, "sent", None);
    no_sid["data"]
        .as_object_mut()
        .expect("data")
        .remove("messageSid");
    let mut unread = status_event(&new_event_id(), &sid, "sent", None);
    unread["data"]["messageStatus"] = json!("");
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{\"specversion\":".into(), "not JSON"),
        ("a string", "\"hello\"".into(), "neither"),
        ("a number", "42".into(), "neither"),
        (
            "an object that is no CloudEvent",
            "{\"a\":1}".into(),
            "specversion",
        ),
        (
            "an event without data.messageSid",
            no_sid.to_string(),
            "data.messageSid",
        ),
        (
            "an event with an empty status",
            unread.to_string(),
            "data.messageStatus",
        ),
        (
            "a batch of nothing readable",
            "[1, {\"b\": 2}]".into(),
            "no member",
        ),
    ];
    for (case, body, reason) in cases {
        let response = app.post_events(&body).await;
        assert_eq!(response.status(), 400, "{case}");
        let error: Value = response.json().await.expect("a JSON error");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{case}: {error}"
        );
    }
    assert!(!app.is_stored(&sid).await);
    assert_eq!(app.post_events("[]").await.status(), 200, "an empty batch");
}

#[tokio::test]
async fn content_type_and_size_are_checked_before_the_signature() {
    let app = spawn_app().await;
    let sid = new_sid();
    let body = status_event(&new_event_id(), &sid, "sent", None).to_string();
    let target = target_for("/twilio/events", body.as_bytes());
    let signature = sign_url(&format!("{}{target}", app.public_url));
    for content_type in ["text/plain", FORM, "application/xml", ""] {
        let response = post(&app, &target, &body, content_type, Some(&signature)).await;
        assert_eq!(response.status(), 415, "{content_type:?}");
    }
    let response = post(&app, &target, &body, "text/plain", None).await;
    assert_eq!(response.status(), 415, "415 before 403");
    let huge = format!("[{}]", " ".repeat(1024 * 1024));
    let response = post(&app, "/twilio/events?bodySHA256=0", &huge, JSON, None).await;
    assert_eq!(response.status(), 413, "413 before 403");
    assert!(!app.is_stored(&sid).await);
    for content_type in [
        "application/cloudevents+json; charset=utf-8",
        "application/cloudevents-batch+json",
        "Application/JSON",
    ] {
        let sid = new_sid();
        let body = status_event(&new_event_id(), &sid, "sent", None).to_string();
        let target = target_for("/twilio/events", body.as_bytes());
        let signature = sign_url(&format!("{}{target}", app.public_url));
        let response = post(&app, &target, &body, content_type, Some(&signature)).await;
        assert_eq!(response.status(), 200, "{content_type}");
    }
}

#[tokio::test]
async fn an_event_verifies_under_the_token_of_the_account_it_names_or_the_secondary() {
    let sub = "AC000000000000000000000000000000aa";
    let app = spawn_app_with(Settings {
        env: vec![
            ("TWILIO_ACCOUNT_TOKENS", format!("{sub}=token-of-the-sub")),
            ("TWILIO_AUTH_TOKEN_SECONDARY", "the-secondary".to_owned()),
        ],
        ..Settings::default()
    })
    .await;
    let post_signed_by = |token: &'static str, account: &'static str| {
        let app = &app;
        async move {
            let sid = new_sid();
            let mut event = status_event(&new_event_id(), &sid, "sent", None);
            event["data"]["accountSid"] = json!(account);
            let body = event.to_string();
            let target = target_for("/twilio/events", body.as_bytes());
            let signature = sign_url_with(token, &format!("{}{target}", app.public_url));
            post(app, &target, &body, JSON, Some(&signature))
                .await
                .status()
        }
    };
    assert_eq!(post_signed_by("token-of-the-sub", sub).await, 200);
    assert_eq!(post_signed_by("the-secondary", sub).await, 200);
    assert_eq!(post_signed_by(AUTH_TOKEN, sub).await, 200);
    assert_eq!(
        post_signed_by("token-of-the-sub", ACCOUNT_SID).await,
        403,
        "a sub's token signs only for the sub"
    );
}
