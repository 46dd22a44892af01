//! Forwarding: every stored transition is POSTed to `STATUSHOOK_FORWARD_URL` as a signed
//! Standard Webhooks request, in order per message, retried for at least 24 hours.
//!
//! The outbox is the store's change feed: a transition's feed entry is written in the same
//! atomic batch as the transition, so nothing stored can miss being forwarded, and the
//! callback path does no forwarding work at all (a slow receiver never slows callbacks).
//! One worker task ([`worker`]) reads the feed from its saved position into a bounded
//! window ([`window`]), sends what is due with bounded concurrency, and saves its progress
//! ([`progress`]) in batches. Delivery is at-least-once: `webhook-id` is the transition's
//! message SID and number in that message's history (`{sid}_{n}`), the same at every
//! attempt and in every store it moves to, for receivers to de-duplicate.
//!
//! The worker runs only while this replica holds the store's forwarding lease
//! (`Store::lead_forwarding`): always with sled; with PostgreSQL, one replica at a time.

pub mod deliver;
mod progress;
pub mod sign;
pub mod window;
mod worker;

use std::fmt;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use progress::{ReplayRequest, PROGRESS_KEY, REPLAY_KEY};
pub use sign::SigningSecret;
pub use window::Retry;

use crate::domain::{KnownStatus, MessageStatus, Timestamp};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How long a receiver has to answer a delivery.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once unless `STATUSHOOK_FORWARD_CONCURRENCY` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The most `STATUSHOOK_FORWARD_CONCURRENCY` may allow.
pub const MAX_CONCURRENCY: usize = 256;

/// The validated forwarding settings.
#[derive(Clone)]
pub struct ForwardConfig {
    pub url: reqwest::Url,
    pub secret: SigningSecret,
    /// Forward only transitions to these statuses; all when `None`.
    pub statuses: Option<Vec<KnownStatus>>,
    pub retry: Retry,
    /// Where forwarding begins the first time it runs on a store.
    pub start: Start,
    /// Deliveries in flight at once, at most.
    pub concurrency: usize,
}

/// Where forwarding begins the first time it is enabled on a store
/// (`STATUSHOOK_FORWARD_START`); afterwards it goes on from its saved progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only the transitions stored from then on; earlier ones are sent by a replay on
    /// request. The default: a new receiver is not flooded with a store's history.
    Now,
    /// Every transition in the store, the oldest first.
    All,
}

impl Start {
    pub fn parse(raw: &str) -> Result<Start, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "now" => Ok(Start::Now),
            "all" => Ok(Start::All),
            other => Err(format!("{other:?} is not a start (use now or all)")),
        }
    }
}

impl ForwardConfig {
    /// An `http` or `https` URL with a host.
    pub fn parse_url(raw: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(raw.trim())
            .map_err(|error| format!("is not a valid URL ({error})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with https:// or http://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        Ok(url)
    }

    /// Comma-separated status names, each one statushook knows.
    pub fn parse_statuses(raw: &str) -> Result<Vec<KnownStatus>, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                KnownStatus::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = KnownStatus::ALL.iter().map(|s| s.as_str()).collect();
                    format!("{name:?} is not a status (one of {})", known.join(", "))
                })
            })
            .collect()
    }

    /// The URL without user info or query, which may hold credentials: safe to log and show.
    pub fn shown_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }

    fn forwards(&self, status: &MessageStatus) -> bool {
        match &self.statuses {
            None => true,
            Some(statuses) => status.known().is_some_and(|s| statuses.contains(&s)),
        }
    }
}

impl fmt::Debug for ForwardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardConfig")
            .field("url", &self.shown_url())
            .field("secret", &self.secret)
            .field("statuses", &self.statuses)
            .field("retry", &self.retry)
            .field("start", &self.start)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// The forwarder as handlers see it: its settings, its state, and the way to wake it.
#[derive(Clone)]
pub struct Forwarding {
    config: Arc<ForwardConfig>,
    shared: Arc<Shared>,
}

/// What the worker publishes after each round, for `GET /v1/forwarding` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub leader: bool,
    /// The feed has been read up to this seq.
    pub cursor: u64,
    /// Read and waiting for acknowledgement.
    pub pending: usize,
    pub in_flight: usize,
    /// Stored after `cursor`, not read yet (counted while the window is full).
    pub backlog: u64,
    /// The oldest unacknowledged transition: seq and arrival time.
    pub oldest: Option<(u64, Timestamp)>,
    pub last_error: Option<LastError>,
    pub last_delivered: Option<Timestamp>,
    /// The replay in progress: its id, range and the seq walked up to.
    pub replay: Option<(u64, Timestamp, Timestamp, u64)>,
}

#[derive(Debug, Clone)]
pub struct LastError {
    pub seq: u64,
    pub error: String,
    pub at: Timestamp,
}

/// Outcomes of delivery attempts, as counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A `2xx` answer.
    Delivered,
    /// Any other answer: retried.
    Rejected,
    /// No connection, or no answer within [`TIMEOUT`]: retried.
    Unreachable,
    /// Still failing 24 hours after the first attempt: dropped.
    GivenUp,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Delivered,
        Outcome::Rejected,
        Outcome::Unreachable,
        Outcome::GivenUp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Rejected => "rejected",
            Outcome::Unreachable => "unreachable",
            Outcome::GivenUp => "given_up",
        }
    }
}

struct Shared {
    status: Mutex<Status>,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Woken by a replay request, so the worker takes it up at once.
    replay_asked: Notify,
}

/// The running worker; [`Running::stop`] ends it after saving its progress.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Forwarding {
    pub fn new(config: ForwardConfig) -> Self {
        Forwarding {
            config: Arc::new(config),
            shared: Arc::new(Shared {
                status: Mutex::new(Status::default()),
                outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
                replay_asked: Notify::new(),
            }),
        }
    }

    pub fn config(&self) -> &ForwardConfig {
        &self.config
    }

    /// Starts the worker. It forwards while this process leads, until stopped.
    ///
    /// The end of the feed is read here, before the service takes its first request: with
    /// [`Start::Now`], a store that has never forwarded starts there, so what arrives from
    /// this moment on is forwarded and nothing stored before it.
    pub async fn start(&self, store: Store, metrics: Arc<Metrics>) -> anyhow::Result<Running> {
        let client = deliver::client(self.config.concurrency)?;
        let begin = match self.config.start {
            Start::Now => store.snapshot().await?,
            Start::All => 0,
        };
        let (stop, stopped) = watch::channel(false);
        let worker = worker::Worker::new(store, self.clone(), client, begin, metrics);
        let task = tokio::spawn(worker.run(stopped));
        tracing::info!(url = %self.config.shown_url(), "forwarding every stored transition");
        Ok(Running { stop, task })
    }

    /// The state as of the worker's last round.
    pub fn status(&self) -> Status {
        self.shared
            .status
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default()
    }

    pub fn outcomes(&self) -> Vec<(Outcome, u64)> {
        Outcome::ALL
            .iter()
            .map(|outcome| {
                (
                    *outcome,
                    self.shared.outcomes[*outcome as usize].load(Relaxed),
                )
            })
            .collect()
    }

    /// Stores a replay request for the forwarding process to take up, and wakes the worker
    /// if it runs here.
    pub async fn ask_replay(
        &self,
        store: &Store,
        request: &ReplayRequest,
    ) -> Result<(), StoreError> {
        store
            .put_meta(progress::REPLAY_KEY, Some(request.encode()))
            .await?;
        self.shared.replay_asked.notify_one();
        Ok(())
    }

    /// The forwarding lines of `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        let status = self.status();
        let depth = status.pending as u64 + status.backlog;
        let oldest = status.oldest.map_or(0.0, |(_, at)| {
            Timestamp::now().0.saturating_sub(at.0) as f64 / 1e6
        });
        let _ = writeln!(
            out,
            "# HELP statushook_forward_outbox_depth Stored transitions not yet acknowledged by the forward URL.\n\
             # TYPE statushook_forward_outbox_depth gauge\n\
             statushook_forward_outbox_depth {depth}\n\
             # HELP statushook_forward_oldest_pending_seconds Age of the oldest transition not yet acknowledged (0 when none).\n\
             # TYPE statushook_forward_oldest_pending_seconds gauge\n\
             statushook_forward_oldest_pending_seconds {oldest}\n\
             # HELP statushook_forward_in_flight Deliveries waiting for an answer.\n\
             # TYPE statushook_forward_in_flight gauge\n\
             statushook_forward_in_flight {}\n\
             # HELP statushook_forward_deliveries_total Forwarding attempts by outcome.\n\
             # TYPE statushook_forward_deliveries_total counter",
            status.in_flight
        );
        for (outcome, count) in self.outcomes() {
            let _ = writeln!(
                out,
                "statushook_forward_deliveries_total{{outcome=\"{}\"}} {count}",
                outcome.label()
            );
        }
    }

    fn count(&self, outcome: Outcome) {
        self.shared.outcomes[outcome as usize].fetch_add(1, Relaxed);
    }

    fn publish(&self, status: Status) {
        if let Ok(mut shared) = self.shared.status.lock() {
            *shared = status;
        }
    }
}

impl Running {
    /// Stops the worker: deliveries in flight are dropped (they are sent again next time)
    /// and its progress is saved.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the forwarding worker failed");
        }
    }
}
