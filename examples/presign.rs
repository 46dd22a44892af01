//! Writes pre-signed status callbacks for the benchmark, one per line as
//! `signature<TAB>idempotency token<TAB>body`, so the load generator spends nothing on
//! HMAC. Each carries an `I-Twilio-Idempotency-Token`, as Twilio's own callbacks do.
//!
//! The mix is realistic: every message has its own SID and goes through 3 or 4 statuses
//! (`queued`, `sent`, then `delivered` and sometimes `read`); about 15% end `undelivered`
//! or `failed` with an error code; about 20% have two callbacks arriving out of order; about
//! 3% of callbacks are delivered twice (a new delivery, so a new idempotency token, as
//! when Twilio retries). Messages go in blocks of 1,000, each block's callbacks step by
//! step, so the load mixes new messages with updates of existing ones, as real traffic does.
//!
//! `cargo run --release --example presign -- COUNT PUBLIC_URL AUTH_TOKEN OUT [random|sequential] [events BATCH]`
//!
//! With `events BATCH`, it writes the same mix as Twilio Event Streams
//! requests instead, BATCH CloudEvents each (a lone object when BATCH is 1), one per line as
//! `request target<TAB>signature<TAB>body`: the target carries `bodySHA256`, the signature
//! is of `{PUBLIC_URL}/twilio/events?bodySHA256=…`. COUNT counts events; each event has its
//! own `id`, and a delivery made twice repeats its event with a new `id`, as a
//! redelivery that Twilio counts as a new event would (so the mix stores as the callbacks'
//! does).
//!
//! SIDs are `random` by default: `SM` and 32 random lower-case hex digits, as Twilio issues
//! them, so new messages land all over the store's key space. `sequential` SIDs count up
//! (`SM`, the process id, a counter), so every new message's keys land at the right edge
//! of the trees: the benchmark's only mode before 2026-12-08, kept to show the difference.

use std::io::{BufWriter, Write};

use statushook::cli::simulate::{callback_params, signed_events, stream_event};
use statushook::secret::Secret;
use statushook::twilio::signature::sign_sha1;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let public_url = args
        .next()
        .unwrap_or_else(|| "https://hooks.example.com".into());
    let token = Secret::new(args.next().unwrap_or_else(|| "bench-auth-token".into()));
    let out = args.next().unwrap_or_else(|| "callbacks.tsv".into());
    let mut sequential = false;
    let mut batch: Option<usize> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "random" => sequential = false,
            "sequential" => sequential = true,
            "events" => batch = Some(args.next().and_then(|n| n.parse().ok()).unwrap_or(10)),
            other => panic!(
                "SIDs are random or sequential, and `events BATCH` asks for streams, not {other}"
            ),
        }
    }
    let url = format!("{public_url}/twilio/status");
    let events_url = format!("{public_url}/twilio/events");
    let mut pending: Vec<serde_json::Value> = Vec::new();
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    let run = std::process::id();
    let mut rng = fastrand::Rng::with_seed(7);
    // Its own generator, so both kinds of SID get the same mix of paths.
    let mut sids = fastrand::Rng::with_seed(u64::from(run));
    let mut written = 0;
    let mut block = 0u64;
    while written < count {
        // Each message's callbacks in the order they will arrive.
        let paths: Vec<Vec<(&str, Option<u32>)>> = (0..1000).map(|_| path(&mut rng)).collect();
        let block_sids: Vec<String> = (0..1000u64)
            .map(|i| match sequential {
                true => format!("SM{run:08x}{:024x}", block * 1000 + i),
                false => format!("SM{:032x}", sids.u128(..)),
            })
            .collect();
        let longest = paths.iter().map(Vec::len).max().unwrap_or(0);
        for step in 0..longest {
            for (i, path) in paths.iter().enumerate() {
                let Some((status, error)) = path.get(step).copied() else {
                    continue;
                };
                if written == count {
                    break;
                }
                let sid = &block_sids[i];
                let deliveries = if rng.u8(..100) < 3 { 2 } else { 1 };
                if let Some(batch) = batch {
                    for _ in 0..deliveries {
                        let id = format!("EZ{run:08x}{written:024x}");
                        let event =
                            stream_event(&id, sid, status, error, "+15005550009", "+15005550006");
                        pending.push(event);
                        written += 1;
                        if pending.len() == batch {
                            write_events(&mut file, &token, &events_url, &mut pending)?;
                        }
                    }
                    continue;
                }
                let params = callback_params(sid, status, error, "+15005550009", "+15005550006");
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&params)
                    .finish();
                let signature = sign_sha1(&token, &url, &params);
                for _ in 0..deliveries {
                    let idempotency = format!("{run:08x}-{written:012x}");
                    writeln!(file, "{signature}\t{idempotency}\t{body}")?;
                    written += 1;
                }
            }
        }
        block += 1;
    }
    if !pending.is_empty() {
        write_events(&mut file, &token, &events_url, &mut pending)?;
    }
    file.flush()
}

/// One line of stream events: target, signature and body of the request holding `pending`.
fn write_events(
    file: &mut impl Write,
    token: &Secret,
    events_url: &str,
    pending: &mut Vec<serde_json::Value>,
) -> std::io::Result<()> {
    let events: Vec<&serde_json::Value> = pending.iter().collect();
    let (url, body, signature) = signed_events(token, events_url, events_url, &events);
    let target = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| rest[slash..].to_owned()))
        .unwrap_or(url);
    writeln!(file, "{target}\t{signature}\t{body}")?;
    pending.clear();
    Ok(())
}

/// One message's callbacks: 3 or 4 statuses, 15% ending in an error, 20% with two
/// neighbours swapped.
fn path(rng: &mut fastrand::Rng) -> Vec<(&'static str, Option<u32>)> {
    let mut path = vec![("queued", None), ("sent", None)];
    match rng.u8(..100) {
        0..=9 => path.push(("undelivered", Some([30003, 30005, 30006][rng.usize(..3)]))),
        10..=14 => path.push(("failed", Some(30008))),
        15..=39 => path.extend([("delivered", None), ("read", None)]),
        _ => path.push(("delivered", None)),
    }
    if rng.u8(..100) < 20 {
        let at = rng.usize(..path.len() - 1);
        path.swap(at, at + 1);
    }
    path
}
