//! `GET /openapi.json`, and the answers to requests no route takes. The description is
//! checked against the routes table by a unit test in `src/routes/openapi.rs`, and the
//! service against the description by `scripts/schemathesis`.

use reqwest::Method;
use serde_json::Value;

use crate::support::fixtures::API_TOKEN;
use crate::support::spawn::{spawn_app, TestApp};

async fn request(app: &TestApp, method: Method, path: &str) -> reqwest::Response {
    app.client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the request is answered")
}

#[tokio::test]
async fn the_description_is_served_as_openapi_3_1_json_without_a_token() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    let document: Value = response.json().await.expect("JSON");
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "{version}");
}

#[tokio::test]
async fn every_described_operation_is_served() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let document: Value = app.get("/openapi.json").await.json().await.expect("JSON");
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (template, item) in paths {
        let path = template
            .replace("{sid}", "SM0123456789abcdef0123456789abcdef")
            .replace("{file}", "app.js")
            .replace("{name}", "a-rule");
        assert!(
            !path.contains('{'),
            "{template}: give the test a value for it"
        );
        for method in item.as_object().expect("a path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let response = client
                .request(method.clone(), format!("{}{path}", app.address))
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .expect("the request is answered");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            let error = body["error"].as_str().unwrap_or_default();
            assert!(
                status != 405 && !error.starts_with("no such route"),
                "{method} {path} is described but answered {status} {body}"
            );
            operations += 1;
        }
    }
    assert!(operations >= 13, "only {operations} operations described");
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_allow_and_a_json_error() {
    let app = spawn_app().await;
    let cases = [
        (Method::DELETE, "/v1/stats", "GET"),
        (Method::PUT, "/v1/messages", "GET, POST, DELETE"),
        (Method::TRACE, "/healthz", "GET"),
        (Method::GET, "/twilio/status", "POST"),
    ];
    for (method, path, allowed) in cases {
        let response = request(&app, method.clone(), path).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(
            response.headers()["allow"].to_str().ok(),
            Some(allowed),
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap_or_default();
        assert!(body["error"].as_str().is_some(), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn a_path_no_route_serves_is_404_with_a_json_error() {
    let app = spawn_app().await;
    for path in [
        "/nowhere",
        "/v1/messages/",
        "/v1/messages/SM0123456789abcdef0123456789abcdef/x",
    ] {
        let response = request(&app, Method::GET, path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], format!("no such route: {path}"), "{path}");
    }
}

#[tokio::test]
async fn a_listing_filter_with_a_leading_space_is_refused_with_the_fix() {
    let app = spawn_app().await;
    for name in ["to", "from"] {
        let response = app
            .get_authorized(&format!("/v1/messages?{name}=+15005550006"))
            .await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.expect("a JSON error");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{name}=%2B15005550006")),
            "{name}: {error}"
        );
    }
}
