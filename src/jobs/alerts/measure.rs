//! What a rule's value is now, read from the counters the store keeps, so that an
//! evaluation costs the same however many messages the store holds.
//!
//! `Store::stats` counts the messages by current status and error code over a window of
//! `updated_at` from hourly and minutely counters, and only the partial minutes at the
//! window's edges message by message. So that no pass counts messages one by one, windows
//! are whole minutes ([`window`]): a rule's window of `5m` is the five minutes before the
//! current one and the current minute so far (its end is left open: nothing is updated in
//! the future). Rules that share a window share the read. A filter by account or sender has no counters to read: those rules
//! walk the window's messages, at most [`MAX_WALK`] of them a pass (the newest; the reading
//! says it is incomplete beyond).
//!
//! - `failure_rate`: `failed` + `undelivered` over the messages whose current status is a
//!   final one ([`OUTCOMES`]: not `received`, an inbound message), updated in the window;
//!   with `filter.error_code`, the failures of that code over the same messages.
//! - `failures`: the same numerator, counted.
//! - `silence`: the messages still [`WAITING`] for a callback (`accepted`, `queued`,
//!   `sending`, `sent`) whose last update is between one and two windows before the
//!   current minute: sent, and nothing heard for a window. Older ones are left out, so that a few messages whose
//!   carrier never reports do not keep the alert firing for ever; as long as sends go on
//!   without callbacks, new ones keep entering that range. The messages of that range the
//!   reconciler has corrected since (it covers them when the alert fires) count too: it
//!   found their status at Twilio, so no callback had come, and leaving them out would
//!   resolve the alert while callbacks are still missing.

use std::collections::{BTreeMap, HashMap};

use super::rule::{Filter, Metric, Rule};
use crate::domain::counters::MINUTE;
use crate::domain::{KnownStatus, MessageSid, Timestamp};
use crate::jobs::reconciler::{Corrected, Cover};
use crate::store::{Counts, ListQuery, Store, StoreError};

/// The final statuses of an outbound message: what `failure_rate` divides by.
pub const OUTCOMES: [KnownStatus; 6] = [
    KnownStatus::Delivered,
    KnownStatus::Undelivered,
    KnownStatus::Failed,
    KnownStatus::Canceled,
    KnownStatus::PartiallyDelivered,
    KnownStatus::Read,
];
/// The statuses that count as failures.
pub const FAILURES: [KnownStatus; 2] = [KnownStatus::Failed, KnownStatus::Undelivered];
/// The statuses of a message sent that waits for Twilio's report.
pub const WAITING: [KnownStatus; 4] = [
    KnownStatus::Accepted,
    KnownStatus::Queued,
    KnownStatus::Sending,
    KnownStatus::Sent,
];
/// The most messages a filtered rule reads in one pass.
pub const MAX_WALK: usize = 10_000;
/// Error codes a notification names, the most frequent first.
const TOP_ERRORS: usize = 5;
/// SIDs a notification gives as examples.
const SAMPLES: usize = 5;

/// A rule's value as read now.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// A rate (`None` when no message reached a final status in the window) or a count.
    pub value: Option<f64>,
    /// The messages behind the value: those with a final status (`failure_rate`), the
    /// failures (`failures`) or the messages waiting (`silence`).
    pub messages: u64,
    /// The most frequent error codes among the messages of the window, with their counts.
    pub top_errors: Vec<(u32, u64)>,
    /// False when a filtered rule's walk stopped at [`MAX_WALK`].
    pub complete: bool,
    /// The window read: `[since, until)`, `until` open for the rates and counts.
    pub since: Timestamp,
    pub until: Option<Timestamp>,
}

/// The window of `updated_at` a rule reads at `now`, in whole minutes: for a rate or a
/// count, the window's length before the current minute, and the current minute so far
/// (the end open); for `silence`, the window's length before that.
pub fn window(rule: &Rule, now: Timestamp) -> (Timestamp, Option<Timestamp>) {
    let width = rule.window.micros();
    let minute = now.0 / MINUTE * MINUTE;
    match rule.metric {
        Metric::FailureRate | Metric::Failures => (Timestamp(minute.saturating_sub(width)), None),
        Metric::Silence => (
            Timestamp(minute.saturating_sub(width.saturating_mul(2))),
            Some(Timestamp(minute.saturating_sub(width))),
        ),
    }
}

/// Reads the counts of one evaluation, sharing them between rules with the same window
/// and filter.
pub struct Reader<'a> {
    store: &'a Store,
    /// The reconciler's corrections, when it runs.
    cover: Option<&'a Cover>,
    now: Timestamp,
    /// `(since, until, account, from)` to the counts and whether they are complete.
    read: HashMap<Key, (Counts, bool)>,
}

type Key = (u64, Option<u64>, Option<String>, Option<String>);

impl<'a> Reader<'a> {
    pub fn new(store: &'a Store, cover: Option<&'a Cover>, now: Timestamp) -> Reader<'a> {
        Reader {
            store,
            cover,
            now,
            read: HashMap::new(),
        }
    }

    /// The rule's value now.
    pub async fn read(&mut self, rule: &Rule) -> Result<Reading, StoreError> {
        let (since, until) = window(rule, self.now);
        let key = (
            since.0,
            until.map(|t| t.0),
            rule.filter.account_sid.clone(),
            rule.filter.from.clone(),
        );
        if !self.read.contains_key(&key) {
            let counts = if rule.filter.counters_answer() {
                (self.store.stats(Some(since), until).await?, true)
            } else {
                walk(self.store, &rule.filter, since, until).await?
            };
            self.read.insert(key.clone(), counts);
        }
        let (counts, complete) = &self.read[&key];
        let mut reading = reading(rule, counts, *complete, since, until);
        if let (Metric::Silence, Some(cover)) = (rule.metric, self.cover) {
            let corrected = cover.corrected(|before| {
                was_silent(before, &rule.filter, since, until.unwrap_or(self.now))
            });
            reading.messages += corrected;
            reading.value = reading.value.map(|value| value + corrected as f64);
        }
        Ok(reading)
    }
}

/// The value of `rule` from the counts of its window.
pub fn reading(
    rule: &Rule,
    counts: &Counts,
    complete: bool,
    since: Timestamp,
    until: Option<Timestamp>,
) -> Reading {
    let of = |statuses: &[KnownStatus]| -> u64 {
        counts
            .by_status
            .iter()
            .filter(|(status, _)| statuses.contains(status))
            .map(|(_, count)| count)
            .sum()
    };
    let finals = of(&OUTCOMES);
    let failures = match rule.filter.error_code {
        // Counters by error code count the messages whose current status came with it;
        // never more than the messages that have a final status.
        Some(code) => counts
            .by_error
            .iter()
            .find(|(known, _)| *known == code)
            .map_or(0, |(_, count)| *count)
            .min(finals),
        None => of(&FAILURES),
    };
    let (value, messages) = match rule.metric {
        Metric::FailureRate => (
            (finals > 0).then(|| failures as f64 / finals as f64),
            finals,
        ),
        Metric::Failures => (Some(failures as f64), failures),
        Metric::Silence => {
            let waiting = of(&WAITING);
            (Some(waiting as f64), waiting)
        }
    };
    let mut top_errors: Vec<(u32, u64)> = counts
        .by_error
        .iter()
        .copied()
        .filter(|(code, _)| rule.filter.error_code.is_none_or(|only| only == *code))
        .collect();
    top_errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_errors.truncate(TOP_ERRORS);
    Reading {
        value,
        messages,
        top_errors,
        complete,
        since,
        until,
    }
}

/// Whether a message the reconciler corrected was waiting for a callback, last heard of
/// within `[since, until)`, and matches `filter`.
fn was_silent(before: &Corrected, filter: &Filter, since: Timestamp, until: Timestamp) -> bool {
    before
        .status
        .is_some_and(|status| WAITING.contains(&status))
        && (since..until).contains(&before.updated_at)
        && filter
            .account_sid
            .as_ref()
            .is_none_or(|account| before.account_sid.as_ref() == Some(account))
        && filter
            .from
            .as_ref()
            .is_none_or(|from| before.from.as_ref() == Some(from))
}

/// Counts by current status and error code of the messages matching `filter`'s account
/// and sender, updated within `[since, until)`: a walk over the listing, newest first, of
/// at most [`MAX_WALK`] messages; answers whether it saw them all.
async fn walk(
    store: &Store,
    filter: &Filter,
    since: Timestamp,
    until: Option<Timestamp>,
) -> Result<(Counts, bool), StoreError> {
    let mut query = ListQuery {
        from: filter.from.clone(),
        account_sid: filter.account_sid.clone(),
        since: Some(since),
        until,
        limit: 1000,
        ..ListQuery::default()
    };
    let mut by_status: BTreeMap<KnownStatus, u64> = BTreeMap::new();
    let mut by_error: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen = 0;
    loop {
        let page = store.list(query.clone()).await?;
        for (_, state) in &page.messages {
            if let Some(status) = state.status {
                *by_status.entry(status).or_default() += 1;
                if let Some(code) = state.error_code {
                    *by_error.entry(code).or_default() += 1;
                }
            }
        }
        seen += page.messages.len();
        let counts = Counts {
            by_status: by_status.iter().map(|(s, n)| (*s, *n)).collect(),
            by_error: by_error.iter().map(|(c, n)| (*c, *n)).collect(),
        };
        match page.next {
            Some(cursor) if seen < MAX_WALK => query.cursor = Some(cursor),
            Some(_) => return Ok((counts, false)),
            None => return Ok((counts, true)),
        }
    }
}

/// A few of the messages behind a firing rule, the newest first: failures (of its error
/// code, if it names one) or messages waiting for a callback.
pub async fn samples(
    store: &Store,
    rule: &Rule,
    reading: &Reading,
) -> Result<Vec<MessageSid>, StoreError> {
    let query = ListQuery {
        statuses: statuses_of(rule.metric).to_vec(),
        error_code: rule.filter.error_code,
        from: rule.filter.from.clone(),
        account_sid: rule.filter.account_sid.clone(),
        since: Some(reading.since),
        until: reading.until,
        limit: SAMPLES,
        ..ListQuery::default()
    };
    let page = store.list(query).await?;
    Ok(page.messages.into_iter().map(|(sid, _)| sid).collect())
}

/// The statuses of the messages a rule's notification points at.
pub fn statuses_of(metric: Metric) -> &'static [KnownStatus] {
    match metric {
        Metric::FailureRate | Metric::Failures => &FAILURES,
        Metric::Silence => &WAITING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(body: serde_json::Value) -> Rule {
        Rule::parse(body.to_string().as_bytes()).expect("a valid rule")
    }

    fn counts() -> Counts {
        Counts {
            by_status: vec![
                (KnownStatus::Queued, 4),
                (KnownStatus::Sent, 6),
                (KnownStatus::Received, 50),
                (KnownStatus::Delivered, 70),
                (KnownStatus::Undelivered, 20),
                (KnownStatus::Failed, 10),
            ],
            by_error: vec![(30003, 18), (30007, 2), (21610, 10)],
        }
    }

    #[test]
    fn values_are_read_from_the_counts_of_the_window() {
        let at = (Timestamp(1), None);
        let rate =
            rule(json!({"metric": "failure_rate", "threshold": 0.1, "window": "5m", "notify": []}));
        let read = reading(&rate, &counts(), true, at.0, at.1);
        assert_eq!(
            (read.value, read.messages),
            (Some(0.3), 100),
            "inbound messages left out"
        );
        assert_eq!(read.top_errors, [(30003, 18), (21610, 10), (30007, 2)]);
        let coded = rule(
            json!({"metric": "failure_rate", "threshold": 0.1, "window": "5m",
            "filter": {"error_code": 30007}, "notify": []}),
        );
        let read = reading(&coded, &counts(), true, at.0, at.1);
        assert_eq!(
            (read.value, read.top_errors.clone()),
            (Some(0.02), vec![(30007, 2)])
        );
        let failures =
            rule(json!({"metric": "failures", "threshold": 3, "window": "5m", "notify": []}));
        assert_eq!(
            reading(&failures, &counts(), true, at.0, at.1).value,
            Some(30.0)
        );
        let silence =
            rule(json!({"metric": "silence", "threshold": 3, "window": "5m", "notify": []}));
        assert_eq!(
            reading(&silence, &counts(), true, at.0, at.1).value,
            Some(10.0)
        );
        let none = reading(&rate, &Counts::default(), true, at.0, at.1);
        assert_eq!((none.value, none.messages), (None, 0));
    }

    #[test]
    fn silence_reads_the_window_before_the_last_one() {
        let silence =
            rule(json!({"metric": "silence", "threshold": 3, "window": "5m", "notify": []}));
        let now = Timestamp(3_600_000_000);
        assert_eq!(
            window(&silence, now),
            (Timestamp(3_000_000_000), Some(Timestamp(3_300_000_000)))
        );
        let rate =
            rule(json!({"metric": "failures", "threshold": 3, "window": "1m", "notify": []}));
        assert_eq!(window(&rate, now), (Timestamp(3_540_000_000), None));
    }
}
