//! The forwarding worker: one task that reads the feed, sends, retries and saves progress.
//!
//! Each round it takes up a new replay request, tops the window up from the feed (live
//! transitions first, then a replay's), starts the deliveries that are due, and saves its
//! progress when it changed (at most every [`SAVE_EVERY`], or [`SAVE_ATTEMPTS_EVERY`] when
//! only attempt counts changed). Then it sleeps until a delivery ends, the feed grows, a
//! retry falls due or it is told to stop. Deliveries run as their own tasks, at most
//! `STATUSHOOK_FORWARD_CONCURRENCY` of them, so signing and waiting for the receiver never
//! hold up the loop.
//!
//! Right before a delivery starts, the store is asked whether its transition is still
//! stored: a message erased (by `DELETE` or retention) while its transitions waited for a
//! retry is dropped from the window instead of sent, whichever replica erased it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::deliver::{self, Attempt, Post};
use super::progress::{Progress, Replay, ReplayRequest, Saved, PROGRESS_KEY, REPLAY_KEY};
use super::window::{AfterFailure, Pending, Window};
use super::{Forwarding, LastError, Outcome, Status};
use crate::domain::Timestamp;
use crate::metrics::{Lease, Metrics};
use crate::routes::views::FeedEventView;
use crate::store::{self, FeedEntry, Store, StoreError};

/// Feed entries read at once.
const FEED_PAGE: usize = 500;
/// Progress is saved at most this often when transitions were read or acknowledged.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// ... and this often when only attempt counts changed (the receiver is failing).
const SAVE_ATTEMPTS_EVERY: Duration = Duration::from_secs(5);
/// How long a stop waits for the deliveries in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The shortest time between two reads of new transitions once caught up.
const READ_PACE: Duration = Duration::from_millis(5);
/// How often the stored replay request is looked at (a local request wakes at once).
const REPLAY_POLL: Duration = Duration::from_secs(1);
/// Failures in a row after which the receiver counts as down: the next success makes
/// every waiting transition due at once instead of waiting out its backoff.
const DOWN_AFTER: u32 = 3;
/// How far a transition's arrival time can be from its feed order: a replay walks this much
/// beyond its range on both sides. With sled the seq is the arrival time itself; with
/// PostgreSQL commit order can differ from arrival order by a transaction's duration.
const SKEW: u64 = 5 * 60 * 1_000_000;

pub struct Worker {
    /// `statushook_leader{job="forwarding"}`.
    metrics: Arc<Metrics>,
    store: Store,
    forwarding: Forwarding,
    client: reqwest::Client,
    /// Where the feed is read from when the store has no saved progress.
    begin: u64,
    window: Window,
    cursor: u64,
    replay: Option<Replay>,
    last_replay_request: Option<u64>,
    deliveries: JoinSet<(u64, Attempt)>,
    /// The seq each delivery task is sending, to find it again if the task fails.
    tasks: HashMap<Id, u64>,
    failures_in_a_row: u32,
    /// The last feed read returned less than it asked for.
    caught_up: bool,
    read_at: Instant,
    /// This round did not read new transitions because of [`READ_PACE`].
    read_skipped: bool,
    unsaved: Unsaved,
    saved_at: Instant,
    replay_polled_at: Option<Instant>,
    backlog: u64,
    counted_at: Option<Instant>,
    count_every: Duration,
    last_error: Option<LastError>,
    last_delivered: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unsaved {
    Nothing,
    Attempts,
    Progress,
}

enum Ended {
    Stopped,
    LostLeadership,
}

enum Woken {
    Stop,
    LostLeadership,
    Finished(Result<(Id, (u64, Attempt)), JoinError>),
    ReplayAsked,
    Other,
}

impl Worker {
    pub fn new(
        store: Store,
        forwarding: Forwarding,
        client: reqwest::Client,
        begin: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Worker {
            store,
            metrics,
            forwarding,
            client,
            begin,
            window: Window::default(),
            cursor: 0,
            replay: None,
            last_replay_request: None,
            deliveries: JoinSet::new(),
            tasks: HashMap::new(),
            failures_in_a_row: 0,
            caught_up: false,
            read_at: Instant::now(),
            read_skipped: false,
            unsaved: Unsaved::Nothing,
            saved_at: Instant::now(),
            replay_polled_at: None,
            backlog: 0,
            counted_at: None,
            count_every: Duration::from_secs(1),
            last_error: None,
            last_delivered: None,
        }
    }

    /// Forwards whenever this process leads, until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let mut lease = tokio::select! {
                lease = self.store.lead_forwarding() => lease,
                _ = stopped(&mut stop) => return,
            };
            tracing::info!("this replica forwards");
            self.metrics.lease_taken(Lease::Forwarding);
            let ended = self.lead(&mut lease, &mut stop).await;
            self.metrics.lease_lost(Lease::Forwarding);
            if matches!(ended, Ended::Stopped) {
                // Let the deliveries in flight finish, for a while, so that a clean stop
                // sends nothing twice.
                let drain = async {
                    while let Some(joined) = self.deliveries.join_next_with_id().await {
                        self.finished(joined);
                    }
                };
                let _ = tokio::time::timeout(STOP_GRACE, drain).await;
            }
            // Deliveries still in flight are dropped; they count as not sent.
            self.deliveries.abort_all();
            self.tasks.clear();
            self.window.abandon_in_flight();
            match ended {
                Ended::Stopped => {
                    if let Err(error) = self.save().await {
                        tracing::error!(%error, "cannot save the forwarding progress; the transitions since the last save will be sent again");
                    }
                    return;
                }
                Ended::LostLeadership => {
                    // Another process forwards now and owns the progress: start afresh
                    // from the store when leading again.
                    tracing::warn!("no longer the leader; forwarding stops here");
                    self.window = Window::default();
                    self.unsaved = Unsaved::Nothing;
                    self.publish(false);
                }
            }
        }
    }

    async fn lead(&mut self, lease: &mut store::Lease, stop: &mut watch::Receiver<bool>) -> Ended {
        loop {
            match self.load().await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the forwarding progress; trying again");
                    tokio::select! {
                        _ = stopped(stop) => return Ended::Stopped,
                        _ = lease.lost() => return Ended::LostLeadership,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        loop {
            let (wake_at, wait_for_feed) = match self.round().await {
                Ok(wake) => wake,
                Err(error) => {
                    tracing::warn!(%error, "forwarding cannot use the store; trying again");
                    (Instant::now() + Duration::from_secs(1), false)
                }
            };
            self.publish(true);
            let (store, forwarding, cursor) =
                (self.store.clone(), self.forwarding.clone(), self.cursor);
            let woken = tokio::select! {
                biased;
                _ = stopped(stop) => Woken::Stop,
                _ = lease.lost() => Woken::LostLeadership,
                Some(joined) = self.deliveries.join_next_with_id() => Woken::Finished(joined),
                _ = forwarding.shared.replay_asked.notified() => Woken::ReplayAsked,
                _ = store.wait_for_feed(cursor, Duration::from_secs(1)), if wait_for_feed => Woken::Other,
                _ = tokio::time::sleep_until(wake_at) => Woken::Other,
            };
            match woken {
                Woken::Stop => return Ended::Stopped,
                Woken::LostLeadership => return Ended::LostLeadership,
                Woken::Finished(joined) => self.finished(joined),
                Woken::ReplayAsked => self.replay_polled_at = None,
                Woken::Other => {}
            }
            while let Some(joined) = self.deliveries.try_join_next_with_id() {
                self.finished(joined);
            }
        }
    }

    /// Reads the saved progress and the transitions it left waiting.
    async fn load(&mut self) -> Result<(), StoreError> {
        let progress = match self.store.meta(PROGRESS_KEY).await? {
            None => return self.begin_afresh().await,
            Some(bytes) => Progress::decode(&bytes).unwrap_or_else(|error| {
                // Starting over re-sends everything, which loses nothing.
                tracing::error!(%error, "the saved forwarding progress is unreadable; forwarding from the start of the feed");
                Progress::default()
            }),
        };
        self.window = Window::default();
        for saved in &progress.pending {
            let Some(entry) = self.entry_at(saved.seq).await? else {
                continue;
            };
            if let Some(mut pending) = self.pending_for(entry) {
                pending.attempts = saved.attempts;
                pending.first_attempt = saved.first_attempt.map(Timestamp);
                self.window.insert(saved.seq, pending);
            }
        }
        self.cursor = progress.cursor;
        self.replay = progress.replay;
        self.last_replay_request = progress.last_replay_request;
        self.caught_up = false;
        self.unsaved = Unsaved::Nothing;
        tracing::info!(
            cursor = self.cursor,
            waiting = self.window.len(),
            "forwarding resumes"
        );
        Ok(())
    }

    /// The first start on a store that has never forwarded: from `begin` (the end of the
    /// feed as the service started, or its start with `STATUSHOOK_FORWARD_START=all`),
    /// saved at once, so that a restart goes on from there instead of deciding again.
    async fn begin_afresh(&mut self) -> Result<(), StoreError> {
        self.window = Window::default();
        self.cursor = self.begin;
        self.replay = None;
        self.last_replay_request = None;
        self.caught_up = false;
        self.save().await?;
        if self.begin > 0 {
            tracing::info!(
                cursor = self.cursor,
                "forwarding starts with what arrives from now on; the transitions stored \
                 earlier are not sent (a replay, POST /v1/forwarding/replay, sends them)"
            );
        } else {
            tracing::info!("forwarding starts at the beginning of the feed");
        }
        Ok(())
    }

    /// Of the deliveries just started, those whose transition is still stored; the others
    /// (their message was erased) leave the window unsent. If the store cannot answer, the
    /// deliveries are put back, to be started again next round.
    async fn still_stored(&mut self, started: Vec<u64>) -> Result<Vec<u64>, StoreError> {
        if started.is_empty() {
            return Ok(started);
        }
        let stored = match self.store.stored_seqs(started.clone()).await {
            Ok(stored) => stored,
            Err(error) => {
                for seq in &started {
                    self.window.put_back(*seq);
                }
                return Err(error);
            }
        };
        let (kept, erased): (Vec<u64>, Vec<u64>) =
            started.into_iter().partition(|seq| stored.contains(seq));
        for seq in &erased {
            self.window.erased(*seq);
        }
        if !erased.is_empty() {
            self.unsaved = Unsaved::Progress;
            tracing::debug!(
                transitions = erased.len(),
                "not forwarded: their messages were erased"
            );
        }
        Ok(kept)
    }

    /// One round; answers when to wake up at the latest, and whether new feed entries
    /// should wake it sooner.
    async fn round(&mut self) -> Result<(Instant, bool), StoreError> {
        let now = Instant::now();
        if self
            .replay_polled_at
            .is_none_or(|at| now >= at + REPLAY_POLL)
        {
            self.take_replay_request().await?;
            self.replay_polled_at = Some(now);
        }
        self.fill().await?;
        let room = (self.forwarding.config.concurrency).saturating_sub(self.window.in_flight());
        let (started, next_due) = self.window.start_due(Timestamp::now(), room);
        let started = self.still_stored(started).await?;
        if !started.is_empty() {
            self.unsaved = self.unsaved.max(Unsaved::Attempts);
        }
        for seq in started {
            self.send(seq);
        }
        self.count_backlog().await?;
        let save_due = match self.unsaved {
            Unsaved::Nothing => None,
            Unsaved::Attempts => Some(self.saved_at + SAVE_ATTEMPTS_EVERY),
            Unsaved::Progress => Some(self.saved_at + SAVE_EVERY),
        };
        if save_due.is_some_and(|due| due <= now) {
            self.save().await?;
        }
        let more_to_read = self.window.room() > 0 && (!self.caught_up || self.replay.is_some());
        let mut wake_at = self.replay_polled_at.unwrap_or(now) + REPLAY_POLL;
        if more_to_read {
            wake_at = now;
        }
        if let Some(due) = next_due {
            let wait = Duration::from_micros(due.0.saturating_sub(Timestamp::now().0));
            wake_at = wake_at.min(now + wait);
        }
        if let Some(due) = save_due.filter(|_| self.unsaved != Unsaved::Nothing) {
            wake_at = wake_at.min(due);
        }
        if self.read_skipped {
            // Woken before the pace allows a read: wake when it does.
            return Ok((wake_at.min(self.read_at + READ_PACE), false));
        }
        Ok((wake_at, self.window.room() > 0 && self.caught_up))
    }

    /// Tops the window up: new transitions first, then those of a replay.
    async fn fill(&mut self) -> Result<(), StoreError> {
        let asked = self.window.room().min(FEED_PAGE);
        // Caught up, reads are paced, so that under a stream of callbacks each read takes
        // a batch instead of one group commit's worth.
        self.read_skipped = asked > 0 && self.caught_up && self.read_at.elapsed() < READ_PACE;
        if asked > 0 && !self.read_skipped {
            self.read_at = Instant::now();
            let entries = self.store.feed(self.cursor, asked).await?;
            self.caught_up = entries.len() < asked;
            // Between counts, what was read leaves the backlog.
            self.backlog = self.backlog.saturating_sub(entries.len() as u64);
            for entry in entries {
                self.cursor = entry.seq;
                self.unsaved = Unsaved::Progress;
                if let Some(pending) = self.pending_for(entry) {
                    self.window.insert(self.cursor, pending);
                }
            }
        }
        let asked = self.window.room().min(FEED_PAGE);
        let Some(mut replay) = self.replay.clone().filter(|_| asked > 0) else {
            return Ok(());
        };
        let entries = self.store.feed(replay.after, asked).await?;
        let mut done = entries.len() < asked;
        for entry in entries {
            let arrived = entry.event.received_at.0;
            // Past the live position the live reading sends it; past the range, done.
            if entry.seq > self.cursor || arrived >= replay.until.saturating_add(SKEW) {
                done = true;
                break;
            }
            replay.after = entry.seq;
            if (replay.since..replay.until).contains(&arrived) && !self.window.contains(entry.seq) {
                let seq = entry.seq;
                if let Some(pending) = self.pending_for(entry) {
                    self.window.insert(seq, pending);
                }
            }
        }
        if done {
            tracing::info!(id = replay.id, "replay finished");
        }
        self.replay = (!done).then_some(replay);
        self.unsaved = Unsaved::Progress;
        Ok(())
    }

    /// The window entry of a feed entry, or `None` when it is not forwarded: its status is
    /// not, or it is an echo.
    fn pending_for(&self, entry: FeedEntry) -> Option<Pending> {
        // An echo repeats a transition that was forwarded already.
        if entry.echo || !self.forwarding.config.forwards(&entry.event.status) {
            return None;
        }
        let sid = entry.sid.as_str().to_owned();
        let webhook_id = webhook_id(&entry);
        let received_at = entry.event.received_at;
        // Plain data: serializing it cannot fail.
        let body = serde_json::to_vec(&FeedEventView::from(entry)).unwrap_or_default();
        Some(Pending::new(sid, webhook_id, received_at, Arc::from(body)))
    }

    /// The feed entry with exactly this seq, if it is still stored.
    async fn entry_at(&self, seq: u64) -> Result<Option<FeedEntry>, StoreError> {
        let entries = self.store.feed(seq.saturating_sub(1), 1).await?;
        Ok(entries.into_iter().find(|entry| entry.seq == seq))
    }

    /// Takes up a replay request that has not been taken up yet.
    async fn take_replay_request(&mut self) -> Result<(), StoreError> {
        let Some(bytes) = self.store.meta(REPLAY_KEY).await? else {
            return Ok(());
        };
        let request = match ReplayRequest::decode(&bytes) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, "ignoring an unreadable replay request");
                return Ok(());
            }
        };
        if self.last_replay_request == Some(request.id) {
            return Ok(());
        }
        let after = self
            .position_before(request.since.saturating_sub(SKEW))
            .await?;
        tracing::info!(
            id = request.id,
            since = %Timestamp(request.since).to_rfc3339(),
            until = %Timestamp(request.until).to_rfc3339(),
            "replaying forwarded transitions"
        );
        self.replay = Some(Replay {
            id: request.id,
            since: request.since,
            until: request.until,
            after,
        });
        self.last_replay_request = Some(request.id);
        self.unsaved = Unsaved::Progress;
        Ok(())
    }

    /// The feed position right before the first transition that arrived at or after `time`:
    /// a binary search over seqs, one single-entry feed read per step (64 at most), since a
    /// seq is not a time in general.
    async fn position_before(&self, time: u64) -> Result<u64, StoreError> {
        let (mut low, mut high) = (0u64, u64::MAX);
        while low < high {
            let middle = low + (high - low) / 2;
            let next = self.store.feed(middle, 1).await?;
            if next
                .first()
                .is_none_or(|entry| entry.event.received_at.0 >= time)
            {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Ok(low)
    }

    fn send(&mut self, seq: u64) {
        let Some(pending) = self.window.get(seq) else {
            return;
        };
        let (client, forwarding, id, body) = (
            self.client.clone(),
            self.forwarding.clone(),
            pending.webhook_id.clone(),
            pending.body.clone(),
        );
        let task = self.deliveries.spawn(async move {
            let config = &forwarding.config;
            let post = Post {
                url: &config.url,
                body: &body,
                signed: Some((&config.secret, &id)),
            };
            (seq, deliver::post(&client, post).await)
        });
        self.tasks.insert(task.id(), seq);
    }

    fn finished(&mut self, joined: Result<(Id, (u64, Attempt)), JoinError>) {
        let (seq, attempt) = match joined {
            Ok((id, outcome)) => {
                self.tasks.remove(&id);
                outcome
            }
            Err(error) => {
                let Some(seq) = self.tasks.remove(&error.id()) else {
                    return;
                };
                (
                    seq,
                    Attempt::Unreachable(format!("the delivery failed: {error}")),
                )
            }
        };
        let now = Timestamp::now();
        let (outcome, error) = match attempt {
            Attempt::Delivered => {
                self.forwarding.count(Outcome::Delivered);
                self.window.delivered(seq);
                self.unsaved = Unsaved::Progress;
                self.last_delivered = Some(now);
                if self.failures_in_a_row >= DOWN_AFTER {
                    tracing::info!("the forward URL answers again");
                    self.window.all_due(now);
                }
                self.failures_in_a_row = 0;
                return;
            }
            Attempt::Rejected(status) => (Outcome::Rejected, format!("answered {status}")),
            Attempt::Unreachable(error) => (Outcome::Unreachable, error),
        };
        self.forwarding.count(outcome);
        self.failures_in_a_row += 1;
        if self.failures_in_a_row == DOWN_AFTER {
            tracing::warn!(seq, %error, "forwarding fails; retrying with backoff");
        } else {
            tracing::debug!(seq, %error, "a forwarding attempt failed");
        }
        self.last_error = Some(LastError {
            seq,
            error: error.clone(),
            at: now,
        });
        let retry = self.forwarding.config.retry;
        match self.window.failed(seq, error, now, &retry, fastrand::f64()) {
            Some(AfterFailure::GaveUp { sid, attempts }) => {
                self.forwarding.count(Outcome::GivenUp);
                self.unsaved = Unsaved::Progress;
                tracing::error!(seq, %sid, attempts, "gave up forwarding a transition that failed for 24 hours");
            }
            Some(AfterFailure::RetryAt(_)) => self.unsaved = self.unsaved.max(Unsaved::Attempts),
            None => {}
        }
    }

    /// Counts what is stored beyond the window unless the last read reached the end of the
    /// feed; the count walks the backlog's keys, so it is repeated no more often than ten
    /// times its own duration.
    async fn count_backlog(&mut self) -> Result<(), StoreError> {
        if self.caught_up && self.window.room() > 0 {
            self.backlog = 0;
            return Ok(());
        }
        if self
            .counted_at
            .is_some_and(|at| at.elapsed() < self.count_every)
        {
            return Ok(());
        }
        let started = Instant::now();
        self.backlog = self.store.feed_len(self.cursor).await?;
        self.count_every = (started.elapsed() * 10).max(Duration::from_secs(1));
        self.counted_at = Some(Instant::now());
        Ok(())
    }

    async fn save(&mut self) -> Result<(), StoreError> {
        let progress = Progress {
            cursor: self.cursor,
            pending: self
                .window
                .iter()
                .map(|(seq, pending)| Saved {
                    seq,
                    attempts: pending.attempts,
                    first_attempt: pending.first_attempt.map(|at| at.0),
                })
                .collect(),
            replay: self.replay.clone(),
            last_replay_request: self.last_replay_request,
        };
        self.store
            .put_meta(PROGRESS_KEY, Some(progress.encode()))
            .await?;
        self.unsaved = Unsaved::Nothing;
        self.saved_at = Instant::now();
        Ok(())
    }

    fn publish(&self, leader: bool) {
        self.forwarding.publish(Status {
            leader,
            cursor: self.cursor,
            pending: self.window.len(),
            in_flight: self.window.in_flight(),
            backlog: self.backlog,
            oldest: self.window.oldest(),
            last_error: self.last_error.clone(),
            last_delivered: self.last_delivered,
            replay: self.replay.as_ref().map(|replay| {
                (
                    replay.id,
                    Timestamp(replay.since),
                    Timestamp(replay.until),
                    replay.after,
                )
            }),
        });
    }
}

/// Resolves once `stop` is true, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A transition's `webhook-id`: its message's SID and its number in the message's history,
/// which identify it in every store, so the id stays the same across restarts, replicas,
/// replay and a move by export and import (a feed position would not: an import into sled
/// cannot keep PostgreSQL's).
pub fn webhook_id(entry: &FeedEntry) -> String {
    format!("{}_{}", entry.sid.as_str(), entry.number)
}
