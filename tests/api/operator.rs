//! What an operator sees: start-up errors and the start-up line, the log of refused
//! callbacks and API requests, JSON answers for unknown routes, and hints for common
//! mistakes.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

use crate::support::binary::{refused_start, serve_command, serve_env, start, Binary, BINARY};
use crate::support::fixtures::{callback, encode, new_sid, API_TOKEN, FORM, PUBLIC_URL};
use crate::support::metrics::metric;
use crate::support::spawn::spawn_app;

/// Log lines up to and including the request log of the answer to `path`, which the
/// caller has just been given: everything `binary` logged while handling earlier requests.
async fn lines_until_request_to(binary: &mut Binary, path: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(entry) = binary.log.next_entry().await {
            let done = entry["message"] == "request" && entry["path"] == path;
            seen.push(entry);
            if done {
                return;
            }
        }
        panic!("the binary stopped logging");
    };
    // A guard against a test that hangs, not a wait: the line comes within milliseconds.
    if tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .is_err()
    {
        panic!("no request log line for {path}");
    }
    seen
}

#[tokio::test]
async fn each_malformed_setting_stops_start_up_with_one_line_naming_it_and_exit_code_2() {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let db = data_dir.path().join("db");
    let cases: &[(&str, &str, &str)] = &[
        ("STATUSHOOK_LOG_FORMAT", "yaml", "STATUSHOOK_LOG_FORMAT"),
        (
            "STATUSHOOK_RECONCILE_AFTER",
            "15",
            "STATUSHOOK_RECONCILE_AFTER",
        ),
        (
            "STATUSHOOK_PUBLIC_URL",
            "https://hooks example.com",
            "STATUSHOOK_PUBLIC_URL",
        ),
        (
            "STATUSHOOK_PUBLIC_URL",
            "https://hooks.example.com:99999",
            "STATUSHOOK_PUBLIC_URL",
        ),
        (
            "STATUSHOOK_PUBLIC_URL",
            "https://hooks.example.com/twilio/status",
            "STATUSHOOK_PUBLIC_URL",
        ),
        ("STATUSHOOK_LISTEN", "127.0.0.1:99999", "STATUSHOOK_LISTEN"),
        (
            "TWILIO_ACCOUNT_TOKENS",
            "AC12=secret",
            "TWILIO_ACCOUNT_TOKENS",
        ),
        ("STATUSHOOK_API_TOKEN", "", "STATUSHOOK_API_TOKEN"),
    ];
    for (name, value, named) in cases {
        let mut env = serve_env(&db);
        env.retain(|(key, _)| key != name);
        env.push((name, value.to_string()));
        let output = refused_start(&env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}={value}: one line, got {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("statushook: {named}: ")),
            "{name}={value}: {stderr}"
        );
        assert!(!lines[0].contains("secret"), "{stderr}");
    }
}

#[tokio::test]
async fn a_public_url_that_is_the_callback_url_is_refused_with_the_base_url_to_use() {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let mut env = serve_env(&data_dir.path().join("db"));
    env.push((
        "STATUSHOOK_PUBLIC_URL",
        "https://example.com/prefix/twilio/status".into(),
    ));
    let output = refused_start(&env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("use https://example.com/prefix "),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_store_that_cannot_open_stops_start_up_with_one_plain_line_and_a_non_zero_exit() {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let file = data_dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").expect("a file");
    let output = refused_start(&serve_env(&file)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_ne!(output.status.code(), Some(2), "not a configuration error");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got {stderr:?}");
    assert!(
        lines[0].starts_with("statushook: cannot open the store in "),
        "{stderr}"
    );
    assert!(!lines[0].contains("Os {"), "no Rust debug text: {stderr}");
}

#[tokio::test]
async fn start_up_logs_one_line_with_the_address_store_public_url_and_jobs() {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let db = data_dir.path().join("db");
    let mut env = serve_env(&db);
    env.push((
        "STATUSHOOK_PUBLIC_URL",
        "https://user:hunter2@hooks.example.com/prefix".into(),
    ));
    let app = start(serve_command(&env)).await;
    let line = &app.startup;
    let port = line["port"].as_u64().expect("a port");
    assert_eq!(line["address"], format!("127.0.0.1:{port}"), "{line}");
    assert_eq!(line["store"], format!("sled {}", db.display()), "{line}");
    assert_eq!(
        line["public_url"], "https://user:[redacted]@hooks.example.com/prefix",
        "{line}"
    );
    assert_eq!(
        line["jobs"], "none",
        "no Twilio account, no reconciler: {line}"
    );
    assert!(!line.to_string().contains("hunter2"), "{line}");

    let mut env = serve_env(&data_dir.path().join("db2"));
    env.push((
        "TWILIO_ACCOUNT_SID",
        crate::support::fixtures::ACCOUNT_SID.into(),
    ));
    let with_account = start(serve_command(&env)).await;
    assert_eq!(with_account.startup["jobs"], "reconciler");
}

#[tokio::test]
async fn a_burst_of_one_403_is_logged_once_with_the_urls_tried_and_the_public_url_in_force() {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let mut app = start(serve_command(&serve_env(&data_dir.path().join("db")))).await;
    let client = reqwest::Client::new();
    let params = callback(&new_sid(), "sent");
    let started = Instant::now();
    let refused = 20;
    for _ in 0..refused {
        let response = client
            .post(format!("{}/twilio/status?tenant=private-data", app.address))
            .header("Content-Type", FORM)
            .header("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .body(encode(&params))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 403);
    }
    let elapsed = started.elapsed();
    let health = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("answered");
    assert_eq!(health.status(), 200);
    let lines = lines_until_request_to(&mut app, "/healthz").await;
    let logged: Vec<&Value> = lines
        .iter()
        .filter(|entry| entry["level"] == "WARN" && entry["public_url"].is_string())
        .collect();
    // The first of its kind at once; its repeats within 10 s are summarised later.
    assert!(
        logged.len() == 1 || elapsed.as_secs() >= 10,
        "{} lines for {refused} refusals in {elapsed:?}",
        logged.len()
    );
    let line = logged[0];
    assert_eq!(line["public_url"], PUBLIC_URL, "{line}");
    let tried = line["tried_urls"].as_str().expect("the URLs tried");
    assert!(
        tried.contains("https://hooks.example.com/twilio/status")
            && tried.contains("https://hooks.example.com:443/twilio/status"),
        "{tried}"
    );
    assert!(
        !line.to_string().contains("private-data"),
        "no query: {line}"
    );
}

#[tokio::test]
async fn a_401_is_logged_without_the_token_presented() {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let mut app = start(serve_command(&serve_env(&data_dir.path().join("db")))).await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/messages", app.address))
        .bearer_auth("a-guessed-token")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 401);
    let lines = lines_until_request_to(&mut app, "/v1/messages").await;
    let refusal = lines
        .iter()
        .find(|entry| entry["level"] == "WARN" && entry["status"].is_null())
        .expect("a warning for the 401");
    assert_eq!(refusal["reason"], "the bearer token is wrong", "{refusal}");
    assert_eq!(refusal["path"], "/v1/messages");
    for entry in &lines {
        let text = entry.to_string();
        assert!(
            !text.contains("a-guessed-token") && !text.contains(API_TOKEN),
            "{text}"
        );
    }
}

#[tokio::test]
async fn refused_api_requests_are_counted_in_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.get("/v1/messages").await.status(), 401);
    let wrong = app
        .client
        .get(format!("{}/v1/messages", app.address))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("answered");
    assert_eq!(wrong.status(), 401);
    assert_eq!(app.get_authorized("/v1/messages").await.status(), 200);
    let text = app.metrics().await;
    assert_eq!(metric(&text, "statushook_unauthorized_total"), 2.0);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_answered_404_and_405_in_json() {
    let app = spawn_app().await;
    let cases: &[(&str, &str, bool, u16)] = &[
        ("GET", "/nowhere", false, 404),
        ("GET", "/twilio/status", false, 405),
        ("PUT", "/twilio/status", false, 405),
        ("POST", "/healthz", false, 405),
        ("DELETE", "/metrics", false, 405),
        ("GET", "/v1/nowhere", true, 404),
        ("PUT", "/v1/messages", true, 405),
        ("POST", "/v1/stats", true, 405),
    ];
    for (method, path, authorized, expected) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = app
            .client
            .request(method.clone(), format!("{}{path}", app.address));
        if *authorized {
            request = request.bearer_auth(API_TOKEN);
        }
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), *expected, "{method} {path}");
        let body: Value = response.json().await.expect("a JSON body");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn an_unencoded_plus_in_to_or_from_is_refused_with_a_hint_to_encode_it() {
    let app = spawn_app().await;
    for parameter in ["to", "from"] {
        let response = app
            .get_authorized(&format!("/v1/messages?{parameter}=+15005550009"))
            .await;
        assert_eq!(response.status(), 400, "{parameter}");
        let error: Value = response.json().await.expect("a JSON error");
        assert_eq!(error["parameter"], parameter, "{error}");
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains("%2B")),
            "{error}"
        );
        let encoded = app
            .get_authorized(&format!("/v1/messages?{parameter}=%2B15005550009"))
            .await;
        assert_eq!(encoded.status(), 200, "{parameter}");
    }
}

#[tokio::test]
async fn simulate_prints_the_status_and_body_of_the_callbacks_that_failed() {
    let app = spawn_app().await;
    let output = Command::new(BINARY)
        .args([
            "simulate",
            "--url",
            &format!("{}/twilio/status", app.address),
            "--signed-url",
            &format!("{}/twilio/status", app.public_url),
            "--messages",
            "3",
            "--rate",
            "1000",
        ])
        .env_clear()
        .env("TWILIO_AUTH_TOKEN", "not-the-token")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("simulate finishes")
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let failure = stderr
        .lines()
        .find(|line| line.contains(" answered 403: "))
        .unwrap_or_else(|| panic!("no failure line in {stderr}"));
    assert!(
        failure.contains("the request is not signed by Twilio"),
        "{failure}"
    );
}
