//! A query parameter given twice is refused with `400` naming it, unless the API documents
//! it as repeatable (`status` of the listing is): the answer to
//! `DELETE /v1/messages?phone=A&phone=B` must not be an erasure of B that says nothing of A.

use reqwest::Method;
use serde_json::Value;

use crate::support::fixtures::{callback, new_sid, with, API_TOKEN};
use crate::support::spawn::{spawn_app, TestApp};

async fn answer(app: &TestApp, method: Method, target: &str) -> (u16, Value) {
    let response = app
        .client
        .request(method, format!("{}{target}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_erasure_with_two_phone_numbers_is_refused_and_erases_nothing() {
    let app = spawn_app().await;
    let sids: Vec<String> = (0..4).map(|_| new_sid()).collect();
    for sid in &sids {
        let params = with(
            callback(sid, "delivered")
                .into_iter()
                .filter(|(name, _)| name != "To")
                .collect(),
            "To",
            "+19990000001",
        );
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }

    let (status, body) = answer(
        &app,
        Method::DELETE,
        "/v1/messages?phone=%2B19990000001&phone=%2B1",
    )
    .await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["parameter"], "phone", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains("phone") && error.contains("more than once")),
        "{body}"
    );
    for sid in &sids {
        assert!(app.is_stored(sid).await, "{sid} was erased");
    }
    let (status, body) = answer(&app, Method::DELETE, "/v1/messages?phone=%2B19990000001").await;
    assert_eq!((status, &body["deleted"]), (200, &Value::from(4)), "{body}");
}

#[tokio::test]
async fn every_parameter_but_status_is_refused_when_repeated_on_every_route() {
    let app = spawn_app().await;
    let time = "2026-01-01T00%3A00%3A00Z";
    let later = "2026-01-02T00%3A00%3A00Z";
    type Case = (Method, &'static str, String, &'static str);
    let cases: Vec<Case> = vec![
        (Method::GET, "/v1/messages", "to=%2B1555&to=%2B1666".into(), "to"),
        (Method::GET, "/v1/messages", "from=%2B1555&from=%2B1666".into(), "from"),
        (Method::GET, "/v1/messages", "limit=5&limit=500".into(), "limit"),
        (Method::GET, "/v1/messages", "limit=5&status=sent&limit=5".into(), "limit"),
        (Method::GET, "/v1/messages", "error_code=1&error_code=2".into(), "error_code"),
        (Method::GET, "/v1/messages", format!("since={time}&since={later}"), "since"),
        (Method::GET, "/v1/messages", format!("until={time}&until={later}"), "until"),
        (
            Method::GET,
            "/v1/messages",
            "account_sid=AC0123456789abcdef0123456789abcdef&account_sid=AC0123456789abcdef0123456789abcdef".into(),
            "account_sid",
        ),
        // The name counts once decoded.
        (Method::GET, "/v1/messages", "to=%2B1555&%74o=%2B1666".into(), "to"),
        (Method::DELETE, "/v1/messages", "phone=%2B1555&phone=%2B1555".into(), "phone"),
        (Method::GET, "/v1/export", "format=csv&format=jsonl".into(), "format"),
        (Method::GET, "/v1/export", format!("since={time}&since={later}"), "since"),
        (Method::GET, "/v1/stats", format!("until={later}&until={later}"), "until"),
        (Method::GET, "/v1/stats/series", "bucket=hour&bucket=day".into(), "bucket"),
        (Method::GET, "/v1/events", "after=1&after=2".into(), "after"),
        (Method::GET, "/v1/events", "limit=1&limit=2".into(), "limit"),
        (Method::GET, "/v1/events", "wait=0&wait=0".into(), "wait"),
        (
            Method::POST,
            "/v1/forwarding/replay",
            format!("since={time}&since={later}"),
            "since",
        ),
    ];
    for (method, path, query, parameter) in cases {
        let target = format!("{path}?{query}");
        let (status, body) = answer(&app, method.clone(), &target).await;
        assert_eq!(status, 400, "{method} {target}: {body}");
        assert_eq!(body["parameter"], parameter, "{method} {target}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|error| error.starts_with(parameter)),
            "{method} {target}: {body}"
        );
    }

    // `status` repeats: the listing takes the union.
    let (status, body) = answer(
        &app,
        Method::GET,
        "/v1/messages?status=sent&status=failed&status=sent",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_error_code_too_large_for_any_code_is_out_of_range_not_malformed() {
    let app = spawn_app().await;
    let (status, body) = answer(&app, Method::GET, "/v1/messages?error_code=99999999999").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["parameter"], "error_code", "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("out of range"), "{error}");
    assert!(!error.contains("not a whole number"), "{error}");
    let (status, body) = answer(&app, Method::GET, "/v1/messages?error_code=3000x").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains("not a whole number")),
        "{body}"
    );
}

#[tokio::test]
async fn the_openapi_document_says_which_parameters_repeat() {
    let app = spawn_app().await;
    let document: Value = app
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("the document");
    let listing = &document["paths"]["/v1/messages"]["get"]["parameters"];
    let status = listing
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == "status")
        .expect("a status parameter");
    assert_eq!(status["explode"], true, "{status}");
    assert_eq!(status["schema"]["type"], "array", "{status}");
    let description = document["info"]["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("more than once"),
        "the document says that other parameters do not repeat: {description}"
    );
}
