//! Query latencies against a running statushook filled by `examples/fill`: lookups of
//! random messages, a filtered first page, and the 100th page of the full listing.
//! Requests are sequential, so each figure is the latency of one request on an idle
//! server, measured from the client.
//!
//! `cargo run --release --example query_bench -- http://127.0.0.1:9093 API_TOKEN COUNT [random|sequential]`,
//! with the count and the kind of SIDs of the fill.

use std::time::{Duration, Instant};

#[path = "common/sids.rs"]
mod sids;

use sids::Sids;

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let started = Instant::now();
    let response = client.get(url).bearer_auth(token).send().await?;
    anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
    let body: serde_json::Value = response.json().await?;
    Ok((started.elapsed(), body))
}

fn report(label: &str, samples: &mut [Duration]) {
    let (p50, p99) = (percentile(samples, 0.50), percentile(samples, 0.99));
    println!(
        "{label:<40} p50_ms={p50:.3} p99_ms={p99:.3} n={}",
        samples.len()
    );
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:9093".into());
    let token = args
        .next()
        .unwrap_or_else(|| "bench-api-token-0123456789abcdef0123".into());
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let sids = Sids::parse(args.next().as_deref()).map_err(|problem| anyhow::anyhow!(problem))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();

        let mut lookups = Vec::new();
        for i in 0..3000u64 {
            let n = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % count;
            let (took, body) = timed(
                &client,
                &format!("{base}/v1/messages/{}", sids.sid(n)),
                &token,
            )
            .await?;
            anyhow::ensure!(
                body["events"].as_array().is_some_and(|e| !e.is_empty()),
                "no events for {n}"
            );
            lookups.push(took);
        }
        report("GET /v1/messages/{sid}", &mut lookups);

        let mut filtered = Vec::new();
        for _ in 0..300 {
            let (took, body) = timed(
                &client,
                &format!("{base}/v1/messages?status=failed&limit=100"),
                &token,
            )
            .await?;
            anyhow::ensure!(
                body["messages"].as_array().map(Vec::len) == Some(100),
                "short page"
            );
            filtered.push(took);
        }
        report("GET /v1/messages?status=failed&limit=100", &mut filtered);

        let mut cursor = String::new();
        for _ in 0..99 {
            let url = format!("{base}/v1/messages?limit=100{cursor}");
            let (_, body) = timed(&client, &url, &token).await?;
            let next = body["next_cursor"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("listing ended early"))?;
            cursor = format!("&cursor={next}");
        }
        let mut hundredth = Vec::new();
        for _ in 0..300 {
            let (took, body) = timed(
                &client,
                &format!("{base}/v1/messages?limit=100{cursor}"),
                &token,
            )
            .await?;
            anyhow::ensure!(
                body["messages"].as_array().map(Vec::len) == Some(100),
                "short page"
            );
            hundredth.push(took);
        }
        report("100th page of GET /v1/messages?limit=100", &mut hundredth);

        let mut stats = Vec::new();
        for _ in 0..100 {
            stats.push(timed(&client, &format!("{base}/v1/stats"), &token).await?.0);
        }
        report("GET /v1/stats", &mut stats);

        // A window holding every message: whole hours from hourly counters, the rest from
        // minutely counters and the index.
        let since = chrono::Utc::now() - chrono::Duration::hours(24);
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut windowed = Vec::new();
        for _ in 0..100 {
            let (took, body) =
                timed(&client, &format!("{base}/v1/stats?since={since}"), &token).await?;
            anyhow::ensure!(
                body["total"].as_u64() == Some(count),
                "windowed total {}",
                body["total"]
            );
            windowed.push(took);
        }
        report("GET /v1/stats?since=(24 h ago)", &mut windowed);
        Ok(())
    })
}
