//! The storage boundary: everything the service keeps goes through [`Store`].
//!
//! There are two stores with the same promises: the embedded sled store (`sled/`, the
//! default, one process on one folder) and PostgreSQL (`postgres/`, any number of replicas
//! on one database). Both modules are private: the rest of the crate, the offline tools
//! included, reaches them only through [`Store`] and the few free functions below
//! ([`compact`], [`migrate`]); only `sled/` imports sled and only `postgres/` speaks SQL. `Store` is an enum over them rather than a trait object: there are exactly
//! two, known at compile time, every caller gets the same async methods, and a match
//! per method is the whole dispatch. The rules themselves (ranks, duplicates, as-of
//! replay) live in `domain::message`, so neither store re-implements them.
//!
//! Every write is durable before its method returns: with sled, fsynced (see
//! `sled/writer.rs`); with PostgreSQL, committed with `synchronous_commit` on.

mod breakdown;
mod idempotency;
mod lifecycle;
mod listing;
mod postgres;
mod series;
mod sled;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

pub use breakdown::{Breakdown, Party, MAX_SCANNED};
pub use idempotency::{Claim, ClaimTicket, Finish, KeptReply, KeyRequest, IDEMPOTENCY_WINDOW};
pub use lifecycle::{ImportError, Imported, DELETE_BATCH};
pub use listing::{Cursor, CursorError, ListQuery, Page, CURSOR_LIFETIME, HISTORY_KEPT};

use crate::domain::{
    KnownStatus, MessageSid, MessageState, MessageStatus, Source, StatusEvent, Timestamp,
};
pub use postgres::{Connection, DatabaseUrl};
pub use series::{BucketSize, Series};
pub use sled::Compacted;

/// The sled store's value codecs (records, event blocks and keys), for the fuzz targets
/// in `fuzz/` only (see `fuzzing.rs`); the service never calls them from here.
#[doc(hidden)]
pub mod codecs {
    pub use super::sled::events::{decode_block, encode_block};
    pub use super::sled::keys::{decode, encode, event_key, event_seq, EventBody, Record};
}

/// The outcome of recording a status event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event is new and is now durably stored.
    Stored,
    /// The event was already stored (same status and error code, or a repeated
    /// idempotency token); nothing was written.
    Duplicate,
}

type Source_ = Arc<dyn std::error::Error + Send + Sync>;

/// What can go wrong below the API. Both variants keep the error that caused them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take or serve the request now; a retry may succeed (`503`).
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] Source_),
    /// A stored record cannot be decoded; retrying will not help (`500`).
    #[error("a stored record could not be read: {0}")]
    Corrupt(#[source] Source_),
}

impl StoreError {
    pub fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable(Arc::from(error.into()))
    }

    pub fn corrupt(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Corrupt(Arc::from(error.into()))
    }
}

/// A message with its whole history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub sid: MessageSid,
    pub state: MessageState,
    pub events: Vec<StoredEvent>,
}

/// One transition as it arrived, every parameter unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub status: MessageStatus,
    pub error_code: Option<u32>,
    pub received_at: Timestamp,
    pub source: Source,
    pub raw_dlr_done_date: Option<String>,
    pub params: Vec<(String, String)>,
    /// Its change-feed position (the `seq` of `GET /v1/events`). An export shows it and an
    /// import keeps it where the store can (see `lifecycle.rs`), so that a consumer of the
    /// feed resumes after a move; `None` only for an event read from an export made before
    /// exports showed it.
    pub seq: Option<u64>,
}

/// One entry of the change feed: a stored transition and the message's state right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Increasing in commit order; a reader that has seen `seq` has seen every smaller one.
    pub seq: u64,
    pub sid: MessageSid,
    /// The transition's number in its message's history, from 0: with the SID, what
    /// identifies it in every store it moves to (forwarding's `webhook-id`).
    pub number: u32,
    pub event: StoredEvent,
    pub state: MessageState,
    /// The event is an echo (`domain::is_echo`): Twilio's second report of a transition
    /// already in the feed. Readers of the feed skip it (it is neither shown nor forwarded)
    /// but move their position past it.
    pub echo: bool,
}

/// Messages by current status and by the error code of that status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_status: Vec<(KnownStatus, u64)>,
    pub by_error: Vec<(u32, u64)>,
}

/// What a consistency check read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    pub messages: u64,
    pub events: u64,
    pub index_entries: u64,
}

/// What a consistency check found wrong: the first thing it met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The store could not be read to the end: an I/O or connection error, a cancelled scan.
    #[error("{0}")]
    Unreadable(String),
    /// A stored key, record or row does not decode.
    #[error("{0}")]
    Undecodable(String),
    /// A message's record or rows disagree with its own events.
    #[error("{sid}: {problem}")]
    Message { sid: String, problem: String },
    /// An event stored under a position no record lists (sled).
    #[error("event {seq} belongs to no record")]
    EventWithoutRecord { seq: u64 },
    /// Events whose message row is gone (PostgreSQL).
    #[error("{sid}: events without a message row")]
    EventsWithoutMessage { sid: String },
    /// Listing positions whose message row is gone (PostgreSQL).
    #[error("{sid}: listing positions without a message")]
    PositionsWithoutMessage { sid: String },
    /// An index entry no record implies, or implies with another replacement time (sled).
    #[error("index entry {key} is not implied by a record")]
    EntryNotImplied { key: String },
    /// An index entry a record implies that is not stored (sled).
    #[error("index entry {key} is implied but missing")]
    EntryMissing { key: String },
    /// A counter whose count is not the one the messages imply. `key` is the counter's key
    /// as the store writes it; `stored` is wide enough for sled's unsigned counts and
    /// PostgreSQL's signed sums; `implied_by` names what the expected count was computed
    /// from (`records` in sled, `events` in PostgreSQL).
    #[error("counter {key} is {stored}, {implied_by} say {expected}")]
    CounterDisagrees {
        key: String,
        stored: i128,
        expected: i64,
        implied_by: &'static str,
    },
    /// A counter the messages imply that is not stored.
    #[error("counter {key} is missing, {implied_by} say {expected}")]
    CounterMissing {
        key: String,
        expected: i64,
        implied_by: &'static str,
    },
}

/// A store that fails a read fails the check: unavailable is unreadable, corrupt is
/// undecodable; the message is the store's own.
impl From<StoreError> for CheckError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => CheckError::Unreadable(error.to_string()),
            StoreError::Corrupt(_) => CheckError::Undecodable(error.to_string()),
        }
    }
}

/// Observes each committed group's size; the metrics count them through it.
pub type GroupObserver = Box<dyn Fn(usize) + Send + Sync>;

/// A handle on the store. Cheap to clone; every clone talks to the same store.
#[derive(Clone)]
pub enum Store {
    Sled(sled::SledStore),
    Postgres(Box<postgres::PgStore>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// This replica's right to run the background jobs (see `jobs/mod.rs`) or to forward. With
/// sled, one process owns the data folder and always leads; with PostgreSQL, a
/// session-level advisory lock held on a dedicated connection, lost when that connection
/// drops, so that another replica takes over when the leader dies.
pub enum Lease {
    /// The only process on its store: the lease is never lost.
    Sole,
    Postgres(postgres::Lease),
}

impl Lease {
    /// Resolves when the lease is lost; another replica may then run the jobs.
    pub async fn lost(&mut self) {
        match self {
            Lease::Sole => std::future::pending().await,
            Lease::Postgres(lease) => lease.lost().await,
        }
    }
}

impl Store {
    /// Opens (or creates) the embedded store in `path`.
    pub fn open_sled(path: &Path, observe: GroupObserver) -> Result<Store, StoreError> {
        Ok(Store::Sled(sled::SledStore::open(path, observe)?))
    }

    /// Connects to PostgreSQL at `url` and applies pending schema migrations.
    pub async fn open_postgres(
        url: &DatabaseUrl,
        observe: GroupObserver,
    ) -> Result<Store, StoreError> {
        Ok(Store::Postgres(Box::new(
            postgres::PgStore::open(url, observe).await?,
        )))
    }

    /// Waits until this replica may run the background jobs, and answers its lease.
    pub async fn lead(&self) -> Lease {
        match self {
            Store::Sled(_) => Lease::Sole,
            Store::Postgres(store) => Lease::Postgres(store.lead().await),
        }
    }

    /// Waits until this replica may forward (a lease of its own, so that forwarding and
    /// the other jobs can run on different replicas).
    pub async fn lead_forwarding(&self) -> Lease {
        match self {
            Store::Sled(_) => Lease::Sole,
            Store::Postgres(store) => Lease::Postgres(store.lead_forwarding().await),
        }
    }

    /// Removes listing history no cursor can need any more; returns how many entries. The
    /// job leader calls it now and then (with PostgreSQL, for every replica).
    pub async fn forget_history(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sled(store) => store.forget_history().await,
            Store::Postgres(store) => store.forget_history().await,
        }
    }

    /// The store's clock: what its arrival times, listing cursors, stats windows and
    /// retention go by. With sled, its own clock (`sled/clock.rs`, which judges the steps
    /// of the system clock); with PostgreSQL, the database server's, the one clock of every
    /// replica, so that replicas whose own clocks disagree agree on order and ages.
    pub async fn now(&self) -> Result<Timestamp, StoreError> {
        match self {
            Store::Sled(store) => Ok(store.now()),
            Store::Postgres(store) => store.now().await,
        }
    }

    /// Records a status event; returns once it is durably stored (or known already).
    pub async fn record(
        &self,
        event: StatusEvent,
        idempotency_token: Option<String>,
    ) -> Result<Recorded, StoreError> {
        match self {
            Store::Sled(store) => store.record(event, idempotency_token).await,
            Store::Postgres(store) => store.record(event, idempotency_token).await,
        }
    }

    /// Records several events as one write: each gets its outcome once all of them are
    /// durably stored, or the call fails and none of them is stored. With sled they are one
    /// command of one group (one atomic batch, one sync); with PostgreSQL, of one
    /// transaction.
    pub async fn record_all(
        &self,
        events: Vec<(StatusEvent, Option<String>)>,
    ) -> Result<Vec<Recorded>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Store::Sled(store) => store.record_all(events).await,
            Store::Postgres(store) => store.record_all(events).await,
        }
    }

    /// Proves the store takes durable writes (`/readyz`).
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self {
            Store::Sled(store) => store.probe().await,
            Store::Postgres(store) => store.probe().await,
        }
    }

    /// A message and its history, or `None` if no event of it was ever stored.
    pub async fn message(&self, sid: &MessageSid) -> Result<Option<StoredMessage>, StoreError> {
        match self {
            Store::Sled(store) => {
                let (store, sid) = (store.clone(), sid.clone());
                blocking(move || store.message(&sid)).await
            }
            Store::Postgres(store) => store.message(sid).await,
        }
    }

    /// One page of the messages matching `query`, newest `updated_at` first.
    pub async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.list(&query)).await
            }
            Store::Postgres(store) => store.list(&query).await,
        }
    }

    /// Counts by current status and error code of the messages last updated within
    /// `[since, until)`; all time without bounds.
    pub async fn stats(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.stats(since, until)).await
            }
            Store::Postgres(store) => store.stats(since, until).await,
        }
    }

    /// Counts per bucket of the messages last updated within `[since, until)`, widened
    /// to whole buckets; callers bound the number of buckets.
    pub async fn series(
        &self,
        since: Timestamp,
        until: Timestamp,
        size: BucketSize,
    ) -> Result<Series, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.series(since, until, size)).await
            }
            Store::Postgres(store) => store.series(since, until, size).await,
        }
    }

    /// The messages last updated within `[since, until)` grouped by `party`: the newest
    /// [`MAX_SCANNED`] of them at most (see `breakdown.rs`).
    pub async fn breakdown(
        &self,
        party: Party,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Breakdown, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.breakdown(party, since, until)).await
            }
            Store::Postgres(store) => store.breakdown(party, since, until).await,
        }
    }

    /// The transitions stored after `after`, in commit order, at most `limit`.
    pub async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.feed(after, limit)).await
            }
            Store::Postgres(store) => store.feed(after, limit).await,
        }
    }

    /// How many transitions are stored after `after` (the forwarder's backlog). Reads the
    /// feed's keys only, but all of them: a walk over the backlog, not for a request path.
    pub async fn feed_len(&self, after: u64) -> Result<u64, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.feed_len(after)).await
            }
            Store::Postgres(store) => store.feed_len(after).await,
        }
    }

    /// Which of the change-feed positions `seqs` still hold a transition: one whose message
    /// was deleted (erasure, retention) is gone. The forwarder asks before every delivery.
    pub async fn stored_seqs(&self, seqs: Vec<u64>) -> Result<HashSet<u64>, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.stored_seqs(&seqs)).await
            }
            Store::Postgres(store) => store.stored_seqs(&seqs).await,
        }
    }

    /// Waits until a transition after `after` is stored, or `timeout` passes.
    pub async fn wait_for_feed(&self, after: u64, timeout: std::time::Duration) {
        match self {
            Store::Sled(store) => store.wait_for_feed(after, timeout).await,
            Store::Postgres(store) => store.wait_for_feed(after, timeout).await,
        }
    }

    /// A piece of the service's own state (forwarding progress, …) stored under `key`.
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Sled(store) => {
                let (store, key) = (store.clone(), key.to_owned());
                blocking(move || store.meta(key.as_bytes())).await
            }
            Store::Postgres(store) => store.meta(key).await,
        }
    }

    /// Durably sets (or with `None` removes) the state under `key`.
    pub async fn put_meta(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        match self {
            Store::Sled(store) => store.put_meta(key.as_bytes(), value).await,
            Store::Postgres(store) => store.put_meta(key, value).await,
        }
    }

    /// Durably sets (or with `None` removes) the state under `key`, only if it is `expected`
    /// now (`None`: absent); answers whether it did. With it, writers of one key that may
    /// race (requests on several replicas, a leader that has not yet noticed losing its
    /// lease) read, change and write back without losing each other's changes.
    pub async fn swap_meta(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sled(store) => store.swap_meta(key.as_bytes(), expected, value).await,
            Store::Postgres(store) => store.swap_meta(key, expected, value).await,
        }
    }

    /// Bytes the store takes on disk.
    pub async fn size_on_disk(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sled(store) => store.size_on_disk(),
            Store::Postgres(store) => store.size_on_disk().await,
        }
    }

    /// Reads the whole store and checks that indexes and counters agree with the records.
    /// A full scan, for tests and maintenance, never on a request path.
    pub async fn check(&self) -> Result<CheckReport, CheckError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.check())
                    .await
                    .map_err(|error| CheckError::Unreadable(error.to_string()))?
            }
            Store::Postgres(store) => store.check().await,
        }
    }

    /// Resolves when the store has failed a write; the service then exits so that its
    /// supervisor restarts it, which recovers everything acknowledged.
    pub async fn failed(&self) -> StoreError {
        match self {
            Store::Sled(store) => store.failed().await,
            Store::Postgres(store) => store.failed().await,
        }
    }

    /// Commits everything queued, makes it durable, and stops the writer.
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Store::Sled(store) => store.close().await,
            Store::Postgres(store) => store.close().await,
        }
    }
}

/// Rewrites the stopped sled store in `path` into a fresh folder holding only its live
/// data, so that no file keeps a deleted value (`statushook compact`).
pub fn compact(path: &Path) -> Result<Compacted, StoreError> {
    sled::compact(path)
}

/// Applies pending schema migrations to the database at `url` (`statushook migrate`);
/// answers the versions applied.
pub async fn migrate(url: &DatabaseUrl) -> Result<Vec<u32>, StoreError> {
    postgres::migrate(url).await
}

/// Runs a blocking store read off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|error| StoreError::unavailable(format!("a read was cancelled: {error}")))?
}
