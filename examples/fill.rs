//! Fills a store with realistic message histories, for the query benchmark.
//!
//! The outcome mix follows what SMS traffic usually looks like: most messages are
//! delivered (some read), a tenth undelivered, some failed, a few stuck in `sent` or
//! `queued`, for about 3.5 events a message; each event carries the parameters Twilio
//! sends. Writes go through `Store::record`, with many messages in flight, exactly as the
//! callback handler uses it.
//!
//! SIDs are `random` by default, 32 hex digits as Twilio issues them, so messages are spread
//! over the whole key space as in a production store; `sequential` SIDs count up
//! (`SM` and the message's number), as every fill did before 2026-12-08. Either way the
//! SID of message `n` is always the same, so two fills of one size hold the same messages.
//!
//! `cargo run --release --example fill -- DATA_DIR COUNT [random|sequential]`, or with a
//! `postgres://` URL in place of the folder to fill a PostgreSQL store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[path = "common/sids.rs"]
mod sids;

use sids::Sids;
use statushook::cli::simulate::callback_params;
use statushook::config::DatabaseUrl;
use statushook::domain::{Source, StatusEvent};
use statushook::store::Store;

const IN_FLIGHT: u64 = 512;

/// (share in thousandths, the statuses the message goes through, error code of the last)
const MIX: &[(u64, &[&str], Option<u32>)] = &[
    (600, &["queued", "sent", "delivered"], None),
    (
        150,
        &["queued", "sending", "sent", "delivered", "read"],
        None,
    ),
    (100, &["queued", "sent", "undelivered"], Some(30003)),
    (30, &["queued", "sent", "undelivered"], Some(30005)),
    (50, &["queued", "failed"], Some(30008)),
    (20, &["queued", "failed"], Some(21610)),
    (40, &["queued", "sent"], None),
    (10, &["accepted", "queued"], None),
];

fn outcome(n: u64) -> (&'static [&'static str], Option<u32>) {
    let mut slot = (n.wrapping_mul(2_654_435_761)) % 1000;
    for (share, path, error) in MIX {
        if slot < *share {
            return (path, *error);
        }
        slot -= share;
    }
    (MIX[0].1, MIX[0].2)
}

fn params(n: u64, sids: Sids, status: &str, error: Option<u32>) -> Vec<(String, String)> {
    let sid = sids.sid(n);
    let to = format!("+1555{:07}", n % 9_999_999);
    let from = format!("+1500555{:04}", n % 20);
    callback_params(&sid, status, error, &to, &from)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "bench/out/query-db".into());
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let sids = Sids::parse(args.next().as_deref()).map_err(|problem| anyhow::anyhow!(problem))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = if path.starts_with("postgres://") || path.starts_with("postgresql://") {
            let url = DatabaseUrl::parse(&path).map_err(|problem| anyhow::anyhow!(problem))?;
            Store::open_postgres(&url, Box::new(|_| {})).await?
        } else {
            Store::open_sled(std::path::Path::new(&path), Box::new(|_| {}))?
        };
        let next = Arc::new(AtomicU64::new(0));
        let events = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (store, next, events) = (store.clone(), next.clone(), events.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let (path, error) = outcome(n);
                        for (i, status) in path.iter().enumerate() {
                            let error = if i + 1 == path.len() { error } else { None };
                            let event = StatusEvent::from_params(params(n, sids, status, error), Source::Callback)
                                .map_err(|e| anyhow::anyhow!(e))?;
                            store.record(event, Some(format!("{n:x}-{i}"))).await?;
                            events.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await??;
        }
        let took = started.elapsed().as_secs_f64();
        let events = events.load(Ordering::Relaxed);
        store.close().await?;
        println!(
            "fill: {count} messages, {events} events ({:.2} a message) in {took:.1}s: {:.0} events/s",
            events as f64 / count as f64,
            events as f64 / took
        );
        Ok(())
    })
}
