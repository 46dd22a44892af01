//! Which replica runs the background jobs, as `/metrics` and the log tell it:
//! `statushook_leader{job="jobs"|"forwarding"}` is 1 on the replica holding the lease and
//! 0 on the one standing by, and moves when the holder dies; a replica standing by says so
//! once, and a start on an existing schema logs no PostgreSQL notice.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::binary::start_replica;
use crate::support::database::fresh_database;
use crate::support::fixtures::{API_TOKEN, AUTH_TOKEN, PUBLIC_URL};
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

#[tokio::test]
async fn a_second_replica_says_it_stands_by_and_logs_no_notice_about_the_existing_schema() {
    let database = fresh_database().await;
    let (_first, first_address) = start_replica(&database, &[]).await;
    let client = reqwest::Client::new();
    eventually("the first replica leads", || async {
        leads(&client, &first_address).await == Some(true)
    })
    .await;
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let mut second = Command::new(env!("CARGO_BIN_EXE_statushook"))
        .arg("serve")
        .env("STATUSHOOK_DATABASE_URL", &database)
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", data_dir.path())
        .env("STATUSHOOK_PUBLIC_URL", PUBLIC_URL)
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(second.stderr.take().expect("piped stderr")).lines();
    let mut log = Vec::new();
    let standing_by = async {
        while let Some(line) = lines.next_line().await.expect("readable stderr") {
            let said =
                line.contains("another replica runs the background jobs; this one stands by");
            log.push(line);
            if said {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), standing_by)
        .await
        .expect("the second replica says it stands by");
    assert!(
        !log.iter()
            .any(|line| line.contains("NOTICE") || line.contains("already exists")),
        "{log:#?}"
    );
}
