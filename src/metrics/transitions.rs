//! Stored transitions as `/metrics` counts them, for the alerting rules of
//! `deploy/prometheus/alerts.yaml`: every transition by source and status, failures by
//! error code, and delivery outcomes by account.
//!
//! Sources and statuses are known in advance, so every pair is shown from the start (at 0),
//! and a rule's `increase()` sees the first transition of each. Error codes and accounts
//! are not: each label keeps its own value for the first [`MAX_ERROR_CODES`] codes and
//! [`MAX_ACCOUNTS`] accounts this process stores, and counts every later one under
//! `other`, so that a flood of codes or subaccounts adds at most that many series. A value
//! keeps its label once it has one: moving the counts of a busier newcomer out of `other`
//! would make `other` go down, which a counter may not.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::domain::{AccountSid, KnownStatus, Parties, Source, StatusEvent};

/// Error codes with a label value of their own; later ones are `other`.
pub const MAX_ERROR_CODES: usize = 50;
/// Accounts with a label value of their own; later ones are `other`.
pub const MAX_ACCOUNTS: usize = 100;

const SOURCES: [Source; 4] = [
    Source::Callback,
    Source::EventStream,
    Source::Sender,
    Source::Reconciler,
];
/// The known statuses, then one place for the statuses statushook does not know.
const STATUSES: usize = KnownStatus::ALL.len() + 1;

/// What the metrics keep of one transition, read before the event goes to the store.
#[derive(Debug, Clone)]
pub struct Tally {
    source: Source,
    status: Option<KnownStatus>,
    error_code: Option<u32>,
    /// The account's label value, for a delivery outcome only.
    account: Option<String>,
}

impl Tally {
    pub fn of(event: &StatusEvent) -> Tally {
        let status = event.status().known();
        let account = status.and_then(Outcome::of).map(|_| {
            let mut parties = Parties::default();
            parties.fill_from(event);
            // Only an account SID becomes a label value: nothing else reaches the text.
            parties
                .account_sid
                .filter(|sid| AccountSid::parse(sid).is_ok())
                .unwrap_or_else(|| NONE.to_owned())
        });
        Tally {
            source: event.source(),
            status,
            error_code: event.error_code(),
            account,
        }
    }
}

/// The delivery outcome a status is: what the failure rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `delivered` or `partially_delivered`.
    Delivered,
    /// `failed` or `undelivered`.
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 2] = [Outcome::Delivered, Outcome::Failed];

    /// `read` follows `delivered` and `canceled` was never sent: neither is an outcome.
    fn of(status: KnownStatus) -> Option<Outcome> {
        match status {
            KnownStatus::Delivered | KnownStatus::PartiallyDelivered => Some(Outcome::Delivered),
            KnownStatus::Failed | KnownStatus::Undelivered => Some(Outcome::Failed),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
        }
    }
}

/// The label value of a transition without an error code or an account.
const NONE: &str = "none";
/// The label value of every code or account past the cap.
const OTHER: &str = "other";

/// Counters of stored transitions.
pub struct Transitions {
    by_status: [[AtomicU64; STATUSES]; SOURCES.len()],
    failures: Capped<1>,
    accounts: Capped<{ Outcome::ALL.len() }>,
}

impl Default for Transitions {
    fn default() -> Self {
        Transitions {
            by_status: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            failures: Capped::new(MAX_ERROR_CODES),
            accounts: Capped::new(MAX_ACCOUNTS),
        }
    }
}

impl Transitions {
    /// Counts a transition the store took (not a duplicate).
    pub fn stored(&self, tally: Tally) {
        let source = SOURCES
            .iter()
            .position(|source| *source == tally.source)
            .unwrap_or_default();
        let status = tally
            .status
            .map_or(STATUSES - 1, |status| usize::from(status.code()));
        self.by_status[source][status].fetch_add(1, Relaxed);
        let Some(outcome) = tally.status.and_then(Outcome::of) else {
            return;
        };
        if outcome == Outcome::Failed {
            let code = tally
                .error_code
                .map_or_else(|| NONE.to_owned(), |code| code.to_string());
            self.failures.add(code, 0);
        }
        if let Some(account) = tally.account {
            self.accounts.add(account, outcome as usize);
        }
    }

    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP statushook_transitions_total Transitions stored (not duplicates), by source and status; a status statushook does not know is unknown.\n\
             # TYPE statushook_transitions_total counter\n",
        );
        for (source, counts) in SOURCES.iter().zip(&self.by_status) {
            let statuses = KnownStatus::ALL.iter().map(|status| status.as_str());
            for (status, count) in statuses.chain(["unknown"]).zip(counts) {
                let _ = writeln!(
                    out,
                    "statushook_transitions_total{{source=\"{}\",status=\"{status}\"}} {}",
                    source_label(*source),
                    count.load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP statushook_failures_total Failed and undelivered transitions stored, by error code: \
             the first {MAX_ERROR_CODES} codes this process stores have their own value, later ones count as other; none is no code.\n\
             # TYPE statushook_failures_total counter"
        );
        for (label, [count]) in self.failures.snapshot() {
            let _ = writeln!(
                out,
                "statushook_failures_total{{error_code=\"{label}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP statushook_account_outcomes_total Delivery outcomes stored (delivered and partially_delivered; failed and undelivered), by account: \
             the first {MAX_ACCOUNTS} accounts this process stores have their own value, later ones count as other; none is no account SID.\n\
             # TYPE statushook_account_outcomes_total counter"
        );
        for (label, counts) in self.accounts.snapshot() {
            for (outcome, count) in Outcome::ALL.iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "statushook_account_outcomes_total{{account_sid=\"{label}\",outcome=\"{}\"}} {count}",
                    outcome.label()
                );
            }
        }
    }
}

fn source_label(source: Source) -> &'static str {
    match source {
        Source::Callback => "callback",
        Source::EventStream => "event_stream",
        Source::Sender => "sender",
        Source::Reconciler => "reconciler",
    }
}

/// `N` counters under a label whose values are not known in advance: the first `cap`
/// values have their own, every later one adds to `other`.
struct Capped<const N: usize> {
    cap: usize,
    counts: Mutex<CappedCounts<N>>,
}

struct CappedCounts<const N: usize> {
    by_label: BTreeMap<String, [u64; N]>,
    other: [u64; N],
}

impl<const N: usize> Capped<N> {
    fn new(cap: usize) -> Self {
        Capped {
            cap,
            counts: Mutex::new(CappedCounts {
                by_label: BTreeMap::new(),
                other: [0; N],
            }),
        }
    }

    /// Adds one to counter `index` of `label`.
    fn add(&self, label: String, index: usize) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let full = counts.by_label.len() >= self.cap;
        let slot = match counts.by_label.get_mut(&label) {
            Some(slot) => slot,
            None if full => &mut counts.other,
            None => counts.by_label.entry(label).or_insert([0; N]),
        };
        slot[index] += 1;
    }

    /// The counters of each label value in order, then of `other` (always shown).
    fn snapshot(&self) -> Vec<(String, [u64; N])> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut snapshot: Vec<_> = counts
            .by_label
            .iter()
            .map(|(label, values)| (label.clone(), *values))
            .collect();
        snapshot.push((OTHER.to_owned(), counts.other));
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_cap_count_as_other_and_earlier_ones_keep_their_label() {
        let capped = Capped::<1>::new(2);
        for label in ["a", "b", "c", "a", "d"] {
            capped.add(label.to_owned(), 0);
        }
        let counts: Vec<_> = capped
            .snapshot()
            .into_iter()
            .map(|(label, [count])| format!("{label} {count}"))
            .collect();
        assert_eq!(counts, ["a 2", "b 1", "other 2"]);
    }
}
