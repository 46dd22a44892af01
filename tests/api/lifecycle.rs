//! The real binary's life: SIGTERM drains and flushes, then `export` gives back every record.

use std::collections::HashMap;

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::binary::{
    get_from_binary, post_to_binary, run, sigterm, start_binary, start_sled_binary, BINARY,
};
use crate::support::fixtures::API_TOKEN;
use crate::support::fixtures::{callback, new_sid, with};

/// The answer's status, or `None` when the connection was refused or closed unanswered.
async fn post(client: &reqwest::Client, address: &str, params: &[(String, String)]) -> Option<u16> {
    post_to_binary(client, address, params)
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

/// `statushook export --format FORMAT` of the stopped store in `data`.
fn export(data: &std::path::Path, format: &str) -> String {
    let data = data.to_str().expect("a UTF-8 path");
    let (ok, out, err) = run(
        &["export", "--format", format],
        &[("STATUSHOOK_DATA_DIR", data)],
    );
    assert!(ok, "{err}");
    out
}

#[tokio::test]
async fn sigterm_drains_and_exits_0_and_export_round_trips_every_record() {
    let data = tempfile::tempdir().expect("a temporary folder");
    // Offline export reads the sled folder.
    let (mut child, address) = start_sled_binary(data.path()).await;
    let client = reqwest::Client::new();

    let sids: Vec<String> = (0..60).map(|_| new_sid()).collect();
    for (i, sid) in sids.iter().enumerate() {
        let last = match i % 3 {
            0 => with(callback(sid, "undelivered"), "ErrorCode", "30003"),
            1 => with(
                callback(sid, "delivered"),
                "Note",
                "comma, \"quote\"\nand newline",
            ),
            _ => callback(sid, "read"),
        };
        assert_eq!(
            post(&client, &address, &callback(sid, "sent")).await,
            Some(200)
        );
        assert_eq!(post(&client, &address, &last).await, Some(200));
    }
    let mut shown = HashMap::new();
    for sid in &sids {
        let response = get_from_binary(&client, &address, sid).await;
        shown.insert(sid.clone(), response.json::<Value>().await.expect("json"));
    }

    // Callbacks in flight when SIGTERM arrives: the ones already accepted are answered, the
    // rest are refused (never acknowledged); the process exits 0 with every 200 on disk.
    let in_flight: Vec<_> = (0..20).map(|_| new_sid()).collect();
    let requests = join_all(in_flight.iter().map(|sid| {
        let params = callback(sid, "queued");
        let (client, address) = (client.clone(), address.clone());
        async move { post(&client, &address, &params).await }
    }));
    let (answers, ()) = tokio::join!(requests, async { sigterm(&child) });
    let status = child.wait().await.expect("exits");
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must end the service cleanly"
    );
    let acknowledged: Vec<&String> = in_flight
        .iter()
        .zip(&answers)
        .filter(|(_, code)| **code == Some(200))
        .map(|(sid, _)| sid)
        .collect();

    let jsonl = export(data.path(), "jsonl");
    let exported: HashMap<String, Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .map(|message| (message["sid"].as_str().expect("sid").to_owned(), message))
        .collect();
    for (sid, message) in &shown {
        assert_eq!(
            exported.get(sid),
            Some(message),
            "{sid} exported as the API showed it"
        );
    }
    for sid in acknowledged {
        assert!(
            exported.contains_key(sid),
            "{sid} was acknowledged during shutdown but is not on disk"
        );
    }

    // The store the process left behind is consistent, indexes and counters included.
    let folder = data.path().to_str().expect("a UTF-8 path");
    let (ok, said, err) = run(&["check"], &[("STATUSHOOK_DATA_DIR", folder)]);
    assert!(ok, "{err}");
    assert!(
        said.contains(&format!("{} messages", exported.len())),
        "{said}"
    );

    let csv = export(data.path(), "csv");
    let mut reader = csv.lines();
    assert!(reader
        .next()
        .is_some_and(|header| header.starts_with("sid,account_sid,from,to")));
    let events: usize = exported
        .values()
        .map(|m| m["events"].as_array().map_or(0, Vec::len))
        .sum();
    let quoted_newlines = csv.matches("\nand newline").count();
    assert_eq!(
        csv.lines().count() - 1 - quoted_newlines,
        events,
        "one CSV row per event"
    );
}

#[test]
fn a_missing_or_malformed_setting_stops_start_up_with_one_line_naming_it_and_exit_code_2() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("STATUSHOOK_API_TOKEN", API_TOKEN),
                ("TWILIO_AUTH_TOKEN", "t"),
            ],
            "STATUSHOOK_PUBLIC_URL",
        ),
        (
            &[
                ("STATUSHOOK_PUBLIC_URL", "https://h.example"),
                ("TWILIO_AUTH_TOKEN", "t"),
            ],
            "STATUSHOOK_API_TOKEN",
        ),
        (
            &[
                ("STATUSHOOK_PUBLIC_URL", "https://h.example"),
                ("STATUSHOOK_API_TOKEN", API_TOKEN),
            ],
            "TWILIO_AUTH_TOKEN",
        ),
        (
            &[
                ("STATUSHOOK_PUBLIC_URL", "h.example"),
                ("STATUSHOOK_API_TOKEN", API_TOKEN),
                ("TWILIO_AUTH_TOKEN", "t"),
            ],
            "STATUSHOOK_PUBLIC_URL",
        ),
    ];
    for (env, name) in cases {
        let output = std::process::Command::new(BINARY)
            .arg("serve")
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
        assert!(
            !stderr.contains("\"t\"") && !stderr.contains("=a"),
            "no secret in {stderr}"
        );
    }
    let help = std::process::Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--listen",
        "--data-dir",
        "--public-url",
        "STATUSHOOK_API_TOKEN",
        "TWILIO_AUTH_TOKEN_SECONDARY",
        "STATUSHOOK_SHARED_KEYS",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
}

#[tokio::test]
async fn healthcheck_exits_0_while_the_service_answers_and_1_after() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (mut child, address) = start_binary(data.path()).await;
    let listen = address.trim_start_matches("http://").to_owned();
    let check = |listen: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(BINARY)
                .args(["healthcheck", "--listen", &listen])
                .env_clear()
                .status()
                .expect("runs")
                .code()
        })
        .await
        .expect("joined")
    };
    assert_eq!(check(listen.clone()).await, Some(0));
    child.start_kill().expect("stopped");
    child.wait().await.expect("reaped");
    assert_eq!(check(listen).await, Some(1));
}
