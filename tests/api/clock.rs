//! One clock: replicas whose system clocks disagree by minutes agree on arrival times,
//! paging and stats, because PostgreSQL's clock stamps for all of them; and the sled
//! store's arrival times survive steps of the system clock. The binary runs with a shifted
//! system clock through libfaketime (Debian's `faketime`), its monotonic clocks untouched;
//! each test first checks that the shift reached it.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use statushook::domain::Timestamp;

use crate::support::binary::{
    get_json, post_to_binary, serve_command, serve_env, start, stop, Binary,
};
use crate::support::database::fresh_database;
use crate::support::fixtures::{callback, new_sid, with, API_TOKEN};

const SECOND: u64 = 1_000_000;
/// How far an arrival time may be from the real time of its callback: the request's own
/// time and the machine's load.
const SLACK: u64 = 3 * SECOND;

/// libfaketime's preload library, from Debian's `faketime` package.
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .chain([Path::new("/usr/lib/faketime/libfaketime.so.1").to_path_buf()])
        .find(|path| path.exists());
    found
        .expect("libfaketime is not installed: apt-get install faketime (scripts/test does)")
        .display()
        .to_string()
}

/// Settings that run the binary with its system clock shifted as libfaketime's `spec`
/// says (`FAKETIME`), or as the file `spec` says at each reading of the clock.
fn faked(spec: Spec) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("LD_PRELOAD", libfaketime()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ];
    match spec {
        Spec::Offset(offset) => env.push(("FAKETIME", offset.into())),
        Spec::File(path) => {
            env.push(("FAKETIME_TIMESTAMP_FILE", path.display().to_string()));
            env.push(("FAKETIME_NO_CACHE", "1".into()));
        }
    }
    env
}

enum Spec<'a> {
    Offset(&'a str),
    File(&'a Path),
}

/// The time of a binary's start-up line, against the real time now: how far its system
/// clock is shifted, in seconds.
fn shift_of(binary: &Binary) -> i64 {
    let logged = binary.startup["timestamp"].as_str().expect("a timestamp");
    let logged = Timestamp::parse_rfc3339(logged).expect("an RFC 3339 time");
    (logged.0 as i64 - Timestamp::now().0 as i64) / SECOND as i64
}

/// A replica on `database` whose system clock is `offset` from real time.
async fn skewed_replica(database: &str, offset: &str, seconds: i64) -> Binary {
    let unused = std::env::temp_dir().join("statushook-replica-unused");
    let mut settings = serve_env(&unused);
    settings.push(("STATUSHOOK_DATABASE_URL", database.to_owned()));
    settings.extend(faked(Spec::Offset(offset)));
    let binary = start(serve_command(&settings)).await;
    let shift = shift_of(&binary);
    assert!(
        (shift - seconds).abs() <= 5,
        "libfaketime must shift the binary's clock by {offset}, it logged {shift} s"
    );
    binary
}

async fn post(client: &reqwest::Client, address: &str, params: &[(String, String)]) {
    let response = post_to_binary(client, address, params)
        .await
        .expect("answered");
    assert_eq!(response.status(), 200, "{params:?}");
}

fn time_of(value: &Value) -> u64 {
    Timestamp::parse_rfc3339(value.as_str().expect("a time"))
        .expect("RFC 3339")
        .0
}

fn rfc3339(at: u64) -> String {
    Timestamp(at).to_rfc3339()
}

#[tokio::test]
async fn replicas_ten_minutes_apart_agree_on_arrival_times_paging_and_stats() {
    let database = fresh_database().await;
    let ahead = skewed_replica(&database, "+5m", 300).await;
    let behind = skewed_replica(&database, "-5m", -300).await;
    let replicas = [ahead.address.as_str(), behind.address.as_str()];
    let client = reqwest::Client::new();

    let started = Timestamp::now().0;
    let mut sids = Vec::new();
    for i in 0..40 {
        let sid = new_sid();
        // Each message's callbacks go to both replicas, in turn.
        let (first, second) = (replicas[i % 2], replicas[(i + 1) % 2]);
        post(&client, first, &callback(&sid, "queued")).await;
        let last = if i % 4 == 1 {
            with(callback(&sid, "failed"), "ErrorCode", "30003")
        } else {
            callback(&sid, "delivered")
        };
        post(&client, second, &last).await;
        sids.push(sid);
    }
    let ended = Timestamp::now().0;

    // Arrival times are the database's, real times, whichever replica stamped them.
    for sid in &sids {
        let message = get_json(&client, &format!("{}/v1/messages/{sid}", replicas[1])).await;
        for event in message["events"].as_array().expect("events") {
            let at = time_of(&event["received_at"]);
            assert!(
                (started - SLACK..ended + SLACK).contains(&at),
                "{sid}: arrival time {} outside the real {}..{}",
                rfc3339(at),
                rfc3339(started),
                rfc3339(ended)
            );
        }
    }

    // A listing begun on one replica goes on on the other: each message once, newest first.
    let mut listed: Vec<(u64, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    for turn in 0.. {
        let address = replicas[turn % 2];
        let mut url = format!("{address}/v1/messages?limit=7");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let response = client
            .get(&url)
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        let page: Value = response.json().await.expect("JSON");
        assert_eq!(status, 200, "page {turn} on replica {}: {page}", turn % 2);
        for message in page["messages"].as_array().expect("messages") {
            let sid = message["sid"].as_str().expect("a sid").to_owned();
            listed.push((time_of(&message["updated_at"]), sid));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let distinct: HashSet<&String> = listed.iter().map(|(_, sid)| sid).collect();
    assert_eq!(listed.len(), sids.len(), "each message once: {listed:?}");
    assert_eq!(distinct, sids.iter().collect(), "every message");
    assert!(
        listed.windows(2).all(|w| w[0].0 >= w[1].0),
        "newest first across replicas"
    );

    // Stats and filtered listings over the real time of the callbacks count every message,
    // on either replica.
    let window = format!(
        "since={}&until={}",
        rfc3339(started - SLACK),
        rfc3339(ended + SLACK)
    );
    for address in replicas {
        let stats = get_json(&client, &format!("{address}/v1/stats?{window}")).await;
        assert_eq!(stats["total"], 40, "{address}: {stats}");
        assert_eq!(stats["by_status"]["delivered"], 30, "{stats}");
        assert_eq!(stats["by_status"]["failed"], 10, "{stats}");
        let open = get_json(
            &client,
            &format!("{address}/v1/stats?since={}", rfc3339(started - SLACK)),
        )
        .await;
        assert_eq!(
            open["total"], 40,
            "{address}, a window open at its end: {open}"
        );
        let page = get_json(
            &client,
            &format!("{address}/v1/messages?limit=100&{window}"),
        )
        .await;
        assert_eq!(page["messages"].as_array().map(Vec::len), Some(40));
    }
    stop(ahead.child).await;
    stop(behind.child).await;
}

#[tokio::test]
async fn sled_arrival_times_stay_real_through_steps_of_the_system_clock_each_logged_once() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let spec = dir.path().join("faketime");
    std::fs::write(&spec, "+0\n").expect("written");
    // sled whatever store the tests use: this is sled's own clock.
    let mut settings = serve_env(&dir.path().join("db"));
    settings.extend(faked(Spec::File(&spec)));
    let binary = start(serve_command(&settings)).await;
    assert!(shift_of(&binary).abs() <= 5);
    let client = reqwest::Client::new();
    let address = binary.address.clone();

    // A message through each phase, and a message of its own in each.
    let through = new_sid();
    let mut expected = Vec::new();
    let phases = [
        ("+0", "queued"),
        ("+1h", "sending"),
        ("+0", "sent"),
        ("-1h", "delivered"),
        ("+0", "read"),
    ];
    for (shift, status) in phases {
        std::fs::write(&spec, format!("{shift}\n")).expect("written");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = Timestamp::now().0;
        let own = new_sid();
        post(&client, &address, &callback(&own, "queued")).await;
        post(&client, &address, &callback(&through, status)).await;
        let after = Timestamp::now().0;
        expected.push((own, before, after));
        expected.push((through.clone(), before, after));
    }
    let mut last = 0;
    for (index, (sid, before, after)) in expected.iter().enumerate() {
        let message = get_json(&client, &format!("{address}/v1/messages/{sid}")).await;
        let events = message["events"].as_array().expect("events");
        let event = if sid == &through {
            &events[index / 2]
        } else {
            &events[0]
        };
        let at = time_of(&event["received_at"]);
        assert!(
            (before - SLACK..after + SLACK).contains(&at),
            "phase {} ({}): {sid} stamped {}, real time {}..{}",
            index / 2,
            phases[index / 2].0,
            rfc3339(at),
            rfc3339(*before),
            rfc3339(*after)
        );
        assert!(at >= last, "arrival times never go back");
        last = at;
    }

    stop(binary.child).await;
    let log = binary.log.read_to_end().await;
    let entries: Vec<Value> = log
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let warned = |what: &str| -> Vec<f64> {
        entries
            .iter()
            .filter(|entry| entry["level"] == "WARN")
            .filter(|entry| entry["message"].as_str().is_some_and(|m| m.contains(what)))
            .map(|entry| entry["step_seconds"].as_f64().expect("the step's size"))
            .collect()
    };
    for what in ["stepped forward", "stepped back"] {
        let steps = warned(what);
        assert_eq!(steps.len(), 1, "{what} logged once: {log:?}");
        assert!(
            (steps[0] - 3600.0).abs() < 5.0,
            "{what} by an hour: {steps:?}"
        );
    }
}
