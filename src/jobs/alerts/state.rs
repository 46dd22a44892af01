//! What alerting keeps in the store, under two `meta` keys, and the rule that moves an
//! alert between `ok` and `firing`.
//!
//! `alerts.rules` holds every rule by name; the API writes it, from any replica.
//! `alerts.state` holds each rule's alert (firing or not, since when, its last value and
//! recent history) together with the outbox of notifications not yet delivered; only the
//! replica that evaluates writes it. Both are changed with `Store::swap_meta`: a writer
//! reads, changes and writes back only over what it read, so two `PUT`s on two replicas
//! lose neither rule, and a leader that has not yet noticed losing its lease cannot write
//! over its successor.
//!
//! A firing and its notifications are one write: the alert turns `firing` in the same
//! value that adds its notifications to the outbox. Whichever replica evaluates next reads
//! both, so a notification is neither sent twice (the alert is already firing there) nor
//! lost (it waits in the outbox until a receiver acknowledges it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::{Channel, Metric, Rule, RuleName};
use crate::store::{Store, StoreError};

pub const RULES_KEY: &str = "alerts.rules";
pub const STATE_KEY: &str = "alerts.state";
/// The most rules a store holds: every pass reads each one.
pub const MAX_RULES: usize = 500;
/// Changes of state kept per alert, the newest.
pub const HISTORY: usize = 20;
/// Tries of a read-change-write of the rules before the request is answered `503`.
const SWAP_TRIES: usize = 16;

/// Every rule, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rules(pub BTreeMap<RuleName, Rule>);

/// Every alert and the notifications waiting to go out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub alerts: BTreeMap<RuleName, Alert>,
    pub outbox: Vec<Notification>,
    /// The id of the next notification.
    pub next_id: u64,
    /// The store's time of the last evaluation, microseconds since the epoch.
    pub evaluated_at: Option<u64>,
}

/// One rule's alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub firing: bool,
    /// When it entered its state (first evaluated, fired or resolved).
    pub since: u64,
    /// The value at the last evaluation: a rate, a count, or `None` for a rate over no
    /// message.
    pub value: Option<f64>,
    /// The messages behind the value (see `measure::Reading::messages`).
    pub messages: u64,
    /// Whether the value counts every message of the window (a filtered walk may stop at
    /// its cap).
    pub complete: bool,
    /// The newest changes, oldest first.
    pub history: Vec<Change>,
    /// While firing: the rule as it was when it fired. Its channels are the ones told of
    /// the resolution, even if the rule has been changed or deleted since.
    pub fired: Option<Rule>,
}

/// One change of an alert's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub state: Event,
    pub at: u64,
    pub value: Option<f64>,
}

/// What a notification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Firing,
    Resolved,
}

/// A notification in the outbox, with the body it sends at every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub rule: RuleName,
    pub event: Event,
    pub channel: Channel,
    /// The `webhook-id` of a webhook channel; the same at every attempt and on every
    /// replica, so that a receiver can drop a repeat.
    pub webhook_id: String,
    pub body: String,
    pub attempts: u32,
    /// Microseconds since the epoch.
    pub first_attempt: Option<u64>,
    pub last_error: Option<String>,
}

/// What an evaluation decides for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fire,
    Resolve,
    Stay,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Firing => "firing",
            Event::Resolved => "resolved",
        }
    }
}

impl Alert {
    /// A rule evaluated for the first time: `ok` from then on.
    pub fn new(now: u64) -> Alert {
        Alert {
            firing: false,
            since: now,
            value: None,
            messages: 0,
            complete: true,
            history: Vec::new(),
            fired: None,
        }
    }

    /// Turns `firing` at `now` under `rule`.
    pub fn fire(&mut self, now: u64, rule: &Rule) {
        self.firing = true;
        self.since = now;
        self.fired = Some(rule.clone());
        self.remember(Event::Firing, now);
    }

    /// Turns `ok` at `now`; answers the rule it fired under, whose channels are to be told.
    pub fn resolve(&mut self, now: u64) -> Option<Rule> {
        self.firing = false;
        self.since = now;
        self.remember(Event::Resolved, now);
        self.fired.take()
    }

    fn remember(&mut self, state: Event, at: u64) {
        self.history.push(Change {
            state,
            at,
            value: self.value,
        });
        let extra = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..extra);
    }
}

/// Whether an alert in `firing` state (or not) moves, given its rule and the value just
/// read. A rate over fewer than `min_messages` messages never fires; once firing, a rule
/// resolves when its value falls under `resolve_below` (or, for a rate, when no message
/// is left in the window to judge by). The gap between the two levels is the hysteresis
/// that keeps a value hovering at the threshold from paging at every evaluation.
pub fn judge(rule: &Rule, firing: bool, value: Option<f64>, messages: u64) -> Verdict {
    match (firing, value) {
        (false, Some(value)) => {
            let enough = rule.metric != Metric::FailureRate || messages >= rule.min_messages();
            if enough && value >= rule.threshold {
                Verdict::Fire
            } else {
                Verdict::Stay
            }
        }
        (false, None) => Verdict::Stay,
        (true, Some(value)) if value >= rule.resolve_level() => Verdict::Stay,
        (true, _) => Verdict::Resolve,
    }
}

impl Rules {
    /// The rules as stored, with the bytes read (for a swap); none when nothing is stored.
    pub async fn load(store: &Store) -> Result<(Rules, Option<Vec<u8>>), StoreError> {
        let bytes = store.meta(RULES_KEY).await?;
        let rules = match &bytes {
            None => Rules::default(),
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|error| StoreError::corrupt(format!("the alert rules: {error}")))?,
        };
        Ok((rules, bytes))
    }

    /// Applies `change` to the stored rules and writes them back, again from a fresh read
    /// whenever another writer came between; answers what `change` answered.
    pub async fn change<T, E: From<StoreError>>(
        store: &Store,
        mut change: impl FnMut(&mut Rules) -> Result<T, E>,
    ) -> Result<T, E> {
        for _ in 0..SWAP_TRIES {
            let (mut rules, read) = Rules::load(store).await?;
            let answer = change(&mut rules)?;
            let bytes = serde_json::to_vec(&rules).map_err(StoreError::corrupt)?;
            if read.as_deref() == Some(&bytes[..]) {
                return Ok(answer);
            }
            if store.swap_meta(RULES_KEY, read, Some(bytes)).await? {
                return Ok(answer);
            }
        }
        Err(
            StoreError::unavailable("the alert rules kept changing under this write; try again")
                .into(),
        )
    }
}

impl State {
    /// The state as stored, with the bytes read; empty when nothing is stored.
    pub async fn load(store: &Store) -> Result<(State, Option<Vec<u8>>), StoreError> {
        let bytes = store.meta(STATE_KEY).await?;
        let state = match &bytes {
            None => State::default(),
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|error| StoreError::corrupt(format!("the alert state: {error}")))?,
        };
        Ok((state, bytes))
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain data: serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(metric: &str, threshold: f64, resolve_below: Option<f64>) -> Rule {
        let mut body = json!({"metric": metric, "threshold": threshold, "window": "5m",
            "notify": []});
        if let Some(below) = resolve_below {
            body["resolve_below"] = json!(below);
        }
        if metric == "failure_rate" {
            body["min_messages"] = json!(10);
        }
        Rule::parse(body.to_string().as_bytes()).expect("a valid rule")
    }

    #[test]
    fn a_rate_fires_at_its_threshold_with_enough_messages_and_resolves_under_resolve_below() {
        let rate = rule("failure_rate", 0.2, Some(0.1));
        assert_eq!(
            judge(&rate, false, Some(0.5), 9),
            Verdict::Stay,
            "under min_messages"
        );
        assert_eq!(judge(&rate, false, Some(0.2), 10), Verdict::Fire);
        assert_eq!(judge(&rate, false, Some(0.19), 100), Verdict::Stay);
        assert_eq!(judge(&rate, false, None, 0), Verdict::Stay);
        assert_eq!(
            judge(&rate, true, Some(0.15), 100),
            Verdict::Stay,
            "hysteresis"
        );
        assert_eq!(
            judge(&rate, true, Some(0.5), 3),
            Verdict::Stay,
            "few messages, still bad"
        );
        assert_eq!(judge(&rate, true, Some(0.09), 100), Verdict::Resolve);
        assert_eq!(
            judge(&rate, true, None, 0),
            Verdict::Resolve,
            "no message left"
        );
    }

    #[test]
    fn counts_fire_at_the_threshold_and_resolve_under_it_by_default() {
        let failures = rule("failures", 5.0, None);
        assert_eq!(judge(&failures, false, Some(4.0), 4), Verdict::Stay);
        assert_eq!(judge(&failures, false, Some(5.0), 5), Verdict::Fire);
        assert_eq!(judge(&failures, true, Some(5.0), 5), Verdict::Stay);
        assert_eq!(judge(&failures, true, Some(4.0), 4), Verdict::Resolve);
    }

    #[test]
    fn history_keeps_the_newest_changes() {
        let mut alert = Alert::new(1);
        for at in 0..(HISTORY as u64 + 5) {
            if alert.firing {
                alert.resolve(at);
            } else {
                alert.fire(at, &rule("failures", 1.0, None));
            }
        }
        assert_eq!(alert.history.len(), HISTORY);
        assert_eq!(alert.history.last().map(|c| c.at), Some(HISTORY as u64 + 4));
    }
}
