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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{KnownStatus, MessageSid, Source, Timestamp};
use crate::metrics::{Metrics, Tally};
use crate::store::{ListQuery, Recorded, Store, StoreError};
use crate::twilio::client::{self, SendError, TwilioClient};

/// Messages whose last event is older than this are left alone.
pub const MAX_AGE: Duration = Duration::from_secs(72 * 3600);
/// Fetches of one message before the reconciler gives up on it.
pub const MAX_ATTEMPTS: u32 = 6;
/// A candidate's current status and the account it belongs to.
type Candidate = (Option<KnownStatus>, Option<String>);

/// Candidates looked at in one pass.
const MAX_PER_PASS: usize = 10_000;

pub struct Reconciler {
    store: Store,
    twilio: TwilioClient,
    metrics: Arc<Metrics>,
    after: Duration,
    /// The pause before each fetch: the inverse of the rate.
    pace: Duration,
    attempts: HashMap<MessageSid, Attempts>,
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
    ) -> Self {
        Reconciler {
            store,
            twilio,
            metrics,
            after,
            pace: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            attempts: HashMap::new(),
        }
    }

    /// Runs passes forever, one every quarter of the reconcile age (between 50 ms and 60 s).
    pub async fn run(&mut self) {
        let interval = (self.after / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
        loop {
            tokio::time::sleep(interval).await;
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
        let candidates = self.candidates(now).await?;
        // Forget messages that are no longer candidates (final now, or too old).
        self.attempts.retain(|sid, _| candidates.contains_key(sid));
        for (sid, current) in candidates {
            let attempts = self.attempts.get(&sid).copied();
            if attempts.is_some_and(|a| a.made >= MAX_ATTEMPTS || a.next_due > Timestamp::now()) {
                continue;
            }
            tokio::time::sleep(self.pace).await;
            self.reconcile(&sid, current).await?;
            let made = attempts.map_or(1, |a| a.made + 1);
            let delay = self.after.saturating_mul(1 << made.min(16));
            let next_due = Timestamp(Timestamp::now().0.saturating_add(delay.as_micros() as u64));
            self.attempts.insert(sid, Attempts { made, next_due });
        }
        Ok(())
    }

    async fn candidates(
        &self,
        now: Timestamp,
    ) -> Result<HashMap<MessageSid, Candidate>, StoreError> {
        let micros = |d: Duration| d.as_micros() as u64;
        let mut query = ListQuery {
            statuses: KnownStatus::ALL
                .iter()
                .copied()
                .filter(|s| !s.is_final())
                .collect(),
            since: Some(Timestamp(now.0.saturating_sub(micros(MAX_AGE)))),
            until: Some(Timestamp(now.0.saturating_sub(micros(self.after)))),
            limit: 1000,
            ..ListQuery::default()
        };
        let mut candidates = HashMap::new();
        loop {
            let page = self.store.list(query.clone()).await?;
            for (sid, state) in page.messages {
                let account = state.parties.account_sid;
                candidates.insert(sid, (state.status, account));
            }
            match page.next {
                Some(cursor) if candidates.len() < MAX_PER_PASS => query.cursor = Some(cursor),
                _ => return Ok(candidates),
            }
        }
    }

    async fn reconcile(
        &mut self,
        sid: &MessageSid,
        (current, account): Candidate,
    ) -> Result<(), StoreError> {
        // Each message is fetched through its own account: a subaccount's messages are
        // not found under the parent's URL, though the parent's credentials may read them.
        let fetched = match &account {
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
