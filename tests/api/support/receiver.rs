//! The webhook receiver of the forwarding tests, `tests/forwarding/receiver.py`: it verifies
//! every delivery with the official `standardwebhooks` package (which scripts/test installs
//! into `target/standardwebhooks`) and reports each one; and the checks on what it got.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::binary::get_json;
use super::metrics::scrape;
use super::poll;
use super::spawn::TestApp;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/forwarding/receiver.py");
const PYTHONPATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/standardwebhooks");
/// How long a test waits for what it expects before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// Retry delays short enough for a test to see several retries.
pub const SHORT_RETRIES: [(&str, &str); 2] = [
    ("STATUSHOOK_FORWARD_RETRY_MIN", "100ms"),
    ("STATUSHOOK_FORWARD_RETRY_MAX", "1s"),
];

/// One request the receiver verified, and how it answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `webhook-id`: the transition's message SID and number in its history.
    pub id: String,
    /// The transition's change-feed position, from the body (0 for a body without one:
    /// an alert notification).
    pub seq: u64,
    pub answer: u16,
    pub body: Value,
    /// The request's path: which of several services sent it, when each forwards to a
    /// path of its own.
    pub path: String,
    /// When the request arrived, in seconds since the Unix epoch.
    pub arrived: f64,
    /// Requests the receiver was handling when this one arrived, itself included.
    pub in_flight: u64,
}

impl Delivery {
    pub fn sid(&self) -> &str {
        self.body["data"]["sid"].as_str().unwrap_or_default()
    }

    pub fn status(&self) -> &str {
        self.body["data"]["event"]["status"]
            .as_str()
            .unwrap_or_default()
    }
}

/// The Python receiver, driven through its standard input and read through its output.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hooks`.
    pub url: String,
    origin: String,
    stdin: ChildStdin,
    /// Its output, line by line.
    lines: mpsc::UnboundedReceiver<String>,
    pub deliveries: Vec<Delivery>,
    pub rejected: Vec<String>,
    _child: Child,
}

impl Receiver {
    pub async fn start() -> Receiver {
        assert!(
            std::path::Path::new(PYTHONPATH)
                .join("standardwebhooks")
                .exists(),
            "the standardwebhooks package is not installed: run scripts/test, which installs it \
             with pip into target/standardwebhooks"
        );
        let mut child = Command::new("python3")
            .args([RECEIVER, SECRET])
            .env("PYTHONPATH", PYTHONPATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the receiver");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut output = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = output
            .next_line()
            .await
            .expect("readable output")
            .expect("the receiver reports its port");
        let port = serde_json::from_str::<Value>(&first).expect("JSON")["port"]
            .as_u64()
            .expect("a port");
        // Read on all the time, so that the receiver never blocks on a full pipe (and its
        // senders on it) while the test does something else.
        let (read, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = output.next_line().await {
                if read.send(line).is_err() {
                    return;
                }
            }
        });
        let origin = format!("http://127.0.0.1:{port}");
        Receiver {
            url: format!("{origin}/hooks"),
            origin,
            stdin,
            lines,
            deliveries: Vec::new(),
            rejected: Vec::new(),
            _child: child,
        }
    }

    /// The settings that forward to this receiver, with short retry delays.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.forwarding_to("/hooks");
        env.extend(SHORT_RETRIES.map(|(name, value)| (name, value.to_owned())));
        env
    }

    /// The settings that forward to this receiver at `path`, with the default retry
    /// schedule (5 s doubling to an hour).
    pub fn forwarding_to(&self, path: &str) -> Vec<(&'static str, String)> {
        vec![
            ("STATUSHOOK_FORWARD_URL", format!("{}{path}", self.origin)),
            ("STATUSHOOK_FORWARD_SECRET", SECRET.into()),
        ]
    }

    /// Sends a command and returns once the receiver has it in force.
    pub async fn command(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("the receiver reads commands");
        self.stdin.flush().await.expect("flushed");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let line = self.next_line(deadline, command).await;
            if line["ok"] == command {
                return;
            }
            self.record(line);
        }
    }

    /// Reads what the receiver reports until `done` holds for the deliveries so far.
    pub async fn wait_until(&mut self, what: &str, done: impl Fn(&[Delivery]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.deliveries) {
            let line = self.next_line(deadline, what).await;
            self.record(line);
        }
    }

    async fn next_line(&mut self, deadline: Instant, what: &str) -> Value {
        let line = tokio::time::timeout_at(deadline, self.lines.recv())
            .await
            .unwrap_or_else(|_| {
                let summary = self.summary();
                let last = &summary[summary.len().saturating_sub(10)..];
                panic!(
                    "timed out waiting for {what}; received {} deliveries, the last: {last:?}; \
                     rejected {}: {:?}",
                    summary.len(),
                    self.rejected.len(),
                    self.rejected.first()
                )
            })
            .expect("the receiver is running");
        serde_json::from_str(&line).expect("a JSON line")
    }

    fn record(&mut self, line: Value) {
        if let Some(why) = line["rejected"].as_str() {
            self.rejected.push(why.to_owned());
        } else if let Some(id) = line["id"].as_str() {
            let body = line["body"].clone();
            self.deliveries.push(Delivery {
                id: id.to_owned(),
                seq: body["seq"].as_u64().unwrap_or_default(),
                answer: line["answer"].as_u64().expect("an answer") as u16,
                body,
                path: line["path"].as_str().expect("a path").to_owned(),
                arrived: line["arrived"].as_f64().expect("an arrival time"),
                in_flight: line["in_flight"].as_u64().expect("a count in flight"),
            });
        }
    }

    pub fn summary(&self) -> Vec<(u64, u16, String, String)> {
        self.deliveries
            .iter()
            .map(|d| (d.seq, d.answer, d.sid().to_owned(), d.status().to_owned()))
            .collect()
    }
}

/// The feed positions of the transitions answered `200`.
pub fn acknowledged(deliveries: &[Delivery]) -> HashSet<u64> {
    deliveries
        .iter()
        .filter(|d| d.answer == 200)
        .map(|d| d.seq)
        .collect()
}

/// The first acknowledgement of each `webhook-id`, in the order the receiver reported them:
/// what a receiver that de-duplicates on `webhook-id` keeps. A repeated id must carry the
/// same body.
pub fn first_acknowledgements(deliveries: &[Delivery]) -> Vec<Delivery> {
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    let mut first = Vec::new();
    for delivery in deliveries.iter().filter(|d| d.answer == 200) {
        match by_id.get(delivery.id.as_str()) {
            Some(body) => assert_eq!(*body, &delivery.body, "id {} repeated", delivery.id),
            None => {
                by_id.insert(&delivery.id, &delivery.body);
                first.push(delivery.clone());
            }
        }
    }
    let distinct: HashSet<(&str, &str)> = first.iter().map(|d| (d.sid(), d.status())).collect();
    assert_eq!(distinct.len(), first.len(), "one id per transition");
    first
}

/// Per message, no transition reached the receiver before every earlier transition of that
/// message (lower seq) had been acknowledged.
pub fn assert_in_order_per_message(deliveries: &[Delivery]) {
    let mut seqs: HashMap<&str, HashSet<u64>> = HashMap::new();
    for delivery in deliveries {
        seqs.entry(delivery.sid()).or_default().insert(delivery.seq);
    }
    let mut acked = HashSet::new();
    for delivery in deliveries {
        let earlier_unacked: Vec<u64> = seqs[delivery.sid()]
            .iter()
            .copied()
            .filter(|seq| *seq < delivery.seq && !acked.contains(seq))
            .collect();
        assert!(
            earlier_unacked.is_empty(),
            "{} ({} {}) was sent before {earlier_unacked:?} of the same message was acknowledged",
            delivery.seq,
            delivery.sid(),
            delivery.status()
        );
        if delivery.answer == 200 {
            acked.insert(delivery.seq);
        }
    }
}

/// The API of a running service, a test app or a binary.
pub struct Service {
    pub client: reqwest::Client,
    pub address: String,
}

impl Service {
    pub fn of(app: &TestApp) -> Service {
        Service::at(&app.address)
    }

    /// The service at `address` (`http://127.0.0.1:PORT`).
    pub fn at(address: &str) -> Service {
        Service {
            client: reqwest::Client::new(),
            address: address.to_owned(),
        }
    }

    /// The JSON answer to an authorized GET of `path`; panics unless it is a `200`.
    pub async fn json(&self, path: &str) -> Value {
        get_json(&self.client, &format!("{}{path}", self.address)).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        scrape(&self.client, &self.address).await
    }

    /// Every event of the change feed, by seq.
    pub async fn feed(&self) -> HashMap<u64, Value> {
        let mut events = HashMap::new();
        let mut after = 0;
        loop {
            let page = self
                .json(&format!("/v1/events?after={after}&limit=1000"))
                .await;
            let page = page["events"].as_array().expect("events");
            for event in page {
                after = event["seq"].as_u64().expect("seq");
                events.insert(after, event.clone());
            }
            if page.len() < 1000 {
                return events;
            }
        }
    }

    /// Polls `GET /v1/forwarding` until `done` holds for it.
    pub async fn forwarding_when(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll::until(what, || async {
            let status = self.json("/v1/forwarding").await;
            if done(&status) {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        })
        .await
    }
}
