//! Quiet, useful logs under failure: a warning that repeats with every request is logged
//! once and its repeats summarised ("and N more like it"), and a start-up failure states
//! its cause once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::binary::post_to_binary;
use crate::support::fixtures::{callback, new_sid, API_TOKEN, AUTH_TOKEN, PUBLIC_URL};

#[test]
fn a_store_that_cannot_open_stops_start_up_with_its_cause_said_once() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let file = data.path().join("a-file");
    std::fs::write(&file, b"not a folder").expect("written");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_statushook"))
        .arg("serve")
        .env_clear()
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", file.join("db"))
        .env("STATUSHOOK_PUBLIC_URL", PUBLIC_URL)
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("statushook: cannot open the store in "),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Not a directory (os error 20)").count(),
        1,
        "the cause is said once: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_logs_one_503_line_and_a_count_of_the_rest_not_one_line_each() {
    let data = tempfile::tempdir().expect("a temporary folder");
    // The store's files may not grow past 3,000 KiB, as on a disk that fills up.
    let script = "trap '' XFSZ; ulimit -f 3000; exec \"$0\" serve";
    let mut child = Command::new("bash")
        .args(["-c", script, env!("CARGO_BIN_EXE_statushook")])
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", data.path())
        .env("STATUSHOOK_PUBLIC_URL", PUBLIC_URL)
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("STATUSHOOK_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,statushook::startup=info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut address = None;
    while let Some(line) = lines.next_line().await.expect("readable") {
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "listening" {
            address = Some(format!("http://127.0.0.1:{}", entry["port"]));
            break;
        }
    }
    let address = address.expect("the binary listens");
    let log = Arc::new(Mutex::new(Vec::<Value>::new()));
    let reader = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(entry) = serde_json::from_str(&line) {
                    log.lock().expect("not poisoned").push(entry);
                }
            }
        })
    };

    let client = reqwest::Client::new();
    let mut first_refusal = false;
    for _ in 0..50_000 {
        let response = post_to_binary(&client, &address, &callback(&new_sid(), "sent"))
            .await
            .expect("answered");
        if response.status() == 503 {
            first_refusal = true;
            break;
        }
        assert_eq!(response.status(), 200);
    }
    assert!(first_refusal, "the store filled up");
    // A burst of callbacks while the service answers 503 before it exits.
    let burst = futures_util::future::join_all((0..200).map(|_| {
        let (client, address) = (client.clone(), address.clone());
        async move {
            post_to_binary(&client, &address, &callback(&new_sid(), "sent"))
                .await
                .map(|response| response.status().as_u16())
                .ok()
        }
    }))
    .await;
    let refused = 1 + burst.iter().filter(|status| **status == Some(503)).count() as u64;
    let exited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    assert!(exited.is_ok(), "the service exits after the store failed");
    reader.await.expect("the log was read");

    let log = log.lock().expect("not poisoned");
    let lines = log
        .iter()
        .filter(|entry| entry["message"] == "callback not stored; answered 503")
        .count();
    let summarised: u64 = log
        .iter()
        .filter(|entry| entry["kind"] == "callback not stored; answered 503")
        .filter_map(|entry| entry["repeats"].as_u64())
        .sum();
    eprintln!(
        "full disk: {refused} callbacks answered 503, {lines} lines, {summarised} summarised"
    );
    assert!(refused > 1, "more than one callback was refused");
    assert_eq!(lines, 1, "one line for the first 503");
    assert_eq!(summarised, refused - 1, "the rest are counted, none lost");
}
