//! Writes pre-signed status callbacks for the benchmark, one per line as
//! `signature<TAB>idempotency token<TAB>body`, so the load generator spends nothing on
//! HMAC. Each carries an `I-Twilio-Idempotency-Token`, as Twilio's own callbacks do.
//!
//! Each message gets `sent` then `delivered`, in blocks of 1,000 messages, so the load
//! mixes new messages with updates of existing ones, as real traffic does.
//!
//! `cargo run --release --example presign -- COUNT PUBLIC_URL AUTH_TOKEN OUT`

use std::io::{BufWriter, Write};

use statushook::config::Secret;
use statushook::signature::sign_sha1;
use statushook::simulate::callback_params;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let public_url = args
        .next()
        .unwrap_or_else(|| "https://hooks.example.com".into());
    let token = Secret::new(args.next().unwrap_or_else(|| "bench-auth-token".into()));
    let out = args.next().unwrap_or_else(|| "callbacks.tsv".into());
    let url = format!("{public_url}/twilio/status");
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    let run = std::process::id();
    let mut written = 0;
    let mut block = 0u64;
    while written < count {
        for status in ["sent", "delivered"] {
            for i in 0..1000u64 {
                if written == count {
                    break;
                }
                let sid = format!("SM{run:08x}{:024x}", block * 1000 + i);
                let params = callback_params(&sid, status, None, "+15005550009", "+15005550006");
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&params)
                    .finish();
                let idempotency = format!("{run:08x}-{written:012x}");
                writeln!(
                    file,
                    "{}\t{idempotency}\t{body}",
                    sign_sha1(&token, &url, &params)
                )?;
                written += 1;
            }
        }
        block += 1;
    }
    file.flush()
}
