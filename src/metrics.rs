//! Prometheus metrics, kept in atomics and rendered as text at `GET /metrics`.
//!
//! Hand-written rather than pulled from a metrics crate: a dozen counters and two
//! histograms do not justify a registry, and the text format is simple and stable.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::store::Counts;

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    Forged,
    Malformed,
    TooLarge,
    UnsupportedMediaType,
    StoreError,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Stored,
        Outcome::Duplicate,
        Outcome::Forged,
        Outcome::Malformed,
        Outcome::TooLarge,
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
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::StoreError => "store_error",
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
    /// Whether this replica holds each [`Lease`].
    leases: [AtomicBool; 2],
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
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Relaxed)
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
