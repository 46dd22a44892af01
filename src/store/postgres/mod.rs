//! The PostgreSQL store: the only module that speaks SQL. Any number of `serve` replicas
//! share one database and keep every promise the sled store keeps.
//!
//! Layout (see `migrations/`): `messages` (parties and current state), `events` (every
//! transition with its parameters; `seq` is the change feed), `positions` (where each
//! message stood in the newest-first listing, for exact paging at a snapshot) and
//! `counters` (messages by status and error code, all time and per hour and minute).
//!
//! Writes go through one writer task per replica ([`writer`]): it gathers the callbacks
//! queued meanwhile into one transaction of a few multi-row statements, pipelined on one
//! connection, and answers none of them before `COMMIT` returns with `synchronous_commit`
//! on. Replicas agree through the database alone: row locks on the messages of a group
//! (taken in SID order) make the current status order-proof, unique indexes make
//! duplicates impossible, and an advisory lock held from the assignment of change-feed
//! positions to the commit makes commit order the feed's order, so a snapshot that sees
//! position N sees every smaller one. That position is the paging snapshot.
//!
//! The client is tokio-postgres with a deadpool pool: the service is async (actix on
//! Tokio), so reads are plain awaits on a pooled connection instead of blocking threads,
//! and tokio-postgres pipelines the statements of a group on one connection, which is
//! what makes one transaction cost a few round trips however many callbacks it holds.
//! Every session speaks TLS as the URL's libpq parameters ask (`url.rs`, `tls.rs`).

mod check;
mod columns;
mod group;
mod history;
mod idempotency;
mod leader;
mod lifecycle;
mod listen;
mod meta;
mod migrate;
mod query;
mod rows;
mod series;
mod statements;
mod stats;
mod tls;
mod url;
mod writer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use leader::Lease;
pub use lifecycle::EXPIRY_BATCH;
pub use url::{Connection, DatabaseUrl};

use crate::domain::{MessageSid, StatusEvent, Timestamp};
use crate::store::{FeedEntry, GroupObserver, Recorded, StoreError, StoredMessage};
use writer::{Command, Shared};

/// A handle on the PostgreSQL store. Cheap to clone; every clone shares one pool and one
/// writer task.
#[derive(Clone)]
pub struct PgStore {
    url: DatabaseUrl,
    pool: Pool,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// This replica's owner key, locked while it runs (see `idempotency.rs`).
    owner: i64,
    owner_lock: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Where the running retention pass has got to (see `lifecycle.rs`).
    expiry: Arc<Mutex<Option<lifecycle::ExpiryCursor>>>,
    /// The highest change-feed position known committed by any replica (see `listen.rs`).
    feed: Arc<watch::Sender<u64>>,
    listener: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Connections of one replica's pool: the writer holds one, reads share the rest.
const POOL_SIZE: usize = 16;
/// How many commands may wait for the writer before handlers wait to enqueue.
const QUEUE_DEPTH: usize = 16 * 1024;
/// How long a handler waits for its write before answering 503. A write that commits
/// later is stored all the same; Twilio's retry is then a duplicate, which is harmless.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl PgStore {
    /// Connects, applies pending migrations and starts the writer.
    pub async fn open(url: &DatabaseUrl, observe: GroupObserver) -> Result<PgStore, StoreError> {
        migrate::run(url).await?;
        let manager = url.pool_manager(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WRITE_TIMEOUT))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(StoreError::unavailable)?;
        let shared = Arc::new(Shared {
            watermark: watch::channel(0).0,
            failed: watch::channel(None).0,
        });
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let writer = writer::spawn(pool.clone(), receiver, Arc::clone(&shared), observe);
        let owner = idempotency::new_owner();
        let owner_lock = idempotency::hold_owner(url.clone(), owner);
        let feed = Arc::new(watch::channel(0).0);
        let listener = listen::spawn(url.clone(), pool.clone(), Arc::clone(&feed));
        Ok(PgStore {
            url: url.clone(),
            pool,
            commands,
            shared,
            writer: Arc::new(Mutex::new(Some(writer))),
            owner,
            owner_lock: Arc::new(Mutex::new(Some(owner_lock))),
            expiry: Arc::new(Mutex::new(None)),
            feed,
            listener: Arc::new(Mutex::new(Some(listener))),
        })
    }

    pub async fn record(
        &self,
        event: StatusEvent,
        idempotency_token: Option<String>,
    ) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Record {
                event,
                idempotency_token,
                reply,
            })
            .await
            .map_err(|_| writer_gone())?;
        match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(writer_gone()),
            Err(_) => Err(StoreError::unavailable("the store did not answer in time")),
        }
    }

    /// Records `events` in one transaction of this replica's writer: durable together, or
    /// not at all.
    pub async fn record_all(
        &self,
        events: Vec<(StatusEvent, Option<String>)>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::RecordAll { events, reply })
            .await
            .map_err(|_| writer_gone())?;
        match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(writer_gone()),
            Err(_) => Err(StoreError::unavailable("the store did not answer in time")),
        }
    }

    /// Commits a transaction that has a transaction id, which makes PostgreSQL write and
    /// flush a commit record: the database takes durable writes.
    pub async fn probe(&self) -> Result<(), StoreError> {
        if let Some(error) = self.shared.failed.borrow().clone() {
            return Err(error);
        }
        let client = self.client().await?;
        client
            .batch_execute("BEGIN; SELECT pg_current_xact_id(); COMMIT")
            .await
            .map_err(unavailable)
    }

    pub async fn failed(&self) -> StoreError {
        let mut failed = self.shared.failed.subscribe();
        let error = match failed.wait_for(Option::is_some).await {
            Ok(error) => error.clone(),
            Err(_) => None,
        };
        error.unwrap_or_else(writer_gone)
    }

    /// Commits everything queued, stops the writer and closes the pool.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Shutdown { reply })
            .await
            .map_err(|_| writer_gone())?;
        let _ = answer.await;
        let handle = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        let owner_lock = self.owner_lock.lock().ok().and_then(|mut lock| lock.take());
        if let Some(owner_lock) = owner_lock {
            owner_lock.abort();
        }
        let listener = self.listener.lock().ok().and_then(|mut task| task.take());
        if let Some(listener) = listener {
            listener.abort();
        }
        self.pool.close();
        Ok(())
    }

    pub async fn message(&self, sid: &MessageSid) -> Result<Option<StoredMessage>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {} FROM messages m JOIN events e ON e.sid = m.sid \
                 WHERE m.sid = $1 ORDER BY e.n",
                rows::MESSAGE_EVENT
            ))
            .await
            .map_err(unavailable)?;
        let found = client
            .query(&statement, &[&sid.as_str()])
            .await
            .map_err(unavailable)?;
        Ok(rows::messages(&found)?.pop())
    }

    /// The database's clock, every replica's one clock (`statushook_now()`).
    pub async fn now(&self) -> Result<Timestamp, StoreError> {
        let client = self.client().await?;
        now(&client).await
    }

    /// The highest change-feed position committed: every smaller one is committed too.
    pub async fn watermark(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        watermark(&client).await
    }

    /// The transitions committed after `after`, in commit order, at most `limit`.
    pub async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
        let client = self.client().await?;
        let page = client
            .prepare_cached(&format!(
                "SELECT e.seq, {}, e.params::text FROM events e WHERE e.seq > $1 \
                 ORDER BY e.seq LIMIT $2",
                rows::EVENT_WITH_SID
            ))
            .await
            .map_err(unavailable)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = client
            .query(&page, &[&to_i64(after), &limit])
            .await
            .map_err(unavailable)?;
        let Some(last) = found.last() else {
            return Ok(Vec::new());
        };
        let last_seq: i64 = last.try_get(0).map_err(corrupt)?;
        let mut sids: Vec<String> = Vec::new();
        for row in &found {
            sids.push(row.try_get(1).map_err(corrupt)?);
        }
        sids.sort_unstable();
        sids.dedup();
        let histories = rows::histories(&client, &sids, last_seq).await?;
        let mut entries = Vec::with_capacity(found.len());
        for row in &found {
            let seq: i64 = row.try_get(0).map_err(corrupt)?;
            let sid: &str = row.try_get(1).map_err(corrupt)?;
            let sid = MessageSid::parse(sid).map_err(StoreError::corrupt)?;
            let (number, transition) = rows::transition(row, 2)?;
            let Some(history) = histories.get(sid.as_str()) else {
                continue;
            };
            let state = history
                .state_through(transition.received_at)
                .ok_or_else(|| StoreError::corrupt(format!("{sid}: no state at {seq}")))?;
            let echo = history.is_echo(seq);
            let event = rows::stored_event(&transition, row.try_get(8).map_err(corrupt)?, seq)?;
            entries.push(FeedEntry {
                seq: u64::try_from(seq).map_err(corrupt)?,
                sid,
                number: u32::try_from(number).map_err(corrupt)?,
                event,
                state,
                echo,
            });
        }
        Ok(entries)
    }

    /// Which of `seqs` are stored events.
    pub async fn stored_seqs(&self, seqs: &[u64]) -> Result<HashSet<u64>, StoreError> {
        let seqs: Vec<i64> = seqs.iter().map(|seq| to_i64(*seq)).collect();
        let client = self.client().await?;
        let rows = client
            .query("SELECT seq FROM events WHERE seq = ANY($1)", &[&seqs])
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(corrupt)?;
                u64::try_from(seq).map_err(corrupt)
            })
            .collect()
    }

    /// How many transitions were committed after `after`.
    pub async fn feed_len(&self, after: u64) -> Result<u64, StoreError> {
        let watermark = self.watermark().await?;
        if after >= watermark {
            return Ok(0);
        }
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM events WHERE seq > $1 AND seq <= $2",
                &[&to_i64(after), &to_i64(watermark)],
            )
            .await
            .map_err(unavailable)?;
        let count: i64 = row.try_get(0).map_err(corrupt)?;
        Ok(count.max(0) as u64)
    }

    /// Waits until a transition after `after` is committed (by any replica) and still
    /// stored, or `timeout`. Commits wake the wait through watch channels, without a query
    /// (this replica's writer, and the other replicas' notifications: see `listen.rs`); the
    /// database then answers, once, whether what was committed after `after` before the
    /// wait began is still stored, since it may have been erased. So a waiter costs at most
    /// one query, and never spins on an erased end of the feed.
    pub async fn wait_for_feed(&self, after: u64, timeout: Duration) {
        let mut local = self.shared.watermark.subscribe();
        let mut any = self.feed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first = true;
        loop {
            let seen = (*local.borrow_and_update()).max(*any.borrow_and_update());
            // A commit after `after` seen before the wait began may have been erased since:
            // the database says. One seen during the wait is new, and ends it.
            if seen > after && (!first || self.watermark().await.is_ok_and(|w| w > after)) {
                return;
            }
            first = false;
            let changed = async {
                tokio::select! {
                    changed = local.changed() => changed,
                    changed = any.changed() => changed,
                }
            };
            match tokio::time::timeout_at(deadline, changed).await {
                Ok(Ok(())) => {}
                // A channel whose sender is gone (the store closing) would wake at once
                // forever: wait out the time instead.
                Ok(Err(_)) => return tokio::time::sleep_until(deadline).await,
                Err(_) => return,
            }
        }
    }

    /// Bytes of statushook's tables and indexes.
    pub async fn size_on_disk(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'statushook' AND c.relkind IN ('r', 'S')",
                &[],
            )
            .await
            .map_err(unavailable)?;
        let bytes: i64 = row.try_get(0).map_err(corrupt)?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// Waits until this replica holds the job lease (see [`leader`]).
    pub async fn lead(&self) -> Lease {
        leader::acquire(&self.url, leader::LEADER_LOCK).await
    }

    /// Waits until this replica holds the forwarding lease.
    pub async fn lead_forwarding(&self) -> Lease {
        leader::acquire(&self.url, leader::FORWARD_LOCK).await
    }

    /// Deletes listing positions no cursor can need any more; returns how many.
    pub async fn forget_history(&self) -> Result<u64, StoreError> {
        history::forget_history(&self.pool).await
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(StoreError::unavailable)
    }
}

/// The database's clock, in microseconds since the Unix epoch.
async fn now(client: &Object) -> Result<Timestamp, StoreError> {
    let statement = client
        .prepare_cached("SELECT statushook_now()")
        .await
        .map_err(unavailable)?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(unavailable)?;
    let now: i64 = row.try_get(0).map_err(corrupt)?;
    Ok(Timestamp(u64::try_from(now).unwrap_or(0)))
}

async fn watermark(client: &Object) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
        .await
        .map_err(unavailable)?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(unavailable)?;
    let seq: i64 = row.try_get(0).map_err(corrupt)?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// Applies pending migrations (`statushook migrate`); answers the versions applied.
pub async fn migrate(url: &DatabaseUrl) -> Result<Vec<u32>, StoreError> {
    migrate::run(url).await
}

fn unavailable(error: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable(error)
}

fn corrupt(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::corrupt(error)
}

fn writer_gone() -> StoreError {
    StoreError::unavailable("the writer has stopped")
}

/// Integers are stored as `bigint`; values above `i64::MAX` never occur (times are
/// microseconds, positions count from 1), and saturate if they ever did.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
