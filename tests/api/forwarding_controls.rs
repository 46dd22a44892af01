//! Forwarding's controls: `STATUSHOOK_FORWARD_START` (where forwarding begins on a store
//! with history) and `STATUSHOOK_FORWARD_CONCURRENCY` (most deliveries in flight, measured
//! at the receiver).

use std::collections::BTreeSet;

use futures_util::future::join_all;
use statushook::domain::Timestamp;

use crate::support::binary::{post_to_binary, start_binary_with_env};
use crate::support::fixtures::{callback, new_sid, API_TOKEN};
use crate::support::receiver::{acknowledged, Receiver, Service};
use crate::support::spawn::{spawn_app_with, Settings};

/// Posts a `sent` callback for each of `sids` to the binary at `address`.
async fn post_all(address: &str, sids: &[String]) {
    let client = reqwest::Client::new();
    for sid in sids {
        let response = post_to_binary(&client, address, &callback(sid, "sent"))
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
    }
}

/// The SIDs the receiver was sent, once everything it reported so far is read.
async fn forwarded_sids(receiver: &mut Receiver) -> BTreeSet<String> {
    // Every delivery made so far is reported before the receiver acknowledges a command.
    receiver.command("delay 0").await;
    receiver
        .deliveries
        .iter()
        .map(|d| d.sid().to_owned())
        .collect()
}

/// A store with history: `old` callbacks stored by a service that did not forward.
async fn store_with_history(data: &std::path::Path, old: &[String]) {
    let (mut child, address) = start_binary_with_env(data, &[]).await;
    post_all(&address, old).await;
    child.kill().await.expect("stopped");
}

#[tokio::test]
async fn forwarding_enabled_on_a_store_with_history_sends_only_new_transitions_and_replay_the_rest()
{
    let data = tempfile::tempdir().expect("a temporary folder");
    let since = Timestamp::now().to_rfc3339();
    let old: Vec<String> = (0..5).map(|_| new_sid()).collect();
    store_with_history(data.path(), &old).await;

    let mut receiver = Receiver::start().await;
    let (_child, address) = start_binary_with_env(data.path(), &receiver.env()).await;
    let new: Vec<String> = (0..2).map(|_| new_sid()).collect();
    post_all(&address, &new).await;
    receiver
        .wait_until("the new transitions", |d| acknowledged(d).len() >= 2)
        .await;
    let service = Service::at(&address);
    service
        .forwarding_when("nothing left to send", |status| status["depth"] == 0)
        .await;
    let forwarded = forwarded_sids(&mut receiver).await;
    assert_eq!(
        forwarded,
        new.iter().cloned().collect(),
        "only what arrived once forwarding was on: {:?}",
        receiver.summary()
    );

    // The history is sent on request.
    let replay = service
        .client
        .post(format!("{address}/v1/forwarding/replay?since={since}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(replay.status(), 202);
    receiver
        .wait_until("the history, replayed", |d| {
            let sids: BTreeSet<&str> = d.iter().map(|d| d.sid()).collect();
            old.iter().all(|sid| sids.contains(sid.as_str()))
        })
        .await;
}

#[tokio::test]
async fn with_start_all_forwarding_enabled_on_a_store_with_history_sends_every_transition() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let old: Vec<String> = (0..5).map(|_| new_sid()).collect();
    store_with_history(data.path(), &old).await;

    let mut receiver = Receiver::start().await;
    let mut env = receiver.env();
    env.push(("STATUSHOOK_FORWARD_START", "all".into()));
    let (_child, address) = start_binary_with_env(data.path(), &env).await;
    let new: Vec<String> = (0..2).map(|_| new_sid()).collect();
    post_all(&address, &new).await;
    receiver
        .wait_until("every transition", |d| acknowledged(d).len() >= 7)
        .await;
    let forwarded = forwarded_sids(&mut receiver).await;
    let everything: BTreeSet<String> = old.iter().chain(&new).cloned().collect();
    assert_eq!(forwarded, everything, "{:?}", receiver.summary());
}

/// Forwards one transition of each of `messages` messages to a receiver that takes 400 ms
/// to answer each, with `env` added to the settings; answers the most deliveries the
/// receiver had in hand at once.
async fn most_in_flight(messages: usize, env: &[(&'static str, String)]) -> u64 {
    let mut receiver = Receiver::start().await;
    receiver.command("delay 400").await;
    let mut settings = receiver.env();
    settings.extend(env.iter().cloned());
    let app = spawn_app_with(Settings {
        env: settings,
        ..Settings::default()
    })
    .await;
    let sids: Vec<String> = (0..messages).map(|_| new_sid()).collect();
    let forms: Vec<_> = sids.iter().map(|sid| callback(sid, "sent")).collect();
    for response in join_all(forms.iter().map(|form| app.post_callback(form))).await {
        assert_eq!(response.status(), 200);
    }
    receiver
        .wait_until("every transition", |d| acknowledged(d).len() == messages)
        .await;
    receiver
        .deliveries
        .iter()
        .map(|d| d.in_flight)
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn never_more_forwards_are_in_flight_than_the_configured_concurrency() {
    let most = most_in_flight(24, &[("STATUSHOOK_FORWARD_CONCURRENCY", "4".into())]).await;
    assert!(most <= 4, "{most} deliveries in flight at once, 4 allowed");
    assert!(most >= 2, "the receiver saw deliveries overlap ({most})");
}

#[tokio::test]
async fn by_default_at_most_16_forwards_are_in_flight() {
    let most = most_in_flight(48, &[]).await;
    assert!(
        most <= 16,
        "{most} deliveries in flight at once, 16 allowed"
    );
    assert!(
        most > 4,
        "the receiver saw many deliveries overlap ({most})"
    );
}
