//! Alerts with PostgreSQL replicas: only the replica holding the job lease evaluates, and
//! when it is killed while its alert fires (its notification delivered, or still waiting
//! for a receiver that is down), the replica that takes over neither repeats a
//! notification nor loses one. These run whenever the tests run, against the server
//! `scripts/pg` starts, whatever store the other tests use.

use std::cell::Cell;
use std::time::Duration;

use serde_json::json;
use tokio::process::Child;
use tokio::time::Instant;

use crate::support::alerts::{
    alert_env, drain, failed, notifications, passes, sids, webhook_to, Alerting,
};
use crate::support::binary::{post_to_binary, start_replica};
use crate::support::database::fresh_database;
use crate::support::fixtures::callback;
use crate::support::poll;
use crate::support::receiver::Receiver;

struct Replica {
    child: Child,
    address: String,
}

/// Whether the replica at `address` holds the job lease (`statushook_leader{job="jobs"}`).
async fn leads(client: &reqwest::Client, address: &str) -> bool {
    let Ok(response) = client.get(format!("{address}/metrics")).send().await else {
        return false;
    };
    response.text().await.is_ok_and(|text| {
        text.lines()
            .any(|line| line == "statushook_leader{job=\"jobs\"} 1")
    })
}

/// Waits until exactly one of `replicas` holds the job lease, and still that one a second
/// later; answers its index.
async fn the_one_leader(client: &reqwest::Client, replicas: &[Replica]) -> usize {
    let candidate: Cell<Option<(usize, Instant)>> = Cell::new(None);
    poll::until("a single replica running the jobs", || async {
        let mut leaders = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            if leads(client, &replica.address).await {
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
        Err(format!("{leaders:?} lead"))
    })
    .await
}

async fn kill(replica: Replica) {
    let mut child = replica.child;
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the replica is reaped");
}

async fn post_all(client: &reqwest::Client, address: &str, callbacks: Vec<Vec<(String, String)>>) {
    for params in callbacks {
        let response = post_to_binary(client, address, &params).await;
        assert_eq!(
            response.map(|r| r.status()).ok(),
            Some(reqwest::StatusCode::OK)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_while_an_alert_fires_neither_repeat_nor_lose_a_notification() {
    let mut receiver = Receiver::start().await;
    let database = fresh_database().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let (child, address) = start_replica(&database, &alert_env()).await;
        replicas.push(Replica { child, address });
    }
    let client = reqwest::Client::new();
    let first = the_one_leader(&client, &replicas).await;
    // The rule and the callbacks go to a replica that does not evaluate: the store is
    // what they share.
    let other = replicas[(first + 1) % replicas.len()].address.clone();
    let alerting = Alerting {
        client: &client,
        address: &other,
    };
    alerting
        .rule(
            "failover",
            json!({"metric": "failures", "threshold": 3, "window": "1h",
                "notify": [webhook_to(&receiver)]}),
        )
        .await;
    let failures = sids(3);
    post_all(
        &client,
        &other,
        failures.iter().map(|sid| failed(sid, 30003)).collect(),
    )
    .await;
    receiver
        .wait_until("the firing notification", |d| !notifications(d).is_empty())
        .await;
    // Once its delivery is saved (a kill between the receiver's answer and that write
    // would send it again, with the same webhook-id), the leader dies while the alert fires.
    alerting
        .alert_when("failover", "the delivery saved", |alert| {
            alert["state"] == "firing" && alert["notifications"]["pending"] == 0
        })
        .await;
    kill(replicas.remove(first)).await;

    // Another replica takes over, finds the alert firing, and says nothing.
    let second = the_one_leader(&client, &replicas).await;
    let survivor = Alerting {
        client: &client,
        address: &replicas[second].address,
    };
    passes(&survivor, 10).await;
    drain(&mut receiver).await;
    assert_eq!(
        notifications(&receiver.deliveries).len(),
        1,
        "{:?}",
        notifications(&receiver.deliveries)
    );

    // The failures turn out delivered: the alert resolves while the receiver is down, and
    // the leader dies with the notification still waiting.
    receiver.command("down").await;
    post_all(
        &client,
        &replicas[second].address,
        failures
            .iter()
            .map(|sid| callback(sid, "delivered"))
            .collect(),
    )
    .await;
    survivor
        .alert_when("failover", "the resolution waiting", |alert| {
            alert["state"] == "ok"
                && alert["notifications"]["pending"] == 1
                && alert["notifications"]["last_error"].is_string()
        })
        .await;
    kill(replicas.remove(second)).await;
    receiver.command("up").await;

    // The last replica takes over and delivers it, once.
    let last = the_one_leader(&client, &replicas).await;
    let survivor = Alerting {
        client: &client,
        address: &replicas[last].address,
    };
    receiver
        .wait_until("the resolved notification", |d| notifications(d).len() >= 2)
        .await;
    passes(&survivor, 10).await;
    drain(&mut receiver).await;
    assert!(receiver.rejected.is_empty(), "{:?}", receiver.rejected);
    assert_eq!(
        notifications(&receiver.deliveries),
        [
            ("alert.firing".to_owned(), "failover".to_owned()),
            ("alert.resolved".to_owned(), "failover".to_owned())
        ]
    );
    let alert = survivor.alert("failover").await;
    assert_eq!(alert["state"], "ok");
    assert_eq!(alert["notifications"]["pending"], 0);
}
