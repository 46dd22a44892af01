//! `GET /v1/events`: every stored transition once, in commit order, with the message's
//! state right after it; resumable from any `next`, also across a crash.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::binary::{post_to_binary, start_binary};
use crate::support::fixtures::{callback, new_sid, with, API_TOKEN};
use crate::support::spawn::{spawn_app, TestApp};

/// Reads the feed from `after` to its end in pages of `limit`; answers the events and the
/// last `next`.
async fn read_feed(
    get: impl Fn(String) -> futures_util::future::BoxFuture<'static, Value>,
    after: u64,
    limit: usize,
) -> (Vec<Value>, u64) {
    let mut events = Vec::new();
    let mut next = after;
    loop {
        let page = get(format!("/v1/events?after={next}&limit={limit}")).await;
        let batch = page["events"].as_array().expect("events").clone();
        let new_next = page["next"].as_u64().expect("next");
        if batch.is_empty() {
            assert_eq!(new_next, next, "an empty page keeps next where it was");
            return (events, next);
        }
        assert_eq!(Some(new_next), batch.last().and_then(|e| e["seq"].as_u64()));
        next = new_next;
        events.extend(batch);
    }
}

fn getter(
    app: &Arc<TestApp>,
) -> impl Fn(String) -> futures_util::future::BoxFuture<'static, Value> {
    let app = app.clone();
    move |path| {
        let app = app.clone();
        Box::pin(async move { app.json(&path).await })
    }
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn the_feed_has_every_transition_once_in_order_with_the_state_after_it() {
    let app = Arc::new(spawn_app().await);
    let sid = new_sid();
    // Out of order and with a duplicate: the late `sent` is stored but does not move the
    // status; the repeated `delivered` is no transition at all.
    for status in ["queued", "delivered", "sent", "delivered"] {
        let form = with(callback(&sid, status), "RawDlrDoneDate", "2611260901");
        assert_eq!(app.post_callback(&form).await.status(), 200);
    }
    let (events, next) = read_feed(getter(&app), 0, 2).await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["data"]["event"]["status"].as_str().expect("event status"),
                e["data"]["status"].as_str().expect("status after"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("queued", "queued"),
            ("delivered", "delivered"),
            ("sent", "delivered")
        ]
    );
    let seqs = seqs(&events);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(next, *seqs.last().expect("three"));
    for event in &events {
        assert_eq!(event["type"], "message.status");
        assert_eq!(event["data"]["sid"], sid.as_str());
        assert_eq!(event["data"]["event"]["params"]["MessageSid"], sid.as_str());
        assert!(event["data"].get("events").is_none());
    }
    // Resuming from the middle gives exactly the rest.
    let (rest, _) = read_feed(getter(&app), seqs[0], 10).await;
    assert_eq!(self::seqs(&rest), seqs[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_reading_while_callbacks_arrive_sees_each_acknowledged_one_exactly_once() {
    let app = Arc::new(spawn_app().await);
    let sids: Vec<String> = (0..400).map(|_| new_sid()).collect();
    let writers = {
        let app = app.clone();
        let sids = sids.clone();
        tokio::spawn(async move {
            for chunk in sids.chunks(25) {
                for status in ["queued", "sent", "delivered"] {
                    let forms: Vec<_> = chunk.iter().map(|sid| callback(sid, status)).collect();
                    let posts = forms.iter().map(|form| app.post_callback(form));
                    for response in join_all(posts).await {
                        assert_eq!(response.status(), 200);
                    }
                }
            }
        })
    };
    // The consumer long-polls with small pages while the writers run.
    let get = getter(&app);
    let mut seen = Vec::new();
    let mut next = 0;
    while seen.len() < sids.len() * 3 {
        let page = get(format!("/v1/events?after={next}&limit=7&wait=5")).await;
        let batch = page["events"].as_array().expect("events").clone();
        assert!(
            !batch.is_empty(),
            "a long poll returns once something arrives"
        );
        next = page["next"].as_u64().expect("next");
        seen.extend(batch);
    }
    writers.await.expect("the writers ran");
    let (rest, _) = read_feed(get, next, 100).await;
    assert!(
        rest.is_empty(),
        "nothing beyond the acknowledged callbacks: {rest:?}"
    );
    let seqs = seqs(&seen);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in commit order, each once"
    );
    let pairs: HashSet<(String, String)> = seen
        .iter()
        .map(|e| {
            (
                e["data"]["sid"].as_str().expect("sid").to_owned(),
                e["data"]["event"]["status"]
                    .as_str()
                    .expect("status")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), sids.len() * 3);
    for sid in &sids {
        for status in ["queued", "sent", "delivered"] {
            assert!(
                pairs.contains(&(sid.clone(), status.to_owned())),
                "{sid} {status}"
            );
        }
    }
}

#[tokio::test]
async fn a_long_poll_is_answered_when_a_transition_arrives() {
    let app = Arc::new(spawn_app().await);
    let get = getter(&app);
    let poll = tokio::spawn(get("/v1/events?after=0&wait=30".into()));
    tokio::task::yield_now().await;
    let sid = new_sid();
    assert_eq!(
        app.post_callback(&callback(&sid, "sent")).await.status(),
        200
    );
    let page = tokio::time::timeout(std::time::Duration::from_secs(20), poll)
        .await
        .expect("answered before the wait ran out")
        .expect("the poll ran");
    assert_eq!(page["events"][0]["data"]["sid"], sid.as_str());
}

#[tokio::test]
async fn feed_parameters_are_checked() {
    let app = spawn_app().await;
    for (query, parameter) in [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("wait=31", "wait"),
        ("wait=1.5", "wait"),
        ("since=1", "since"),
    ] {
        let response = app.get_authorized(&format!("/v1/events?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("JSON");
        let error = body["error"].as_str().expect("an error");
        assert!(error.starts_with(parameter), "{query}: {error}");
    }
    assert_eq!(app.get("/v1/events").await.status(), 401);
}

#[tokio::test]
async fn the_feed_resumes_from_any_next_across_a_kill_and_restart() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let client = reqwest::Client::new();
    let feed = |address: String, after: u64| {
        let client = client.clone();
        async move {
            let mut events = Vec::new();
            let mut next = after;
            loop {
                let page: Value = client
                    .get(format!("{address}/v1/events?after={next}&limit=5"))
                    .bearer_auth(API_TOKEN)
                    .send()
                    .await
                    .expect("answered")
                    .json()
                    .await
                    .expect("JSON");
                let batch = page["events"].as_array().expect("events").clone();
                if batch.is_empty() {
                    return events;
                }
                next = page["next"].as_u64().expect("next");
                events.extend(batch.iter().map(|e| e["seq"].as_u64().expect("seq")));
            }
        }
    };
    let (mut child, address) = start_binary(data.path()).await;
    for n in 0..30 {
        let status = ["queued", "sent", "delivered"][n % 3];
        let sid = format!("SM{:032x}", 0xfeed_0000u64 + n as u64 / 3);
        let response = post_to_binary(&client, &address, &callback(&sid, status))
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
    }
    let before = feed(address.clone(), 0).await;
    assert_eq!(before.len(), 30);
    child.start_kill().expect("killed");
    child.wait().await.expect("reaped");

    let (_child, address) = start_binary(data.path()).await;
    let after = feed(address.clone(), 0).await;
    assert_eq!(
        after, before,
        "the feed is the same after a kill -9 and a restart"
    );
    for (i, resume) in before.iter().enumerate().step_by(7) {
        assert_eq!(
            feed(address.clone(), *resume).await,
            before[i + 1..],
            "resumed at {resume}"
        );
    }
    // New transitions come after everything from before the restart.
    let sid = format!("SM{:032x}", 0xfeed_ffffu64);
    post_to_binary(&client, &address, &callback(&sid, "sent"))
        .await
        .expect("answered");
    let last = feed(address, *before.last().expect("thirty")).await;
    assert_eq!(last.len(), 1);
    assert!(last[0] > *before.last().expect("thirty"));
}
