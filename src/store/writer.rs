//! Group commit: one thread owns every write, and many callbacks share one fsync.
//!
//! Handlers send a [`Command`] and wait for its reply. The writer takes whatever commands
//! have queued up (up to [`MAX_GROUP`]), applies them as one sled `Batch`, which sled makes
//! atomic also across a crash, flushes once, and only then replies to each. While it
//! flushes, the next group queues up behind it, so under load one fsync acknowledges
//! dozens to hundreds of callbacks, and a lone callback at low load is flushed at once,
//! without waiting for company. (Overlapping the flush with the next group's work was
//! measured slower: it shrinks the groups and multiplies the flushes.) Because a single thread
//! writes, reads of the current record need no locking; an overlay of the records changed
//! earlier in the same group gives each command the state its predecessors left.
//!
//! **What "flushed" must mean.** sled 0.34.7's `flush()` ends in `pwrite` and
//! `sync_file_range` of its log: that neither flushes the drive's cache nor records a grown
//! file's size, so it promises nothing across a power cut, and sled's only `fsync` of the log
//! is in the background flusher, which is off here. So after each group's flush,
//! [`SledFiles::sync`] fsyncs what sled wrote and needs to recover the group, in this order:
//! - `blobs/<lsn>`: a page fragment over a quarter of a segment (~128 KiB: a message with
//!   large callbacks, or a node holding several) goes to a file of its own that sled never
//!   fsyncs; the log only points to it. New ones are synced, then `blobs/` for their names,
//!   before the log. (With the log synced but not the blobs, the power-cut test's store
//!   did not open again: sled's recovery panicked.)
//! - `db`, the log: `fdatasync`, which also persists the size that its data needs.
//!
//! Opening writes the rest, once, and [`SledFiles::after_open`] makes it durable: `conf`
//! (written at creation, never fsynced); the names of `db`, `conf` and `blobs/`, and of the
//! data folder in its parent (a folder above it that sled created too is not covered);
//! and the snapshot. sled 0.34.7 writes `snap.<lsn>` only when it opens, fsyncs its bytes,
//! but not its rename nor the removal of the previous one; recovery replays the log from
//! the newest snapshot found, and replaying from an older one over segments reused since
//! is not safe, so that rename must be durable before any write is acknowledged.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use sled::Batch;
use tokio::sync::{mpsc, oneshot};

use super::record::{
    bucket_key, counter_key, index, record_key, EventRecord, MessageRecord, CLOCK_KEY,
    ERROR_COUNTER, ERROR_HOURLY, ERROR_MINUTELY, HOUR, MINUTE, PROBE_KEY, STATUS_COUNTER,
    STATUS_HOURLY, STATUS_MINUTELY,
};
use super::{encode, Recorded, StoreError, Trees};
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

/// Observes each committed group's size; the metrics count them through it.
pub type GroupObserver = Box<dyn Fn(usize) + Send>;

/// Starts the writer thread; it stops after a `Shutdown`, or when every sender is gone.
pub fn spawn(
    trees: Trees,
    files: SledFiles,
    mut commands: mpsc::Receiver<Command>,
    observe: GroupObserver,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("statushook-writer".into())
        .spawn(move || {
            let clock = trees
                .data
                .get(CLOCK_KEY)
                .ok()
                .flatten()
                .map_or(Timestamp(0), |value| Timestamp(super::decode_count(&value)));
            let mut writer = Writer {
                trees,
                files,
                clock,
                failed: None,
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
    Done(oneshot::Sender<Result<(), StoreError>>),
}

struct Writer {
    trees: Trees,
    files: SledFiles,
    /// The last time handed out; arrival times are strictly increasing, so they order
    /// events and index entries without ties.
    clock: Timestamp,
    /// The first storage error met. sled does not recover from an I/O error within the
    /// process (a later write can block forever), so from then on every command is
    /// answered with this error at once: callbacks get 503, `/readyz` fails, and the
    /// orchestrator restarts the service, which recovers everything acknowledged.
    failed: Option<StoreError>,
}

/// What one group writes.
#[derive(Default)]
struct GroupWrites {
    batch: Batch,
    /// Messages changed earlier in this group, newest state: record and encoded events.
    overlay: HashMap<MessageSid, (MessageRecord, Vec<u8>)>,
    counters: HashMap<Vec<u8>, i64>,
}

impl Writer {
    /// Applies a group, makes it durable, then answers every command in it.
    fn commit(&mut self, group: &mut Vec<Command>) -> Continue {
        if let Some(error) = self.failed.clone() {
            return refuse(group, &error);
        }
        let mut next = Continue::Go;
        let mut writes = GroupWrites::default();
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
                Command::Probe { reply } => {
                    writes
                        .batch
                        .insert(PROBE_KEY, &self.tick().to_be_bytes()[..]);
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
                Reply::Record(Err(error @ StoreError::Unavailable(_)), _) => Some(error),
                _ => None,
            })
        });
        if let Some(error) = storage_error {
            tracing::error!(%error, "the store failed; every write is refused until a restart");
            self.failed = Some(error.clone());
        }
        for reply in replies {
            // A handler that gave up waiting has dropped its receiver: nothing to tell it.
            match reply {
                Reply::Record(outcome, reply) => {
                    let _ = reply.send(result.clone().and(outcome));
                }
                Reply::Done(reply) => {
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
        let sid = event.sid().clone();
        let (previous, mut events) = match writes.overlay.remove(&sid) {
            Some((record, events)) => (Some(record), events),
            None => match self.trees.read_message(&sid)? {
                Some((record, events)) => (Some(record), events),
                None => (None, Vec::new()),
            },
        };
        if let Some(previous) = previous.as_ref() {
            if previous.is_duplicate(&event, token.as_deref()) {
                writes.overlay.insert(sid, (previous.clone(), events));
                return Ok(Recorded::Duplicate);
            }
        }
        let at = self.tick();
        let record = MessageRecord::with_event(previous.as_ref(), &event, token.as_deref(), at);

        // Only the entries that differ are written: the recipient entry, for one, stays put.
        let old_entries = previous
            .as_ref()
            .map(|p| index::entries(&sid, p))
            .unwrap_or_default();
        let new_entries = index::entries(&sid, &record);
        for key in old_entries.iter().filter(|key| !new_entries.contains(key)) {
            writes.batch.remove(key.as_slice());
        }
        for key in new_entries
            .into_iter()
            .filter(|key| !old_entries.contains(key))
        {
            writes.batch.insert(key, &[][..]);
        }
        // Counters hold the current state of every message: take the old state's
        // contribution out and put the new one's in (they cancel when nothing changed).
        if let Some(previous) = &previous {
            count(&mut writes.counters, previous, -1);
        }
        count(&mut writes.counters, &record, 1);

        // The message's value is its record followed by its events: one key per message,
        // so a callback writes one value besides its index entries, and a lookup is one read.
        events.extend(encode(&EventRecord::new(event, at, &record))?);
        let mut value = encode(&record)?;
        value.extend_from_slice(&events);
        writes.batch.insert(record_key(&sid), value);
        writes.overlay.insert(sid, (record, events));
        Ok(Recorded::Stored)
    }

    /// Applies a group as one atomic batch and flushes it to disk.
    fn write(&mut self, mut writes: GroupWrites) -> Result<(), StoreError> {
        writes
            .batch
            .insert(CLOCK_KEY, &self.clock.to_be_bytes()[..]);
        for (key, delta) in writes.counters.drain() {
            if delta == 0 {
                continue;
            }
            let current = i64::try_from(self.trees.read_counter(&key)?).unwrap_or(i64::MAX);
            let value = u64::try_from(current.saturating_add(delta)).unwrap_or(0);
            // A counter at zero is removed, so that scans of buckets meet only live ones.
            if value == 0 {
                writes.batch.remove(key);
            } else {
                writes.batch.insert(key, &value.to_be_bytes()[..]);
            }
        }
        self.trees.data.apply_batch(writes.batch)?;
        // The one flush and fsync of the group: nothing is acknowledged before they return.
        self.trees.db.flush()?;
        self.files.sync().map_err(cannot_sync)
    }
}

/// The files of a sled 0.34.7 database that it leaves to its user to fsync (see the module
/// documentation for which and why).
pub struct SledFiles {
    dir: PathBuf,
    log: File,
    /// The newest blob already synced: sled names blob files by their increasing LSN.
    newest_blob: Option<u64>,
}

impl SledFiles {
    /// Makes durable, right after sled opened `dir`, what opening created or renamed.
    pub fn after_open(dir: &Path) -> io::Result<SledFiles> {
        let mut files = SledFiles {
            dir: dir.to_owned(),
            log: File::open(dir.join("db"))?,
            newest_blob: None,
        };
        File::open(dir.join("conf"))?.sync_data()?;
        files.sync()?;
        sync_dir(&dir.join("blobs"))?;
        sync_dir(dir)?;
        // The data folder's own name, if sled just created it.
        match dir.parent() {
            Some(parent) if parent != Path::new("") => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
        Ok(files)
    }

    /// Makes everything sled has written so far durable: new blobs, then the log.
    pub fn sync(&mut self) -> io::Result<()> {
        let blobs = self.dir.join("blobs");
        let mut newest = self.newest_blob;
        for entry in fs::read_dir(&blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(lsn) = name.to_str().and_then(|name| name.parse::<u64>().ok()) else {
                continue;
            };
            if Some(lsn) <= self.newest_blob {
                continue;
            }
            match File::open(entry.path()) {
                Ok(blob) => blob.sync_data()?,
                // sled removed it meanwhile: the page that pointed to it was rewritten.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            newest = newest.max(Some(lsn));
        }
        if newest != self.newest_blob {
            sync_dir(&blobs)?;
            self.newest_blob = newest;
        }
        self.log.sync_data()
    }
}

/// fsync of a directory: makes the names created, renamed or removed in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn cannot_sync(error: io::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot fsync the store: {error}"))
}

/// Answers every command of a group with `error`, touching nothing.
fn refuse(group: &mut Vec<Command>, error: &StoreError) -> Continue {
    let mut next = Continue::Go;
    for command in group.drain(..) {
        match command {
            Command::Record { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Probe { reply } => {
                let _ = reply.send(Err(error.clone()));
            }
            Command::Shutdown { reply } => {
                next = Continue::Stop;
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
    next
}

/// Adds `delta` to every counter `record` counts in: by status and by error code, all
/// time and in the hour and the minute of its `updated_at`.
pub(super) fn count(counters: &mut HashMap<Vec<u8>, i64>, record: &MessageRecord, delta: i64) {
    let Some(code) = record.status else {
        return;
    };
    let at = record.updated_at.0;
    let mut add = |key: Vec<u8>| *counters.entry(key).or_default() += delta;
    add(counter_key(STATUS_COUNTER, &[code]));
    add(bucket_key(STATUS_HOURLY, at / HOUR, &[code]));
    add(bucket_key(STATUS_MINUTELY, at / MINUTE, &[code]));
    if let Some(error) = record.error_code {
        let error = error.to_be_bytes();
        add(counter_key(ERROR_COUNTER, &error));
        add(bucket_key(ERROR_HOURLY, at / HOUR, &error));
        add(bucket_key(ERROR_MINUTELY, at / MINUTE, &error));
    }
}
