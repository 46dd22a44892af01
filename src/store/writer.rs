//! Group commit: one thread owns every write, and many callbacks share one fsync.
//!
//! Handlers send a [`Command`] and wait for its reply. The writer takes whatever commands
//! have queued up (up to [`MAX_GROUP`]), applies them all in one sled transaction across the
//! trees, flushes once, and only then replies to each. While it flushes, the next group
//! queues up behind it, so under load the cost of an fsync is spread over hundreds of
//! callbacks, and at low load a lone callback is flushed at once without waiting for
//! company. Because a single thread writes, the transaction never conflicts and reads of
//! the current record need no locking; an overlay of the records changed earlier in the
//! same group gives each command the state its predecessors left.

use std::collections::HashMap;
use std::thread;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional};
use tokio::sync::{mpsc, oneshot};

use super::record::{event_key, index, EventRecord, MessageRecord};
use super::{counter_key, Recorded, StoreError, Trees, ERROR_COUNTER, STATUS_COUNTER};
use crate::domain::{MessageSid, StatusEvent, Timestamp};

/// The most commands applied and flushed together.
pub const MAX_GROUP: usize = 2048;

pub enum Command {
    Record {
        event: StatusEvent,
        idempotency_token: Option<String>,
        reply: oneshot::Sender<Result<Recorded, StoreError>>,
    },
    /// Writes and flushes a marker: proves the store is writable (`/readyz`).
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Commits the group it arrived in, flushes, replies and stops the writer.
    Shutdown {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Observes each committed group; the metrics module counts group sizes through it.
pub type GroupObserver = Box<dyn Fn(usize) + Send>;

pub fn spawn(
    trees: Trees,
    mut commands: mpsc::Receiver<Command>,
    observe: GroupObserver,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("statushook-writer".into())
        .spawn(move || {
            let mut writer = Writer {
                trees,
                clock: Timestamp(0),
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
            // Every handle was dropped without a shutdown: flush what is left.
            if let Err(error) = writer.trees.db.flush() {
                tracing::error!(%error, "final flush failed");
            }
        })
}

struct Writer {
    trees: Trees,
    /// The last time handed out; arrival times are strictly increasing, so they order
    /// events and index entries without ties.
    clock: Timestamp,
}

/// What one group writes, per tree.
#[derive(Default)]
struct GroupWrites {
    messages: Batch,
    events: Batch,
    index: Batch,
    meta: Batch,
    /// Records changed earlier in this group, newest state.
    overlay: HashMap<MessageSid, MessageRecord>,
    tokens: HashMap<String, ()>,
    counters: HashMap<Vec<u8>, i64>,
}

#[derive(PartialEq, Eq)]
enum Continue {
    Go,
    Stop,
}

enum Planned {
    Record(
        Result<Recorded, StoreError>,
        oneshot::Sender<Result<Recorded, StoreError>>,
    ),
    Probe(oneshot::Sender<Result<(), StoreError>>),
}

impl Writer {
    fn commit(&mut self, group: &mut Vec<Command>) -> Continue {
        let mut next = Continue::Go;
        let mut writes = GroupWrites::default();
        let mut planned = Vec::with_capacity(group.len());
        for command in group.drain(..) {
            match command {
                Command::Record {
                    event,
                    idempotency_token,
                    reply,
                } => {
                    let outcome = self.plan(&mut writes, event, idempotency_token);
                    planned.push(Planned::Record(outcome, reply));
                }
                Command::Shutdown { reply } => {
                    next = Continue::Stop;
                    planned.push(Planned::Probe(reply));
                }
                Command::Probe { reply } => {
                    writes
                        .meta
                        .insert(b"probe".as_slice(), &self.tick().to_be_bytes()[..]);
                    planned.push(Planned::Probe(reply));
                }
            }
        }
        let result = self.apply(writes);
        for plan in planned {
            // A handler that gave up waiting has dropped its receiver; nothing to tell it.
            match plan {
                Planned::Record(outcome, reply) => {
                    let _ = reply.send(result.clone().and(outcome));
                }
                Planned::Probe(reply) => {
                    let _ = reply.send(result.clone());
                }
            }
        }
        next
    }

    fn tick(&mut self) -> Timestamp {
        let now = Timestamp::now();
        self.clock = if now > self.clock {
            now
        } else {
            Timestamp(self.clock.0 + 1)
        };
        self.clock
    }

    /// Works out what recording `event` writes, without writing it yet.
    fn plan(
        &mut self,
        writes: &mut GroupWrites,
        event: StatusEvent,
        token: Option<String>,
    ) -> Result<Recorded, StoreError> {
        if let Some(token) = &token {
            let known = writes.tokens.contains_key(token)
                || self.trees.meta.contains_key(token_key(token))?;
            if known {
                return Ok(Recorded::Duplicate);
            }
        }
        let sid = event.sid().clone();
        let previous = match writes.overlay.get(&sid) {
            Some(record) => Some(record.clone()),
            None => self.trees.read_record(&sid)?,
        };
        if previous
            .as_ref()
            .is_some_and(|record| record.is_duplicate(&event))
        {
            return Ok(Recorded::Duplicate);
        }
        let at = self.tick();
        let record = MessageRecord::with_event(previous.as_ref(), &event, at);

        // Only the entries that differ are written: the recipient entry, for one, stays put.
        let old_entries = previous
            .as_ref()
            .map(|p| index::entries(&sid, p))
            .unwrap_or_default();
        let new_entries = index::entries(&sid, &record);
        for key in old_entries.iter().filter(|key| !new_entries.contains(key)) {
            writes.index.remove(key.as_slice());
        }
        for key in new_entries.into_iter().filter(|key| !old_entries.contains(key)) {
            writes.index.insert(key, &[][..]);
        }
        // Counters hold the current state of every message: take the old state's
        // contribution out and put the new one's in (they cancel when nothing changed).
        if let Some(previous) = &previous {
            count(&mut writes.counters, previous, -1);
        }
        count(&mut writes.counters, &record, 1);

        let seq = record.event_count - 1;
        writes
            .events
            .insert(event_key(&sid, seq), encode(&EventRecord::new(event, at))?);
        writes
            .messages
            .insert(sid.as_str().as_bytes(), encode(&record)?);
        if let Some(token) = token {
            writes.meta.insert(token_key(&token), &at.to_be_bytes()[..]);
            writes.tokens.insert(token, ());
        }
        writes.overlay.insert(sid, record);
        Ok(Recorded::Stored)
    }

    /// Applies a group in one transaction, then makes it durable.
    fn apply(&self, mut writes: GroupWrites) -> Result<(), StoreError> {
        for (key, delta) in writes.counters.drain() {
            if delta == 0 {
                continue;
            }
            let current = self.trees.read_counter(&key)?;
            let value =
                u64::try_from(i64::try_from(current).unwrap_or(i64::MAX) + delta).unwrap_or(0);
            writes.meta.insert(key, &value.to_be_bytes()[..]);
        }
        let trees = (
            &self.trees.messages,
            &self.trees.events,
            &self.trees.index,
            &self.trees.meta,
        );
        trees
            .transaction(|(messages, events, index, meta)| {
                messages.apply_batch(&writes.messages)?;
                events.apply_batch(&writes.events)?;
                index.apply_batch(&writes.index)?;
                meta.apply_batch(&writes.meta)?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|error| match error {
                TransactionError::Storage(error) => StoreError::from(error),
                TransactionError::Abort(()) => {
                    StoreError::Unavailable("transaction aborted".into())
                }
            })?;
        // The one fsync of the group: nothing is acknowledged before it returns.
        self.trees.db.flush()?;
        Ok(())
    }
}

fn count(counters: &mut HashMap<Vec<u8>, i64>, record: &MessageRecord, delta: i64) {
    let Some(code) = record.status else {
        return;
    };
    *counters
        .entry(counter_key(STATUS_COUNTER, &[code]))
        .or_default() += delta;
    if let Some(error) = record.error_code {
        *counters
            .entry(counter_key(ERROR_COUNTER, &error.to_be_bytes()))
            .or_default() += delta;
    }
}

fn token_key(token: &str) -> Vec<u8> {
    let mut key = b"idem/".to_vec();
    key.extend_from_slice(token.as_bytes());
    key
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serialize(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}
