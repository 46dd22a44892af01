//! Group commit: one thread owns every write, and many callbacks share one fsync.
//!
//! Handlers send a [`Command`] and wait for its reply. The writer takes whatever commands
//! have queued up (up to [`MAX_GROUP`]), applies them as one sled `Batch`, which sled makes
//! atomic also across a crash, makes the group durable, and only then replies to each.
//! While it syncs, the next group queues up behind it, so under load one fsync
//! acknowledges hundreds of callbacks, and a lone callback at low load is synced at once.
//! Because a single thread writes, reads of the current record need no locking; an overlay
//! of the records changed earlier in the same group gives each command the state its
//! predecessors left.
//!
//! # Durable means fsynced
//!
//! This is the one place where "no answer before the write is durable" is kept: after
//! sled's flush, [`SledFiles::sync`] fsyncs every file sled needs to recover the group
//! (`files.rs` says which and why), once per group, and only then are replies sent.
//!
//! # Failure
//!
//! sled does not recover from an I/O error within the process (a later write can block
//! forever), so after the first storage error the writer answers everything with that
//! error and reports it through [`Shared::failed`]; the service then answers `503` for a
//! moment and exits non-zero, and its supervisor restarts it on the recovered store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use sled::Batch;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock::{Clock, Reading};
use super::events::EventWrites;
use super::files::SledFiles;
use super::keys::{
    self, encode, index, meta_key, record_key, EventBody, Record, CLOCK_KEY, PROBE_KEY,
};
use super::listings::Listings;
use super::params::{self, Context};
use super::Trees;
use crate::domain::counters::counters;
use crate::domain::{
    is_duplicate, is_echo, MessageSid, MessageState, StatusEvent, Timestamp, Transition,
};
use crate::store::lifecycle::replay_export;
use crate::store::{GroupObserver, ImportError, Imported, Recorded, StoreError, StoredMessage};

/// The most commands applied and synced together.
pub const MAX_GROUP: usize = 2048;

pub enum Command {
    Record {
        event: StatusEvent,
        idempotency_token: Option<String>,
        reply: oneshot::Sender<Result<Recorded, StoreError>>,
    },
    /// Records several events as one command, so that they land in one group: one atomic
    /// batch, one sync. Either every event is durable when it replies, or none is written.
    RecordAll {
        events: Vec<(StatusEvent, Option<String>)>,
        reply: oneshot::Sender<Result<Vec<Recorded>, StoreError>>,
    },
    /// Writes and syncs a marker: proves the store is writable (`/readyz`).
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Sets (or with `None` removes) a piece of the service's own state, durably.
    Put {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Sets (or with `None` removes) a piece of the service's own state, durably, only if it
    /// is `expected` now (`None`: absent); answers whether it was set.
    Swap {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Removes history index entries no cursor can need any more (`SledStore::forget_history`
    /// finds them).
    Forget {
        keys: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Deletes messages with every trace of them (see `store/lifecycle.rs`); with
    /// `updated_before`, only those still last updated before it. Answers how many.
    Delete {
        sids: Vec<MessageSid>,
        updated_before: Option<Timestamp>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Writes exported messages as recording their events would have.
    Import {
        messages: Vec<StoredMessage>,
        reply: oneshot::Sender<Result<Imported, ImportError>>,
    },
    /// Adds the account index entries of stored messages that lack them (a store written
    /// before that index existed); `done` is set as a meta key with the last batch.
    IndexAccounts {
        sids: Vec<MessageSid>,
        done: Option<Vec<u8>>,
    },
    /// Makes later arrival times (and feed positions) come after `after`.
    Continue {
        after: Timestamp,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Commits the group it arrived in, syncs, replies and stops the writer.
    Shutdown {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What the writer tells readers.
pub struct Shared {
    /// The clock value of the last group applied and made durable: every write at or below
    /// it is visible to readers, none above it is. Paging snapshots and the change feed
    /// read up to it. Published through [`Listings::publish`].
    pub watermark: watch::Sender<u64>,
    /// Set once, at the first storage error.
    pub failed: watch::Sender<Option<StoreError>>,
    pub listings: Listings,
    /// The store's clock: the writer hands out arrival times from it, readers ask it the
    /// time (`SledStore::now`).
    pub clock: Mutex<Clock>,
}

impl Shared {
    pub fn clock(&self) -> MutexGuard<'_, Clock> {
        // The clock stays consistent whatever panicked while holding the lock.
        self.clock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The store's time now (see `clock.rs`).
    pub fn now(&self) -> Timestamp {
        self.clock().now(Reading::take())
    }
}

/// Starts the writer thread; it stops after a `Shutdown`, or when every sender is gone.
pub fn spawn(
    trees: Trees,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    files: SledFiles,
    observe: GroupObserver,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("statushook-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                trees,
                shared,
                files,
            };
            let mut group = Vec::with_capacity(MAX_GROUP);
            while let Some(first) = commands.blocking_recv() {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(command) => group.push(command),
                        Err(_) => break,
                    }
                }
                observe(group.len());
                if writer.commit(&mut group) == Continue::Stop {
                    return;
                }
            }
        })
}

#[derive(PartialEq, Eq)]
enum Continue {
    Go,
    Stop,
}

enum Reply {
    Record(
        Result<Recorded, StoreError>,
        oneshot::Sender<Result<Recorded, StoreError>>,
    ),
    RecordAll(
        Result<Vec<Recorded>, StoreError>,
        oneshot::Sender<Result<Vec<Recorded>, StoreError>>,
    ),
    Done(oneshot::Sender<Result<(), StoreError>>),
    Swapped(
        Result<bool, StoreError>,
        oneshot::Sender<Result<bool, StoreError>>,
    ),
    Deleted(
        Result<u64, StoreError>,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
    Imported(
        Result<Imported, ImportError>,
        oneshot::Sender<Result<Imported, ImportError>>,
    ),
}

/// The writer hands out arrival times from `Shared::clock`: strictly increasing, so they
/// order events, index entries and the change feed without ties.
struct Writer {
    trees: Trees,
    shared: Arc<Shared>,
    files: SledFiles,
}

/// What one group writes.
#[derive(Default)]
struct GroupWrites {
    batch: Batch,
    /// Records changed earlier in this group, newest first.
    overlay: HashMap<MessageSid, Record>,
    counters: HashMap<Vec<u8>, i64>,
    /// The service's own state set earlier in this group, by its meta key, for a swap to
    /// compare with.
    meta: HashMap<Vec<u8>, Option<Vec<u8>>>,
    events: EventWrites,
    /// Whether a position a message leaves stays as history (see [`Listings`]).
    keep_history: bool,
}

impl GroupWrites {
    /// Sets (or with `None` removes) the service's own state under the meta key `key`.
    fn set_meta(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match &value {
            Some(value) => self.batch.insert(key.clone(), value.clone()),
            None => self.batch.remove(key.clone()),
        }
        self.meta.insert(key, value);
    }
}

impl Writer {
    /// Applies a group, makes it durable, then answers every command in it.
    fn commit(&mut self, group: &mut Vec<Command>) -> Continue {
        if let Some(error) = self.shared.failed.borrow().clone() {
            return refuse(group, &error);
        }
        let mut next = Continue::Go;
        let mut writes = GroupWrites {
            keep_history: self.shared.listings.keep_history(self.shared.now()),
            ..GroupWrites::default()
        };
        let mut replies = Vec::with_capacity(group.len());
        for command in group.drain(..) {
            match command {
                Command::Record {
                    event,
                    idempotency_token,
                    reply,
                } => {
                    let outcome = self.plan(&mut writes, event, idempotency_token);
                    replies.push(Reply::Record(outcome, reply));
                }
                Command::RecordAll { events, reply } => {
                    let outcome = self.plan_all(&mut writes, events);
                    replies.push(Reply::RecordAll(outcome, reply));
                }
                Command::Probe { reply } => {
                    writes
                        .batch
                        .insert(PROBE_KEY, &self.tick().to_be_bytes()[..]);
                    replies.push(Reply::Done(reply));
                }
                Command::Put { key, value, reply } => {
                    writes.set_meta(meta_key(&key), value);
                    replies.push(Reply::Done(reply));
                }
                Command::Swap {
                    key,
                    expected,
                    value,
                    reply,
                } => {
                    let key = meta_key(&key);
                    let outcome = self.current_meta(&writes, &key).map(|current| {
                        let swapped = current == expected;
                        if swapped {
                            writes.set_meta(key, value);
                        }
                        swapped
                    });
                    replies.push(Reply::Swapped(outcome, reply));
                }
                Command::Forget { keys, reply } => {
                    // A history entry never becomes live again (each transition has its own
                    // time), so removing one, even twice, touches nothing else.
                    for key in keys {
                        writes.batch.remove(key);
                    }
                    replies.push(Reply::Done(reply));
                }
                Command::Delete {
                    sids,
                    updated_before,
                    reply,
                } => {
                    let outcome = sids.iter().try_fold(0, |deleted, sid| {
                        let gone = self.plan_delete(&mut writes, sid, updated_before)?;
                        Ok(deleted + u64::from(gone))
                    });
                    replies.push(Reply::Deleted(outcome, reply));
                }
                Command::Import { messages, reply } => {
                    let outcome = self.plan_import(&mut writes, messages);
                    replies.push(Reply::Imported(outcome, reply));
                }
                Command::IndexAccounts { sids, done } => {
                    for sid in &sids {
                        // A failed read leaves the entry to the next start-up.
                        if let Ok(Some(record)) = self.current(&writes, sid) {
                            for key in index::numbers(sid, &record.parties) {
                                writes.batch.insert(key, &[][..]);
                            }
                        }
                    }
                    if let Some(done) = done {
                        writes.batch.insert(meta_key(&done), &[1][..]);
                    }
                }
                Command::Continue { after, reply } => {
                    self.shared.clock().pass(after);
                    replies.push(Reply::Done(reply));
                }
                Command::Shutdown { reply } => {
                    next = Continue::Stop;
                    replies.push(Reply::Done(reply));
                }
            }
        }
        let result = self.write(writes);
        let storage_error = result.as_ref().err().or_else(|| {
            replies.iter().find_map(|reply| match reply {
                Reply::Record(Err(error @ StoreError::Unavailable(_)), _)
                | Reply::RecordAll(Err(error @ StoreError::Unavailable(_)), _)
                | Reply::Deleted(Err(error @ StoreError::Unavailable(_)), _) => Some(error),
                _ => None,
            })
        });
        let published = match storage_error {
            Some(error) => {
                tracing::error!(%error, "the store failed a write; exiting for a restart");
                self.shared.failed.send_replace(Some(error.clone()));
                None
            }
            None => Some(self.shared.clock().last()),
        };
        self.shared
            .listings
            .publish(&self.shared.watermark, published);
        for reply in replies {
            // A handler that gave up waiting has dropped its receiver: nothing to tell it.
            match reply {
                Reply::Record(outcome, reply) => {
                    let _ = reply.send(result.clone().and(outcome));
                }
                Reply::RecordAll(outcome, reply) => {
                    let _ = reply.send(result.clone().and(outcome));
                }
                Reply::Done(reply) => {
                    let _ = reply.send(result.clone());
                }
                Reply::Swapped(outcome, reply) => {
                    let _ = reply.send(result.clone().and(outcome));
                }
                Reply::Deleted(outcome, reply) => {
                    let _ = reply.send(result.clone().and(outcome));
                }
                Reply::Imported(outcome, reply) => {
                    let _ = reply.send(result.clone().map_err(ImportError::from).and(outcome));
                }
            }
        }
        next
    }

    /// The next arrival time; a step of the system clock is logged when it is seen.
    fn tick(&mut self) -> Timestamp {
        let (at, step) = self.shared.clock().stamp(Reading::take());
        if let Some(step) = step {
            step.log();
        }
        at
    }

    /// Works out what recording `event` writes, without writing it yet.
    fn plan(
        &mut self,
        writes: &mut GroupWrites,
        event: StatusEvent,
        token: Option<String>,
    ) -> Result<Recorded, StoreError> {
        let sid = event.sid().clone();
        let mut record = match writes.overlay.remove(&sid) {
            Some(record) => record,
            None => self.trees.record(&sid)?.unwrap_or_default(),
        };
        if is_duplicate(
            &record.transitions,
            &record.tokens,
            &event,
            token.as_deref(),
        ) {
            writes.overlay.insert(sid, record);
            return Ok(Recorded::Duplicate);
        }
        let at = self.tick();
        let old_state = record.state();
        let old_parties = record.parties.clone();
        record.parties.fill_from(&event);
        let transition = Transition::of(&event, at);
        if is_echo(&record.transitions, &transition) {
            // One transition in effect: the echo joins the history and nothing else moves.
            record.transitions.push(transition);
            record.tokens.extend(token);
            if record.parties != old_parties {
                for key in index::numbers(&sid, &record.parties) {
                    writes.batch.insert(key, &[][..]);
                }
            }
            self.append_event(writes, &sid, event, record)?;
            return Ok(Recorded::Stored);
        }
        let state = match old_state.clone() {
            Some(mut state) => {
                state.apply(&transition);
                state.parties = record.parties.clone();
                state
            }
            None => MessageState::first(record.parties.clone(), &transition),
        };
        record.transitions.push(transition);
        record.tokens.extend(token);

        // The old position becomes history (its value the time it was replaced) while a
        // listing may read it, and goes otherwise; the new one is live. Counters hold the
        // current state of every message: the old state's contribution goes out and the
        // new one's in.
        if let Some(old) = &old_state {
            for key in index::timed(&sid, old) {
                if writes.keep_history {
                    writes.batch.insert(key, &at.to_be_bytes()[..]);
                } else {
                    writes.batch.remove(key);
                }
            }
            count(&mut writes.counters, old, -1);
        }
        for key in index::timed(&sid, &state) {
            writes.batch.insert(key, &[][..]);
        }
        count(&mut writes.counters, &state, 1);
        if record.parties != old_parties {
            for key in index::numbers(&sid, &record.parties) {
                writes.batch.insert(key, &[][..]);
            }
        }

        self.append_event(writes, &sid, event, record)?;
        Ok(Recorded::Stored)
    }

    /// Plans a batch of events that must be durable together or not at all (see
    /// [`Command::RecordAll`]). Every record the batch touches is read first: a failed read
    /// refuses the batch before any of it is planned, so no part of it reaches the group's
    /// write.
    fn plan_all(
        &mut self,
        writes: &mut GroupWrites,
        events: Vec<(StatusEvent, Option<String>)>,
    ) -> Result<Vec<Recorded>, StoreError> {
        for (event, _) in &events {
            let sid = event.sid();
            if !writes.overlay.contains_key(sid) {
                let record = self.trees.record(sid)?.unwrap_or_default();
                writes.overlay.insert(sid.clone(), record);
            }
        }
        events
            .into_iter()
            .map(|(event, token)| self.plan(writes, event, token))
            .collect()
    }

    /// Appends `event`'s parameters to the group's event block, at the arrival time of the
    /// record's last transition, and writes the record.
    fn append_event(
        &self,
        writes: &mut GroupWrites,
        sid: &MessageSid,
        event: StatusEvent,
        record: Record,
    ) -> Result<(), StoreError> {
        let at = record
            .transitions
            .last()
            .map(|transition| transition.received_at)
            .ok_or_else(|| StoreError::corrupt(format!("{sid}: a record without events")))?;
        let status = event.status().clone();
        let cx = Context {
            sid: sid.as_str(),
            status: status.as_str(),
            parties: &record.parties,
        };
        let body = EventBody {
            sid: sid.as_str().to_owned(),
            params: params::pack(event.into_params(), &cx),
        };
        writes.events.append(at.0, encode(&body)?);
        writes.batch.insert(record_key(sid), encode(&record)?);
        writes.overlay.insert(sid.clone(), record);
        Ok(())
    }

    /// The record of `sid` as the commands before this one in the group left it.
    fn current(
        &self,
        writes: &GroupWrites,
        sid: &MessageSid,
    ) -> Result<Option<Record>, StoreError> {
        match writes.overlay.get(sid) {
            Some(record) if record.transitions.is_empty() => Ok(None),
            Some(record) => Ok(Some(record.clone())),
            None => self.trees.record(sid),
        }
    }

    /// The service's own state under the meta key `key` as this group leaves it so far.
    fn current_meta(
        &self,
        writes: &GroupWrites,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match writes.meta.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(self
                .trees
                .data
                .get(key)
                .map_err(unavailable)?
                .map(|value| value.to_vec())),
        }
    }

    /// Works out what deleting `sid` writes: the removal of its record, its events, every
    /// index entry its record implies (history included) and its counter contributions.
    /// `false` when there is nothing to delete (or it was updated at or after
    /// `updated_before`).
    fn plan_delete(
        &mut self,
        writes: &mut GroupWrites,
        sid: &MessageSid,
        updated_before: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let Some(record) = self.current(writes, sid)? else {
            return Ok(false);
        };
        let Some(state) = record.state() else {
            return Ok(false);
        };
        if updated_before.is_some_and(|before| state.updated_at >= before) {
            return Ok(false);
        }
        // Every read first: a failed one leaves this message wholly in place.
        for transition in &record.transitions {
            writes.events.load(&self.trees, transition.received_at.0)?;
        }
        // History entries already pruned are removed again: removing a missing key is
        // harmless, and so is the prune of one removed here.
        for (key, _) in index::implied(sid, &record) {
            writes.batch.remove(key);
        }
        for transition in &record.transitions {
            writes.events.remove(transition.received_at.0);
        }
        count(&mut writes.counters, &state, -1);
        writes.batch.remove(record_key(sid));
        // An empty record in the overlay: a later command of the group sees no message.
        writes.overlay.insert(sid.clone(), Record::default());
        Ok(true)
    }

    /// Works out what importing `messages` writes. Everything is validated first, so a
    /// refused batch writes nothing.
    fn plan_import(
        &mut self,
        writes: &mut GroupWrites,
        messages: Vec<StoredMessage>,
    ) -> Result<Imported, ImportError> {
        let mut report = Imported::default();
        let mut planned = Vec::with_capacity(messages.len());
        let mut taken = std::collections::HashSet::new();
        let mut sids = std::collections::HashSet::new();
        for message in messages {
            if self.current(writes, &message.sid)?.is_some() || !sids.insert(message.sid.clone()) {
                return Err(ImportError::Exists(message.sid));
            }
            // Arrival times are event keys: unique store-wide. An event whose microsecond
            // is taken moves to the next free one.
            let replayed = replay_export(&message, |wanted| {
                let mut at = wanted.0;
                while taken.contains(&at) || writes.events.contains(&self.trees, at)? {
                    at += 1;
                }
                taken.insert(at);
                Ok(Timestamp(at))
            })?;
            report.moved += replayed.moved;
            let record = Record {
                parties: message.state.parties.clone(),
                transitions: replayed.transitions,
                tokens: Vec::new(),
            };
            planned.push((message.sid, record, replayed.state, message.events));
        }
        for (sid, record, state, events) in planned {
            for (key, replaced_at) in index::implied(&sid, &record) {
                // History positions exist for open cursors; an imported store has none.
                if replaced_at.is_none() {
                    writes.batch.insert(key, &[][..]);
                }
            }
            count(&mut writes.counters, &state, 1);
            for (transition, event) in record.transitions.iter().zip(events) {
                let cx = Context {
                    sid: sid.as_str(),
                    status: transition.status.as_str(),
                    parties: &record.parties,
                };
                let body = EventBody {
                    sid: sid.as_str().to_owned(),
                    params: params::pack(event.params, &cx),
                };
                // Its block was read when the time was found free, above.
                writes
                    .events
                    .insert(transition.received_at.0, encode(&body)?);
                self.shared.clock().pass(transition.received_at);
                report.events += 1;
            }
            writes.batch.insert(record_key(&sid), encode(&record)?);
            writes.overlay.insert(sid, record);
            report.messages += 1;
        }
        Ok(report)
    }

    /// Applies a group as one atomic batch and makes it durable.
    fn write(&mut self, mut writes: GroupWrites) -> Result<(), StoreError> {
        let last = self.shared.clock().last();
        writes.batch.insert(CLOCK_KEY, &last.to_be_bytes()[..]);
        std::mem::take(&mut writes.events).write(&mut writes.batch)?;
        for (key, delta) in writes.counters.drain() {
            if delta == 0 {
                continue;
            }
            let current = i64::try_from(self.trees.counter(&key)?).unwrap_or(i64::MAX);
            let value = u64::try_from(current.saturating_add(delta)).unwrap_or(0);
            // A counter at zero is removed, so that scans of buckets meet only live ones.
            if value == 0 {
                writes.batch.remove(key);
            } else {
                writes.batch.insert(key, &value.to_be_bytes()[..]);
            }
        }
        self.trees
            .data
            .apply_batch(writes.batch)
            .map_err(unavailable)?;
        self.trees.db.flush().map_err(unavailable)?;
        // The one sync of the group: nothing is acknowledged before it returns.
        self.files.sync().map_err(StoreError::unavailable)
    }
}

fn unavailable(error: sled::Error) -> StoreError {
    StoreError::unavailable(error)
}

/// Answers every command of a group with `error`, touching nothing.
fn refuse(group: &mut Vec<Command>, error: &StoreError) -> Continue {
    let mut next = Continue::Go;
    for command in group.drain(..) {
        match command {
            Command::Record { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::RecordAll { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Probe { reply }
            | Command::Put { reply, .. }
            | Command::Forget { reply, .. }
            | Command::Continue { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Delete { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Swap { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Import { reply, .. } => {
                let _ = reply.send(Err(error.clone().into()));
            }
            Command::IndexAccounts { .. } => {}
            Command::Shutdown { reply } => {
                next = Continue::Stop;
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
    next
}

/// Adds `delta` to every counter a message in `state` counts in.
pub(super) fn count(counts: &mut HashMap<Vec<u8>, i64>, state: &MessageState, delta: i64) {
    for counter in counters(state) {
        *counts.entry(keys::key_of(&counter)).or_default() += delta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_that_registers_while_a_group_keeps_no_history_takes_its_snapshot_after_it() {
        let listings = Arc::new(Listings::new(0));
        let watermark = Arc::new(watch::channel(5).0);
        let failed = Arc::new(watch::channel(None).0);
        assert!(!listings.keep_history(Timestamp(10)), "nobody lists");

        let listing = {
            let (listings, watermark, failed) = (
                Arc::clone(&listings),
                Arc::clone(&watermark),
                Arc::clone(&failed),
            );
            thread::spawn(move || listings.snapshot(Timestamp::now(), &watermark, &failed))
        };
        thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !listing.is_finished(),
            "the listing waits for the group that removes old positions"
        );
        listings.publish(&watermark, Some(Timestamp(12)));
        let snapshot = listing.join().expect("no panic").expect("a snapshot");
        assert_eq!(
            snapshot, 12,
            "the snapshot comes after every move without history"
        );
        assert!(
            listings.keep_history(Timestamp::now()),
            "later groups keep history for the listing"
        );
        listings.publish(&watermark, Some(Timestamp(13)));
        assert_eq!(
            listings
                .snapshot(Timestamp::now(), &watermark, &failed)
                .expect("a snapshot"),
            13
        );
    }

    #[test]
    fn after_a_failed_group_that_kept_no_history_no_listing_takes_a_snapshot() {
        let listings = Listings::new(0);
        let watermark = watch::channel(5).0;
        let failed = watch::channel(None).0;
        assert!(!listings.keep_history(Timestamp(10)));
        failed.send_replace(Some(StoreError::unavailable("disk full")));
        listings.publish(&watermark, None);
        assert!(
            listings
                .snapshot(Timestamp::now(), &watermark, &failed)
                .is_err(),
            "the group's moves may be applied without history, above the watermark"
        );
    }
}
