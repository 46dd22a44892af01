//! The forwarder's window, pure: which transitions are waiting, which may be sent now, and
//! when a failed one is tried again. No I/O and no clock: times are passed in.
//!
//! Transitions enter the window in feed order and leave it when acknowledged or given up.
//! Per message, only the earliest waiting transition may be in flight: a later transition
//! of the same message waits behind it, so a receiver sees each message's transitions in
//! order; other messages go ahead meanwhile.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::Timestamp;

/// Transitions held at once: read from the feed, not yet acknowledged.
pub const MAX_PENDING: usize = 1000;

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The delay after the first failure; each further failure doubles it.
    pub min: Duration,
    /// The longest delay between two attempts.
    pub max: Duration,
    /// A transition still failing this long after its first attempt is given up.
    pub give_up_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            min: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl Retry {
    /// The delay after `failures` failures, with jitter: `unit` (uniform in [0, 1)) picks a
    /// point in the upper half of the doubled delay, so retries of many transitions spread
    /// out but none comes sooner than half its step.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let doubled = self
            .min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(30))
            .min(self.max);
        doubled / 2 + doubled.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// One transition waiting to be acknowledged.
#[derive(Debug, Clone)]
pub struct Pending {
    pub sid: String,
    /// The transition's `webhook-id`, the same at every attempt, in every store.
    pub webhook_id: String,
    pub received_at: Timestamp,
    /// The JSON body, the same bytes at every attempt.
    pub body: Arc<[u8]>,
    pub attempts: u32,
    pub first_attempt: Option<Timestamp>,
    pub next_try: Timestamp,
    pub in_flight: bool,
    pub last_error: Option<String>,
}

impl Pending {
    pub fn new(sid: String, webhook_id: String, received_at: Timestamp, body: Arc<[u8]>) -> Self {
        Pending {
            sid,
            webhook_id,
            received_at,
            body,
            attempts: 0,
            first_attempt: None,
            next_try: Timestamp(0),
            in_flight: false,
            last_error: None,
        }
    }
}

/// What became of a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(Timestamp),
    /// Failing for longer than `give_up_after`: removed from the window.
    GaveUp {
        sid: String,
        attempts: u32,
    },
}

#[derive(Debug, Default)]
pub struct Window {
    entries: BTreeMap<u64, Pending>,
    in_flight: usize,
}

impl Window {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn room(&self) -> usize {
        MAX_PENDING.saturating_sub(self.entries.len())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.entries.contains_key(&seq)
    }

    /// Adds a transition; one already waiting (a replay of it) is left as it is.
    pub fn insert(&mut self, seq: u64, pending: Pending) {
        self.entries.entry(seq).or_insert(pending);
    }

    pub fn get(&self, seq: u64) -> Option<&Pending> {
        self.entries.get(&seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Pending)> {
        self.entries.iter().map(|(seq, pending)| (*seq, pending))
    }

    /// The oldest waiting transition: its seq and arrival time.
    pub fn oldest(&self) -> Option<(u64, Timestamp)> {
        self.entries
            .iter()
            .min_by_key(|(_, pending)| pending.received_at)
            .map(|(seq, pending)| (*seq, pending.received_at))
    }

    /// Marks up to `room` transitions in flight and returns their seqs: in feed order, each
    /// message's earliest waiting transition, when it is due and not already in flight.
    /// Also returns the earliest time at which a transition that may not go yet becomes
    /// due, for the caller to wake up then.
    pub fn start_due(&mut self, now: Timestamp, room: usize) -> (Vec<u64>, Option<Timestamp>) {
        let mut started = Vec::new();
        let mut next_due: Option<Timestamp> = None;
        let mut blocked: HashSet<&str> = HashSet::new();
        for (seq, pending) in &mut self.entries {
            // Only a message's first waiting transition may go; later ones wait behind it.
            if !blocked.insert(pending.sid.as_str()) || pending.in_flight {
                continue;
            }
            if pending.next_try > now {
                next_due = Some(next_due.map_or(pending.next_try, |t| t.min(pending.next_try)));
                continue;
            }
            if started.len() == room {
                continue;
            }
            pending.in_flight = true;
            pending.attempts += 1;
            pending.first_attempt.get_or_insert(now);
            started.push(*seq);
        }
        self.in_flight += started.len();
        (started, next_due)
    }

    /// Removes an acknowledged transition.
    pub fn delivered(&mut self, seq: u64) -> Option<Pending> {
        let pending = self.entries.remove(&seq)?;
        if pending.in_flight {
            self.in_flight -= 1;
        }
        Some(pending)
    }

    /// Removes a transition whose message was erased: it is never sent.
    pub fn erased(&mut self, seq: u64) -> Option<Pending> {
        self.delivered(seq)
    }

    /// Takes back a start that did not happen: the transition waits as before.
    pub fn put_back(&mut self, seq: u64) {
        if let Some(pending) = self.entries.get_mut(&seq) {
            if pending.in_flight {
                pending.in_flight = false;
                pending.attempts = pending.attempts.saturating_sub(1);
                if pending.attempts == 0 {
                    pending.first_attempt = None;
                }
                self.in_flight -= 1;
            }
        }
    }

    /// Schedules the next attempt of a transition whose attempt failed, or gives it up.
    pub fn failed(
        &mut self,
        seq: u64,
        error: String,
        now: Timestamp,
        retry: &Retry,
        unit: f64,
    ) -> Option<AfterFailure> {
        let pending = self.entries.get_mut(&seq)?;
        if pending.in_flight {
            pending.in_flight = false;
            self.in_flight -= 1;
        }
        let first = pending.first_attempt.unwrap_or(now);
        if now.0.saturating_sub(first.0) >= retry.give_up_after.as_micros() as u64 {
            let pending = self.entries.remove(&seq)?;
            return Some(AfterFailure::GaveUp {
                sid: pending.sid,
                attempts: pending.attempts,
            });
        }
        let delay = retry.delay(pending.attempts, unit);
        pending.next_try = Timestamp(now.0.saturating_add(delay.as_micros() as u64));
        pending.last_error = Some(error);
        Some(AfterFailure::RetryAt(pending.next_try))
    }

    /// Makes every waiting transition due now: the receiver answered again after a run of
    /// failures, so there is no reason to keep waiting out the backoff of the others.
    pub fn all_due(&mut self, now: Timestamp) {
        for pending in self.entries.values_mut() {
            pending.next_try = pending.next_try.min(now);
        }
    }

    /// Forgets what is in flight (its tasks were dropped): those transitions are tried again.
    pub fn abandon_in_flight(&mut self) {
        for pending in self.entries.values_mut() {
            if pending.in_flight {
                pending.in_flight = false;
                pending.attempts = pending.attempts.saturating_sub(1);
            }
        }
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(sid: &str) -> Pending {
        Pending::new(
            sid.into(),
            format!("{sid}_0"),
            Timestamp(1),
            Arc::from(&b"{}"[..]),
        )
    }

    fn at(seconds: u64) -> Timestamp {
        Timestamp(seconds * 1_000_000)
    }

    #[test]
    fn a_later_transition_of_a_message_waits_for_the_earlier_one_while_others_go() {
        let mut window = Window::default();
        window.insert(1, pending("A"));
        window.insert(2, pending("B"));
        window.insert(3, pending("A"));
        window.insert(4, pending("C"));
        let (started, _) = window.start_due(at(0), 10);
        assert_eq!(started, [1, 2, 4]);
        // A's second transition still waits while the first is in flight or retrying.
        let retry = Retry::default();
        window.failed(1, "answered 500".into(), at(0), &retry, 0.5);
        let (started, next_due) = window.start_due(at(1), 10);
        assert!(started.is_empty(), "{started:?}");
        assert!(next_due.is_some_and(|due| due > at(1)));
        window.delivered(1);
        let (started, _) = window.start_due(at(1), 10);
        assert_eq!(started, [3]);
    }

    #[test]
    fn no_more_than_room_deliveries_start() {
        let mut window = Window::default();
        for seq in 0..10 {
            window.insert(seq, pending(&format!("M{seq}")));
        }
        let (started, _) = window.start_due(at(0), 4);
        assert_eq!(started, [0, 1, 2, 3]);
        assert_eq!(window.in_flight(), 4);
        let (started, _) = window.start_due(at(0), 6);
        assert_eq!(started, [4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn backoff_doubles_from_min_to_max_with_jitter_in_the_upper_half() {
        let retry = Retry::default();
        assert_eq!(retry.delay(1, 0.0), Duration::from_millis(2500));
        assert_eq!(retry.delay(1, 1.0), Duration::from_secs(5));
        assert_eq!(retry.delay(2, 1.0), Duration::from_secs(10));
        assert_eq!(retry.delay(5, 1.0), Duration::from_secs(80));
        assert_eq!(retry.delay(40, 1.0), Duration::from_secs(3600));
        assert_eq!(retry.delay(40, 0.0), Duration::from_secs(1800));
    }

    #[test]
    fn a_transition_is_given_up_only_after_failing_for_give_up_after() {
        let retry = Retry::default();
        let mut window = Window::default();
        window.insert(7, pending("A"));
        let mut now = at(1000);
        loop {
            let (started, next_due) = window.start_due(now, 1);
            if started.is_empty() {
                now = next_due.expect("a retry is scheduled");
                continue;
            }
            match window.failed(7, "no answer".into(), now, &retry, 1.0) {
                Some(AfterFailure::RetryAt(_)) => continue,
                Some(AfterFailure::GaveUp { attempts, .. }) => {
                    let tried_for = Duration::from_micros(now.0 - at(1000).0);
                    assert!(tried_for >= retry.give_up_after, "{tried_for:?}");
                    assert!(tried_for < retry.give_up_after + retry.max, "{tried_for:?}");
                    assert!((20..40).contains(&attempts), "{attempts} attempts");
                    break;
                }
                None => panic!("the transition vanished"),
            }
        }
        assert!(window.is_empty());
    }

    #[test]
    fn after_a_minute_down_while_transitions_arrive_the_default_schedule_retries_within_5_s_of_the_end(
    ) {
        // A new message every 2 s while every attempt fails, with the shortest, middle and
        // longest jitter: the newest messages' first retries fall within 5 s of the end of
        // the minute, and the first success there makes everything due (the worker's
        // `all_due`), while the oldest message's next retry comes much later.
        let retry = Retry::default();
        for unit in [0.0, 0.5, 1.0] {
            let mut window = Window::default();
            let mut now = at(0);
            let mut arrived = 0;
            loop {
                while arrived < 30 && at(2 * arrived) <= now {
                    window.insert(arrived, pending(&format!("M{arrived}")));
                    arrived += 1;
                }
                let (started, next_due) = window.start_due(now, MAX_PENDING);
                for seq in started {
                    window.failed(seq, "down".into(), now, &retry, unit);
                }
                let next_arrival = (arrived < 30).then(|| at(2 * arrived));
                match [next_due, next_arrival].into_iter().flatten().min() {
                    Some(next) if next < at(60) => now = next,
                    _ => break,
                }
            }
            let retries = window.iter().map(|(_, pending)| pending.next_try);
            let first = retries.min().expect("retries are scheduled");
            assert!((at(60)..=at(65)).contains(&first), "{unit}: {first:?}");
            let oldest = window.get(0).expect("still waiting").next_try;
            assert!(oldest > at(70), "{unit}: {oldest:?}");
        }
    }

    #[test]
    fn an_erased_transition_leaves_and_a_start_put_back_waits_as_before() {
        let mut window = Window::default();
        window.insert(1, pending("A"));
        window.insert(2, pending("A"));
        window.insert(3, pending("B"));
        assert_eq!(window.start_due(at(0), 10).0, [1, 3]);
        window.erased(1);
        window.put_back(3);
        assert_eq!(window.in_flight(), 0);
        let b = window.get(3).expect("still waiting");
        assert_eq!((b.attempts, b.first_attempt), (0, None));
        assert_eq!(
            window.start_due(at(0), 10).0,
            [2, 3],
            "A's next transition is no longer held back"
        );
    }

    #[test]
    fn a_recovered_receiver_makes_every_waiting_transition_due() {
        let retry = Retry::default();
        let mut window = Window::default();
        window.insert(1, pending("A"));
        window.insert(2, pending("B"));
        window.start_due(at(0), 10);
        window.failed(1, "down".into(), at(0), &retry, 1.0);
        window.failed(2, "down".into(), at(0), &retry, 1.0);
        assert!(window.start_due(at(1), 10).0.is_empty());
        window.all_due(at(1));
        assert_eq!(window.start_due(at(1), 10).0, [1, 2]);
    }
}
