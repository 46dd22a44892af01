//! Moving a sled store to PostgreSQL (`statushook export --state`, then `statushook import
//! --state`) keeps the change feed and forwarding going: a consumer of `GET /v1/events`
//! resumes from its old `next` and misses and repeats nothing, and forwarding sends only
//! what the receiver had not acknowledged, under the `webhook-id`s sled used.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::support::binary::{
    get_json, post_to_binary, run, start_replica, start_sled_binary_with_env, stop,
};
use crate::support::database::fresh_database;
use crate::support::fixtures::{callback, new_sid, API_TOKEN};
use crate::support::receiver::{Receiver, Service, SHORT_RETRIES};

async fn post(client: &reqwest::Client, address: &str, sid: &str, status: &str) {
    let response = post_to_binary(client, address, &callback(sid, status))
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "{sid} {status}");
}

/// A consumer of the change feed: the transitions it has read, by (SID, status), and the
/// `next` it resumes from.
struct Consumer {
    next: u64,
    read: Vec<(String, String)>,
}

impl Consumer {
    fn new() -> Consumer {
        Consumer {
            next: 0,
            read: Vec::new(),
        }
    }

    /// Reads at most `limit` transitions (all there are, without a limit) from `address`.
    async fn read(&mut self, client: &reqwest::Client, address: &str, limit: Option<usize>) {
        let mut left = limit.unwrap_or(usize::MAX);
        while left > 0 {
            let page = left.min(7);
            let url = format!("{address}/v1/events?after={}&limit={page}", self.next);
            let answer = get_json(client, &url).await;
            let events = answer["events"].as_array().expect("events");
            for event in events {
                let sid = event["data"]["sid"].as_str().expect("a sid").to_owned();
                let status = event["data"]["event"]["status"].as_str().expect("a status");
                self.read.push((sid, status.to_owned()));
            }
            self.next = answer["next"].as_u64().expect("next");
            left -= events.len();
            if events.len() < page {
                return;
            }
        }
    }
}

/// Every transition of the store at `address`, by (SID, status), from its messages.
async fn stored(client: &reqwest::Client, address: &str, sids: &[String]) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for sid in sids {
        let url = format!("{address}/v1/messages/{sid}");
        let response = client
            .get(&url)
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("answered");
        if response.status() == 404 {
            continue;
        }
        let message: Value = response.json().await.expect("JSON");
        for event in message["events"].as_array().expect("events") {
            let status = event["status"].as_str().expect("a status");
            all.push((sid.clone(), status.to_owned()));
        }
    }
    all.sort();
    all
}

/// `statushook export --state` of the stopped sled store in `data`, then `statushook import
/// --state` into `database`.
fn move_store(data: &Path, database: &str) {
    let work = tempfile::tempdir().expect("a temporary folder");
    let (export, state) = (work.path().join("export.jsonl"), work.path().join("state"));
    let [data, export, state] = [data, &export, &state].map(|p| p.to_str().expect("UTF-8"));
    let (ok, out, err) = run(
        &[
            "export",
            "--data-dir",
            data,
            "--output",
            export,
            "--state",
            state,
        ],
        &[],
    );
    assert!(ok, "export: {out}{err}");
    let (ok, out, err) = run(
        &[
            "import",
            export,
            "--database-url",
            database,
            "--state",
            state,
        ],
        &[],
    );
    assert!(ok, "import: {out}{err}");
}

fn sorted(mut read: Vec<(String, String)>) -> Vec<(String, String)> {
    read.sort();
    read
}

#[tokio::test]
async fn a_feed_consumer_resumes_from_its_old_next_after_a_move_to_postgresql() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (sled, address) = start_sled_binary_with_env(data.path(), &[]).await;
    let client = reqwest::Client::new();
    let mut sids = Vec::new();
    for _ in 0..30 {
        let sid = new_sid();
        for status in ["queued", "sent", "delivered"] {
            post(&client, &address, &sid, status).await;
        }
        sids.push(sid);
    }
    // One consumer has read half the feed, another all of it; then the newest message is
    // erased, so the second one's `next` lies past every event that is left.
    let mut halfway = Consumer::new();
    halfway.read(&client, &address, Some(45)).await;
    assert_eq!(halfway.read.len(), 45);
    let mut up_to_date = Consumer::new();
    up_to_date.read(&client, &address, None).await;
    assert_eq!(up_to_date.read.len(), 90);
    let erased = sids.pop().expect("a message");
    let response = client
        .delete(format!("{address}/v1/messages/{erased}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 204);
    stop(sled).await;

    let database = fresh_database().await;
    move_store(data.path(), &database);
    let (postgres, address) = start_replica(&database, &[]).await;
    let later = new_sid();
    for status in ["queued", "sent"] {
        post(&client, &address, &later, status).await;
    }
    sids.push(later.clone());

    halfway.read(&client, &address, None).await;
    let everything = stored(&client, &address, &sids).await;
    assert_eq!(everything.len(), 29 * 3 + 2);
    let distinct: HashSet<&(String, String)> = halfway.read.iter().collect();
    assert_eq!(distinct.len(), halfway.read.len(), "nothing read twice");
    let unread: Vec<&(String, String)> = everything
        .iter()
        .filter(|event| !distinct.contains(event))
        .collect();
    assert!(unread.is_empty(), "missed after the move: {unread:?}");

    let before = up_to_date.read.len();
    up_to_date.read(&client, &address, None).await;
    assert_eq!(
        sorted(up_to_date.read[before..].to_vec()),
        [
            (later.clone(), "queued".to_owned()),
            (later.clone(), "sent".to_owned())
        ],
        "a consumer whose next lies past the last event exported reads what came after"
    );
    stop(postgres).await;
}

#[tokio::test]
async fn forwarding_after_a_move_to_postgresql_sends_only_what_was_not_acknowledged_with_sled_ids()
{
    let mut receiver = Receiver::start().await;
    // The receiver acknowledges every transition but the `delivered` ones, which sled
    // keeps trying.
    receiver.command("fail-status delivered 1000000").await;
    let data = tempfile::tempdir().expect("a temporary folder");
    let mut env = receiver.forwarding_to("/sled");
    env.extend(SHORT_RETRIES.map(|(name, value)| (name, value.to_owned())));
    let (sled, address) = start_sled_binary_with_env(data.path(), &env).await;
    let client = reqwest::Client::new();
    let mut sids = Vec::new();
    for _ in 0..20 {
        let sid = new_sid();
        for status in ["queued", "sent", "delivered"] {
            post(&client, &address, &sid, status).await;
        }
        sids.push(sid);
    }
    let at_sled = |d: &[crate::support::receiver::Delivery]| -> Vec<_> {
        d.iter().filter(|d| d.path == "/sled").cloned().collect()
    };
    receiver
        .wait_until("sled's first round", |d| {
            let sled = at_sled(d);
            let acked = sled.iter().filter(|d| d.answer == 200).count();
            let tried: HashSet<&str> = sled
                .iter()
                .filter(|d| d.answer != 200)
                .map(|d| d.id.as_str())
                .collect();
            acked == 40 && tried.len() == 20
        })
        .await;
    stop(sled).await;
    receiver.command("fail-status delivered 0").await;
    let from_sled = at_sled(&receiver.deliveries);
    let acknowledged: HashSet<String> = from_sled
        .iter()
        .filter(|d| d.answer == 200)
        .map(|d| d.id.clone())
        .collect();
    let refused: HashSet<String> = from_sled
        .iter()
        .filter(|d| d.answer != 200)
        .map(|d| d.id.clone())
        .collect();
    assert!(from_sled
        .iter()
        .all(|d| (d.answer == 200) == (d.status() != "delivered")));

    let database = fresh_database().await;
    move_store(data.path(), &database);
    let mut env = receiver.forwarding_to("/postgres");
    env.extend(SHORT_RETRIES.map(|(name, value)| (name, value.to_owned())));
    let (postgres, address) = start_replica(&database, &env).await;
    let service = Service::at(&address);
    receiver
        .wait_until("the delivered transitions", |d| {
            d.iter()
                .filter(|d| d.path == "/postgres" && d.answer == 200)
                .count()
                >= 20
        })
        .await;
    service
        .forwarding_when("nothing waiting", |s| s["depth"] == 0)
        .await;
    // Every delivery reported before the command's answer is read.
    receiver.command("delay 0").await;
    let from_postgres: Vec<_> = receiver
        .deliveries
        .iter()
        .filter(|d| d.path == "/postgres")
        .collect();
    let sent: BTreeMap<&str, &str> = from_postgres
        .iter()
        .map(|d| (d.id.as_str(), d.status()))
        .collect();
    assert_eq!(sent.len(), from_postgres.len(), "each sent once: {sent:?}");
    let ids: HashSet<String> = sent.keys().map(|id| (*id).to_owned()).collect();
    assert_eq!(
        ids, refused,
        "exactly what the receiver had not acknowledged, under sled's ids"
    );
    assert!(ids.is_disjoint(&acknowledged));
    let expected: HashSet<String> = sids.iter().map(|sid| format!("{sid}_2")).collect();
    assert_eq!(ids, expected, "each message's third transition: {sent:?}");
    stop(postgres).await;
}
