//! Which replica runs the background jobs, as `/metrics` tells it:
//! `statushook_leader{job="jobs"|"forwarding"}` is 1 on the replica holding the lease and
//! 0 on the one standing by, and moves when the holder dies.

use crate::support::binary::start_replica;
use crate::support::database::fresh_database;
use crate::support::poll::eventually;

/// The value of `statushook_leader{job="jobs"}` on the replica at `address`.
async fn leads(client: &reqwest::Client, address: &str) -> Option<bool> {
    let text = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("statushook_leader{job=\"jobs\"} "))
        .map(|value| value == "1")
}

#[tokio::test]
async fn metrics_show_which_replica_runs_the_jobs_and_the_standby_takes_over() {
    let database = fresh_database().await;
    let (mut first, first_address) = start_replica(&database, &[]).await;
    let client = reqwest::Client::new();
    eventually("the first replica leads", || async {
        leads(&client, &first_address).await == Some(true)
    })
    .await;
    let (_second, second_address) = start_replica(&database, &[]).await;
    assert_eq!(leads(&client, &second_address).await, Some(false));
    let text = client
        .get(format!("{second_address}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("# TYPE statushook_leader gauge"));
    assert!(text.contains("statushook_leader{job=\"forwarding\"} 0"));
    first.kill().await.expect("the first replica is killed");
    eventually("the standby takes the jobs over", || async {
        leads(&client, &second_address).await == Some(true)
    })
    .await;
}
