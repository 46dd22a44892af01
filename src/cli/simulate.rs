//! `statushook simulate`: plays Twilio against a status-callback endpoint.
//!
//! It makes realistic, correctly signed callback sequences for a number of messages —
//! queued → sent → delivered (some read), undelivered or failed with real error codes —
//! then duplicates some callbacks (with the same idempotency token, as Twilio's retries
//! do), shuffles the order of some messages, interleaves all messages, and posts them at a
//! chosen rate. Each message's plan is printed as a JSON line: what it sent and the status
//! the message must end in. Useful to try statushook locally and for load tests.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use super::{runtime, CONFIG_ERROR};
use crate::secret::Secret;
use crate::twilio::signature;

#[derive(Debug, Clone)]
pub struct Options {
    /// Where to post, e.g. `http://127.0.0.1:8080/twilio/status`.
    pub url: String,
    /// The URL to sign: the one Twilio would call, `{PUBLIC_URL}/twilio/status`.
    pub signed_url: String,
    pub token: Secret,
    pub messages: usize,
    /// Callbacks a second.
    pub rate: f64,
    pub seed: u64,
    pub concurrency: usize,
}

/// One simulated message: what is sent for it, and where it must end.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub sid: String,
    pub final_status: &'static str,
    pub error_code: Option<u32>,
    /// Statuses in the order they are posted, duplicates included.
    pub sent: Vec<&'static str>,
    #[serde(skip)]
    callbacks: Vec<Callback>,
}

#[derive(Debug, Clone)]
struct Callback {
    params: Vec<(String, String)>,
    token: String,
}

/// What the endpoint answered.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub callbacks: usize,
    pub answered_200: usize,
    pub refused: usize,
    pub failed: usize,
    pub seconds: f64,
    /// Why callbacks were not answered `200`: each distinct answer once, with how many got it.
    pub failures: Vec<Failure>,
}

/// One kind of failed callback: the status and body it was answered with, or why it went
/// unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// `None` when no answer came (connection refused, timeout).
    pub status: Option<u16>,
    /// The answer's body (cut to a few hundred bytes), or the connection error.
    pub detail: String,
    pub count: usize,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} answered {status}: {}", self.count, self.detail),
            None => write!(f, "{} unanswered: {}", self.count, self.detail),
        }
    }
}

/// At most this many distinct failures are kept; the counts above cover the rest.
const MAX_FAILURE_KINDS: usize = 10;
/// Bytes of a failure's body kept.
const MAX_DETAIL: usize = 300;

/// What one posted callback got.
type Answer = Result<(u16, String), String>;

const UNDELIVERED_CODES: &[u32] = &[30003, 30005, 30006, 30007];
const FAILED_CODES: &[u32] = &[30008, 21610, 30032];

/// Makes the plan: deterministic for a seed.
pub fn plan(options: &Options) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let run = rng.u32(..);
    (0..options.messages)
        .map(|n| {
            let sid = format!("SM{run:08x}{:024x}", n);
            let roll = rng.u32(0..100);
            let (path, error_code): (&[&'static str], Option<u32>) = match roll {
                0..=69 => (&["queued", "sent", "delivered"], None),
                70..=79 => (&["queued", "sent", "delivered", "read"], None),
                80..=89 => (
                    &["queued", "sent", "undelivered"],
                    Some(UNDELIVERED_CODES[rng.usize(..UNDELIVERED_CODES.len())]),
                ),
                _ => (
                    &["queued", "failed"],
                    Some(FAILED_CODES[rng.usize(..FAILED_CODES.len())]),
                ),
            };
            let to = format!("+1555{:07}", rng.u32(0..10_000_000));
            let mut sent: Vec<&'static str> = path.to_vec();
            // Out of order: Twilio gives no ordering guarantee between callbacks.
            if rng.u32(0..100) < 15 {
                rng.shuffle(&mut sent);
            }
            let mut callbacks: Vec<Callback> = sent
                .iter()
                .enumerate()
                .map(|(i, status)| {
                    let error = if Some(*status) == path.last().copied() {
                        error_code
                    } else {
                        None
                    };
                    Callback {
                        params: callback_params(&sid, status, error, &to, "+15005550006"),
                        token: format!("{sid}-{i}"),
                    }
                })
                .collect();
            // Duplicates: a retried delivery repeats the callback and its token.
            for i in 0..callbacks.len() {
                if rng.u32(0..100) < 10 {
                    callbacks.push(callbacks[i].clone());
                    sent.push(sent[i]);
                }
            }
            Planned {
                sid,
                final_status: path[path.len() - 1],
                error_code,
                sent,
                callbacks,
            }
        })
        .collect()
}

/// The parameters Twilio posts with an SMS status callback, in Twilio's order.
pub fn callback_params(
    sid: &str,
    status: &str,
    error: Option<u32>,
    to: &str,
    from: &str,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
        ("MessageSid", sid),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(error) = error {
        params.push(("ErrorCode".into(), error.to_string()));
    }
    if matches!(status, "delivered" | "undelivered" | "failed") {
        params.push(("RawDlrDoneDate".into(), "2611260900".into()));
    }
    params
}

/// Posts every planned callback, messages interleaved, at the chosen rate.
pub async fn run(options: &Options, plan: &[Planned]) -> Report {
    // Round-robin across messages: the i-th callback of every message, then the next.
    let longest = plan.iter().map(|p| p.callbacks.len()).max().unwrap_or(0);
    let order: Vec<&Callback> = (0..longest)
        .flat_map(|i| plan.iter().filter_map(move |p| p.callbacks.get(i)))
        .collect();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let pace = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let options = Arc::new(options.clone());
    let answers: Vec<Answer> = stream::iter(order.into_iter().enumerate())
        .map(|(i, callback)| {
            let (client, options) = (client.clone(), Arc::clone(&options));
            async move {
                // Start times are paced; answers may overlap up to the concurrency.
                let due = started + pace.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let signature =
                    signature::sign_sha1(&options.token, &options.signed_url, &callback.params);
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&callback.params)
                    .finish();
                let sent = client
                    .post(&options.url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .header("X-Twilio-Signature", signature)
                    .header("I-Twilio-Idempotency-Token", &callback.token)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // The body only matters when the callback failed.
                        let body = if status == 200 {
                            String::new()
                        } else {
                            response.text().await.unwrap_or_default()
                        };
                        Ok((status, body))
                    }
                    Err(error) => Err(error_chain(&error)),
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let status = |answer: &Answer| answer.as_ref().ok().map(|(status, _)| *status);
    Report {
        callbacks: answers.len(),
        answered_200: answers.iter().filter(|a| status(a) == Some(200)).count(),
        refused: answers
            .iter()
            .filter(|a| status(a).is_some_and(|code| code != 200))
            .count(),
        failed: answers.iter().filter(|a| a.is_err()).count(),
        seconds: started.elapsed().as_secs_f64(),
        failures: summarize_failures(&answers),
    }
}

/// Each distinct failed answer once, most frequent first.
fn summarize_failures(answers: &[Answer]) -> Vec<Failure> {
    let mut failures: Vec<Failure> = Vec::new();
    for answer in answers {
        let (status, detail) = match answer {
            Ok((200, _)) => continue,
            Ok((status, body)) => (Some(*status), cut(body.trim())),
            Err(error) => (None, cut(error)),
        };
        if let Some(known) = failures
            .iter_mut()
            .find(|f| f.status == status && f.detail == detail)
        {
            known.count += 1;
        } else if failures.len() < MAX_FAILURE_KINDS {
            failures.push(Failure {
                status,
                detail,
                count: 1,
            });
        }
    }
    failures.sort_by_key(|failure| std::cmp::Reverse(failure.count));
    failures
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_owned();
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A reqwest error with its causes ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, clap::Args)]
pub(super) struct SimulateArgs {
    /// The endpoint to post to, e.g. http://127.0.0.1:8080/twilio/status.
    #[arg(long)]
    url: String,
    /// The URL to sign, as Twilio would call it ({PUBLIC_URL}/twilio/status); defaults to --url.
    #[arg(long)]
    signed_url: Option<String>,
    /// How many messages.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Callbacks a second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seed of the plan; the same seed makes the same plan.
    #[arg(long)]
    seed: Option<u64>,
    /// Callbacks in flight at once, at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

pub(super) fn command(args: SimulateArgs) -> ExitCode {
    let Some(token) = crate::config::auth_token_from_env() else {
        eprintln!(
            "statushook: TWILIO_AUTH_TOKEN: is required but not set (it signs the callbacks)"
        );
        return ExitCode::from(CONFIG_ERROR);
    };
    if !args.rate.is_finite() || args.rate <= 0.0 {
        eprintln!("statushook: --rate: must be a positive number of callbacks a second");
        return ExitCode::from(CONFIG_ERROR);
    }
    let options = Options {
        signed_url: args.signed_url.unwrap_or_else(|| args.url.clone()),
        url: args.url,
        token,
        messages: args.messages,
        rate: args.rate,
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        concurrency: args.concurrency,
    };
    let planned = plan(&options);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = runtime.block_on(run(&options, &planned));
    for message in &planned {
        println!("{}", serde_json::to_string(message).unwrap_or_default());
    }
    eprintln!(
        "statushook: {} callbacks for {} messages in {:.1}s (seed {}): {} answered 200, {} refused, {} unanswered",
        report.callbacks, planned.len(), report.seconds, options.seed, report.answered_200, report.refused, report.failed
    );
    for failure in &report.failures {
        eprintln!("statushook: {failure}");
    }
    if report.answered_200 == report.callbacks {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
