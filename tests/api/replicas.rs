//! Several replicas on one PostgreSQL database: real `serve` processes (and, for the
//! change feed, two stores in this process) sharing nothing but the database. These run
//! whenever the tests run, against the server `scripts/pg` starts (scripts/test does).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use statushook::domain::{Source, StatusEvent};
use statushook::store::Recorded;
use tokio::process::Child;
use tokio::sync::Notify;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::binary::{get_from_binary, get_json, post_to_binary, start_replica};
use crate::support::database::{fresh_database, open_postgres};
use crate::support::fixtures::{callback, new_sid, permutations, ACCOUNT_SID};
use crate::support::metrics::{metric, scrape};
use crate::support::poll::eventually;

/// Starts `count` replicas on one fresh database; answers the database and the replicas.
async fn replicas(count: usize) -> (String, Vec<(Child, String)>) {
    let database = fresh_database().await;
    let mut started = Vec::new();
    for _ in 0..count {
        started.push(start_replica(&database, &[]).await);
    }
    (database, started)
}

async fn post(client: &reqwest::Client, address: &str, sid: &str, status: &str) -> u16 {
    post_to_binary(client, address, &callback(sid, status))
        .await
        .map_or(0, |response| response.status().as_u16())
}

async fn message(client: &reqwest::Client, address: &str, sid: &str) -> Value {
    let response = get_from_binary(client, address, sid).await;
    assert_eq!(response.status(), 200, "{sid} should be stored");
    response.json().await.expect("a JSON message")
}

#[tokio::test]
async fn one_message_raced_across_replicas_in_every_order_ends_in_its_highest_status_once_each() {
    let (_database, replicas) = replicas(2).await;
    let (a, b) = (&replicas[0].1, &replicas[1].1);
    let client = reqwest::Client::new();
    let orders = permutations(&["queued", "sent", "delivered", "read"]);
    assert_eq!(orders.len(), 24);
    let sids: Vec<(String, Vec<&str>)> = orders.iter().map(|o| (new_sid(), o.clone())).collect();
    // Every order at once, each callback posted to both replicas at the same moment (so
    // the two race on the same message and on the same duplicate).
    join_all(sids.iter().map(|(sid, order)| {
        let client = client.clone();
        async move {
            for (i, status) in order.iter().enumerate() {
                let (first, second) = if i % 2 == 0 { (a, b) } else { (b, a) };
                let answers = tokio::join!(
                    post(&client, first, sid, status),
                    post(&client, second, sid, status)
                );
                assert_eq!(answers, (200, 200), "{sid} {status}");
            }
        }
    }))
    .await;
    // And every order fired at once: all four statuses and their duplicates in flight
    // together, spread over both replicas.
    let raced: Vec<(String, Vec<&str>)> = orders.iter().map(|o| (new_sid(), o.clone())).collect();
    join_all(raced.iter().flat_map(|(sid, order)| {
        let client = client.clone();
        order.iter().enumerate().flat_map(move |(i, status)| {
            let client = client.clone();
            [(i % 2, *status), ((i + 1) % 2, *status)].map(move |(replica, status)| {
                let (client, sid) = (client.clone(), sid.clone());
                let address = if replica == 0 { a } else { b };
                async move { assert_eq!(post(&client, address, &sid, status).await, 200) }
            })
        })
    }))
    .await;
    for (sid, order) in &raced {
        let stored = message(&client, b, sid).await;
        assert_eq!(stored["status"], "read", "{sid} raced {order:?}");
        let mut statuses: Vec<&str> = stored["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["status"].as_str().expect("status"))
            .collect();
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            ["delivered", "queued", "read", "sent"],
            "{sid}: each once"
        );
    }
    for (sid, order) in &sids {
        for address in [a, b] {
            let stored = message(&client, address, sid).await;
            assert_eq!(stored["status"], "read", "{sid} after {order:?}");
            let events = stored["events"].as_array().expect("events");
            let statuses: Vec<&str> = events
                .iter()
                .map(|e| e["status"].as_str().expect("status"))
                .collect();
            assert_eq!(
                statuses, *order,
                "{sid}: each callback once, in arrival order"
            );
            let times: Vec<&str> = events
                .iter()
                .map(|e| e["received_at"].as_str().expect("time"))
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] <= w[1]),
                "{sid}: arrival times go back: {times:?}"
            );
            assert_eq!(
                stored["updated_at"],
                events.last().expect("an event")["received_at"]
            );
        }
    }
}

#[tokio::test]
async fn a_replica_killed_under_load_loses_nothing_it_acknowledged() {
    let (_database, mut replicas) = replicas(2).await;
    let survivor = replicas[1].1.clone();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(Notify::new());
    let mut senders = Vec::new();
    for i in 0..8 {
        let address = replicas[i % 2].1.clone();
        let (acknowledged, count, stop, enough) = (
            acknowledged.clone(),
            count.clone(),
            stop.clone(),
            enough.clone(),
        );
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let sid = new_sid();
                let answered = post(&client, &address, &sid, "delivered").await;
                if answered != 200 {
                    // The replica was killed mid-request: never acknowledged.
                    break;
                }
                acknowledged.lock().expect("lock").push(sid);
                if count.fetch_add(1, Ordering::Relaxed) + 1 == 600 {
                    enough.notify_one();
                }
            }
        }));
    }
    enough.notified().await;
    let victim = &mut replicas[0].0;
    victim.start_kill().expect("SIGKILL is sent");
    victim.wait().await.expect("the replica is reaped");
    // The survivor keeps taking callbacks a little longer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender finishes");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let client = reqwest::Client::new();
    let mut missing = Vec::new();
    for sid in &acknowledged {
        if get_from_binary(&client, &survivor, sid).await.status() != 200 {
            missing.push(sid.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged callbacks lost",
        missing.len(),
        acknowledged.len()
    );
}

async fn get_page(client: &reqwest::Client, address: &str, query: &str) -> Value {
    get_json(client, &format!("{address}/v1/messages?{query}")).await
}

fn page_sids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["sid"].as_str().expect("sid").to_owned())
        .collect()
}

#[tokio::test]
async fn paging_while_three_replicas_write_lists_every_message_of_its_snapshot_exactly_once() {
    let (_database, replicas) = replicas(3).await;
    let addresses: Vec<String> = replicas.iter().map(|(_, a)| a.clone()).collect();
    let client = reqwest::Client::new();
    let existing: Vec<String> = (0..240).map(|_| new_sid()).collect();
    for chunk in existing.chunks(24) {
        join_all(chunk.iter().enumerate().map(|(i, sid)| {
            let (client, address) = (client.clone(), addresses[i % 3].clone());
            async move { assert_eq!(post(&client, &address, sid, "sent").await, 200) }
        }))
        .await;
    }

    // Writers on every replica: existing messages move (sent -> delivered -> read), new
    // ones arrive, for as long as the listing runs.
    let stop = Arc::new(AtomicBool::new(false));
    let created_after = Arc::new(Mutex::new(HashSet::<String>::new()));
    let first = get_page(&client, &addresses[0], "limit=15").await;
    let mut writers = Vec::new();
    for (w, address) in addresses.iter().cycle().take(6).enumerate() {
        let (client, address, stop) = (client.clone(), address.clone(), stop.clone());
        let (existing, created_after) = (existing.clone(), created_after.clone());
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let sid = &existing[(i * 7) % existing.len()];
                let status = if i % 2 == 0 { "delivered" } else { "read" };
                assert_eq!(post(&client, &address, sid, status).await, 200);
                let newcomer = new_sid();
                created_after.lock().expect("lock").insert(newcomer.clone());
                assert_eq!(post(&client, &address, &newcomer, "sent").await, 200);
                i += 6;
            }
        }));
    }
    let mut seen = page_sids(&first);
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(next) = cursor {
        // Each page from another replica: the cursor's snapshot means the same everywhere.
        let address = &addresses[pages % 3];
        let page = get_page(&client, address, &format!("limit=15&cursor={next}")).await;
        seen.extend(page_sids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer finishes");
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a message was listed twice");
    let expected: HashSet<&String> = existing.iter().collect();
    assert_eq!(
        unique, expected,
        "exactly the messages that existed at the first page"
    );
    assert!(pages >= 16, "{pages} pages");
    assert!(!created_after.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn the_change_feed_of_three_writing_replicas_is_read_in_commit_order_each_once() {
    let database = fresh_database().await;
    let writers = [
        open_postgres(&database).await,
        open_postgres(&database).await,
        open_postgres(&database).await,
    ];
    let reader = open_postgres(&database).await;
    let done = Arc::new(AtomicBool::new(false));

    // A consumer that resumes from the last position it saw, as `GET /v1/events` does.
    let consumer = {
        let (reader, done) = (reader.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                let finished = done.load(Ordering::Relaxed);
                let entries = reader.feed(after, 50).await.expect("feed");
                if entries.is_empty() && finished {
                    return seen;
                }
                for entry in entries {
                    assert!(
                        entry.seq > after,
                        "positions go back: {} after {after}",
                        entry.seq
                    );
                    after = entry.seq;
                    seen.push((
                        entry.seq,
                        entry.sid.to_string(),
                        entry.event.status.to_string(),
                    ));
                }
            }
        })
    };
    let sids: Vec<String> = (0..40).map(|_| new_sid()).collect();
    // Many small groups from every writer, so that their commits interleave.
    let writes = (0..24).map(|task| {
        let store = writers[task % writers.len()].clone();
        let sids = sids.clone();
        async move {
            for i in 0..60 {
                let sid = sids[(task + i * 24) % sids.len()].clone();
                let status = ["queued", "sent", "delivered", "read", "failed"][i % 5];
                let params = vec![
                    ("MessageSid".to_owned(), sid),
                    ("MessageStatus".to_owned(), status.to_owned()),
                    ("ErrorCode".to_owned(), (task * 100 + i).to_string()),
                ];
                let event = StatusEvent::from_params(params, Source::Callback).expect("valid");
                store.record(event, None).await.expect("recorded");
            }
        }
    });
    join_all(writes).await;
    done.store(true, Ordering::Relaxed);
    let seen = consumer.await.expect("consumer finishes");

    let everything = reader.feed(0, 100_000).await.expect("feed");
    let all: Vec<(u64, String, String)> = everything
        .iter()
        .map(|e| (e.seq, e.sid.to_string(), e.event.status.to_string()))
        .collect();
    let missed: Vec<u64> = all
        .iter()
        .filter(|entry| !seen.contains(entry))
        .map(|(seq, _, _)| *seq)
        .collect();
    assert!(missed.is_empty(), "the consumer missed {missed:?}");
    assert_eq!(
        seen, all,
        "the consumer saw transitions twice or out of order"
    );
    // The state of each entry is the message's state right after it, as a lookup shows
    // it at the end for the last one.
    let mut last: HashMap<String, &statushook::store::FeedEntry> = HashMap::new();
    for entry in &everything {
        last.insert(entry.sid.to_string(), entry);
    }
    for (sid, entry) in last {
        let stored = reader
            .message(&entry.sid)
            .await
            .expect("readable")
            .expect("stored");
        assert_eq!(stored.state, entry.state, "{sid}");
    }
    reader.check().await.expect("consistent");
    for store in writers.into_iter().chain([reader]) {
        store.close().await.expect("closes");
    }
}

/// A callback of `status` for `sid`, as a store records it.
fn status_event(sid: &str, status: &str) -> StatusEvent {
    let params = vec![
        ("MessageSid".to_owned(), sid.to_owned()),
        ("MessageStatus".to_owned(), status.to_owned()),
    ];
    StatusEvent::from_params(params, Source::Callback).expect("valid")
}

#[tokio::test]
async fn a_callback_for_a_message_erased_while_it_waits_for_its_lock_starts_it_anew() {
    let database = fresh_database().await;
    let store = open_postgres(&database).await;
    let sid = new_sid();
    let first = store.record(status_event(&sid, "sent"), None).await;
    assert_eq!(first.expect("recorded"), Recorded::Stored);

    // Another replica's erasure holds the message's row lock, as a deletion does...
    let (eraser, connection) = crate::support::database::connect_sql(&database)
        .await
        .expect("connects");
    tokio::spawn(connection);
    eraser
        .batch_execute(&format!(
            "SET search_path = statushook; BEGIN; \
             SELECT sid FROM messages WHERE sid = '{sid}' FOR UPDATE"
        ))
        .await
        .expect("locked");
    // ... when a callback arrives: the writer finds the row there and waits for its lock.
    let recording = {
        let (store, sid) = (store.clone(), sid.clone());
        tokio::spawn(async move { store.record(status_event(&sid, "delivered"), None).await })
    };
    eventually("the writer to wait for the row lock", || async {
        let waiting = eraser
            // In this database only: other tests share the cluster.
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_locks");
        waiting.get::<_, i64>(0) > 0
    })
    .await;
    eraser
        .batch_execute(&format!(
            "DELETE FROM events WHERE sid = '{sid}'; DELETE FROM positions WHERE sid = '{sid}'; \
             DELETE FROM messages WHERE sid = '{sid}'; COMMIT"
        ))
        .await
        .expect("erased");

    // The callback is not taken for a duplicate of what was erased: it starts the message.
    let recorded = recording.await.expect("joined").expect("recorded");
    assert_eq!(recorded, Recorded::Stored);
    let message = store
        .message(&statushook::domain::MessageSid::parse(&sid).expect("a sid"))
        .await
        .expect("readable")
        .expect("stored anew");
    let statuses: Vec<&str> = message.events.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses, ["delivered"]);
    store.close().await.expect("closes");
}

#[tokio::test]
async fn retention_runs_on_the_replica_holding_the_job_lease_and_another_takes_over_when_it_dies() {
    let database = fresh_database().await;
    let retention = |interval: &str| {
        vec![
            ("STATUSHOOK_RETENTION", "2s".to_owned()),
            ("STATUSHOOK_RETENTION_INTERVAL", interval.to_owned()),
        ]
    };
    // The leader looks every 2 seconds and the other replica every 50 ms: were retention
    // running on both, the other one would almost always delete first.
    let (mut leader, leader_address) = start_replica(&database, &retention("2s")).await;
    let (monitor, connection) = crate::support::database::connect_sql(&database)
        .await
        .expect("connects");
    tokio::spawn(connection);
    eventually("the first replica to take the job lease", || async {
        let held = monitor
            .query_one(
                // pg_locks shows the whole cluster: other tests' databases hold this
                // lock too.
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid = 0 AND objid = 7342002 \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("pg_locks");
        held.get::<_, i64>(0) == 1
    })
    .await;
    let (_follower, follower_address) = start_replica(&database, &retention("50ms")).await;
    let client = reqwest::Client::new();
    let old: Vec<String> = (0..3).map(|_| new_sid()).collect();
    for sid in &old {
        assert_eq!(
            post(&client, &follower_address, sid, "delivered").await,
            200
        );
    }
    eventually("the leader to delete the old messages", || async {
        for sid in &old {
            if get_from_binary(&client, &follower_address, sid)
                .await
                .status()
                != 404
            {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(retention_deletions(&client, &leader_address).await, 3.0);
    assert_eq!(
        retention_deletions(&client, &follower_address).await,
        0.0,
        "retention ran on a replica without the lease"
    );

    leader.start_kill().expect("SIGKILL is sent");
    leader.wait().await.expect("reaped");
    let orphan = new_sid();
    assert_eq!(post(&client, &follower_address, &orphan, "sent").await, 200);
    eventually("the other replica to take over retention", || async {
        get_from_binary(&client, &follower_address, &orphan)
            .await
            .status()
            == 404
    })
    .await;
    assert_eq!(retention_deletions(&client, &follower_address).await, 1.0);
}

/// `statushook_deleted_messages_total{reason="retention"}` of the replica at `address`.
async fn retention_deletions(client: &reqwest::Client, address: &str) -> f64 {
    let metrics = scrape(client, address).await;
    metric(
        &metrics,
        "statushook_deleted_messages_total{reason=\"retention\"}",
    )
}

fn fetched_by(requests: &[wiremock::Request], replica: &str) -> BTreeSet<String> {
    requests
        .iter()
        .filter(|r| r.url.path().starts_with(&format!("/{replica}/")))
        .map(|r| r.url.path().to_owned())
        .collect()
}

#[tokio::test]
async fn the_reconciler_runs_on_one_replica_and_another_takes_over_when_it_dies() {
    let twilio = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"/Messages/(SM[0-9a-f]{32})\.json$"))
        .respond_with(|request: &wiremock::Request| {
            let sid = request
                .url
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".json")
                .to_owned();
            ResponseTemplate::new(200).set_body_json(json!({
                "sid": sid, "status": "delivered", "account_sid": ACCOUNT_SID,
                "to": "+15005550009", "from": "+15005550006", "error_code": null
            }))
        })
        .mount(&twilio)
        .await;
    let database = fresh_database().await;
    // Each replica reaches Twilio under its own path prefix, so a fetch tells who made it.
    let settings = |name: &str| {
        vec![
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_owned()),
            ("TWILIO_API_BASE", format!("{}/{name}", twilio.uri())),
            ("STATUSHOOK_RECONCILE_AFTER", "200ms".to_owned()),
            ("STATUSHOOK_RECONCILE_RATE", "50".to_owned()),
        ]
    };
    let (mut first, first_address) = start_replica(&database, &settings("a")).await;
    let client = reqwest::Client::new();
    // Alone, the first replica takes the lease and reconciles.
    let stuck = new_sid();
    assert_eq!(post(&client, &first_address, &stuck, "sent").await, 200);
    eventually("the only replica to reconcile", || async {
        message(&client, &first_address, &stuck).await["status"] == "delivered"
    })
    .await;
    // With a second replica, still only the leader fetches.
    let (_second, second_address) = start_replica(&database, &settings("b")).await;
    let stuck = new_sid();
    assert_eq!(post(&client, &second_address, &stuck, "sent").await, 200);
    eventually(
        "the leader to reconcile a message the other replica took",
        || async { message(&client, &second_address, &stuck).await["status"] == "delivered" },
    )
    .await;
    let requests = twilio.received_requests().await.unwrap_or_default();
    assert!(fetched_by(&requests, "a")
        .iter()
        .any(|path| path.contains(&stuck)));
    assert!(
        fetched_by(&requests, "b").is_empty(),
        "both replicas reconciled"
    );

    first.start_kill().expect("SIGKILL is sent");
    first.wait().await.expect("reaped");
    let orphan = new_sid();
    assert_eq!(post(&client, &second_address, &orphan, "sent").await, 200);
    eventually("the other replica to take over the reconciler", || async {
        message(&client, &second_address, &orphan).await["status"] == "delivered"
    })
    .await;
    let requests = twilio.received_requests().await.unwrap_or_default();
    assert!(fetched_by(&requests, "b")
        .iter()
        .any(|path| path.contains(&orphan)));
}
