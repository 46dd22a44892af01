//! A PostgreSQL server that goes away under a running `serve` and comes back: the
//! service answers `503` meanwhile, never `200`, and takes callbacks again by itself, without
//! a restart, and `/metrics` shows it (`statushook_ready`, callbacks by `store_error`) for the
//! alerting rules. It runs on a PostgreSQL of its own (`scripts/pg`), since it stops it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::binary::{get_from_binary, post_to_binary, start_replica};
use crate::support::fixtures::{callback, new_sid};
use crate::support::metrics::{metric, scrape};
use crate::support::poll::eventually;

/// A throwaway PostgreSQL cluster of this test alone, removed when dropped.
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    fn start() -> Cluster {
        let exports = pg(&["start"]);
        let value = |name: &str| {
            exports
                .lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("scripts/pg start prints {name}"))
                .trim_matches('\'')
                .to_owned()
        };
        Cluster {
            dir: value("STATUSHOOK_PG_DIR"),
            url: value("STATUSHOOK_TEST_DATABASE_URL"),
        }
    }

    /// Stops the server at once, as a crash would, keeping its files.
    fn halt(&self) {
        pg(&["halt", &self.dir]);
    }

    fn resume(&self) {
        pg(&["resume", &self.dir]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", &self.dir]).status();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg")
}

fn pg(args: &[&str]) -> String {
    let output = Command::new(script())
        .args(args)
        .output()
        .expect("scripts/pg runs");
    assert!(
        output.status.success(),
        "scripts/pg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What one callback got.
struct Answer {
    sid: String,
    status: u16,
    retry_after: bool,
    at: Instant,
}

#[tokio::test]
async fn a_postgresql_outage_answers_503_and_the_same_process_stores_again_once_it_is_back() {
    let cluster = Cluster::start();
    let (mut replica, address) = start_replica(&cluster.url, &[]).await;
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (answers, stop, address) = (answers.clone(), stop.clone(), address.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client");
            while !stop.load(Ordering::Relaxed) {
                let sid = new_sid();
                let response = post_to_binary(&client, &address, &callback(&sid, "delivered"))
                    .await
                    .expect("the service answers");
                let answer = Answer {
                    sid,
                    status: response.status().as_u16(),
                    retry_after: response.headers().contains_key("retry-after"),
                    at: Instant::now(),
                };
                answers.lock().expect("lock").push(answer);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let stored = |answers: &Arc<Mutex<Vec<Answer>>>, since: Instant| {
        answers
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| a.status == 200 && a.at > since)
            .count()
    };
    let started = Instant::now();
    eventually("callbacks stored before the outage", || async {
        stored(&answers, started) >= 20
    })
    .await;

    cluster.halt();
    let halted = Instant::now();
    // Requests in flight at the halt may still have committed; from a second on, none can.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    {
        let answers = answers.lock().expect("lock");
        let outage: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.at > halted + Duration::from_secs(1))
            .collect();
        assert!(
            outage.iter().all(|a| a.status == 503 && a.retry_after),
            "during the outage: {:?}",
            outage.iter().map(|a| a.status).collect::<Vec<_>>()
        );
        assert!(
            outage.iter().filter(|a| a.at > refused).count() > 0,
            "callbacks are still answered during the outage"
        );
    }
    assert!(
        replica.try_wait().expect("the replica").is_none(),
        "the service exited during the outage"
    );
    let client = reqwest::Client::new();
    assert_eq!(
        readiness(&client, &address).await,
        503,
        "ready without a database"
    );
    // What the StatushookNotReady and StatushookStoreErrors alerts read.
    let text = scrape(&client, &address).await;
    assert_eq!(metric(&text, "statushook_ready"), 0.0);
    assert!(
        metric(
            &text,
            r#"statushook_callbacks_total{outcome="store_error"}"#
        ) > 0.0
    );

    cluster.resume();
    let resumed = Instant::now();
    eventually("the same process to store callbacks again", || async {
        stored(&answers, resumed) >= 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender finishes");
    }
    assert!(
        replica.try_wait().expect("the replica").is_none(),
        "the service restarted"
    );
    assert_eq!(readiness(&client, &address).await, 200, "ready again");
    assert_eq!(
        metric(&scrape(&client, &address).await, "statushook_ready"),
        1.0
    );

    // Every callback answered 200, before, during or after the outage, is stored.
    let acknowledged: HashSet<String> = answers
        .lock()
        .expect("lock")
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.sid.clone())
        .collect();
    let mut missing = Vec::new();
    for sid in &acknowledged {
        if get_from_binary(&client, &address, sid).await.status() != 200 {
            missing.push(sid.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged callbacks are not stored: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    replica.start_kill().expect("SIGKILL is sent");
    replica.wait().await.expect("reaped");
}

async fn readiness(client: &reqwest::Client, address: &str) -> u16 {
    client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}
