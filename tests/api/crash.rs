//! Durability: every callback answered 200 survives `kill -9` of the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::support::binary::{
    get_from_binary, post_to_binary, start_binary, start_binary_with_file_limit, start_sled_binary,
};
use crate::support::fixtures::{callback, new_sid};

#[tokio::test]
async fn every_acknowledged_callback_survives_kill_9() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (mut child, address) = start_binary(data.path()).await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(Notify::new());
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (acknowledged, count, stop, enough) = (
            acknowledged.clone(),
            count.clone(),
            stop.clone(),
            enough.clone(),
        );
        let address = address.clone();
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let sid = new_sid();
                let params = callback(&sid, "delivered");
                let sent = post_to_binary(&client, &address, &params).await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.lock().expect("lock").push(sid);
                        if count.fetch_add(1, Ordering::Relaxed) + 1 == 500 {
                            enough.notify_one();
                        }
                    }
                    // The process was killed mid-request: this one was never acknowledged.
                    _ => break,
                }
            }
        }));
    }

    enough.notified().await;
    child.start_kill().expect("SIGKILL is sent");
    child.wait().await.expect("the child is reaped");
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("sender finishes");
    }

    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= 500,
        "only {} acknowledged",
        acknowledged.len()
    );

    let (_child, address) = start_binary(data.path()).await;
    let client = reqwest::Client::new();
    let mut missing = Vec::new();
    for sid in &acknowledged {
        let response = get_from_binary(&client, &address, sid).await;
        if response.status() != 200 {
            missing.push(sid.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged callbacks lost: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}

#[tokio::test]
async fn when_the_disk_refuses_writes_callbacks_get_503_the_service_exits_and_a_restart_loses_nothing(
) {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (mut child, address) = start_binary_with_file_limit(data.path(), 3000).await;
    let client = reqwest::Client::new();
    let post = |sid: String| {
        let (client, address) = (client.clone(), address.clone());
        async move { post_to_binary(&client, &address, &callback(&sid, "delivered")).await }
    };

    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for _ in 0..50_000 {
        let sid = new_sid();
        let response = post(sid.clone()).await.expect("answered");
        match response.status().as_u16() {
            200 => acknowledged.push(sid),
            503 => {
                refusal = Some(response);
                break;
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    let refusal = refusal.expect("the store filled up and refused a write");
    assert!(refusal.headers().contains_key("retry-after"));
    assert!(!acknowledged.is_empty());
    // The service does not linger unready: it exits non-zero within a few seconds, so
    // that its supervisor restarts it.
    let exited = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("the service exits after a storage error")
        .expect("reaped");
    assert!(
        !exited.success(),
        "a failed store must make the process exit non-zero"
    );

    // The restart (here without the limit, as after an operator freed space) recovers
    // every acknowledged callback and takes new ones.
    let (_child, address) = start_sled_binary(data.path()).await;
    assert_eq!(
        post_to_binary(&client, &address, &callback(&new_sid(), "sent"))
            .await
            .expect("answered")
            .status(),
        200
    );
    for sid in &acknowledged {
        let response = get_from_binary(&client, &address, sid).await;
        assert_eq!(response.status(), 200, "{sid} was acknowledged, then lost");
    }
}
