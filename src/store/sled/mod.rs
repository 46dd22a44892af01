//! The embedded store: the only module that imports sled.
//!
//! One tree holds message records, their events, the change feed, the listing indexes,
//! counters by current status and error code, and idempotency tokens; [`keys`] gives the
//! layout. Every write goes through the single writer thread of [`writer`], which applies
//! each group of commands as one atomic batch and acknowledges none of them before it is
//! fsynced: the durable-before-200 rule lives there and nowhere else. Reads go straight
//! to the tree from any (blocking) thread.

mod clock;
pub(crate) mod events;
mod files;
mod idempotency;
pub(crate) mod keys;
mod lifecycle;
mod listings;
mod params;
mod query;
mod series;
mod stats;
mod writer;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{is_echo, MessageSid, Timestamp};
use crate::store::{
    CheckError, CheckReport, FeedEntry, GroupObserver, Recorded, StoreError, StoredEvent,
    StoredMessage, HISTORY_KEPT,
};
use keys::{decode, decode_count, index, Record};
pub use lifecycle::{compact, Compacted};
use writer::{Command, Shared};

/// A handle on the sled store. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct SledStore {
    trees: Trees,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Where the current retention pass goes on in each status range.
    expiry: Arc<Mutex<lifecycle::ExpiryScan>>,
}

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    data: sled::Tree,
}

/// How many commands may wait for the writer before handlers wait to enqueue.
const QUEUE_DEPTH: usize = 16 * 1024;

impl SledStore {
    /// Opens (or creates) the store in `path` and starts its writer thread.
    pub fn open(path: &Path, observe: GroupObserver) -> Result<SledStore, StoreError> {
        let db = open_db(path)?;
        let files = files::SledFiles::after_open(path).map_err(StoreError::unavailable)?;
        let trees = Trees {
            data: db.open_tree("statushook").map_err(unavailable)?,
            db,
        };
        let last = trees
            .data
            .get(keys::CLOCK_KEY)
            .map_err(unavailable)?
            .map_or(Timestamp(0), |value| Timestamp(decode_count(&value)));
        let reading = clock::Reading::take();
        let clock = clock::Clock::start(last, reading);
        // Cursors served before the store was reopened may still be in use.
        let served_before = trees.data.scan_prefix(b"m").next().is_some();
        let keep_until = match served_before {
            true => clock.now(reading).0 + HISTORY_KEPT.as_micros() as u64,
            false => 0,
        };
        let shared = Arc::new(Shared {
            watermark: watch::channel(last.0).0,
            failed: watch::channel(None).0,
            listings: listings::Listings::new(keep_until),
            clock: Mutex::new(clock),
        });
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let writer = writer::spawn(trees.clone(), receiver, Arc::clone(&shared), files, observe)
            .map_err(StoreError::unavailable)?;
        let store = SledStore {
            trees,
            commands,
            shared,
            writer: Arc::new(Mutex::new(Some(writer))),
            expiry: Arc::default(),
        };
        if served_before {
            store.index_accounts();
        } else {
            store.mark_accounts_indexed()?;
        }
        Ok(store)
    }

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

    /// Records `events` as one command of one group: durable together, or not at all.
    pub async fn record_all(
        &self,
        events: Vec<(StatusEvent, Option<String>)>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::RecordAll { events, reply }).await?;
        wait_for(answer).await
    }

    pub async fn probe(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Probe { reply }).await?;
        wait_for(answer).await
    }

    pub async fn put_meta(&self, key: &[u8], value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let key = key.to_vec();
        self.send(Command::Put { key, value, reply }).await?;
        wait_for(answer).await
    }

    /// Sets the state under `key` to `value` if it is `expected` now; answers whether it did.
    /// The comparison and the write are one step of the writer, so no other write of the
    /// key comes between them.
    pub async fn swap_meta(
        &self,
        key: &[u8],
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let key = key.to_vec();
        self.send(Command::Swap {
            key,
            expected,
            value,
            reply,
        })
        .await?;
        wait_for(answer).await
    }

    /// Makes later arrival times, which are feed positions, come after `after`.
    pub async fn continue_feed_after(&self, after: Timestamp) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Continue { after, reply }).await?;
        wait_for(answer).await
    }

    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .trees
            .data
            .get(keys::meta_key(key))
            .map_err(unavailable)?;
        Ok(value.map(|value| value.to_vec()))
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands.send(command).await.map_err(|_| writer_gone())
    }

    /// The store's clock now: what its arrival times, listings, stats windows and
    /// retention go by (see `clock.rs`).
    pub fn now(&self) -> Timestamp {
        self.shared.now()
    }

    /// The watermark of applied, durable writes (see `writer::Shared`).
    pub fn watermark(&self) -> u64 {
        *self.shared.watermark.borrow()
    }

    pub async fn failed(&self) -> StoreError {
        let mut failed = self.shared.failed.subscribe();
        let error = match failed.wait_for(Option::is_some).await {
            Ok(error) => error.clone(),
            Err(_) => None,
        };
        error.unwrap_or_else(writer_gone)
    }

    pub fn message(&self, sid: &MessageSid) -> Result<Option<StoredMessage>, StoreError> {
        let Some(record) = self.trees.record(sid)? else {
            return Ok(None);
        };
        let Some(state) = record.state() else {
            return Ok(None);
        };
        let events = self.trees.events(sid, &record)?;
        Ok(Some(StoredMessage {
            sid: sid.clone(),
            state,
            events,
        }))
    }

    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.trees.db.size_on_disk().map_err(unavailable)
    }

    /// Commits everything queued before it, syncs, and stops the writer. Records sent
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

    /// The transitions after `after` up to the watermark, in commit order: the events,
    /// which are stored by their sequence number.
    pub fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
        let watermark = self.watermark();
        if after >= watermark {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        let mut cached: Option<(MessageSid, Record)> = None;
        self.trees.each_event(after, watermark, |seq, body| {
            let body: keys::EventBody = decode(body)?;
            let sid = MessageSid::parse(&body.sid).map_err(StoreError::corrupt)?;
            // Consecutive events of one message are common: read its record once.
            let record = match cached.take() {
                Some((known, record)) if known == sid => record,
                _ => match self.trees.record(&sid)? {
                    Some(record) => record,
                    None => {
                        return Err(StoreError::corrupt(format!("{sid}: event without record")))
                    }
                },
            };
            let index = record
                .transitions
                .binary_search_by_key(&seq, |t| t.received_at.0)
                .map_err(|_| {
                    StoreError::corrupt(format!("{sid}: event {seq} not in its record"))
                })?;
            let state = record
                .state_at(Timestamp(seq))
                .ok_or_else(|| StoreError::corrupt(format!("{sid}: no state at event {seq}")))?;
            let echo = record
                .transitions
                .get(index)
                .is_some_and(|transition| is_echo(&record.transitions[..index], transition));
            let event = self.trees.unpack(&sid, &record, index, body)?;
            entries.push(FeedEntry {
                seq,
                sid: sid.clone(),
                number: u32::try_from(index).map_err(StoreError::corrupt)?,
                event,
                state,
                echo,
            });
            cached = Some((sid, record));
            Ok(entries.len() < limit)
        })?;
        Ok(entries)
    }

    /// Which of `seqs` are stored events, up to the watermark.
    pub fn stored_seqs(&self, seqs: &[u64]) -> Result<HashSet<u64>, StoreError> {
        let watermark = self.watermark();
        let mut stored = HashSet::new();
        for &seq in seqs.iter().filter(|seq| **seq <= watermark) {
            let held = self
                .trees
                .block_at(seq)?
                .is_some_and(|(_, block)| events::find(&block, seq).is_some());
            if held {
                stored.insert(seq);
            }
        }
        Ok(stored)
    }

    /// The number of change-feed entries after `after`, up to the watermark.
    pub fn feed_len(&self, after: u64) -> Result<u64, StoreError> {
        let watermark = self.watermark();
        if after >= watermark {
            return Ok(0);
        }
        let mut count = 0;
        self.trees.each_event(after, watermark, |_, _| {
            count += 1;
            Ok(true)
        })?;
        Ok(count)
    }

    /// Waits until an event after `after` is stored, or `timeout`. The watermark passing
    /// `after` is not enough: it moves with every write (a deletion, a probe), and the
    /// events after `after` may have been erased, so each move is checked against the
    /// events themselves.
    pub async fn wait_for_feed(&self, after: u64, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watermark = self.shared.watermark.subscribe();
        loop {
            let seen = *watermark.borrow_and_update();
            if seen > after {
                let store = self.clone();
                let found = crate::store::blocking(move || store.has_event_after(after)).await;
                // A read that fails is answered by the caller's own read of the feed.
                if found.unwrap_or(true) {
                    return;
                }
            }
            match tokio::time::timeout_at(deadline, watermark.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Whether an event after `after` is stored, up to the watermark.
    fn has_event_after(&self, after: u64) -> Result<bool, StoreError> {
        let mut found = false;
        self.trees.each_event(after, self.watermark(), |_, _| {
            found = true;
            Ok(false)
        })?;
        Ok(found)
    }

    /// Removes the history entries (positions messages have left) older than any cursor
    /// can need, found by a scan of the two time-ordered indexes off the async threads and
    /// handed to the writer in bounded batches; returns how many.
    pub async fn forget_history(&self) -> Result<u64, StoreError> {
        let horizon = self.now().0.saturating_sub(HISTORY_KEPT.as_micros() as u64);
        self.forget_history_before(Timestamp(horizon)).await
    }

    async fn forget_history_before(&self, horizon: Timestamp) -> Result<u64, StoreError> {
        let (data, commands) = (self.trees.data.clone(), self.commands.clone());
        let forget = move |keys: Vec<Vec<u8>>| {
            let (reply, answer) = oneshot::channel();
            commands
                .blocking_send(Command::Forget { keys, reply })
                .map_err(|_| writer_gone())?;
            answer.blocking_recv().map_err(|_| writer_gone())?
        };
        let scan = move || {
            let mut removed = 0;
            let mut keys = Vec::with_capacity(FORGET_BATCH);
            for kind in [index::BY_STATUS, index::BY_ERROR] {
                for entry in data.scan_prefix([kind]) {
                    let (key, value) = entry.map_err(unavailable)?;
                    if index::replaced_at(&value).is_some_and(|at| at < horizon) {
                        keys.push(key.to_vec());
                    }
                    if keys.len() == FORGET_BATCH {
                        removed += keys.len() as u64;
                        forget(std::mem::take(&mut keys))?;
                    }
                }
            }
            removed += keys.len() as u64;
            if !keys.is_empty() {
                forget(keys)?;
            }
            Ok(removed)
        };
        tokio::task::spawn_blocking(scan)
            .await
            .map_err(StoreError::unavailable)?
    }
}

/// History entries removed per writer command: bounds the memory of a sweep and the size
/// of the group that carries it.
const FORGET_BATCH: usize = 4096;

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
            // the hot set (recent messages) fits easily. At 1,000,000 messages, with the
            // segment cleaning below, the resident set after `bench/query.sh` was 283 MiB with
            // 32 MiB here, 282 and 304 in two runs with 48, 316 twice with 64; lookups are no
            // slower.
            .cache_capacity(32 * 1024 * 1024)
            // sled's background flusher, for its segment cleaning: each round it moves the
            // live pages out of segments that are at most half live, for up to half the
            // period, so that the segments can be reused. Without it sled cleans only when
            // a page is consolidated, one page at a time, and the log holds mostly old
            // versions of rewritten records: `bench/space.sh` left 2,933 bytes a message
            // with it off, 2,159 with rounds every second, 1,266 every 200 ms and 1,060
            // every 50 ms. Its own flushes and fsyncs acknowledge nothing; the writer still
            // syncs every group itself (`files.rs`).
            .flush_every_ms(Some(50))
            // sled writes a page larger than a quarter of a segment to a blob file of its
            // own, which is one more file to sync and to get right across a power cut
            // (see files.rs). 8 MiB segments put that at 2 MiB: no page of ours (a node
            // holds at most 16 values, each under 64 KiB) comes near it.
            .segment_size(8 * 1024 * 1024)
            .open();
        // sled reports a held lock as an `Other` I/O error carrying this text.
        let locked = |error: &std::io::Error| error.to_string().contains("could not acquire lock");
        match opened {
            Err(sled::Error::Io(error)) if locked(&error) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(error)) if locked(&error) => {
                return Err(StoreError::unavailable(format!(
                    "{} is locked: is another statushook using it? ({error})",
                    path.display()
                )));
            }
            other => {
                release_freed_memory();
                return other.map_err(unavailable);
            }
        }
    }
}

/// Hands the memory sled freed while opening back to the system. sled reads its whole
/// page-table snapshot into memory to build the page table (about 120 bytes a page, 120
/// MiB at a million messages) and frees it at the end of the open; the binary's allocator
/// (mimalloc, see `main.rs`) keeps freed pages of a thread for that thread's later use,
/// and the opening thread allocates little afterwards, so they would stay resident.
fn release_freed_memory() {
    // SAFETY: `mi_collect` only walks the allocator's own free lists; it takes no
    // pointers and is safe to call at any time, on any thread, and also when mimalloc is
    // not the global allocator (in tests), where it has nothing to give back.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

impl Trees {
    fn record(&self, sid: &MessageSid) -> Result<Option<Record>, StoreError> {
        self.record_by_key(&keys::record_key(sid))
    }

    fn record_by_key(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.data.get(key).map_err(unavailable)? {
            Some(value) => Ok(Some(decode(&value)?)),
            None => Ok(None),
        }
    }

    /// Every event of a message, in arrival order.
    fn events(&self, sid: &MessageSid, record: &Record) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::with_capacity(record.transitions.len());
        // A message's events often share a block: read each block once.
        let mut block: Option<(u64, events::Block)> = None;
        for (index, transition) in record.transitions.iter().enumerate() {
            let seq = transition.received_at.0;
            let held = |block: &Option<(u64, events::Block)>| {
                block
                    .as_ref()
                    .is_some_and(|(_, events)| events::find(events, seq).is_some())
            };
            if !held(&block) {
                block = self.block_at(seq)?;
            }
            let value = block
                .as_ref()
                .and_then(|(_, events)| events::find(events, seq))
                .ok_or_else(|| StoreError::corrupt(format!("{sid}: event {seq} is missing")))?;
            let body: keys::EventBody = decode(value)?;
            if body.sid != sid.as_str() {
                return Err(StoreError::corrupt(format!(
                    "{sid}: event {seq} is another's"
                )));
            }
            events.push(self.unpack(sid, record, index, body)?);
        }
        Ok(events)
    }

    /// Event `index` of `record` with its parameters unpacked.
    fn unpack(
        &self,
        sid: &MessageSid,
        record: &Record,
        index: usize,
        body: keys::EventBody,
    ) -> Result<StoredEvent, StoreError> {
        let transition = record
            .transitions
            .get(index)
            .ok_or_else(|| StoreError::corrupt(format!("{sid}: event {index} has no record")))?;
        let cx = params::Context {
            sid: sid.as_str(),
            status: transition.status.as_str(),
            parties: &record.parties,
        };
        Ok(StoredEvent {
            status: transition.status.clone(),
            error_code: transition.error_code,
            received_at: transition.received_at,
            source: transition.source,
            raw_dlr_done_date: transition.raw_dlr_done_date.clone(),
            params: params::unpack(body.params, &cx),
            // An event's arrival time is its key and its change-feed position.
            seq: Some(transition.received_at.0),
        })
    }

    fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .data
            .get(key)
            .map_err(unavailable)?
            .map_or(0, |value| decode_count(&value)))
    }
}

use crate::domain::StatusEvent;

fn unavailable(error: sled::Error) -> StoreError {
    StoreError::unavailable(error)
}

/// How long a handler waits for the writer before answering 503. A write that completes
/// later is stored all the same; the sender's retry is then a duplicate, which is harmless.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn wait_for<T>(answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(writer_gone()),
        Err(_) => Err(StoreError::unavailable("the store did not answer in time")),
    }
}

fn writer_gone() -> StoreError {
    StoreError::unavailable("the writer has stopped")
}

impl SledStore {
    /// Reads the whole store and checks that index entries, event values
    /// and counters are exactly what the records imply. History entries may be missing
    /// (they are removed when old), but never wrong.
    pub fn check(&self) -> Result<CheckReport, CheckError> {
        let unreadable = |error: sled::Error| CheckError::from(unavailable(error));
        let mut report = CheckReport {
            messages: 0,
            events: 0,
            index_entries: 0,
        };
        let mut live = std::collections::BTreeSet::new();
        let mut history = std::collections::BTreeMap::new();
        let mut events = std::collections::BTreeMap::new();
        let mut counters = std::collections::HashMap::<Vec<u8>, i64>::new();
        for entry in self.trees.data.scan_prefix(b"m") {
            let (key, value) = entry.map_err(unreadable)?;
            let sid = std::str::from_utf8(&key[1..])
                .map_err(|e| CheckError::Undecodable(e.to_string()))?;
            let sid = MessageSid::parse(sid).map_err(CheckError::Undecodable)?;
            let record: Record = decode(&value)?;
            let state = record.state().ok_or_else(|| CheckError::Message {
                sid: sid.to_string(),
                problem: "a record without events".into(),
            })?;
            let stored = self.trees.events(&sid, &record)?;
            for (key, replaced_at) in index::implied(&sid, &record) {
                match replaced_at {
                    None => live.insert(key),
                    Some(at) => history.insert(key, at).is_none(),
                };
            }
            for transition in &record.transitions {
                events.insert(transition.received_at.0, sid.clone());
            }
            writer::count(&mut counters, &state, 1);
            report.messages += 1;
            report.events += stored.len() as u64;
        }
        for kind in [
            index::BY_STATUS,
            index::BY_ERROR,
            index::BY_TO,
            index::BY_FROM,
            index::BY_ACCOUNT,
        ] {
            for entry in self.trees.data.scan_prefix([kind]) {
                let (key, value) = entry.map_err(unreadable)?;
                let expected = match index::replaced_at(&value) {
                    None if value.is_empty() => live.remove(key.as_ref()),
                    Some(at) => history.get(key.as_ref()) == Some(&at),
                    None => false,
                };
                if !expected {
                    return Err(CheckError::EntryNotImplied {
                        key: format!("{key:?}"),
                    });
                }
                report.index_entries += 1;
            }
        }
        if let Some(missing) = live.first() {
            return Err(CheckError::EntryMissing {
                key: format!("{missing:?}"),
            });
        }
        // Every event value belongs to a record (each record's own were read above).
        for seq in events::all_events(&self.trees)? {
            if events.remove(&seq).is_none() {
                return Err(CheckError::EventWithoutRecord { seq });
            }
        }
        for entry in self.trees.data.scan_prefix(b"c") {
            let (key, value) = entry.map_err(unreadable)?;
            let stored = decode_count(&value);
            let expected = counters.remove(key.as_ref()).unwrap_or(0);
            if i64::try_from(stored).ok() != Some(expected) {
                return Err(CheckError::CounterDisagrees {
                    key: format!("{key:?}"),
                    stored: i128::from(stored),
                    expected,
                    implied_by: "records",
                });
            }
        }
        if let Some((key, count)) = counters.into_iter().find(|(_, count)| *count != 0) {
            return Err(CheckError::CounterMissing {
                key: format!("{key:?}"),
                expected: count,
                implied_by: "records",
            });
        }
        Ok(report)
    }

    /// Every message with its history, in SID order. A full scan, for export.
    pub fn messages(&self) -> impl Iterator<Item = Result<StoredMessage, StoreError>> + '_ {
        self.trees.data.scan_prefix(b"m").filter_map(move |entry| {
            let read = || {
                let (key, value) = entry.map_err(unavailable)?;
                let sid = std::str::from_utf8(&key[1..]).map_err(StoreError::corrupt)?;
                let sid = MessageSid::parse(sid).map_err(StoreError::corrupt)?;
                let record: Record = decode(&value)?;
                let Some(state) = record.state() else {
                    return Ok(None);
                };
                let events = self.trees.events(&sid, &record)?;
                Ok(Some(StoredMessage { sid, state, events }))
            };
            read().transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Source, StatusEvent};

    async fn stored(store: &SledStore, sid: &str, status: &str) -> Timestamp {
        let params = [("MessageSid", sid), ("MessageStatus", status)]
            .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let event = StatusEvent::from_params(params.into(), Source::Callback).expect("valid");
        store.record(event, None).await.expect("stored");
        Timestamp(store.watermark())
    }

    /// Serves a listing's first page: from then on, for as long as its cursor lives, moves
    /// keep their old positions as history.
    pub(super) fn start_a_listing(store: &SledStore) {
        let query = crate::store::ListQuery {
            limit: 1,
            ..Default::default()
        };
        store.list(&query).expect("lists");
    }

    #[tokio::test]
    async fn moves_leave_history_only_while_a_listing_may_read_it() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        let sid = |n: u32| format!("SM{n:032x}");
        stored(&store, &sid(1), "queued").await;
        stored(&store, &sid(1), "sent").await;
        assert_eq!(history(&store), [], "nobody lists: the old position goes");
        store.check().expect("the store is consistent");

        start_a_listing(&store);
        stored(&store, &sid(2), "queued").await;
        let moved = stored(&store, &sid(2), "sent").await;
        assert_eq!(
            history(&store),
            [moved],
            "a listing may read the old position"
        );
        store.check().expect("the store is consistent");
        store.close().await.expect("closes");
        drop(store);

        // Reopened, the store keeps history for cursors it may have served before.
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("reopens");
        stored(&store, &sid(3), "queued").await;
        let later = stored(&store, &sid(3), "sent").await;
        assert_eq!(history(&store), [moved, later]);
        store.check().expect("the store is consistent");
        store.close().await.expect("closes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_listing_while_moves_keep_no_history_lists_every_message_once() {
        const PATH: [&str; 5] = ["accepted", "queued", "sent", "delivered", "read"];
        for round in 0..4 {
            let dir = tempfile::tempdir().expect("a folder");
            let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
            let sids: Vec<String> = (0..400).map(|n| format!("SM{round:08x}{n:024x}")).collect();
            for sid in &sids {
                stored(&store, sid, PATH[0]).await;
            }
            // Writers move the messages on while nobody has listed: no history so far.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    let (store, sids, stop) = (store.clone(), sids.clone(), Arc::clone(&stop));
                    tokio::spawn(async move {
                        let mut rng = fastrand::Rng::with_seed(w);
                        let mut step = 0;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) && step < 2000 {
                            let sid = &sids[rng.usize(..sids.len())];
                            stored(&store, sid, PATH[1 + rng.usize(..PATH.len() - 1)]).await;
                            step += 1;
                        }
                    })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;

            let mut query = crate::store::ListQuery {
                limit: 25,
                ..Default::default()
            };
            let mut listed = Vec::new();
            loop {
                let page = tokio::task::block_in_place(|| store.list(&query)).expect("lists");
                listed.extend(page.messages.into_iter().map(|(sid, _)| sid.to_string()));
                match page.next {
                    Some(next) => query.cursor = Some(next),
                    None => break,
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for writer in writers {
                writer.await.expect("a writer ran");
            }
            let mut seen = std::collections::HashSet::new();
            let twice: Vec<_> = listed.iter().filter(|sid| !seen.insert(*sid)).collect();
            assert!(twice.is_empty(), "round {round}: listed twice: {twice:?}");
            let missing = sids.iter().filter(|sid| !seen.contains(sid)).count();
            assert_eq!(
                missing,
                0,
                "round {round}: {missing} of {} not listed",
                sids.len()
            );
            store.check().expect("the store is consistent");
            store.close().await.expect("closes");
        }
    }

    #[tokio::test]
    async fn a_delete_that_cannot_read_an_event_block_leaves_the_message_whole() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        let sid = "SM000000000000000000000000000000aa";
        stored(&store, sid, "queued").await;
        let second = stored(&store, sid, "sent").await;
        let keys_before = store.trees.data.len();
        // The block of the second event becomes unreadable.
        store
            .trees
            .data
            .insert(keys::event_key(second.0), vec![0xff, 0x00, 0x01])
            .expect("writes");
        let (reply, answer) = oneshot::channel();
        let sids = vec![MessageSid::parse(sid).expect("a SID")];
        store
            .send(Command::Delete {
                sids,
                updated_before: None,
                reply,
            })
            .await
            .expect("sent");
        assert!(answer.await.expect("answered").is_err());
        assert_eq!(
            store.trees.data.len(),
            keys_before,
            "nothing of the message was removed"
        );
        let record = store.trees.record(&MessageSid::parse(sid).expect("a SID"));
        assert!(record.expect("readable").is_some());
        store.close().await.expect("closes");
    }

    /// The history entries in the store, with the time each was replaced.
    fn history(store: &SledStore) -> Vec<Timestamp> {
        store
            .trees
            .data
            .scan_prefix([index::BY_STATUS])
            .filter_map(|entry| index::replaced_at(&entry.expect("readable").1))
            .collect()
    }

    #[tokio::test]
    async fn forgetting_history_removes_only_entries_replaced_before_the_horizon() {
        let dir = tempfile::tempdir().expect("a folder");
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("opens");
        start_a_listing(&store);
        let (a, b) = (
            "SM000000000000000000000000000000aa",
            "SM000000000000000000000000000000bb",
        );
        stored(&store, a, "queued").await;
        let old = stored(&store, a, "sent").await;
        stored(&store, b, "queued").await;
        let young = stored(&store, b, "sent").await;
        assert_eq!(
            history(&store),
            [old, young],
            "each queued position became history"
        );

        let removed = store.forget_history_before(young).await.expect("forgets");
        assert_eq!(removed, 1);
        assert_eq!(
            history(&store),
            [young],
            "only the entry replaced before the horizon goes"
        );
        store.check().expect("the store is consistent");
        assert_eq!(
            store.forget_history_before(young).await.expect("forgets"),
            0
        );
        store.close().await.expect("closes");
    }
}
