//! A receiver in trouble, on both stores side by side: down for a minute while callbacks
//! arrive, or answering each delivery after 9 s. Each test runs a service on sled and a
//! replica on PostgreSQL at once, forwarding to paths of their own on one receiver, so
//! that a minute of outage costs a minute once; the PostgreSQL run of the suite leaves
//! this module out. Forwarding keeps its default retry schedule here (5 s, doubling to an
//! hour, with jitter).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::process::Child;
use tokio::time::Instant;

use crate::support::binary::{post_to_binary, start_replica, start_sled_binary_with_env};
use crate::support::database::fresh_database;
use crate::support::fixtures::{callback, new_sid};
use crate::support::metrics::metric;
use crate::support::receiver::{
    acknowledged, assert_in_order_per_message, Delivery, Receiver, Service,
};

/// How long the receiver is down.
const OUTAGE: Duration = Duration::from_secs(60);
/// Callbacks arrive in a wave this often during the outage.
const WAVE_EVERY: Duration = Duration::from_secs(2);

/// A client that opens a connection for each request, as Twilio mostly does: none is
/// reused at the moment the service closes it for being idle.
fn new_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client")
}

/// A service forwarding to `/hooks/{store}` of the receiver.
struct Forwarder {
    store: &'static str,
    service: Service,
    _child: Child,
    /// The sled service's data folder.
    _data: Option<tempfile::TempDir>,
}

impl Forwarder {
    fn path(&self) -> String {
        format!("/hooks/{}", self.store)
    }

    /// What the receiver got from this service.
    fn deliveries(&self, all: &[Delivery]) -> Vec<Delivery> {
        all.iter()
            .filter(|d| d.path == self.path())
            .cloned()
            .collect()
    }
}

/// A service on sled and one on a fresh PostgreSQL database, forwarding to `receiver`.
async fn on_both_stores(receiver: &Receiver) -> [Forwarder; 2] {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (sled, sled_address) =
        start_sled_binary_with_env(data.path(), &receiver.forwarding_to("/hooks/sled")).await;
    let database = fresh_database().await;
    let (postgres, postgres_address) =
        start_replica(&database, &receiver.forwarding_to("/hooks/postgres")).await;
    [
        Forwarder {
            store: "sled",
            service: Service::at(&sled_address),
            _child: sled,
            _data: Some(data),
        },
        Forwarder {
            store: "postgres",
            service: Service::at(&postgres_address),
            _child: postgres,
            _data: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_down_for_a_minute_gets_every_transition_verified_once_and_in_order_on_both_stores(
) {
    let mut receiver = Receiver::start().await;
    let forwarders = on_both_stores(&receiver).await;
    receiver.command("down").await;

    // A wave of callbacks every 2 s for the whole minute: each wave a new message is
    // queued, the one before is sent and the one before that delivered.
    let client = new_connections();
    let waves = (OUTAGE.as_secs() / WAVE_EVERY.as_secs()) as usize;
    let sids: Vec<String> = (0..waves).map(|_| new_sid()).collect();
    let down_at = Instant::now();
    for wave in 0..waves {
        tokio::time::sleep_until(down_at + WAVE_EVERY * wave as u32).await;
        let callbacks = ["queued", "sent", "delivered"]
            .iter()
            .enumerate()
            .filter_map(|(age, status)| Some((sids.get(wave.checked_sub(age)?)?, *status)));
        let posts = callbacks.flat_map(|(sid, status)| {
            let client = &client;
            forwarders.iter().map(move |forwarder| async move {
                let form = callback(sid, status);
                post_to_binary(client, &forwarder.service.address, &form)
                    .await
                    .map(|response| response.status().as_u16())
            })
        });
        for answer in join_all(posts).await {
            assert_eq!(answer.ok(), Some(200), "a callback during the outage");
        }
    }
    let stored = 3 * waves - 3;

    // Near the end of the minute, the queue shows what waits and why.
    tokio::time::sleep_until(down_at + OUTAGE - Duration::from_secs(1)).await;
    for forwarder in &forwarders {
        let service = &forwarder.service;
        assert_eq!(service.feed().await.len(), stored, "{}", forwarder.store);
        let status = service
            .forwarding_when("every transition waiting", |s| s["depth"] == stored)
            .await;
        assert!(status["last_error"]["error"].is_string(), "{status}");
        assert!(
            status["oldest_pending"]["age_seconds"].as_f64() > Some(55.0),
            "{status}"
        );
        let metrics = service.metrics().await;
        assert_eq!(
            metric(&metrics, "statushook_forward_outbox_depth"),
            stored as f64
        );
        assert!(metric(&metrics, "statushook_forward_oldest_pending_seconds") > 55.0);
        // Each message's first transition was tried again and again meanwhile, by the
        // schedule at 0, 5, 15 and 35 s at the latest: 94 attempts of the 30 at least.
        let attempts = metric(
            &metrics,
            "statushook_forward_deliveries_total{outcome=\"unreachable\"}",
        );
        assert!(attempts > 2.0 * waves as f64, "{attempts} attempts");
    }

    tokio::time::sleep_until(down_at + OUTAGE).await;
    receiver.command("up").await;
    let up_at = Instant::now();
    for forwarder in &forwarders {
        let feed = forwarder.service.feed().await;
        let expected: HashSet<u64> = feed.keys().copied().collect();
        receiver
            .wait_until(&format!("every transition of {}", forwarder.store), |d| {
                acknowledged(&forwarder.deliveries(d)) == expected
            })
            .await;
        // The newest transitions failed at most 2 s before the receiver came back, so
        // their first retry falls due within 5 s of it, and its success makes everything
        // waiting due at once: nothing waits out the longer backoff of the oldest ones.
        assert!(
            up_at.elapsed() < Duration::from_secs(20),
            "{}: everything acknowledged {:?} after the receiver came back",
            forwarder.store,
            up_at.elapsed()
        );
        let deliveries = forwarder.deliveries(&receiver.deliveries);
        for delivery in &deliveries {
            assert_eq!(
                delivery.body, feed[&delivery.seq],
                "the body is the feed's event"
            );
        }
        let oks = deliveries.iter().filter(|d| d.answer == 200).count();
        assert_eq!(oks, stored, "each transition acknowledged exactly once");
        assert_in_order_per_message(&deliveries);
    }
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);

    for forwarder in &forwarders {
        let service = &forwarder.service;
        service
            .forwarding_when("the queue drained", |s| {
                s["depth"] == 0 && s["oldest_pending"].is_null()
            })
            .await;
        let metrics = service.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                "statushook_forward_deliveries_total{outcome=\"delivered\"}"
            ),
            stored as f64
        );
        assert_eq!(metric(&metrics, "statushook_forward_outbox_depth"), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_answering_after_9_s_never_slows_callbacks_on_both_stores() {
    let mut receiver = Receiver::start().await;
    receiver.command("delay 9000").await;
    let forwarders = on_both_stores(&receiver).await;
    // The yardstick: a service on each store that does not forward, taking the same
    // callbacks at the same time on the same machine, so that whatever else loads the
    // machine (other tests, builds, a CPU hog) loads both alike.
    let control_data = tempfile::tempdir().expect("a temporary folder");
    let (_sled_control, sled_control) = start_sled_binary_with_env(control_data.path(), &[]).await;
    let (_postgres_control, postgres_control) = start_replica(&fresh_database().await, &[]).await;
    let targets = [
        forwarders[0].service.address.clone(),
        forwarders[1].service.address.clone(),
        sled_control,
        postgres_control,
    ];

    // 100 callbacks a second to each service for 12 s, each sent on time whatever became of
    // the ones before it: soon all delivery slots (STATUSHOOK_FORWARD_CONCURRENCY, 16 by
    // default) wait on the receiver, with the later transitions piling up behind them.
    let client = new_connections();
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    let mut sid = String::new();
    for n in 0..1200u32 {
        tokio::time::sleep_until(started + Duration::from_millis(10) * n).await;
        let status = ["queued", "sent", "delivered"][n as usize % 3];
        if status == "queued" {
            sid = new_sid();
        }
        for (target, address) in targets.iter().enumerate() {
            let (client, address) = (client.clone(), address.clone());
            let form = callback(&sid, status);
            posts.spawn(async move {
                let sent = Instant::now();
                let answer = post_to_binary(&client, &address, &form).await;
                let status = answer.map(|response| response.status().as_u16());
                (target, status.ok(), sent.elapsed())
            });
        }
    }
    let mut latencies = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    while let Some(joined) = posts.join_next().await {
        let (target, status, latency) = joined.expect("the post ran");
        assert_eq!(status, Some(200), "{}", targets[target]);
        latencies[target].push(latency);
    }
    let [forwarding_sled, forwarding_postgres, control_sled, control_postgres] =
        latencies.map(|mut latencies| {
            latencies.sort();
            (
                latencies[latencies.len() / 2],
                latencies[latencies.len() - 1],
            )
        });

    for (forwarder, (median, max), (control_median, control_max)) in [
        (&forwarders[0], forwarding_sled, control_sled),
        (&forwarders[1], forwarding_postgres, control_postgres),
    ] {
        // One that waited on forwarding in any way would take up to the receiver's 9 s;
        // otherwise callbacks take what they take on this machine right now, as the
        // control's show.
        assert!(
            median <= control_median * 2 + Duration::from_millis(50)
                && max <= (control_max * 2).max(Duration::from_millis(4500)),
            "{}: callbacks took {median:?} (median), {max:?} at most; without forwarding \
             {control_median:?} and {control_max:?}",
            forwarder.store
        );
        assert!(
            max < Duration::from_millis(9000),
            "{}: {max:?}",
            forwarder.store
        );
        // And forwarding is stuck on the receiver meanwhile.
        let status = forwarder
            .service
            .forwarding_when("every delivery waiting on the receiver", |s| {
                s["in_flight"] == statushook::forwarding::DEFAULT_CONCURRENCY
            })
            .await;
        assert!(status["depth"].as_u64() > Some(600), "{status}");
    }
}
