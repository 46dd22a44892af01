//! Forwarding with PostgreSQL replicas: one replica forwards at a time, the one holding the
//! forwarding lease, and when it dies or loses its lease another takes over. Either way the
//! receiver gets every stored transition, in order per message, each `webhook-id` once
//! after de-duplication. Each replica forwards to a path of its own on the receiver, so a
//! delivery tells which replica sent it. These run whenever the tests run, against the
//! server `scripts/pg` starts, whatever store the other tests use.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::process::Child;
use tokio::time::Instant;

use crate::support::binary::{post_to_binary, start_replica};
use crate::support::database::fresh_database;
use crate::support::fixtures::{callback, new_sid};
use crate::support::poll::{self, eventually};
use crate::support::receiver::{
    acknowledged, assert_in_order_per_message, first_acknowledgements, Delivery, Receiver, Service,
    PATIENCE, SHORT_RETRIES,
};

/// The advisory lock key of the forwarding lease (`FORWARD_LOCK` in
/// src/store/postgres/leader.rs).
const FORWARD_LOCK: i64 = 7_342_003;

/// How often one sender posts a callback at most.
const PACE: Duration = Duration::from_millis(20);

/// One `statushook serve` of the test, forwarding to `/hooks/{name}`.
struct Replica {
    name: String,
    child: Child,
    service: Service,
}

impl Replica {
    fn path(&self) -> String {
        format!("/hooks/{}", self.name)
    }

    async fn leads(&self) -> bool {
        self.service.json("/v1/forwarding").await["leader"] == true
    }
}

/// Starts `count` replicas on `database`, each forwarding to its own path of `receiver`.
async fn start_replicas(database: &str, receiver: &Receiver, count: usize) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for n in 0..count {
        let name = format!("r{n}");
        let mut env = receiver.forwarding_to(&format!("/hooks/{name}"));
        env.extend(SHORT_RETRIES.map(|(name, value)| (name, value.to_owned())));
        let (child, address) = start_replica(database, &env).await;
        replicas.push(Replica {
            name,
            child,
            service: Service::at(&address),
        });
    }
    replicas
}

/// Waits until exactly one of `replicas` says it forwards (`"leader": true` in
/// `GET /v1/forwarding`), and still exactly that one a second later; answers its index.
async fn the_one_leader(replicas: &[&Replica]) -> usize {
    // The one replica seen forwarding alone, and since when.
    let candidate: Cell<Option<(usize, Instant)>> = Cell::new(None);
    poll::until("a single forwarding replica", || async {
        let mut leaders = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            if replica.leads().await {
                leaders.push(i);
            }
        }
        match (leaders.as_slice(), candidate.get()) {
            ([one], Some((same, since))) if *one == same => {
                if since.elapsed() >= Duration::from_secs(1) {
                    return Ok(same);
                }
            }
            ([one], _) => candidate.set(Some((*one, Instant::now()))),
            _ => candidate.set(None),
        }
        let names: Vec<&str> = leaders.iter().map(|i| replicas[*i].name.as_str()).collect();
        Err(format!("{names:?} say they forward"))
    })
    .await
}

/// Callbacks posted by four senders to whichever replicas are in `targets`, message after
/// message (`queued`, `sent`, `delivered`), each transition of a message to another replica;
/// a callback a replica did not acknowledge (it was killed) goes to the next one. Each
/// sender posts at most every [`PACE`], which leaves the machine to the tests beside.
struct Senders {
    targets: Arc<Mutex<Vec<String>>>,
    acknowledged: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Senders {
    fn start(replicas: &[Replica]) -> Senders {
        let targets: Vec<String> = replicas.iter().map(|r| r.service.address.clone()).collect();
        let targets = Arc::new(Mutex::new(targets));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..4)
            .map(|sender| {
                let (targets, acknowledged, stop) =
                    (targets.clone(), acknowledged.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut turn = sender;
                    let mut pace = tokio::time::interval(PACE);
                    while !stop.load(Ordering::Relaxed) {
                        let sid = new_sid();
                        for status in ["queued", "sent", "delivered"] {
                            pace.tick().await;
                            let deadline = Instant::now() + PATIENCE;
                            loop {
                                assert!(
                                    Instant::now() < deadline,
                                    "no replica takes {sid} {status}"
                                );
                                let address = {
                                    let targets = targets.lock().expect("lock");
                                    targets[turn % targets.len()].clone()
                                };
                                turn += 1;
                                let form = callback(&sid, status);
                                let answer = post_to_binary(&client, &address, &form).await;
                                if answer.is_ok_and(|response| response.status() == 200) {
                                    acknowledged.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Senders {
            targets,
            acknowledged,
            stop,
            tasks,
        }
    }

    /// From now on, callbacks go to the other replicas only.
    fn leave_out(&self, address: &str) {
        self.targets
            .lock()
            .expect("lock")
            .retain(|target| target != address);
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("the sender ran");
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// The path of each delivery in arrival order, with consecutive repeats collapsed: which
/// replicas forwarded, one after the other.
fn forwarders_in_turn(deliveries: &[Delivery]) -> Vec<String> {
    let mut by_arrival: Vec<&Delivery> = deliveries.iter().collect();
    by_arrival.sort_by(|a, b| a.arrived.total_cmp(&b.arrived));
    let mut turns: Vec<String> = Vec::new();
    for delivery in by_arrival {
        if turns.last() != Some(&delivery.path) {
            turns.push(delivery.path.clone());
        }
    }
    turns
}

/// Waits until every transition stored (the change feed, read from `service`) has been
/// acknowledged, then checks what a de-duplicating receiver keeps: each transition once,
/// with the feed's body, in order per message.
async fn assert_every_transition_forwarded_once_in_order(
    receiver: &mut Receiver,
    service: &Service,
) {
    let feed = service.feed().await;
    let stored: HashSet<u64> = feed.keys().copied().collect();
    receiver
        .wait_until("every stored transition acknowledged", |d| {
            acknowledged(d).is_superset(&stored)
        })
        .await;
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);
    let kept = first_acknowledgements(&receiver.deliveries);
    let kept_ids: HashSet<u64> = kept.iter().map(|d| d.seq).collect();
    assert_eq!(kept_ids, stored, "forwarded exactly what is stored");
    for delivery in &kept {
        assert_eq!(
            delivery.body, feed[&delivery.seq],
            "the body is the feed's event"
        );
    }
    assert_in_order_per_message(&kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_forwarding_replica_is_killed_another_takes_over_and_every_transition_arrives_once_in_order(
) {
    let mut receiver = Receiver::start().await;
    // A slow receiver, so that deliveries are in flight when the kill comes, and were at
    // the leader's last save of its progress.
    receiver.command("delay 300").await;
    let database = fresh_database().await;
    let mut replicas = start_replicas(&database, &receiver, 3).await;
    let leader = the_one_leader(&replicas.iter().collect::<Vec<_>>()).await;
    let leader_path = replicas[leader].path();

    let senders = Senders::start(&replicas);
    receiver
        .wait_until("the leader forwarding", |d| {
            d.iter().filter(|d| d.path == leader_path).count() >= 150
        })
        .await;
    let victim = replicas.remove(leader);
    senders.leave_out(&victim.service.address);
    let mut child = victim.child;
    let killed_at = now();
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the replica is reaped");

    // The survivors take callbacks on, and one of them forwards them.
    let at_the_kill = senders.acknowledged();
    receiver
        .wait_until("another replica forwarding new callbacks", |d| {
            senders.acknowledged() >= at_the_kill + 300
                && d.iter().filter(|d| d.path != leader_path).count() >= 150
        })
        .await;
    senders.stop().await;
    let heir = &replicas[the_one_leader(&replicas.iter().collect::<Vec<_>>()).await];

    assert_every_transition_forwarded_once_in_order(&mut receiver, &heir.service).await;
    // One forwarder at a time: the killed leader's deliveries all arrived before the first
    // of its heir's, and the third replica never forwarded.
    let turns = forwarders_in_turn(&receiver.deliveries);
    assert_eq!(
        turns,
        [leader_path.clone(), heir.path()],
        "who forwarded when"
    );
    let first_of_heir = receiver
        .deliveries
        .iter()
        .filter(|d| d.path == heir.path())
        .map(|d| d.arrived)
        .fold(f64::INFINITY, f64::min);
    let takeover = first_of_heir - killed_at;
    assert!(
        (0.0..10.0).contains(&takeover),
        "the heir forwarded {takeover:.2} s after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarding_replica_whose_lease_session_is_cut_stops_before_another_forwards() {
    let mut receiver = Receiver::start().await;
    let database = fresh_database().await;
    let replicas = start_replicas(&database, &receiver, 2).await;
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader_path = replicas[the_one_leader(&all).await].path();

    let senders = Senders::start(&replicas);
    receiver
        .wait_until("the leader forwarding", |d| {
            d.iter().filter(|d| d.path == leader_path).count() >= 100
        })
        .await;
    // The database ends the session holding the lease (as a database failover, a network
    // cut or an administrator would): the lease is free for the other replica at once,
    // while the process that held it lives on.
    let cut = lease_holder(&database).await.expect("the lease is held");
    terminate(&database, cut).await;
    eventually("somebody to take the lease again", || async {
        lease_holder(&database).await.is_some_and(|pid| pid != cut)
    })
    .await;
    let at_the_cut = senders.acknowledged();
    receiver
        .wait_until("forwarding after the cut", |d| {
            senders.acknowledged() >= at_the_cut + 300 && d.len() >= 400
        })
        .await;
    senders.stop().await;
    let leader = &replicas[the_one_leader(&all).await];

    assert_every_transition_forwarded_once_in_order(&mut receiver, &leader.service).await;
    // Whether the same replica took the lease again or the other one took over, the two
    // never forwarded side by side.
    let turns = forwarders_in_turn(&receiver.deliveries);
    assert!(
        turns.len() <= 2 && turns.last() == Some(&leader.path()),
        "who forwarded when: {turns:?}"
    );
}

/// The backend pid of the session holding the forwarding lease on `database`.
async fn lease_holder(database: &str) -> Option<i32> {
    let rows = query(
        database,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid \
         AND objsubid = 1",
        &[&FORWARD_LOCK],
    )
    .await;
    rows.first().map(|row| row.get(0))
}

async fn terminate(database: &str, pid: i32) {
    let rows = query(database, "SELECT pg_terminate_backend($1)", &[&pid]).await;
    assert_eq!(rows.first().map(|row| row.get::<_, bool>(0)), Some(true));
}

async fn query(
    database: &str,
    sql: &str,
    parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<tokio_postgres::Row> {
    let (client, connection) = crate::support::database::connect_sql(database)
        .await
        .expect("the test database answers");
    let driver = tokio::spawn(connection);
    let rows = client.query(sql, parameters).await.expect("a query");
    drop(client);
    let _ = driver.await;
    rows
}
