//! The store: the only module that imports sled.
//!
//! One tree holds message records, their events in arrival order, the listing indexes,
//! counters by current status and error code, and idempotency tokens; [`record`] gives the
//! key layout. Every write goes through the single writer thread of [`writer`], which
//! applies each group of callbacks as one atomic batch and acknowledges none of them
//! before a flush has made it durable: the durable-before-200 rule lives there and nowhere
//! else. Reads go straight to the tree from any thread.

mod params;
mod query;
mod record;
mod series;
mod stats;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub use query::{Cursor, ListQuery, Page};
pub use record::{MessageRecord, StoredEvent};
pub use series::{BucketSize, Series};
pub use stats::Stats;
pub use writer::GroupObserver;

use crate::domain::{KnownStatus, MessageSid, StatusEvent};
use writer::Command;

/// The outcome of recording a status event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event is new and is now durably stored.
    Stored,
    /// The event was already stored (same status and error code, or a repeated
    /// idempotency token); nothing was written.
    Duplicate,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// A message with its whole history, as stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub sid: MessageSid,
    pub record: MessageRecord,
    pub events: Vec<StoredEvent>,
}

/// A handle on the store. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct Store {
    trees: Trees,
    commands: mpsc::Sender<Command>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    data: sled::Tree,
}
/// How many commands may wait for the writer before handlers wait to enqueue.
const QUEUE_DEPTH: usize = 16 * 1024;

impl Store {
    /// Opens (or creates) the store in `path` and starts its writer thread.
    pub fn open(path: &Path, observe: GroupObserver) -> Result<Store, StoreError> {
        let db = open_db(path)?;
        let trees = Trees {
            data: db.open_tree("statushook")?,
            db,
        };
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let writer = writer::spawn(trees.clone(), receiver, observe).map_err(|error| {
            StoreError::Unavailable(format!("cannot start the writer: {error}"))
        })?;
        Ok(Store {
            trees,
            commands,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Records a status event; returns once it is durably on disk (or known already).
    pub async fn record(
        &self,
        event: StatusEvent,
        idempotency_token: Option<String>,
    ) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Record {
            event,
            idempotency_token,
            reply,
        })
        .await?;
        wait_for(answer).await
    }

    /// Writes and flushes a marker, proving the store takes writes.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Probe { reply }).await?;
        wait_for(answer).await
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands.send(command).await.map_err(|_| writer_gone())
    }

    /// A message and its history, or `None` if no event of it was ever stored.
    pub fn message(&self, sid: &MessageSid) -> Result<Option<StoredMessage>, StoreError> {
        match self.trees.data.get(record::record_key(sid))? {
            Some(value) => Ok(Some(stored_message(sid.clone(), &value)?)),
            None => Ok(None),
        }
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.trees.db.size_on_disk()?)
    }

    /// Commits everything queued before it, flushes, and stops the writer. Records sent
    /// afterwards get `Unavailable`.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Shutdown { reply }).await?;
        let flushed = answer.await.map_err(|_| writer_gone())?;
        let handle = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(handle) = handle {
            // The writer has replied and is returning; joining cannot block for long.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        flushed
    }
}

/// How long to wait for the lock of a store that another handle is still releasing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database, waiting a little while its lock is held: sled releases it only
/// once its I/O threads have finished with a closed store, and a restart in the same
/// process (or right after a previous one) can come sooner. Past the wait, the error says
/// another statushook probably has the folder open.
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            // Bounded so that the service's memory stays small on millions of messages;
            // the hot set (recent messages) fits easily.
            .cache_capacity(128 * 1024 * 1024)
            // The writer flushes every group itself; a background flusher would only add
            // fsyncs that acknowledge nothing.
            .flush_every_ms(None)
            .open();
        // sled reports a held lock as an `Other` I/O error carrying this text.
        let locked = |error: &std::io::Error| error.to_string().contains("could not acquire lock");
        match opened {
            Err(sled::Error::Io(error)) if locked(&error) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(error)) if locked(&error) => {
                return Err(StoreError::Unavailable(format!(
                    "{} is locked: is another statushook using it? ({error})",
                    path.display()
                )));
            }
            other => return Ok(other?),
        }
    }
}

impl Trees {
    /// A message's record and its encoded events, which a new event is appended to.
    fn read_message(
        &self,
        sid: &MessageSid,
    ) -> Result<Option<(MessageRecord, Vec<u8>)>, StoreError> {
        let Some(value) = self.data.get(record::record_key(sid))? else {
            return Ok(None);
        };
        let (record, events) = decode_record(&value)?;
        Ok(Some((record, events.to_vec())))
    }

    /// A message's record and its decoded (still packed) events.
    fn read_full(
        &self,
        sid: &str,
    ) -> Result<Option<(MessageRecord, Vec<record::EventRecord>)>, StoreError> {
        let mut key = vec![b'm'];
        key.extend_from_slice(sid.as_bytes());
        let Some(value) = self.data.get(key)? else {
            return Ok(None);
        };
        let (record, events) = decode_record(&value)?;
        Ok(Some((record, decode_events(events)?)))
    }

    fn read_counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self.data.get(key)?.map_or(0, |value| decode_count(&value)))
    }
}

/// Values are bincode with variable-length integers: string lengths take one byte.
fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    use bincode::Options;
    bincode::options()
        .serialize(value)
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// Splits a message's value into its record and the encoded events that follow it. The
/// events stay encoded: listings and the writer need only the record.
fn decode_record(value: &[u8]) -> Result<(MessageRecord, &[u8]), StoreError> {
    use bincode::Options;
    let mut rest = value;
    let record = bincode::options()
        .deserialize_from(&mut rest)
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    Ok((record, rest))
}

fn decode_events(mut encoded: &[u8]) -> Result<Vec<record::EventRecord>, StoreError> {
    use bincode::Options;
    let mut events = Vec::new();
    while !encoded.is_empty() {
        let event = bincode::options()
            .deserialize_from(&mut encoded)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        events.push(event);
    }
    Ok(events)
}

/// How long a handler waits for the writer before answering 503. A write that completes
/// later is stored all the same; the sender's retry is then a duplicate, which is harmless.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn wait_for<T>(answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(writer_gone()),
        Err(_) => Err(StoreError::Unavailable(
            "the store did not answer in time".into(),
        )),
    }
}

/// A counter's value: a big-endian u64 (0 if malformed).
fn decode_count(value: &[u8]) -> u64 {
    value.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the writer has stopped".into())
}

/// Messages by current status and by the error code of that status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_status: Vec<(KnownStatus, u64)>,
    pub by_error: Vec<(u32, u64)>,
}

impl Store {
    /// All-time counts, from the counters the writer maintains with every commit.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        let all_time = [
            record::counter_key(record::STATUS_COUNTER, &[]),
            record::counter_key(record::ERROR_COUNTER, &[]),
        ];
        for entry in all_time
            .iter()
            .flat_map(|prefix| self.trees.data.scan_prefix(prefix))
        {
            let (key, value) = entry?;
            let count = decode_count(&value);
            if count == 0 {
                continue;
            }
            match (key.get(1), key.get(2..)) {
                (Some(&record::STATUS_COUNTER), Some([code])) => {
                    if let Some(status) = KnownStatus::from_code(*code) {
                        counts.by_status.push((status, count));
                    }
                }
                (Some(&record::ERROR_COUNTER), Some(error)) => {
                    if let Ok(error) = error.try_into().map(u32::from_be_bytes) {
                        counts.by_error.push((error, count));
                    }
                }
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// What [`Store::check`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    pub messages: u64,
    pub events: u64,
    pub index_entries: u64,
}

impl Store {
    /// Reads the whole store and checks that indexes, counters and event counts agree with
    /// the message records: an index entry exists if and only if a record implies it. A
    /// full scan, for tests and maintenance, never on a request path.
    pub fn check(&self) -> Result<CheckReport, String> {
        let fail = |error: StoreError| error.to_string();
        let mut report = CheckReport {
            messages: 0,
            events: 0,
            index_entries: 0,
        };
        let mut implied = std::collections::BTreeSet::new();
        let mut counters = std::collections::HashMap::<Vec<u8>, i64>::new();
        for entry in self.trees.data.scan_prefix(b"m") {
            let (key, value) = entry.map_err(|e| fail(e.into()))?;
            let sid = std::str::from_utf8(&key[1..]).map_err(|e| e.to_string())?;
            let sid = MessageSid::parse(sid)?;
            let (record, events) = decode_record(&value).map_err(fail)?;
            let events = decode_events(events).map_err(fail)?.len() as u64;
            implied.extend(record::index::entries(&sid, &record));
            writer::count(&mut counters, &record, 1);
            if events != u64::from(record.event_count) {
                return Err(format!(
                    "{sid}: {events} events stored, record says {}",
                    record.event_count
                ));
            }
            report.messages += 1;
            report.events += events;
        }
        for kind in [
            record::index::BY_STATUS,
            record::index::BY_ERROR,
            record::index::BY_TO,
            record::index::BY_FROM,
        ] {
            for entry in self.trees.data.scan_prefix([kind]) {
                let (key, _) = entry.map_err(|e| fail(e.into()))?;
                if !implied.remove(key.as_ref()) {
                    return Err(format!("index entry {key:?} has no record implying it"));
                }
                report.index_entries += 1;
            }
        }
        if let Some(missing) = implied.first() {
            return Err(format!(
                "index entry {missing:?} is implied by a record but missing"
            ));
        }
        for entry in self.trees.data.scan_prefix(b"c") {
            let (key, value) = entry.map_err(|e| fail(e.into()))?;
            let stored = decode_count(&value);
            let expected = counters.remove(key.as_ref()).unwrap_or(0);
            if i64::try_from(stored).ok() != Some(expected) {
                return Err(format!(
                    "counter {key:?} is {stored}, records say {expected}"
                ));
            }
        }
        if let Some((key, count)) = counters.into_iter().find(|(_, count)| *count != 0) {
            return Err(format!("counter {key:?} is missing, records say {count}"));
        }
        Ok(report)
    }
}

impl Store {
    /// Every message with its history, in SID order. A full scan, for export.
    pub fn messages(&self) -> impl Iterator<Item = Result<StoredMessage, StoreError>> + '_ {
        self.trees.data.scan_prefix(b"m").map(|entry| {
            let (key, value) = entry?;
            let sid =
                std::str::from_utf8(&key[1..]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let sid = MessageSid::parse(sid).map_err(StoreError::Corrupt)?;
            stored_message(sid, &value)
        })
    }
}

/// A message's value decoded whole: record and unpacked events.
fn stored_message(sid: MessageSid, value: &[u8]) -> Result<StoredMessage, StoreError> {
    let (record, events) = decode_record(value)?;
    let events = decode_events(events)?
        .into_iter()
        .map(|event| event.unpack(&sid, &record))
        .collect();
    Ok(StoredMessage {
        sid,
        record,
        events,
    })
}
