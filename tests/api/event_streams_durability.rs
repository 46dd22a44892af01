//! Event Streams batches are durable as a whole: a batch answered `200` survives `kill -9`
//! of the process whole, and a batch whose write fails is answered `503` with nothing of it
//! stored.
//!
//! The write is made to fail the way each store fails: with sled, the store's files are
//! limited in size (as on a full disk), so a group's write fails, the service answers
//! `503` and exits, and a restart shows what was stored; with PostgreSQL, a trigger refuses
//! the insert of one marked event of the batch, which fails the batch's transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::support::binary::{
    get_from_binary, post_events_to_binary, start_binary, start_binary_with_file_limit,
    start_sled_binary,
};
use crate::support::database::{database_for, testing_postgres};
use crate::support::fixtures::new_sid;
use crate::support::streams::{new_event_id, status_event};

/// A batch of `size` events: each of its messages gets `queued`, `sent` and `delivered`.
/// Answers the body and, by SID, the ids of the message's events.
fn batch(size: usize) -> (String, HashMap<String, Vec<String>>) {
    let mut events = Vec::with_capacity(size);
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    let mut sid = new_sid();
    for n in 0..size {
        if n % 3 == 0 {
            sid = new_sid();
        }
        let status = ["queued", "sent", "delivered"][n % 3];
        let id = new_event_id();
        events.push(status_event(&id, &sid, status, None));
        ids.entry(sid.clone()).or_default().push(id);
    }
    (Value::Array(events).to_string(), ids)
}

/// The ids of the events stored for `sid` at a binary, or `None` if it is not stored.
async fn stored_ids(client: &reqwest::Client, address: &str, sid: &str) -> Option<Vec<String>> {
    let response = get_from_binary(client, address, sid).await;
    match response.status().as_u16() {
        404 => None,
        200 => {
            let message: Value = response.json().await.expect("a message");
            Some(
                message["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .map(|event| {
                        event["params"]["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect(),
            )
        }
        other => panic!("GET {sid}: {other}"),
    }
}

#[tokio::test]
async fn every_batch_acknowledged_survives_kill_9_whole() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (mut child, address) = start_binary(data.path()).await;
    let acknowledged = Arc::new(Mutex::new(HashMap::<String, Vec<String>>::new()));
    let events = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(Notify::new());
    let mut senders = Vec::new();
    for sender in 0..6 {
        let (acknowledged, events, stop, enough, address) = (
            acknowledged.clone(),
            events.clone(),
            stop.clone(),
            enough.clone(),
            address.clone(),
        );
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let size = [1, 10, 50][sender % 3];
            while !stop.load(Ordering::Relaxed) {
                let (body, ids) = batch(size);
                match post_events_to_binary(&client, &address, &body).await {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.lock().expect("lock").extend(ids);
                        if events.fetch_add(size, Ordering::Relaxed) + size >= 3000 {
                            enough.notify_one();
                        }
                    }
                    // Killed mid-request: this batch was never acknowledged.
                    _ => break,
                }
            }
        }));
    }

    enough.notified().await;
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the child is reaped");
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender finishes");
    }

    let acknowledged = acknowledged.lock().expect("lock").clone();
    let (_child, address) = start_binary(data.path()).await;
    let client = reqwest::Client::new();
    let mut lost = Vec::new();
    for (sid, ids) in &acknowledged {
        if stored_ids(&client, &address, sid).await.as_ref() != Some(ids) {
            lost.push(sid.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost events, among them {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test]
async fn a_batch_whose_write_fails_is_answered_503_and_nothing_of_it_is_stored() {
    if testing_postgres() {
        a_batch_refused_by_postgresql_stores_nothing().await;
    } else {
        a_batch_meeting_a_full_disk_stores_nothing().await;
    }
}

/// sled, its files limited: batches until one is refused, then a restart without the
/// limit, where every acknowledged batch is whole and nothing of the refused one is there.
async fn a_batch_meeting_a_full_disk_stores_nothing() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (mut child, address) = start_binary_with_file_limit(data.path(), 3000).await;
    let client = reqwest::Client::new();
    let mut acknowledged = HashMap::new();
    let mut refused = None;
    for _ in 0..20_000 {
        let (body, ids) = batch(50);
        let response = post_events_to_binary(&client, &address, &body)
            .await
            .expect("answered");
        match response.status().as_u16() {
            200 => acknowledged.extend(ids),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refused = Some(ids);
                break;
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    let refused = refused.expect("the store filled up and refused a batch");
    assert!(!acknowledged.is_empty());
    let exited = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("the service exits after a storage error")
        .expect("reaped");
    assert!(!exited.success());

    let (_child, address) = start_sled_binary(data.path()).await;
    for sid in refused.keys() {
        assert_eq!(
            stored_ids(&client, &address, sid).await,
            None,
            "{sid} of the refused batch is stored"
        );
    }
    for (sid, ids) in &acknowledged {
        assert_eq!(
            stored_ids(&client, &address, sid).await.as_ref(),
            Some(ids),
            "{sid}"
        );
    }
}

/// PostgreSQL: a trigger fails the insert of the batch's last event, marked in its tags;
/// the batch is answered `503`, and none of its events is stored, not even those before
/// the marked one. The same batch without the mark is then stored whole.
async fn a_batch_refused_by_postgresql_stores_nothing() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (_child, address) = start_binary(data.path()).await;
    let client = reqwest::Client::new();
    // The first request makes the service apply its migrations; the trigger comes after.
    let (body, _) = batch(3);
    let response = post_events_to_binary(&client, &address, &body)
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let database = database_for(data.path()).await;
    let (db, connection) = crate::support::database::connect_sql(&database)
        .await
        .expect("the test database answers");
    let driver = tokio::spawn(connection);
    db.batch_execute(
        "CREATE FUNCTION statushook.refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.params::text LIKE '%refuse-this-event%' THEN
                 RAISE EXCEPTION 'a fault injected by the test';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_marked BEFORE INSERT ON statushook.events
             FOR EACH ROW EXECUTE FUNCTION statushook.refuse_marked();",
    )
    .await
    .expect("the trigger is installed");

    let (body, ids) = batch(50);
    let mut events: Vec<Value> = serde_json::from_str(&body).expect("a batch");
    let last = events.last_mut().expect("50 events");
    last["data"]["tags"] = json!({"test": "refuse-this-event"});
    let marked = Value::Array(events.clone()).to_string();
    let response = post_events_to_binary(&client, &address, &marked)
        .await
        .expect("answered");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    for sid in ids.keys() {
        assert_eq!(
            stored_ids(&client, &address, sid).await,
            None,
            "{sid} of the refused batch is stored"
        );
    }

    // Twilio retries; this time the write succeeds, and the batch is stored whole.
    db.batch_execute("DROP TRIGGER refuse_marked ON statushook.events")
        .await
        .expect("the trigger is dropped");
    let response = post_events_to_binary(&client, &address, &marked)
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    for (sid, ids) in &ids {
        assert_eq!(
            stored_ids(&client, &address, sid).await.as_ref(),
            Some(ids),
            "{sid}"
        );
    }
    drop(db);
    let _ = driver.await;
}
