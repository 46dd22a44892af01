//! `statushook simulate`: plays Twilio against statushook's endpoints.
//!
//! It makes realistic, correctly signed sequences for a number of messages — queued → sent
//! → delivered (some read), undelivered or failed with real error codes — then duplicates
//! some deliveries (with the same idempotency token or CloudEvent id, as Twilio's retries
//! do), shuffles the order of some messages, interleaves all messages, and posts them at a
//! chosen rate. Each message's plan is printed as a JSON line: what it sent and the status
//! the message must end in. Useful to try statushook locally and for load tests.
//!
//! `--via` chooses how Twilio reports: status callbacks to `/twilio/status` (the default),
//! Event Streams events to `/twilio/events` (CloudEvents, `--batch` of them a request, as a
//! batching sink sends them), or a mix: some messages by callback, some by stream, and
//! some by both — each transition then arrives twice, once by each channel, and must be
//! one transition in effect with both deliveries in the history.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use super::{runtime, CONFIG_ERROR};
use crate::secret::Secret;
use crate::twilio::signature;

#[derive(Debug, Clone)]
pub struct Options {
    /// Where to post callbacks, e.g. `http://127.0.0.1:8080/twilio/status`.
    pub url: String,
    /// The URL to sign: the one Twilio would call, `{PUBLIC_URL}/twilio/status`.
    pub signed_url: String,
    /// Where to post stream events, e.g. `http://127.0.0.1:8080/twilio/events`.
    pub events_url: String,
    /// The sink's destination as Twilio calls it, `{PUBLIC_URL}/twilio/events`.
    pub signed_events_url: String,
    pub token: Secret,
    pub messages: usize,
    /// Deliveries (callbacks and stream events) a second.
    pub rate: f64,
    pub seed: u64,
    pub concurrency: usize,
    pub via: Via,
    /// Stream events a request; 1 posts each event alone, as an object.
    pub batch: usize,
}

/// How Twilio reports the simulated messages' statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Status callbacks to /twilio/status.
    #[default]
    Callbacks,
    /// Event Streams events to /twilio/events.
    Streams,
    /// Some messages by callback, some by stream, some by both.
    Mixed,
}

/// The channel of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Callback,
    EventStream,
}

/// One simulated message: what is sent for it, and where it must end.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub sid: String,
    pub final_status: &'static str,
    pub error_code: Option<u32>,
    /// Statuses in the order they are posted, duplicates included.
    pub sent: Vec<&'static str>,
    /// The channel of each of `sent`.
    pub channels: Vec<Channel>,
    #[serde(skip)]
    deliveries: Vec<Delivery>,
}

/// One delivery: a status callback (its parameters and idempotency token) or a stream
/// event (its CloudEvent, whose `id` is its token).
#[derive(Debug, Clone)]
enum Delivery {
    Callback {
        params: Vec<(String, String)>,
        token: String,
    },
    Stream(Value),
}

/// What the endpoints answered.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Requests posted: callbacks, and requests of stream events.
    pub requests: usize,
    /// Stream events posted, in those requests.
    pub events: usize,
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
            let mut statuses: Vec<&'static str> = path.to_vec();
            // Out of order: Twilio gives no ordering guarantee between callbacks.
            if rng.u32(0..100) < 15 {
                rng.shuffle(&mut statuses);
            }
            // The channels that report this message (the callbacks-only plan draws nothing
            // here, so a seed makes the same plan it always made).
            let channels: &[Channel] = match options.via {
                Via::Callbacks => &[Channel::Callback],
                Via::Streams => &[Channel::EventStream],
                Via::Mixed => match rng.u32(0..100) {
                    0..=39 => &[Channel::Callback],
                    40..=69 => &[Channel::EventStream],
                    _ => &[Channel::Callback, Channel::EventStream],
                },
            };
            let mut sent = Vec::new();
            let mut via = Vec::new();
            let mut deliveries: Vec<Delivery> = Vec::new();
            for (i, status) in statuses.iter().enumerate() {
                let error = if Some(*status) == path.last().copied() {
                    error_code
                } else {
                    None
                };
                for channel in channels {
                    deliveries.push(match channel {
                        Channel::Callback => Delivery::Callback {
                            params: callback_params(&sid, status, error, &to, "+15005550006"),
                            token: format!("{sid}-{i}"),
                        },
                        Channel::EventStream => Delivery::Stream(stream_event(
                            &format!("EZ{}{i:02}", &sid[2..32]),
                            &sid,
                            status,
                            error,
                            &to,
                            "+15005550006",
                        )),
                    });
                    sent.push(*status);
                    via.push(*channel);
                }
            }
            // Duplicates: a retried delivery repeats the callback and its token, or the
            // stream event and its id.
            for i in 0..deliveries.len() {
                if rng.u32(0..100) < 10 {
                    deliveries.push(deliveries[i].clone());
                    sent.push(sent[i]);
                    via.push(via[i]);
                }
            }
            Planned {
                sid,
                final_status: path[path.len() - 1],
                error_code,
                sent,
                channels: via,
                deliveries,
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

/// The CloudEvent Twilio Event Streams sends when message `sid` reaches `status`
/// (`Messaging.MessageStatus`, the status in upper case, the error code as an integer).
pub fn stream_event(
    id: &str,
    sid: &str,
    status: &str,
    error: Option<u32>,
    to: &str,
    from: &str,
) -> Value {
    let account = "AC0123456789abcdef0123456789abcdef";
    let mut data = json!({
        "messageSid": sid,
        "timestamp": "2026-11-26T09:00:00.000Z",
        "accountSid": account,
        "eventName": format!("com.twilio.messaging.message.{status}"),
        "apiVersion": "2010-04-01",
        "from": from,
        "to": to,
        "messageStatus": status.to_ascii_uppercase(),
        "messagingServiceSid": "MG0123456789abcdef0123456789abcdef",
        "numberOfSegments": 1,
    });
    if let Some(error) = error {
        data["errorCode"] = json!(error);
    }
    json!({
        "specversion": "1.0",
        "type": format!("com.twilio.messaging.message.{status}"),
        "source": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
        "id": id,
        "dataschema": "https://events-schemas.twilio.com/Messaging.MessageStatus/7",
        "datacontenttype": "application/json",
        "time": "2026-11-26T09:00:00.000Z",
        "data": data,
    })
}

/// The request target, body and signature of stream events posted to `url` and signed for
/// `signed_url`: a lone event as an object, several as an array (a batch).
pub fn signed_events(
    token: &Secret,
    url: &str,
    signed_url: &str,
    events: &[&Value],
) -> (String, String, String) {
    let body = match events {
        [one] => one.to_string(),
        many => Value::Array(many.iter().map(|event| (*event).clone()).collect()).to_string(),
    };
    let query = format!("bodySHA256={}", signature::body_sha256(body.as_bytes()));
    let join = |url: &str| {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{query}")
    };
    let none: &[(&str, &str)] = &[];
    let signature = signature::sign_sha1(token, &join(signed_url), none);
    (join(url), body, signature)
}

/// One request to post: a callback, or stream events (one, or a batch).
enum Request<'a> {
    Callback {
        params: &'a [(String, String)],
        token: &'a str,
    },
    Events(Vec<&'a Value>),
}

/// Posts every planned delivery, messages interleaved, at the chosen rate: callbacks one a
/// request, stream events `batch` a request.
pub async fn run(options: &Options, plan: &[Planned]) -> Report {
    // Round-robin across messages: the i-th delivery of every message, then the next.
    let longest = plan.iter().map(|p| p.deliveries.len()).max().unwrap_or(0);
    let order: Vec<&Delivery> = (0..longest)
        .flat_map(|i| plan.iter().filter_map(move |p| p.deliveries.get(i)))
        .collect();
    // Each request with the position of the delivery that completes it, which paces it.
    let mut requests: Vec<(usize, Request)> = Vec::new();
    let mut batch: Vec<&Value> = Vec::new();
    let batch_size = options.batch.max(1);
    for (i, delivery) in order.iter().enumerate() {
        match delivery {
            Delivery::Callback { params, token } => {
                requests.push((i, Request::Callback { params, token }));
            }
            Delivery::Stream(event) => {
                batch.push(event);
                if batch.len() == batch_size {
                    requests.push((i, Request::Events(std::mem::take(&mut batch))));
                }
            }
        }
    }
    if !batch.is_empty() {
        requests.push((order.len(), Request::Events(batch)));
    }
    let events = order
        .iter()
        .filter(|d| matches!(d, Delivery::Stream(_)))
        .count();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let pace = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let options = Arc::new(options.clone());
    let answers: Vec<Answer> = stream::iter(requests)
        .map(|(i, request)| {
            let (client, options) = (client.clone(), Arc::clone(&options));
            async move {
                // Start times are paced; answers may overlap up to the concurrency.
                let due = started + pace.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let request = match request {
                    Request::Callback { params, token } => {
                        let signature =
                            signature::sign_sha1(&options.token, &options.signed_url, params);
                        let body = form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(params)
                            .finish();
                        client
                            .post(&options.url)
                            .header("Content-Type", "application/x-www-form-urlencoded")
                            .header("X-Twilio-Signature", signature)
                            .header("I-Twilio-Idempotency-Token", token)
                            .body(body)
                    }
                    Request::Events(events) => {
                        let (url, body, signature) = signed_events(
                            &options.token,
                            &options.events_url,
                            &options.signed_events_url,
                            &events,
                        );
                        client
                            .post(url)
                            .header("Content-Type", "application/json")
                            .header("X-Twilio-Signature", signature)
                            .body(body)
                    }
                };
                let sent = request.send().await;
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
        requests: answers.len(),
        events,
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
    /// The endpoint to post callbacks to, e.g. http://127.0.0.1:8080/twilio/status.
    #[arg(long)]
    url: String,
    /// The URL to sign, as Twilio would call it ({PUBLIC_URL}/twilio/status); defaults to --url.
    #[arg(long)]
    signed_url: Option<String>,
    /// How Twilio reports: status callbacks, Event Streams events, or a mix (some
    /// messages by both).
    #[arg(long, value_enum, default_value_t = Via::Callbacks)]
    via: Via,
    /// The endpoint to post stream events to; defaults to --url with /twilio/status
    /// replaced by /twilio/events.
    #[arg(long)]
    events_url: Option<String>,
    /// The sink's destination as Twilio calls it ({PUBLIC_URL}/twilio/events); defaults to
    /// --signed-url with /twilio/status replaced by /twilio/events, else --events-url.
    #[arg(long)]
    signed_events_url: Option<String>,
    /// Stream events a request (a batching sink); 1 posts each alone.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// How many messages.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Deliveries (callbacks and stream events) a second.
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
    let to_events = |url: &str| {
        url.strip_suffix("/twilio/status")
            .map(|base| format!("{base}/twilio/events"))
    };
    let events_url = match args.events_url.clone().or_else(|| to_events(&args.url)) {
        Some(url) => url,
        None if args.via == Via::Callbacks => String::new(),
        None => {
            eprintln!(
                "statushook: --events-url: is required when --url does not end in /twilio/status"
            );
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let signed_url = args.signed_url.unwrap_or_else(|| args.url.clone());
    let signed_events_url = args
        .signed_events_url
        .or_else(|| to_events(&signed_url))
        .unwrap_or_else(|| events_url.clone());
    let options = Options {
        signed_url,
        url: args.url,
        events_url,
        signed_events_url,
        token,
        messages: args.messages,
        rate: args.rate,
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        concurrency: args.concurrency,
        via: args.via,
        batch: args.batch,
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
        "statushook: {} requests ({} of them stream events) for {} messages in {:.1}s (seed {}): {} answered 200, {} refused, {} unanswered",
        report.requests, report.events, planned.len(), report.seconds, options.seed, report.answered_200, report.refused, report.failed
    );
    for failure in &report.failures {
        eprintln!("statushook: {failure}");
    }
    if report.answered_200 == report.requests {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
