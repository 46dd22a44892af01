//! Forwarding: every stored transition reaches `STATUSHOOK_FORWARD_URL`, signed so that the
//! official `standardwebhooks` package verifies it, in order per message, retried until a
//! `2xx`, and nothing is lost across `kill -9` of the service.
//!
//! The receiver is `tests/forwarding/receiver.py` (see `support/receiver.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use statushook::domain::Timestamp;
use tokio::sync::Notify;

use crate::support::binary::{post_to_binary, refused_start, start_binary_with_env, stop};
use crate::support::fixtures::{callback, new_sid, API_TOKEN, AUTH_TOKEN, PUBLIC_URL};
use crate::support::metrics::metric;
use crate::support::receiver::{
    acknowledged, assert_in_order_per_message, first_acknowledgements, Receiver, Service,
};
use crate::support::spawn::{spawn_app, spawn_app_with, Settings, TestApp};

#[tokio::test]
async fn a_receiver_answering_500_gets_the_transition_again_until_it_answers_200() {
    let mut receiver = Receiver::start().await;
    receiver.command("fail 2").await;
    let app = spawn_app_with(Settings {
        env: receiver.env(),
        ..Settings::default()
    })
    .await;
    let sid = new_sid();
    assert_eq!(
        app.post_callback(&callback(&sid, "sent")).await.status(),
        200
    );
    receiver
        .wait_until("a 200", |d| d.iter().any(|d| d.answer == 200))
        .await;
    let answers: Vec<u16> = receiver.deliveries.iter().map(|d| d.answer).collect();
    assert_eq!(answers, [500, 500, 200]);
    let ids: HashSet<&str> = receiver.deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        HashSet::from([format!("{sid}_0").as_str()]),
        "the same webhook-id at every attempt: the SID and the transition's number"
    );

    let service = Service::of(&app);
    let status = service
        .forwarding_when("acknowledged", |s| s["depth"] == 0)
        .await;
    assert_eq!(status["last_error"]["error"], "answered 500");
    assert_eq!(status["deliveries"]["rejected"], 2);
    assert_eq!(status["deliveries"]["delivered"], 1);
    let metrics = service.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "statushook_forward_deliveries_total{outcome=\"rejected\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn a_failing_transition_holds_back_only_the_later_transitions_of_its_own_message() {
    let mut receiver = Receiver::start().await;
    receiver.command("fail-status scheduled 3").await;
    let app = spawn_app_with(Settings {
        env: receiver.env(),
        ..Settings::default()
    })
    .await;
    let (held, free) = (new_sid(), new_sid());
    for (sid, status) in [(&held, "scheduled"), (&held, "sent"), (&free, "sent")] {
        assert_eq!(
            app.post_callback(&callback(sid, status)).await.status(),
            200
        );
    }
    receiver
        .wait_until("both messages' last transitions", |d| {
            d.iter()
                .filter(|d| d.answer == 200 && d.status() == "sent")
                .count()
                == 2
        })
        .await;
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);
    assert_in_order_per_message(&receiver.deliveries);
    let position = |sid: &str, status: &str| {
        receiver
            .deliveries
            .iter()
            .position(|d| d.answer == 200 && d.sid() == sid && d.status() == status)
            .expect("acknowledged")
    };
    assert!(
        position(&free, "sent") < position(&held, "scheduled"),
        "the other message went ahead: {:?}",
        receiver.summary()
    );
    let held_answers: Vec<u16> = receiver
        .deliveries
        .iter()
        .filter(|d| d.status() == "scheduled")
        .map(|d| d.answer)
        .collect();
    assert_eq!(held_answers, [500, 500, 500, 200]);
}

#[tokio::test]
async fn only_the_configured_statuses_are_forwarded_and_the_rest_is_passed_over() {
    let mut receiver = Receiver::start().await;
    let mut env = receiver.env();
    env.push(("STATUSHOOK_FORWARD_STATUSES", "delivered,failed".into()));
    let app = spawn_app_with(Settings {
        env,
        ..Settings::default()
    })
    .await;
    let (a, b) = (new_sid(), new_sid());
    for (sid, status) in [
        (&a, "queued"),
        (&a, "sent"),
        (&a, "delivered"),
        (&b, "queued"),
        (&b, "failed"),
        (&b, "read"),
    ] {
        assert_eq!(
            app.post_callback(&callback(sid, status)).await.status(),
            200
        );
    }
    let service = Service::of(&app);
    let last = service.feed().await.keys().copied().max().expect("events");
    service
        .forwarding_when("the whole feed passed", |s| {
            s["cursor"].as_u64() >= Some(last) && s["depth"] == 0
        })
        .await;
    receiver
        .wait_until("two deliveries", |d| d.len() >= 2)
        .await;
    let forwarded: HashSet<(String, String)> = receiver
        .deliveries
        .iter()
        .map(|d| (d.sid().to_owned(), d.status().to_owned()))
        .collect();
    assert_eq!(
        forwarded,
        HashSet::from([
            (a.clone(), "delivered".to_owned()),
            (b.clone(), "failed".to_owned())
        ])
    );
    assert_eq!(receiver.deliveries.len(), 2);
}

#[tokio::test]
async fn a_replay_sends_a_time_range_again_with_the_same_webhook_ids() {
    let mut receiver = Receiver::start().await;
    let app = spawn_app_with(Settings {
        env: receiver.env(),
        ..Settings::default()
    })
    .await;
    let (before, inside) = (new_sid(), new_sid());
    for status in ["queued", "sent"] {
        assert_eq!(
            app.post_callback(&callback(&before, status)).await.status(),
            200
        );
    }
    receiver
        .wait_until("the first message", |d| acknowledged(d).len() == 2)
        .await;
    // The range starts after the first message's transitions, on a millisecond boundary.
    let since = Timestamp(Timestamp::now().0 + 1000);
    tokio::time::sleep(Duration::from_millis(5)).await;
    for status in ["queued", "sent", "delivered"] {
        assert_eq!(
            app.post_callback(&callback(&inside, status)).await.status(),
            200
        );
    }
    receiver
        .wait_until("the second message", |d| acknowledged(d).len() == 5)
        .await;

    let response = app
        .client
        .post(format!(
            "{}/v1/forwarding/replay?since={}",
            app.address,
            since.to_rfc3339()
        ))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 202);
    receiver.wait_until("the replay", |d| d.len() == 8).await;
    let service = Service::of(&app);
    service
        .forwarding_when("the replay finished", |s| {
            s["replay"].is_null() && s["depth"] == 0
        })
        .await;
    let (first, replayed) = receiver.deliveries.split_at(5);
    assert!(replayed
        .iter()
        .all(|d| d.sid() == inside && d.answer == 200));
    let originals: HashMap<&str, &Value> = first.iter().map(|d| (d.id.as_str(), &d.body)).collect();
    for delivery in replayed {
        assert_eq!(
            Some(&&delivery.body),
            originals.get(delivery.id.as_str()),
            "a replay repeats the original id and body"
        );
    }
    assert_eq!(receiver.deliveries.len(), 8, "{:?}", receiver.summary());
}

#[tokio::test]
async fn replay_parameters_are_checked_and_forwarding_off_is_reported() {
    let receiver = Receiver::start().await;
    let app = spawn_app_with(Settings {
        env: receiver.env(),
        ..Settings::default()
    })
    .await;
    let post = |app: &TestApp, query: &str| {
        app.client
            .post(format!("{}/v1/forwarding/replay?{query}", app.address))
            .bearer_auth(API_TOKEN)
            .send()
    };
    for (query, parameter) in [
        ("", "since"),
        ("since=yesterday", "since"),
        (
            "since=2026-01-01T00:00:00Z&until=2025-01-01T00:00:00Z",
            "until",
        ),
        ("since=2026-01-01T00:00:00Z&from=1", "from"),
    ] {
        let response = post(&app, query).await.expect("answered");
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("JSON");
        let error = body["error"].as_str().expect("an error");
        assert!(error.starts_with(parameter), "{query}: {error}");
    }
    let status = app.get_authorized("/v1/forwarding").await;
    assert_eq!(status.status(), 200);
    let status: Value = status.json().await.expect("JSON");
    assert_eq!(status["enabled"], true);
    assert_eq!(status["url"], receiver.url.as_str());
    assert_eq!(app.get("/v1/forwarding").await.status(), 401);

    let off = spawn_app().await;
    let status: Value = off
        .get_authorized("/v1/forwarding")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(status, serde_json::json!({"enabled": false}));
    let response = post(&off, "since=2026-01-01T00:00:00Z")
        .await
        .expect("answered");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("STATUSHOOK_FORWARD_URL")));
}

#[tokio::test]
async fn a_forward_url_without_its_secret_stops_start_up_naming_the_secret() {
    // Nothing else reaches the binary: no STATUSHOOK_FORWARD_SECRET.
    let output = refused_start(&[
        ("STATUSHOOK_LISTEN", "127.0.0.1:0".into()),
        ("STATUSHOOK_PUBLIC_URL", PUBLIC_URL.into()),
        ("STATUSHOOK_API_TOKEN", API_TOKEN.into()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.into()),
        (
            "STATUSHOOK_FORWARD_URL",
            "https://sink.example.com/hooks".into(),
        ),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("STATUSHOOK_FORWARD_SECRET"), "{stderr}");
}

/// Posts `queued`, `sent`, `delivered` for fresh messages from several senders until told
/// to stop; answers the (sid, status) pairs acknowledged with `200`.
fn post_until_stopped(
    address: &str,
    stop: &Arc<AtomicBool>,
    enough: &Arc<Notify>,
    count_to: usize,
) -> Vec<tokio::task::JoinHandle<Vec<(String, String)>>> {
    let count = Arc::new(AtomicUsize::new(0));
    (0..4)
        .map(|_| {
            let (address, stop, enough, count) = (
                address.to_owned(),
                stop.clone(),
                enough.clone(),
                count.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                'messages: while !stop.load(Ordering::Relaxed) {
                    let sid = new_sid();
                    for status in ["queued", "sent", "delivered"] {
                        match post_to_binary(&client, &address, &callback(&sid, status)).await {
                            Ok(response) if response.status() == 200 => {
                                acknowledged.push((sid.clone(), status.to_owned()));
                                if count.fetch_add(1, Ordering::Relaxed) + 1 == count_to {
                                    enough.notify_one();
                                }
                            }
                            // Killed mid-request: this one was never acknowledged.
                            _ => break 'messages,
                        }
                    }
                }
                acknowledged
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_transition_is_lost_when_the_service_is_killed_with_sigkill_mid_forwarding() {
    let mut receiver = Receiver::start().await;
    // A slow receiver, so that deliveries are in flight and waiting when the kill comes.
    receiver.command("delay 20").await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let (mut child, address) = start_binary_with_env(data.path(), &receiver.env()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(Notify::new());
    let senders = post_until_stopped(&address, &stop, &enough, 600);
    enough.notified().await;
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the child is reaped");
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    for sender in senders {
        let pairs = sender.await.expect("the sender ran");
        acknowledged.lock().expect("lock").extend(pairs);
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= 600,
        "{} acknowledged",
        acknowledged.len()
    );

    let (_child, _address) = start_binary_with_env(data.path(), &receiver.env()).await;
    receiver
        .wait_until("every acknowledged callback forwarded", |d| {
            let forwarded: HashSet<(String, String)> = d
                .iter()
                .filter(|d| d.answer == 200)
                .map(|d| (d.sid().to_owned(), d.status().to_owned()))
                .collect();
            acknowledged.is_subset(&forwarded)
        })
        .await;
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);

    // Repeats after the crash carry the same id and body, so de-duplicating by webhook-id
    // leaves each transition once; and per message the first acknowledgements are in order.
    let first_acks = first_acknowledgements(&receiver.deliveries);
    assert_in_order_per_message(&first_acks);
}

#[tokio::test]
async fn a_clean_restart_sends_nothing_twice() {
    let mut receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let (child, address) = start_binary_with_env(data.path(), &receiver.env()).await;
    let client = reqwest::Client::new();
    // A burst, and SIGTERM as soon as the receiver has it: the last acknowledgements come
    // after the last periodic save of the progress, so only the save at stop covers them.
    let sids: Vec<String> = (0..40).map(|_| new_sid()).collect();
    let forms: Vec<_> = sids.iter().map(|sid| callback(sid, "sent")).collect();
    let posts = forms
        .iter()
        .map(|form| post_to_binary(&client, &address, form));
    for response in join_all(posts).await {
        assert_eq!(response.expect("answered").status(), 200);
    }
    receiver
        .wait_until("the burst", |d| acknowledged(d).len() == 40)
        .await;
    stop(child).await;

    let (_child, address) = start_binary_with_env(data.path(), &receiver.env()).await;
    let response = post_to_binary(&client, &address, &callback(&sids[0], "delivered"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    receiver
        .wait_until("one more transition", |d| acknowledged(d).len() == 41)
        .await;
    let service = Service::at(&address);
    service
        .forwarding_when("the queue drained", |s| s["depth"] == 0)
        .await;
    assert_eq!(
        receiver.deliveries.len(),
        41,
        "nothing sent twice: {:?}",
        receiver.summary()
    );
}
