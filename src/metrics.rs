//! Prometheus metrics, kept in atomics and rendered as text at `GET /metrics`.
//!
//! Hand-written rather than pulled from a metrics crate: a dozen counters and two
//! histograms do not justify a registry, and the text format is simple and stable.
//! `transitions.rs` keeps the counts of stored transitions that the alerting rules of
//! `deploy/prometheus/alerts.yaml` read, with the bounds on their label values.

mod transitions;

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::store::Counts;
pub use transitions::{Tally, Transitions, MAX_ACCOUNTS, MAX_ERROR_CODES};

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    Forged,
    Malformed,
    TooLarge,
    TimedOut,
    UnsupportedMediaType,
    StoreError,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Stored,
        Outcome::Duplicate,
        Outcome::Forged,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::TimedOut,
        Outcome::UnsupportedMediaType,
        Outcome::StoreError,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Forged => "forged",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::TimedOut => "timed_out",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::StoreError => "store_error",
        }
    }
}

/// Why a request was refused, as `statushook_refusals_total` counts it: every `403` and
/// `400` of `/twilio/status` and every `401` and `403` of the API, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `X-Twilio-Signature` header.
    NoSignature,
    /// The signature settings name a shared key that is not configured.
    UnknownSharedKey,
    /// The signature settings name an algorithm not supported, or SHA-256 without a key.
    BadSignatureSettings,
    /// No configured key signed the public URL, but one signed the URL the request's
    /// `Host` header names: `STATUSHOOK_PUBLIC_URL` is probably wrong.
    WrongUrl,
    /// No configured key signed the URL: a wrong auth token, or a URL that is not the one
    /// Twilio calls.
    SignatureMismatch,
    MissingMessageSid,
    BadMessageSid,
    MissingMessageStatus,
    /// A percent-decoded name or value that is not UTF-8.
    NotUtf8,
    /// A body that could not be read.
    UnreadableBody,
    /// API: no `Authorization` header.
    NoToken,
    /// API: an `Authorization` header that is not a bearer token.
    NotBearer,
    /// API: a bearer token that is neither the API token nor the read token.
    WrongToken,
    /// API: the read token on a request that changes something.
    ReadOnlyToken,
}

impl Refusal {
    const ALL: [Refusal; 14] = [
        Refusal::NoSignature,
        Refusal::UnknownSharedKey,
        Refusal::BadSignatureSettings,
        Refusal::WrongUrl,
        Refusal::SignatureMismatch,
        Refusal::MissingMessageSid,
        Refusal::BadMessageSid,
        Refusal::MissingMessageStatus,
        Refusal::NotUtf8,
        Refusal::UnreadableBody,
        Refusal::NoToken,
        Refusal::NotBearer,
        Refusal::WrongToken,
        Refusal::ReadOnlyToken,
    ];

    /// The `reason` label, also the reason of the refusal's log line.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NoSignature => "no_signature",
            Refusal::UnknownSharedKey => "unknown_shared_key",
            Refusal::BadSignatureSettings => "bad_signature_settings",
            Refusal::WrongUrl => "wrong_url",
            Refusal::SignatureMismatch => "signature_mismatch",
            Refusal::MissingMessageSid => "missing_message_sid",
            Refusal::BadMessageSid => "bad_message_sid",
            Refusal::MissingMessageStatus => "missing_message_status",
            Refusal::NotUtf8 => "not_utf8",
            Refusal::UnreadableBody => "unreadable_body",
            Refusal::NoToken => "no_token",
            Refusal::NotBearer => "not_bearer",
            Refusal::WrongToken => "wrong_token",
            Refusal::ReadOnlyToken => "read_only_token",
        }
    }

    /// The status code answered.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoSignature
            | Refusal::UnknownSharedKey
            | Refusal::BadSignatureSettings
            | Refusal::WrongUrl
            | Refusal::SignatureMismatch
            | Refusal::ReadOnlyToken => 403,
            Refusal::MissingMessageSid
            | Refusal::BadMessageSid
            | Refusal::MissingMessageStatus
            | Refusal::NotUtf8
            | Refusal::UnreadableBody => 400,
            Refusal::NoToken | Refusal::NotBearer | Refusal::WrongToken => 401,
        }
    }
}

/// Why messages were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Older than `STATUSHOOK_RETENTION`.
    Retention,
    /// `DELETE /v1/messages/{sid}` or `DELETE /v1/messages?phone=…`.
    Erasure,
}

/// The leases one replica at a time holds (see `Store::lead` and `Store::lead_forwarding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The background jobs: reconciler, retention, listing history.
    Jobs,
    Forwarding,
}

impl Lease {
    const ALL: [Lease; 2] = [Lease::Jobs, Lease::Forwarding];

    fn label(self) -> &'static str {
        match self {
            Lease::Jobs => "jobs",
            Lease::Forwarding => "forwarding",
        }
    }
}

/// Upper bounds of the callback latency histogram, in seconds.
const LATENCY_BOUNDS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Upper bounds of the group-commit size histogram.
const GROUP_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 2048.0];

#[derive(Default)]
pub struct Metrics {
    callbacks: [AtomicU64; Outcome::ALL.len()],
    latency: Histogram<{ LATENCY_BOUNDS.len() }>,
    groups: Histogram<{ GROUP_BOUNDS.len() }>,
    reconciler_fetches: AtomicU64,
    reconciler_corrections: AtomicU64,
    reconciler_failures: AtomicU64,
    /// Messages deleted, by [`Deletion`].
    deletions: [AtomicU64; 2],
    unauthorized: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
    throttled: AtomicU64,
    exports_refused: AtomicU64,
    /// Whether this replica holds each [`Lease`].
    leases: [AtomicBool; 2],
    /// `POST /twilio/events`.
    pub streams: StreamMetrics,
    /// Stored transitions, from every source.
    pub transitions: Transitions,
}

struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in millionths, so an integer atomic suffices.
    sum_micros: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[f64; N], value: f64) {
        if let Some(i) = bounds.iter().position(|bound| value <= *bound) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, bounds: &[f64; N]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bucket, bound) in self.buckets.iter().zip(bounds) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

impl Metrics {
    pub fn callback(&self, outcome: Outcome, took: Duration) {
        self.callbacks[outcome as usize].fetch_add(1, Relaxed);
        self.latency.observe(&LATENCY_BOUNDS, took.as_secs_f64());
    }

    pub fn group_committed(&self, size: usize) {
        self.groups.observe(&GROUP_BOUNDS, size as f64);
    }

    pub fn reconciler_fetched(&self) {
        self.reconciler_fetches.fetch_add(1, Relaxed);
    }

    pub fn reconciler_corrected(&self) {
        self.reconciler_corrections.fetch_add(1, Relaxed);
    }

    pub fn deleted(&self, why: Deletion, messages: u64) {
        self.deletions[why as usize].fetch_add(messages, Relaxed);
    }

    pub fn reconciler_failed(&self) {
        self.reconciler_failures.fetch_add(1, Relaxed);
    }

    /// An API request refused with 401.
    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Relaxed);
    }

    /// An API request refused with 429: its address had used up its budget of refusals.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Relaxed);
    }

    /// An export refused with 503: the most exports were already running.
    pub fn export_refused(&self) {
        self.exports_refused.fetch_add(1, Relaxed);
    }

    /// A request refused, by reason.
    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].fetch_add(1, Relaxed);
    }

    pub fn lease_taken(&self, lease: Lease) {
        self.leases[lease as usize].store(true, Relaxed);
    }

    pub fn lease_lost(&self, lease: Lease) {
        self.leases[lease as usize].store(false, Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    /// The metrics as Prometheus text; `counts` and `store_bytes` are read from the store
    /// by the caller (absent when the store could not answer).
    pub fn render(&self, counts: Option<Counts>, store_bytes: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP statushook_callbacks_total Status callbacks by outcome.\n");
        out.push_str("# TYPE statushook_callbacks_total counter\n");
        for outcome in Outcome::ALL {
            let value = self.callbacks[outcome as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "statushook_callbacks_total{{outcome=\"{}\"}} {value}",
                outcome.label()
            );
        }
        let signature_failures = self.callbacks[Outcome::Forged as usize].load(Relaxed);
        let duplicates = self.callbacks[Outcome::Duplicate as usize].load(Relaxed);
        let _ = writeln!(
            out,
            "# HELP statushook_signature_failures_total Callbacks rejected for a missing or wrong signature.\n\
             # TYPE statushook_signature_failures_total counter\n\
             statushook_signature_failures_total {signature_failures}\n\
             # HELP statushook_duplicates_total Callbacks that were already stored.\n\
             # TYPE statushook_duplicates_total counter\n\
             statushook_duplicates_total {duplicates}"
        );
        self.latency.render(
            &mut out,
            "statushook_callback_duration_seconds",
            "Time from a callback's arrival to its answer.",
            &LATENCY_BOUNDS,
        );
        self.groups.render(
            &mut out,
            "statushook_group_commit_size",
            "Callbacks made durable by one flush.",
            &GROUP_BOUNDS,
        );
        for (name, help, counter) in [
            (
                "statushook_reconciler_fetches_total",
                "Messages fetched from Twilio by the reconciler.",
                &self.reconciler_fetches,
            ),
            (
                "statushook_reconciler_corrections_total",
                "Newer statuses found by the reconciler.",
                &self.reconciler_corrections,
            ),
            (
                "statushook_reconciler_failures_total",
                "Reconciler fetches that failed.",
                &self.reconciler_failures,
            ),
            (
                "statushook_unauthorized_total",
                "API requests refused with 401 (no or a wrong bearer token).",
                &self.unauthorized,
            ),
            (
                "statushook_throttled_total",
                "API requests refused with 429: their address sent too many with no or a wrong token.",
                &self.throttled,
            ),
            (
                "statushook_exports_refused_total",
                "Exports refused with 503 because the most were already running.",
                &self.exports_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Relaxed)
            );
        }
        out.push_str(
            "# HELP statushook_refusals_total Requests refused, by status code and reason.\n",
        );
        out.push_str("# TYPE statushook_refusals_total counter\n");
        for why in Refusal::ALL {
            let _ = writeln!(
                out,
                "statushook_refusals_total{{status=\"{}\",reason=\"{}\"}} {}",
                why.status(),
                why.label(),
                self.refusals[why as usize].load(Relaxed)
            );
        }
        out.push_str("# HELP statushook_deleted_messages_total Messages deleted, by reason.\n");
        out.push_str("# TYPE statushook_deleted_messages_total counter\n");
        for (why, label) in [
            (Deletion::Retention, "retention"),
            (Deletion::Erasure, "erasure"),
        ] {
            let _ = writeln!(
                out,
                "statushook_deleted_messages_total{{reason=\"{label}\"}} {}",
                self.deletions[why as usize].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP statushook_leader Whether this replica runs the jobs of a lease (1) or stands by (0).\n",
        );
        out.push_str("# TYPE statushook_leader gauge\n");
        for lease in Lease::ALL {
            let _ = writeln!(
                out,
                "statushook_leader{{job=\"{}\"}} {}",
                lease.label(),
                u8::from(self.leases[lease as usize].load(Relaxed))
            );
        }
        self.streams.render(&mut out);
        self.transitions.render(&mut out);
        if let Some(counts) = counts {
            out.push_str("# HELP statushook_messages Messages by current status.\n");
            out.push_str("# TYPE statushook_messages gauge\n");
            for (status, count) in counts.by_status {
                let _ = writeln!(
                    out,
                    "statushook_messages{{status=\"{}\"}} {count}",
                    status.as_str()
                );
            }
        }
        if let Some(bytes) = store_bytes {
            let _ = writeln!(
                out,
                "# HELP statushook_store_bytes Size of the database on disk.\n\
                 # TYPE statushook_store_bytes gauge\nstatushook_store_bytes {bytes}"
            );
        }
        out
    }
}

/// What `POST /twilio/events` (Twilio Event Streams) did: requests by outcome, their
/// latency, and the events they carried by what became of each; events of a type that is
/// not stored by type, the label a known type name or `other` (`EventType`), so that the
/// label values stay few whatever arrives.
#[derive(Default)]
pub struct StreamMetrics {
    requests: [AtomicU64; Outcome::ALL.len()],
    latency: Histogram<{ LATENCY_BOUNDS.len() }>,
    events: [AtomicU64; EventOutcome::ALL.len()],
    ignored: Mutex<Vec<(&'static str, u64)>>,
}

/// What became of one event of a stream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Stored,
    Duplicate,
    /// A CloudEvent of a type statushook does not store.
    Ignored,
    /// Not a CloudEvent, or a message status event that cannot be read.
    Invalid,
}

impl EventOutcome {
    const ALL: [EventOutcome; 4] = [
        EventOutcome::Stored,
        EventOutcome::Duplicate,
        EventOutcome::Ignored,
        EventOutcome::Invalid,
    ];

    fn label(self) -> &'static str {
        match self {
            EventOutcome::Stored => "stored",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Ignored => "ignored",
            EventOutcome::Invalid => "invalid",
        }
    }
}

impl StreamMetrics {
    /// A request answered, with its outcome (`Stored` for every `200`).
    pub fn request(&self, outcome: Outcome, took: Duration) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
        self.latency.observe(&LATENCY_BOUNDS, took.as_secs_f64());
    }

    pub fn events(&self, outcome: EventOutcome, count: u64) {
        self.events[outcome as usize].fetch_add(count, Relaxed);
    }

    /// An event of a type that is not stored, under its label (`EventType::as_str`).
    pub fn ignored(&self, label: &'static str) {
        self.events(EventOutcome::Ignored, 1);
        let mut ignored = self
            .ignored
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match ignored.iter_mut().find(|(known, _)| *known == label) {
            Some((_, count)) => *count += 1,
            None => ignored.push((label, 1)),
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP statushook_event_stream_requests_total Event Streams requests (POST /twilio/events) by outcome.\n\
             # TYPE statushook_event_stream_requests_total counter\n",
        );
        for outcome in Outcome::ALL {
            let _ = writeln!(
                out,
                "statushook_event_stream_requests_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                self.requests[outcome as usize].load(Relaxed)
            );
        }
        self.latency.render(
            out,
            "statushook_event_stream_duration_seconds",
            "Time from an Event Streams request's arrival to its answer.",
            &LATENCY_BOUNDS,
        );
        out.push_str(
            "# HELP statushook_event_stream_events_total Events of Event Streams requests by what became of them.\n\
             # TYPE statushook_event_stream_events_total counter\n",
        );
        for outcome in EventOutcome::ALL {
            let _ = writeln!(
                out,
                "statushook_event_stream_events_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                self.events[outcome as usize].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP statushook_event_stream_ignored_total Events of a type statushook does not store, by type (a known type name, else other).\n\
             # TYPE statushook_event_stream_ignored_total counter\n",
        );
        let ignored = self
            .ignored
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for (label, count) in ignored {
            let _ = writeln!(
                out,
                "statushook_event_stream_ignored_total{{type=\"{label}\"}} {count}"
            );
        }
    }
}
