//! The reconciler: finds messages whose callbacks never came.
//!
//! Twilio retries a callback a few times and then drops it, so a message can stay `sent`
//! forever here while it was delivered long ago. While `serve` has Twilio credentials, the
//! reconciler walks the status index for messages in a non-final status whose last event
//! is older than `STATUSHOOK_RECONCILE_AFTER` (and younger than [`MAX_AGE`]), fetches each
//! from Twilio at no more than `STATUSHOOK_RECONCILE_RATE` requests a second, and records a
//! newer status it finds there as an event of source `reconciler`. A message in a final
//! status is never a candidate. A message that stays put (carriers without delivery
//! receipts leave messages `sent` for good) is fetched again after a doubling delay, at
//! most [`MAX_ATTEMPTS`] times; that bookkeeping is in memory and starts afresh on restart.
//!
//! A firing `silence` alert (`jobs/alerts`) asks for more through [`Cover`]: the next pass,
//! started at once, also takes the messages whose last event is older than the alert's
//! window, however much younger than `STATUSHOOK_RECONCILE_AFTER` they are. The
//! reconciler tells it back, through the same [`Cover`], which messages it corrected and
//! when they had last been heard of: a message the reconciler had to correct had no
//! callback, so it still counts as silent for the alert.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::{KnownStatus, MessageSid, MessageState, Source, Timestamp};
use crate::metrics::{Metrics, Tally};
use crate::store::{ListQuery, Recorded, Store, StoreError};
use crate::twilio::client::{self, SendError, TwilioClient};

/// Messages whose last event is older than this are left alone.
pub const MAX_AGE: Duration = Duration::from_secs(72 * 3600);
/// Fetches of one message before the reconciler gives up on it.
pub const MAX_ATTEMPTS: u32 = 6;
/// Corrections remembered for the alerts, at most (the oldest are forgotten first).
const MAX_CORRECTIONS: usize = 100_000;

/// Candidates looked at in one pass.
const MAX_PER_PASS: usize = 10_000;

/// Between the alerts job and the reconciler, which run on the same replica (the job
/// lease's): a request for the next pass to cover more messages than the reconciler's age
/// says (those last updated before a given time), and the corrections it made.
#[derive(Clone, Default)]
pub struct Cover {
    shared: Arc<CoverShared>,
}

#[derive(Default)]
struct CoverShared {
    until: Mutex<Option<Timestamp>>,
    asked: Notify,
    /// Each corrected message as it was before its correction, in the order of the
    /// corrections. In memory: a new leader starts without them.
    corrected: Mutex<VecDeque<Corrected>>,
}

/// A message the reconciler corrected, as it stood before: what a `silence` rule needs to
/// count it.
#[derive(Debug, Clone)]
pub struct Corrected {
    pub status: Option<KnownStatus>,
    /// When it had last been heard of.
    pub updated_at: Timestamp,
    pub account_sid: Option<String>,
    pub from: Option<String>,
}

impl Cover {
    /// Asks the next pass, started at once, to cover the non-final messages last updated
    /// before `until` too (and after the reconciler's `MAX_AGE`).
    pub fn ask(&self, until: Timestamp) {
        if let Ok(mut asked) = self.shared.until.lock() {
            *asked = Some(asked.map_or(until, |asked| asked.max(until)));
        }
        self.shared.asked.notify_one();
    }

    /// What was asked since the last pass, if anything.
    fn take(&self) -> Option<Timestamp> {
        self.shared
            .until
            .lock()
            .ok()
            .and_then(|mut asked| asked.take())
    }

    /// How many of the messages the reconciler corrected `counts`.
    pub fn corrected(&self, counts: impl Fn(&Corrected) -> bool) -> u64 {
        self.shared.corrected.lock().map_or(0, |corrected| {
            corrected.iter().filter(|state| counts(state)).count() as u64
        })
    }

    fn remember(&self, before: MessageState) {
        let before = Corrected {
            status: before.status,
            updated_at: before.updated_at,
            account_sid: before.parties.account_sid,
            from: before.parties.from,
        };
        if let Ok(mut corrected) = self.shared.corrected.lock() {
            // Nothing is corrected past `MAX_AGE`, so older ones cannot matter any more.
            let horizon = before
                .updated_at
                .0
                .saturating_sub(MAX_AGE.as_micros() as u64 * 2);
            while corrected
                .front()
                .is_some_and(|old| old.updated_at.0 < horizon)
                || corrected.len() >= MAX_CORRECTIONS
            {
                corrected.pop_front();
            }
            corrected.push_back(before);
        }
    }
}

pub struct Reconciler {
    store: Store,
    twilio: TwilioClient,
    metrics: Arc<Metrics>,
    after: Duration,
    /// The pause before each fetch: the inverse of the rate.
    pace: Duration,
    attempts: HashMap<MessageSid, Attempts>,
    cover: Cover,
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    made: u32,
    next_due: Timestamp,
}

impl Reconciler {
    pub fn new(
        store: Store,
        twilio: TwilioClient,
        metrics: Arc<Metrics>,
        after: Duration,
        rate: f64,
        cover: Cover,
    ) -> Self {
        Reconciler {
            store,
            twilio,
            metrics,
            after,
            pace: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            attempts: HashMap::new(),
            cover,
        }
    }

    /// Runs passes forever, one every quarter of the reconcile age (between 50 ms and 60 s),
    /// or at once when asked to cover more ([`Cover::ask`]).
    pub async fn run(&mut self) {
        let interval = (self.after / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.cover.shared.asked.notified() => {}
            }
            if let Err(error) = self.pass().await {
                tracing::warn!(%error, "reconciler pass failed");
            }
        }
    }

    /// One pass over the current candidates.
    pub async fn pass(&mut self) -> Result<(), StoreError> {
        // Ages of messages by the store's clock, which stamped them; the schedule of
        // attempts below is this process's own.
        let now = self.store.now().await?;
        let asked = self.cover.take();
        let candidates = self.candidates(now, asked).await?;
        // Forget messages that are no longer candidates (final now, or too old).
        self.attempts.retain(|sid, _| candidates.contains_key(sid));
        for (sid, state) in candidates {
            let attempts = self.attempts.get(&sid).copied();
            if attempts.is_some_and(|a| a.made >= MAX_ATTEMPTS || a.next_due > Timestamp::now()) {
                continue;
            }
            tokio::time::sleep(self.pace).await;
            self.reconcile(&sid, state).await?;
            let made = attempts.map_or(1, |a| a.made + 1);
            let delay = self.after.saturating_mul(1 << made.min(16));
            let next_due = Timestamp(Timestamp::now().0.saturating_add(delay.as_micros() as u64));
            self.attempts.insert(sid, Attempts { made, next_due });
        }
        Ok(())
    }

    /// The messages in a non-final status last updated between [`MAX_AGE`] and the
    /// reconcile age ago, or up to `asked` when that is later.
    async fn candidates(
        &self,
        now: Timestamp,
        asked: Option<Timestamp>,
    ) -> Result<HashMap<MessageSid, MessageState>, StoreError> {
        let micros = |d: Duration| d.as_micros() as u64;
        let aged = Timestamp(now.0.saturating_sub(micros(self.after)));
        let until = asked.map_or(aged, |asked| asked.max(aged));
        let mut query = ListQuery {
            statuses: KnownStatus::ALL
                .iter()
                .copied()
                .filter(|s| !s.is_final())
                .collect(),
            since: Some(Timestamp(now.0.saturating_sub(micros(MAX_AGE)))),
            until: Some(until),
            limit: 1000,
            ..ListQuery::default()
        };
        let mut candidates = HashMap::new();
        loop {
            let page = self.store.list(query.clone()).await?;
            candidates.extend(page.messages);
            match page.next {
                Some(cursor) if candidates.len() < MAX_PER_PASS => query.cursor = Some(cursor),
                _ => return Ok(candidates),
            }
        }
    }

    async fn reconcile(&mut self, sid: &MessageSid, state: MessageState) -> Result<(), StoreError> {
        let current = state.status;
        // Each message is fetched through its own account: a subaccount's messages are
        // not found under the parent's URL, though the parent's credentials may read them.
        let fetched = match &state.parties.account_sid {
            Some(account) => self.twilio.fetch_message_in(account, sid).await,
            None => self.twilio.fetch_message(sid).await,
        };
        let resource = match fetched {
            Ok(resource) => resource,
            Err(SendError::Twilio(error)) if error.status == 404 => {
                tracing::warn!(%sid, "twilio does not know this message; not asking again");
                self.attempts.insert(
                    sid.clone(),
                    Attempts {
                        made: MAX_ATTEMPTS,
                        next_due: Timestamp(u64::MAX),
                    },
                );
                return Ok(());
            }
            Err(error) => {
                self.metrics.reconciler_failed();
                tracing::warn!(%sid, %error, "reconciler fetch failed");
                return Ok(());
            }
        };
        self.metrics.reconciler_fetched();
        let Some(event) = client::event_from_resource(&resource, Source::Reconciler) else {
            return Ok(());
        };
        let found = event.status().known();
        let newer = found.is_some_and(|found| found.is_news_for(current));
        let tally = Tally::of(&event);
        if newer && event.sid() == sid && self.store.record(event, None).await? == Recorded::Stored
        {
            self.metrics.transitions.stored(tally);
            self.metrics.reconciler_corrected();
            self.cover.remember(state);
            tracing::info!(
                %sid,
                from = current.map_or("none", KnownStatus::as_str),
                to = found.map_or("none", KnownStatus::as_str),
                "reconciler recorded a status the callbacks missed"
            );
        }
        Ok(())
    }
}
