//! Tokens of the API: the `Bearer` scheme's name in any case, and `STATUSHOOK_READ_TOKEN`,
//! which reads everything the API token reads and changes nothing: every operation of the
//! OpenAPI document that takes the bearer token and does not `GET` answers it `403`.

use reqwest::Method;
use serde_json::Value;

use crate::support::fixtures::{callback, new_sid, API_TOKEN};
use crate::support::spawn::{spawn_app_with, Settings, TestApp};

const READ_TOKEN: &str = "test-read-token-0123456789abcdefghij";

async fn app_with_read_token() -> TestApp {
    spawn_app_with(Settings {
        env: vec![("STATUSHOOK_READ_TOKEN", READ_TOKEN.into())],
        ..Settings::default()
    })
    .await
}

async fn with_authorization(
    app: &TestApp,
    method: Method,
    path: &str,
    value: &str,
) -> reqwest::Response {
    app.client
        .request(method, format!("{}{path}", app.address))
        .header("Authorization", value)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let app = app_with_read_token().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for token in [API_TOKEN, READ_TOKEN] {
            let response = with_authorization(
                &app,
                Method::GET,
                "/v1/messages",
                &format!("{scheme} {token}"),
            )
            .await;
            assert_eq!(response.status(), 200, "{scheme}");
        }
    }
    for refused in [
        format!("Basic {API_TOKEN}"),
        format!("Bearer{API_TOKEN}"),
        format!("bearer {API_TOKEN}x"),
        API_TOKEN.to_owned(),
    ] {
        let response = with_authorization(&app, Method::GET, "/v1/messages", &refused).await;
        assert_eq!(response.status(), 401, "{refused}");
    }
}

/// Every operation of the OpenAPI document that needs the bearer token: (method, path with
/// `sid` for its template).
async fn bearer_operations(app: &TestApp, sid: &str) -> Vec<(Method, String)> {
    let document: Value = app.get("/openapi.json").await.json().await.expect("JSON");
    let mut operations = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let needs_bearer = operation["security"]
                .as_array()
                .is_some_and(|schemes| schemes.iter().any(|s| s.get("bearer").is_some()));
            if !needs_bearer {
                continue;
            }
            let path = template.replace("{sid}", sid).replace("{name}", "a-rule");
            assert!(
                !path.contains('{'),
                "{template}: give the test a value for it"
            );
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            operations.push((method, path));
        }
    }
    operations
}

#[tokio::test]
async fn the_read_token_reads_and_is_refused_with_403_on_every_operation_that_writes() {
    let app = app_with_read_token().await;
    let sid = new_sid();
    assert_eq!(
        app.post_callback(&callback(&sid, "delivered"))
            .await
            .status(),
        200
    );
    let operations = bearer_operations(&app, &sid).await;
    let (reads, writes): (Vec<_>, Vec<_>) = operations
        .into_iter()
        .partition(|(method, _)| *method == Method::GET);
    assert!(
        reads.len() >= 7,
        "only {} reading operations: {reads:?}",
        reads.len()
    );
    assert!(
        writes.len() >= 4,
        "only {} writing operations: {writes:?}",
        writes.len()
    );

    for (method, path) in &reads {
        let response =
            with_authorization(&app, method.clone(), path, &format!("Bearer {READ_TOKEN}")).await;
        let status = response.status().as_u16();
        assert!(
            status != 401 && status != 403,
            "{method} {path} is a read, but the read token got {status}"
        );
    }
    // Each write with a body and query that would be taken from the API token, so that
    // nothing but the token decides the answer.
    for (method, path) in &writes {
        let target = match path.as_str() {
            "/v1/messages" if *method == Method::DELETE => format!("{path}?phone=%2B15005550009"),
            "/v1/forwarding/replay" => format!("{path}?since=2020-01-01T00:00:00Z"),
            _ => path.clone(),
        };
        let response = app
            .client
            .request(method.clone(), format!("{}{target}", app.address))
            .bearer_auth(READ_TOKEN)
            .json(&serde_json::json!({"to": "+15005550009", "body": "hi", "from": "+15005550006"}))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 403, "{method} {target}");
        let body: Value = response.json().await.expect("a JSON error");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("read-only"), "{method} {target}: {error}");
    }
    assert!(app.is_stored(&sid).await, "no write went through");

    // The same writes with the API token are not refused for the token.
    let erase = app
        .client
        .delete(format!("{}/v1/messages/{sid}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(erase.status(), 204);
}

#[tokio::test]
async fn without_a_read_token_configured_no_other_token_reads() {
    let app = spawn_app_with(Settings::default()).await;
    let response = with_authorization(
        &app,
        Method::GET,
        "/v1/messages",
        &format!("Bearer {READ_TOKEN}"),
    )
    .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn the_access_route_tells_each_token_what_it_may_do() {
    let app = app_with_read_token().await;
    for (token, access) in [(API_TOKEN, "full"), (READ_TOKEN, "read")] {
        let response =
            with_authorization(&app, Method::GET, "/v1/access", &format!("Bearer {token}")).await;
        assert_eq!(response.status(), 200, "{access}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body, serde_json::json!({ "access": access }));
    }
    let response = with_authorization(&app, Method::GET, "/v1/access", "Bearer wrong").await;
    assert_eq!(response.status(), 401);
}
