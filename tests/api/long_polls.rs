//! Long polls of the change feed (`GET /v1/events?wait=`): woken by a commit on any
//! replica without polling the database, and capped per replica.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{post_to_binary, start_replica};
use crate::support::database::fresh_database;
use crate::support::fixtures::{callback, new_sid, API_TOKEN};
use crate::support::poll::eventually;
use crate::support::spawn::spawn_app;

/// The cap of `routes/events.rs`.
const MAX_LONG_POLLS: usize = 1000;

async fn poll(client: &reqwest::Client, address: &str, wait: u64) -> reqwest::Response {
    client
        .get(format!("{address}/v1/events?after=0&wait={wait}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the poll is answered")
}

#[tokio::test]
async fn a_long_poll_beyond_a_thousand_waiting_is_answered_503_with_retry_after() {
    let app = spawn_app().await;
    let waiting: Vec<_> = (0..MAX_LONG_POLLS)
        .map(|_| {
            let (client, address) = (app.client.clone(), app.address.clone());
            tokio::spawn(async move { poll(&client, &address, 30).await.status().as_u16() })
        })
        .collect();
    // Once every one of them waits, one more is refused.
    eventually("every poll waits", || async {
        let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
        metrics.contains(&format!("statushook_long_polls {MAX_LONG_POLLS}\n"))
    })
    .await;
    let refused = poll(&app.client, &app.address, 1).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("1")
    );
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"], "too many long polls are waiting, try again");

    // A callback answers every waiting poll, and their places are free again.
    let sid = new_sid();
    assert_eq!(
        app.post_callback(&callback(&sid, "sent")).await.status(),
        200
    );
    for answered in waiting {
        assert_eq!(answered.await.expect("the poll task"), 200);
    }
    assert_eq!(poll(&app.client, &app.address, 1).await.status(), 200);
}

#[tokio::test]
async fn a_long_poll_on_one_replica_wakes_within_a_second_of_a_commit_on_another() {
    let database = fresh_database().await;
    let (_a, first) = start_replica(&database, &[]).await;
    let (_b, second) = start_replica(&database, &[]).await;
    let client = reqwest::Client::new();
    let waiting = {
        let (client, first) = (client.clone(), first.clone());
        tokio::spawn(async move {
            let answer = poll(&client, &first, 30).await;
            let woken = Instant::now();
            let body: Value = answer.json().await.expect("a JSON feed");
            (woken, body)
        })
    };
    // Long enough for the poll to be waiting; it must not have been answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "an empty feed is held open");
    let sid = new_sid();
    let stored = post_to_binary(&client, &second, &callback(&sid, "delivered"))
        .await
        .expect("the callback is answered");
    assert_eq!(stored.status(), 200);
    let stored_at = Instant::now();
    let (woken, body) = waiting.await.expect("the poll task");
    assert_eq!(body["events"][0]["data"]["sid"], sid.as_str());
    let late = woken.saturating_duration_since(stored_at);
    // Without notifications it would be the fallback read, up to 5 s later.
    assert!(
        late < Duration::from_secs(1),
        "woken {late:?} after the commit"
    );
}
