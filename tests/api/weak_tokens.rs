//! Weak settings are refused, and guessing the token is slow: a token shorter than 32
//! characters stops start-up with a hint to generate one, and an address that keeps
//! presenting wrong tokens is answered `429` until it has waited, every refusal counted in
//! `/metrics`.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::support::fixtures::{API_TOKEN, AUTH_TOKEN};
use crate::support::spawn::{spawn_app, TestApp};

/// Starts the binary with `token` and waits, up to 10 s, for it to stop; a binary that
/// starts serving instead is stopped and the test fails.
fn start_with_token(token: &str) -> std::process::Output {
    let data = tempfile::tempdir().expect("a temporary folder");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_statushook"))
        .arg("serve")
        .env_clear()
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", data.path().join("db"))
        .env("STATUSHOOK_PUBLIC_URL", "https://hooks.example.com")
        .env("STATUSHOOK_API_TOKEN", token)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("waitable").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{token:?}: the service started instead of refusing the token");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("its output")
}

#[test]
fn a_token_shorter_than_32_characters_stops_start_up_with_a_hint_to_generate_one() {
    for token in [
        "a",
        "hunter2",
        "0123456789abcdef0123456789abcde",
        "change-me-to-a-long-random-string",
    ] {
        let output = start_with_token(token);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{token:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{token:?}: one line: {stderr}");
        assert!(
            stderr.starts_with("statushook: STATUSHOOK_API_TOKEN: "),
            "{token:?}: {stderr}"
        );
        assert!(
            stderr.contains("openssl rand -hex 32"),
            "{token:?}: {stderr}"
        );
        if token.len() > 2 {
            assert!(!stderr.contains(token), "{token:?} is shown: {stderr}");
        }
    }
}

/// The status of a `/v1` request with `token`, and its `Retry-After`.
async fn try_token(app: &TestApp, token: &str) -> (u16, Option<u64>) {
    let response = app
        .client
        .get(format!("{}/v1/stats", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    (response.status().as_u16(), retry_after)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_burst_of_a_thousand_wrong_tokens_from_one_address_is_throttled_and_counted() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let answers: Vec<(u16, Option<u64>)> = stream::iter(0..1_000)
        .map(|n| {
            let app = &app;
            async move { try_token(app, &format!("guess-{n:04}-0123456789abcdef0123456789")).await }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let took = started.elapsed();
    let refused = answers.iter().filter(|(status, _)| *status == 401).count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    eprintln!(
        "401 burst: 1,000 wrong tokens in {took:?}: {refused} answered 401, {} answered 429",
        throttled.len()
    );
    assert_eq!(refused + throttled.len(), 1_000, "only 401 and 429");
    // Ten at once, then one a second: the burst took well under a minute.
    let most = 10 + took.as_secs() as usize + 1;
    assert!(
        refused <= most,
        "{refused} guesses were evaluated in {took:?}; at most {most} should be"
    );
    assert!(
        throttled
            .iter()
            .all(|(_, retry_after)| retry_after.is_some_and(|seconds| (1..=2).contains(&seconds))),
        "every 429 says when to retry"
    );

    // While the address is throttled, even the right token is refused: otherwise the
    // answer would tell a guesser which guess was right.
    assert_eq!(try_token(&app, API_TOKEN).await.0, 429);

    let text = app.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(
        metric(&text, "statushook_unauthorized_total"),
        refused as f64
    );
    assert!(metric(&text, "statushook_throttled_total") >= throttled.len() as f64);

    // A request without a token guesses nothing: it is refused, not throttled.
    let bare = app.get("/v1/stats").await;
    assert_eq!(bare.status(), 401);

    // Once it has waited, the right token is served again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(try_token(&app, API_TOKEN).await.0, 200);
}

#[tokio::test]
async fn the_right_token_is_never_throttled_by_its_own_requests() {
    let app = spawn_app().await;
    let answers: Vec<u16> = stream::iter(0..300)
        .map(|_| {
            let app = &app;
            async move { try_token(app, API_TOKEN).await.0 }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");
}
