//! The feed's long poll never busy-loops: `GET /v1/events?after=…&wait=…` waits its `wait`
//! unless a transition newer than `after` is stored, whatever was erased and whatever else
//! was written meanwhile; `next` never moves backwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::fixtures::{callback, new_sid, API_TOKEN};
use crate::support::spawn::{spawn_app, TestApp};

async fn feed(app: &TestApp, query: &str) -> Value {
    let response = app.get_authorized(&format!("/v1/events?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.expect("JSON")
}

fn last_seq(page: &Value) -> u64 {
    page["events"]
        .as_array()
        .and_then(|events| events.last())
        .and_then(|event| event["seq"].as_u64())
        .expect("an event")
}

/// Calls `/readyz` (which writes to the store) every 100 ms until told to stop: writes that
/// are no transition must not end a long poll either.
fn keep_probing(app: &Arc<TestApp>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let (app, stopped) = (Arc::clone(app), Arc::clone(&stop));
    tokio::spawn(async move {
        while !stopped.load(Ordering::Relaxed) {
            let _ = app.get("/readyz").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    stop
}

#[tokio::test]
async fn a_long_poll_after_the_newest_events_were_erased_waits_its_wait() {
    let app = Arc::new(spawn_app().await);
    let (older, newest) = (new_sid(), new_sid());
    for sid in [&older, &newest] {
        for status in ["sent", "delivered"] {
            assert_eq!(
                app.post_callback(&callback(sid, status)).await.status(),
                200
            );
        }
    }
    let seen_older = last_seq(&feed(&app, "after=0&limit=2").await);
    let seen_all = last_seq(&feed(&app, "after=0").await);
    assert!(seen_all > seen_older);
    let erased = app
        .client
        .delete(format!("{}/v1/messages/{newest}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(erased.status(), 204);

    let probing = keep_probing(&app);
    // A consumer that had read everything, and one that had read only up to the older
    // message's events: for both, nothing newer than their position is stored.
    for after in [seen_all, seen_older] {
        let started = Instant::now();
        let page = feed(&app, &format!("after={after}&wait=2")).await;
        let waited = started.elapsed();
        assert_eq!(page["events"], Value::Array(Vec::new()), "after={after}");
        assert_eq!(page["next"], after, "next stays where it was, never behind");
        assert!(
            waited >= Duration::from_millis(1900),
            "after={after}: answered after {waited:?} instead of waiting 2 s"
        );
    }
    probing.store(true, Ordering::Relaxed);
}

#[tokio::test]
async fn a_long_poll_after_an_erasure_still_ends_when_a_transition_arrives() {
    let app = Arc::new(spawn_app().await);
    let (kept, erased) = (new_sid(), new_sid());
    for sid in [&kept, &erased] {
        assert_eq!(
            app.post_callback(&callback(sid, "sent")).await.status(),
            200
        );
    }
    let after = last_seq(&feed(&app, "after=0&limit=1").await);
    let deleted = app
        .client
        .delete(format!("{}/v1/messages/{erased}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(deleted.status(), 204);

    let poll = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let started = Instant::now();
            (
                feed(&app, &format!("after={after}&wait=20")).await,
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrived = new_sid();
    assert_eq!(
        app.post_callback(&callback(&arrived, "sent"))
            .await
            .status(),
        200
    );
    let (page, waited) = poll.await.expect("the poll ran");
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["data"]["sid"], arrived.as_str());
    assert!(page["next"].as_u64().expect("next") > after);
    assert!(waited < Duration::from_secs(15), "took {waited:?}");
}
