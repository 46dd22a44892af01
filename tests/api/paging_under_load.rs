//! Paging while callbacks keep moving messages: many writes are in flight while every page
//! is served, not only between pages. Every message that existed when a listing's first
//! page was served must appear in that listing exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::support::fixtures::{callback, new_sid};
use crate::support::spawn::{spawn_app, TestApp};

const MESSAGES: usize = 1500;
const WRITERS: usize = 16;
const PATH: &[&str] = &["queued", "sent", "delivered", "read"];

/// The test's own record of what it sent: each message's SID and how far along `PATH` its
/// acknowledged callbacks have taken it.
#[derive(Default)]
struct Sent {
    sids: Vec<String>,
    progress: HashMap<String, usize>,
}

async fn list_all(app: &TestApp, filter: &str) -> Vec<String> {
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/messages?limit=50{filter}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let response = app.get_authorized(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        let page: Value = response.json().await.expect("a JSON page");
        for message in page["messages"].as_array().expect("messages") {
            listed.push(message["sid"].as_str().expect("a sid").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return listed,
        }
        // Let the writers move messages between pages as well as during them.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_is_listed_exactly_once_while_hundreds_of_callbacks_a_second_move_them() {
    let app = Arc::new(spawn_app().await);
    let sent = Arc::new(Mutex::new(Sent::default()));
    let first: Vec<String> = (0..MESSAGES).map(|_| new_sid()).collect();
    for chunk in first.chunks(100) {
        let forms: Vec<_> = chunk.iter().map(|sid| callback(sid, "accepted")).collect();
        let posts = forms.iter().map(|form| app.post_callback(form));
        for response in join_all(posts).await {
            assert_eq!(response.status(), 200);
        }
    }
    {
        let mut sent = sent.lock().expect("lock");
        for sid in &first {
            sent.sids.push(sid.clone());
            sent.progress.insert(sid.clone(), 0);
        }
    }

    // Writers: each moves a random message one step along its path, or now and then
    // creates a new one, as fast as the service answers.
    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (app, sent, stop, moved) = (app.clone(), sent.clone(), stop.clone(), moved.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(w as u64);
                while !stop.load(Ordering::Relaxed) {
                    let step = {
                        let sent = sent.lock().expect("lock");
                        let sid = sent.sids[rng.usize(..sent.sids.len())].clone();
                        let at = sent.progress[&sid];
                        (at < PATH.len()).then_some((sid, at))
                    };
                    let (sid, status) = match step {
                        Some((sid, at)) if rng.u8(..10) > 0 => (sid, PATH[at]),
                        _ => (new_sid(), "accepted"),
                    };
                    let response = app.post_callback(&callback(&sid, status)).await;
                    assert_eq!(response.status(), 200);
                    moved.fetch_add(1, Ordering::Relaxed);
                    let mut sent = sent.lock().expect("lock");
                    match sent.progress.get_mut(&sid) {
                        Some(at) => {
                            *at = (*at)
                                .max(PATH.iter().position(|s| *s == status).map_or(0, |p| p + 1))
                        }
                        None => {
                            sent.sids.push(sid.clone());
                            sent.progress.insert(sid, 0);
                        }
                    }
                }
            })
        })
        .collect();

    let started = std::time::Instant::now();
    // At least six listings, and as many more as it takes for a thousand callbacks to have
    // arrived while they ran, however slow the machine.
    let mut listing = 0;
    while listing < 6 || (moved.load(Ordering::Relaxed) < 1000 && listing < 200) {
        listing += 1;
        // Every message acknowledged before the first page is requested existed at its
        // snapshot (the snapshot is taken when the first page is served, later).
        let existing: HashSet<String> = sent.lock().expect("lock").sids.iter().cloned().collect();
        let filter = if listing % 3 == 2 {
            "&status=accepted&status=queued&status=sent&status=delivered&status=read"
        } else {
            ""
        };
        let listed = list_all(&app, filter).await;
        let mut seen = HashSet::new();
        let twice: Vec<_> = listed.iter().filter(|sid| !seen.insert(*sid)).collect();
        assert!(
            twice.is_empty(),
            "listing {listing}: listed twice: {twice:?}"
        );
        let missing: Vec<_> = existing.iter().filter(|sid| !seen.contains(*sid)).collect();
        assert!(
            missing.is_empty(),
            "listing {listing}: {} messages that existed at the first page were not listed, e.g. {:?}",
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer ran");
    }
    let moved = moved.load(Ordering::Relaxed);
    eprintln!(
        "{moved} callbacks during the listings, {:.0}/s",
        moved as f64 / started.elapsed().as_secs_f64()
    );
    assert!(
        moved >= 1000,
        "the listings must run while messages move (only {moved} callbacks)"
    );
}
