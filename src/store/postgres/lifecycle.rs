//! The data lifecycle on PostgreSQL (the contract is in `store/lifecycle.rs`).
//!
//! A deletion is one transaction per batch, on a pooled connection rather than the
//! writer's, so that callbacks never queue behind it: it locks the batch's message rows
//! (in SID order, as the writer does) and reads the states they keep (their events'
//! replay, which the writer stores with them; the events are not read), then removes the
//! events (and with them the change feed's entries and delivery tokens), every listing
//! position, current and past, and the rows, and subtracts the messages from the
//! counters. A retention candidate updated since it was chosen is found updated under the
//! lock and kept. A callback for a message being deleted waits for the row lock and then
//! starts the message anew (the writer's `Failure::Vanished`).
//!
//! Retention takes its candidates in listing order from `positions_by_time`, and each
//! batch starts after the last position the previous batch chose ([`ExpiryCursor`]), in
//! the next passes too: the index entries of the positions a batch deletes stay in the
//! index until vacuum removes them (autovacuum comes once a fifth of the table is dead), so
//! a batch that started from the oldest entry would step over every message deleted since
//! (at a million messages, 11 ms a batch on average, most of the deletion's time; and its
//! first visit of each dead entry prunes the heap page, writing WAL). A live position
//! behind the cursor is not missed: a message updated meanwhile moves to a position of its
//! arrival, after any `before` so far, and only positions written with old times
//! (`statushook import`) or by a replica whose clock is behind by more than the retention
//! age can land behind it; for those, retention starts from the oldest entry again every
//! [`EXPIRY_RESTART`].
//!
//! Deletions subtract on a counter stripe no writer uses ([`DELETION_STRIPE`]), so a
//! writer never waits for a deletion's counter rows; and a counter that the deletion leaves
//! at zero over every stripe (an hour or a minute whose messages are all gone) loses its
//! rows, which the deletion locks first, so that a store emptied by retention is left
//! without counters of its past.
//!
//! An export page is one statement: the page's messages that existed at the snapshot
//! (their first event is at or below it) with their events up to it, so a message deleted
//! meanwhile is in it whole or not at all. An import writes with the writer's own second
//! round trip ([`group::apply`]): message rows, counters, change-feed positions, events
//! and live listing positions, exactly what recording the events would have written.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;

use super::columns::{counter_keys, CounterColumns, CounterKey, SPAN_ALL};
use super::group::{self, Loaded, NewEvent, Plan, Seqs};
use super::statements::Statements;
use super::writer::{worth_retrying, Failure, ATTEMPTS, STRIPES};
use super::{corrupt, rows, to_i64, unavailable, PgStore};
use crate::domain::{MessageSid, Timestamp};
use crate::store::lifecycle::replay_export;
use crate::store::{ImportError, Imported, StoreError, StoredMessage, DELETE_BATCH};

/// Messages retention deletes in one transaction ([`PgStore::expire`]). Callbacks never
/// wait for it (it locks only old messages, and old counters on a stripe of its own), so a
/// batch can be ten times sled's: the fixed cost of a transaction and its commit is shared
/// by more messages.
pub const EXPIRY_BATCH: usize = 1000;

/// The counter stripe deletions subtract on: outside the writers' `0..STRIPES`.
pub const DELETION_STRIPE: i16 = STRIPES;

/// How often retention starts from the oldest listing position again.
pub const EXPIRY_RESTART: Duration = Duration::from_secs(3600);

/// The listing position (`updated_at`, SID) of the last candidate retention chose, where
/// its next batch starts, and when it last started from the oldest position.
#[derive(Debug, Clone)]
pub struct ExpiryCursor {
    restarted: Instant,
    updated_at: i64,
    sid: String,
}

impl PgStore {
    /// Deletes `sids` in transactions of [`DELETE_BATCH`]; answers how many were deleted.
    /// With `updated_before`, a message updated at or after it is kept.
    pub async fn delete(
        &self,
        sids: Vec<MessageSid>,
        updated_before: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for batch in sids.chunks(DELETE_BATCH) {
            let batch: Vec<&str> = batch.iter().map(MessageSid::as_str).collect();
            deleted += self.delete_batch(&batch, updated_before).await?;
        }
        Ok(deleted)
    }

    /// Deletes the messages whose recipient or sender is one of `addresses`.
    pub async fn delete_by_addresses(&self, addresses: Vec<String>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let found = client
            .query(
                "SELECT sid FROM messages WHERE to_number = ANY($1) \
                 UNION SELECT sid FROM messages WHERE from_number = ANY($1) ORDER BY 1",
                &[&addresses],
            )
            .await
            .map_err(unavailable)?;
        drop(client);
        self.delete(sids(&found)?, None).await
    }

    /// Deletes up to `limit` messages last updated before `before`, oldest first, in one
    /// transaction: the first live listing positions in time order after those the
    /// previous call chose (see the module documentation).
    pub async fn expire(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let resumed = self.expiry_cursor();
        let (after_at, after_sid) = match &resumed {
            Some(cursor) => (cursor.updated_at, cursor.sid.as_str()),
            None => (i64::MIN, ""),
        };
        let client = self.client().await?;
        let found = client
            .query(
                "SELECT sid, updated_at FROM positions WHERE replaced_seq IS NULL \
                 AND updated_at < $1 AND (updated_at, sid) > ($2, $3) \
                 ORDER BY updated_at, sid LIMIT $4",
                &[
                    &to_i64(before.0),
                    &after_at,
                    &after_sid,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(unavailable)?;
        drop(client);
        let restarted = resumed.map_or_else(Instant::now, |cursor| cursor.restarted);
        let Some(last) = found.last() else {
            // No live position before `before` (past the cursor): the next batch can start
            // right there, however many dead entries lie before it.
            self.set_expiry_cursor(ExpiryCursor {
                restarted,
                updated_at: to_i64(before.0).saturating_sub(1),
                sid: String::new(),
            });
            return Ok(0);
        };
        let cursor = ExpiryCursor {
            restarted,
            updated_at: last.try_get(1).map_err(corrupt)?,
            sid: last.try_get::<_, &str>(0).map_err(corrupt)?.to_owned(),
        };
        let found = sids(&found)?;
        let found: Vec<&str> = found.iter().map(MessageSid::as_str).collect();
        let deleted = self.delete_batch(&found, Some(before)).await?;
        self.set_expiry_cursor(cursor);
        Ok(deleted)
    }

    /// Where retention goes on from: none when it starts from the oldest position.
    fn expiry_cursor(&self) -> Option<ExpiryCursor> {
        let cursor = self.expiry.lock().ok()?.clone();
        cursor.filter(|cursor| cursor.restarted.elapsed() < EXPIRY_RESTART)
    }

    fn set_expiry_cursor(&self, cursor: ExpiryCursor) {
        if let Ok(mut slot) = self.expiry.lock() {
            *slot = Some(cursor);
        }
    }

    /// Up to `limit` messages after `after` in SID order, as they stood at `snapshot` (a
    /// committed change-feed position).
    pub async fn export_page(
        &self,
        snapshot: u64,
        after: Option<&MessageSid>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let client = self.client().await?;
        // `f.sid > $1` and `e.sid > $1` say again what the join implies, so that each
        // scan of `events` starts at the page, whichever join the planner picks: without
        // them the first-event check became a merge join whose scan of `events_pkey`
        // started at the first SID, and a page read every index page before it (a page
        // 800,000 messages in took a second instead of 10 ms).
        let statement = client
            .prepare_cached(&format!(
                "SELECT {} FROM (SELECT p.sid, p.account_sid, p.from_number, p.to_number, \
                 p.messaging_service_sid FROM messages p WHERE p.sid > $1 AND EXISTS \
                 (SELECT 1 FROM events f WHERE f.sid = p.sid AND f.sid > $1 AND f.n = 0 \
                 AND f.seq <= $2) ORDER BY p.sid LIMIT $3) AS m \
                 JOIN events e ON e.sid = m.sid \
                 WHERE e.sid > $1 AND e.seq <= $2 ORDER BY m.sid, e.n",
                rows::MESSAGE_EVENT
            ))
            .await
            .map_err(unavailable)?;
        let after = after.map_or("", MessageSid::as_str);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = client
            .query(&statement, &[&after, &to_i64(snapshot), &limit])
            .await
            .map_err(unavailable)?;
        rows::messages(&found)
    }

    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM messages)", &[])
            .await
            .map_err(unavailable)?;
        row.try_get(0).map_err(corrupt)
    }

    /// Writes a batch of exported messages in one transaction, as recording their events
    /// would have, committed before it returns. The events keep the change-feed positions
    /// the export shows (the sequence then goes on past the largest), or, from an export
    /// that shows none, take new ones in arrival order; arrival times need not be unique
    /// store-wide here (a message's own only increase), so they stay what the export shows.
    pub async fn import(&self, messages: Vec<StoredMessage>) -> Result<Imported, ImportError> {
        let mut report = Imported::default();
        let mut loaded: HashMap<String, Loaded> = HashMap::with_capacity(messages.len());
        let mut events = Vec::new();
        let seqs = match messages
            .iter()
            .flat_map(|m| &m.events)
            .all(|e| e.seq.is_some())
        {
            true => Seqs::Keep,
            false => Seqs::Take,
        };
        for message in messages {
            let replayed = replay_export(&message, Ok)?;
            report.moved += replayed.moved;
            let sid = message.sid.as_str().to_owned();
            for (n, (transition, event)) in
                replayed.transitions.iter().zip(message.events).enumerate()
            {
                let kept_seq = match (seqs, event.seq) {
                    (Seqs::Keep, Some(seq)) => Some(to_i64(seq)),
                    (Seqs::Take, Some(_)) => {
                        return Err(ImportError::Invalid {
                            sid: message.sid,
                            problem: "its batch mixes events with and without a feed \
                                      position (seq)"
                                .into(),
                        })
                    }
                    _ => None,
                };
                events.push(NewEvent {
                    sid: sid.clone(),
                    n: i32::try_from(n).unwrap_or(i32::MAX),
                    transition: transition.clone(),
                    token: None,
                    params: serde_json::to_string(&event.params).map_err(StoreError::corrupt)?,
                    kept_seq,
                });
            }
            let message_loaded = Loaded {
                parties: message.state.parties.clone(),
                transitions: replayed.transitions,
                tokens: Vec::new(),
                before: None,
                state: Some(replayed.state),
                last_event: None,
            };
            if loaded.insert(sid, message_loaded).is_some() {
                return Err(ImportError::Exists(message.sid));
            }
        }
        // Stable, and times increase within a message: its events keep their order.
        events.sort_by_key(|event| event.transition.received_at);
        for (index, event) in events.iter().enumerate() {
            if let Some(message) = loaded.get_mut(&event.sid) {
                message.last_event = Some(index);
            }
        }
        let plan = Plan {
            outcomes: Vec::new(),
            events,
        };
        let mut sids: Vec<&String> = loaded.keys().collect();
        sids.sort_unstable();

        let mut client = self.client().await?;
        let st = Statements::prepare(&client).await.map_err(unavailable)?;
        let transaction = client.transaction().await.map_err(unavailable)?;
        let inserted = transaction
            .query(
                "INSERT INTO messages (sid) SELECT s FROM unnest($1::text[]) AS s ORDER BY s \
                 ON CONFLICT (sid) DO NOTHING RETURNING sid",
                &[&sids],
            )
            .await
            .map_err(unavailable)?;
        if inserted.len() < sids.len() {
            let new: Vec<&str> = inserted
                .iter()
                .filter_map(|row| row.try_get(0).ok())
                .collect();
            if let Some(stored) = sids.iter().find(|sid| !new.contains(&sid.as_str())) {
                let sid = MessageSid::parse(stored).map_err(StoreError::corrupt)?;
                return Err(ImportError::Exists(sid));
            }
        }
        let stripe = fastrand::i16(0..STRIPES);
        group::apply(transaction.client(), &st, stripe, &plan, &loaded, seqs)
            .await
            .map_err(unavailable)?;
        transaction.commit().await.map_err(unavailable)?;
        report.messages = loaded.len() as u64;
        report.events = plan.events.len() as u64;
        Ok(report)
    }

    /// Moves the feed's sequence past `seq`, under the feed lock.
    pub async fn continue_feed_after(&self, seq: u64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(unavailable)?;
        transaction
            .execute("SELECT statushook_keep_seqs($1)", &[&to_i64(seq)])
            .await
            .map_err(unavailable)?;
        transaction.commit().await.map_err(unavailable)
    }

    /// Deletes one batch, trying again from a fresh read after a conflict or a lost
    /// connection.
    async fn delete_batch(
        &self,
        sids: &[&str],
        updated_before: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_delete(sids, updated_before).await {
                Ok(deleted) => return Ok(deleted),
                Err(Failure::Database(error)) if attempt < ATTEMPTS && worth_retrying(&error) => {
                    tracing::warn!(%error, attempt, "deleting a batch again");
                }
                Err(failure) => return Err(failure.to_store_error()),
            }
        }
    }

    /// One transaction deleting whichever of `sids` are stored (and, with
    /// `updated_before`, last updated before it). Dropped before its commit, it rolls back.
    async fn try_delete(
        &self,
        sids: &[&str],
        updated_before: Option<Timestamp>,
    ) -> Result<u64, Failure> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|error| Failure::Pool(error.to_string()))?;
        let st = Statements::prepare(&client)
            .await
            .map_err(Failure::Database)?;
        let removal = Removal::prepare(&client).await.map_err(Failure::Database)?;
        let transaction = client.transaction().await.map_err(Failure::Database)?;

        // Round trip 1: lock the rows and read the states they keep (the replay of their
        // events, which the writer stored with them): what the counters lose. The events
        // themselves are not read.
        let by_sid: [&(dyn ToSql + Sync); 1] = [&sids];
        let locked = transaction
            .query(&removal.lock, &by_sid)
            .await
            .map_err(Failure::Database)?;
        let mut doomed = Vec::with_capacity(locked.len());
        let mut deltas: BTreeMap<CounterKey, i64> = BTreeMap::new();
        for row in &locked {
            let sid: &str = row.try_get(0).map_err(|e| Failure::Store(corrupt(e)))?;
            let Some(state) = rows::state(row, 1).map_err(Failure::Store)? else {
                continue;
            };
            if updated_before.is_some_and(|before| state.updated_at >= before) {
                continue;
            }
            for key in counter_keys(&state) {
                *deltas.entry(key).or_default() -= 1;
            }
            doomed.push(sid);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        // The hour and minute counters may be left at zero. All-time counters reach zero
        // only when the store empties: they are left alone, so that a deletion never locks
        // the writers' hottest rows.
        let emptied = CounterColumns::of(
            deltas
                .iter()
                .filter(|((span, ..), _)| *span != SPAN_ALL)
                .map(|(key, delta)| (key.clone(), *delta))
                .collect(),
        );
        let counters = CounterColumns::of(deltas);

        // Round trip 2: counters, then events, positions and rows; then the commit.
        let subtract: [&(dyn ToSql + Sync); 6] = [
            &counters.span,
            &counters.bucket,
            &counters.kind,
            &counters.value,
            &DELETION_STRIPE,
            &counters.delta,
        ];
        let collapse: [&(dyn ToSql + Sync); 4] = [
            &emptied.span,
            &emptied.bucket,
            &emptied.kind,
            &emptied.value,
        ];
        let by_doomed: [&(dyn ToSql + Sync); 1] = [&doomed];
        tokio::try_join!(
            transaction.execute(&st.add_counters, &subtract),
            transaction.execute(&removal.empty_counters, &collapse),
            transaction.execute(&removal.events, &by_doomed),
            transaction.execute(&removal.positions, &by_doomed),
            transaction.execute(&removal.messages, &by_doomed),
        )
        .map_err(Failure::Database)?;
        transaction.commit().await.map_err(Failure::Database)?;
        Ok(doomed.len() as u64)
    }
}

/// The statements of a deletion besides the writer's, prepared once per connection.
struct Removal {
    lock: tokio_postgres::Statement,
    empty_counters: tokio_postgres::Statement,
    events: tokio_postgres::Statement,
    positions: tokio_postgres::Statement,
    messages: tokio_postgres::Statement,
}

impl Removal {
    async fn prepare(client: &deadpool_postgres::Object) -> Result<Removal, tokio_postgres::Error> {
        Ok(Removal {
            lock: client
                .prepare_cached(&format!(
                    "SELECT m.sid, {}, {} FROM messages m WHERE m.sid = ANY($1::text[]) \
                     ORDER BY m.sid FOR UPDATE",
                    rows::PARTIES,
                    rows::STATE
                ))
                .await?,
            // Locks every stripe of the given counters (in key order, as the writers lock
            // theirs), then removes the rows of those whose locked stripes sum to zero. A
            // stripe row inserted meanwhile is neither locked nor removed, so the sum
            // stays right whatever commits concurrently.
            empty_counters: client
                .prepare_cached(
                    "WITH locked AS (SELECT c.span, c.bucket, c.kind, c.value, c.stripe, c.n \
                     FROM counters c JOIN unnest($1::\"char\"[], $2::int8[], $3::\"char\"[], \
                     $4::text[]) AS k(span, bucket, kind, value) \
                     ON (c.span, c.bucket, c.kind, c.value) = (k.span, k.bucket, k.kind, k.value) \
                     ORDER BY c.span, c.bucket, c.kind, c.value, c.stripe FOR UPDATE OF c), \
                     empty AS (SELECT span, bucket, kind, value FROM locked \
                     GROUP BY span, bucket, kind, value HAVING sum(n) = 0) \
                     DELETE FROM counters c USING locked l JOIN empty e \
                     ON (l.span, l.bucket, l.kind, l.value) = (e.span, e.bucket, e.kind, e.value) \
                     WHERE (c.span, c.bucket, c.kind, c.value, c.stripe) \
                     = (l.span, l.bucket, l.kind, l.value, l.stripe)",
                )
                .await?,
            events: client
                .prepare_cached("DELETE FROM events WHERE sid = ANY($1::text[])")
                .await?,
            positions: client
                .prepare_cached("DELETE FROM positions WHERE sid = ANY($1::text[])")
                .await?,
            messages: client
                .prepare_cached("DELETE FROM messages WHERE sid = ANY($1::text[])")
                .await?,
        })
    }
}

/// The message SIDs in the first column of `found`.
fn sids(found: &[tokio_postgres::Row]) -> Result<Vec<MessageSid>, StoreError> {
    found
        .iter()
        .map(|row| {
            let sid: &str = row.try_get(0).map_err(corrupt)?;
            MessageSid::parse(sid).map_err(StoreError::corrupt)
        })
        .collect()
}
