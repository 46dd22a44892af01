//! The data lifecycle on the store boundary: deleting messages (retention and privacy
//! erasure), reading a consistent export from a running store, and loading an export into
//! an empty store.
//!
//! The contract, which both stores keep (the sled store in `sled/lifecycle.rs`, PostgreSQL
//! in `postgres/lifecycle.rs`):
//!
//! - **Deleting a message removes every trace of it**: its record (parties, transitions,
//!   the delivery tokens of its callbacks), every event with its parameters (so it also
//!   leaves the change feed), every index entry that names it (live positions, the history
//!   positions kept for paging, the recipient, sender and account entries) and its
//!   contribution to every counter (all time and per hour and minute), in one atomic,
//!   durable write per batch of at most [`DELETE_BATCH`]. Afterwards the store is exactly
//!   what it would be had the message never been stored: `check` passes, and stats,
//!   listings and the feed no longer count it. A callback that arrives later for the same
//!   SID starts a new message.
//! - **Retention** ([`Store::expire`]) deletes, oldest first, at most `limit` messages whose
//!   `updated_at` is before a time, re-checked at the moment of deleting (a message
//!   updated meanwhile stays). Small batches keep every write short, so callbacks queue
//!   behind at most one batch. With PostgreSQL the caller runs it on one replica at a time.
//! - **Export** reads at a *snapshot* ([`Store::snapshot`]): a position in commit order
//!   below which every write is applied and above which none is (sled: the writer's
//!   watermark; PostgreSQL: the highest committed change-feed position, as for paging).
//!   [`Store::export_page`] answers the messages in SID order after a SID, each as it
//!   stood at the snapshot (state replayed to it, only the events received by then);
//!   messages created after the snapshot are left out. Pages are independent reads, so an
//!   export never holds up a writer; a message deleted while an export runs is left out of
//!   the pages not yet read.
//! - **Import** ([`Store::import`]) writes whole messages, as an export shows them, exactly
//!   as recording their events one by one would have left the store (records, events in
//!   their order with their `received_at`, `source` and parameters, the live index entries,
//!   counters, the change feed), except that delivery tokens are not part of an export.
//!   Each batch is validated whole before anything is written: a message already in the
//!   store, or whose events do not replay to the status the export shows, fails the batch
//!   and writes nothing.
//! - **The change feed survives the move.** An export shows each event's feed position
//!   (`seq`) and an import keeps it where the store can, so that a consumer of
//!   `GET /v1/events` resumes from its old `next` and misses and repeats nothing:
//!   PostgreSQL keeps every position (its sequence then goes on past the largest); sled's
//!   positions are arrival times in microseconds, so sled keeps a position that lies in
//!   its event's millisecond (an export of sled, whose positions are those times) as the
//!   arrival time, and otherwise places the event in the millisecond the export shows, at
//!   the first microsecond free (an export of PostgreSQL, whose positions are a count: a
//!   consumer then reads that feed again from the start, missing nothing). What the
//!   service keeps besides messages, forwarding's progress, and where the feed had got to
//!   travel in a small state file of their own (`archive/state.rs`).

use crate::domain::{MessageSid, MessageState, PhoneNumber, Timestamp, Transition};
use crate::store::{blocking, Counts, Store, StoreError, StoredMessage};

/// Messages deleted by one atomic write, at most: a bound on how long the callbacks that
/// wait behind it (or on its locks) wait.
pub const DELETE_BATCH: usize = 100;

/// Why an import batch was refused; nothing of the batch was written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is already in the store")]
    Exists(MessageSid),
    #[error("{sid}: {problem}")]
    Invalid { sid: MessageSid, problem: String },
}

/// What an import batch wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub messages: u64,
    pub events: u64,
    /// Events placed at another microsecond than the one their millisecond starts at,
    /// because an event of another message already took it.
    pub moved: u64,
}

impl Store {
    /// Deletes one message with every trace of it (see the module documentation); `false`
    /// when it was not stored.
    pub async fn delete_message(&self, sid: &MessageSid) -> Result<bool, StoreError> {
        match self {
            Store::Sled(store) => Ok(store.delete(vec![sid.clone()], None).await? > 0),
            Store::Postgres(store) => Ok(store.delete(vec![sid.clone()], None).await? > 0),
        }
    }

    /// Deletes every message whose recipient (`to`) or sender (`from`) is `phone` in any
    /// form that carries it (the number itself, `whatsapp:+1…`, `rcs:+1…`: see
    /// [`PhoneNumber::addresses`]); answers how many. Messages stored while it runs may
    /// remain.
    pub async fn delete_by_phone(&self, phone: &PhoneNumber) -> Result<u64, StoreError> {
        let addresses = phone.addresses();
        match self {
            Store::Sled(store) => store.delete_by_addresses(addresses).await,
            Store::Postgres(store) => store.delete_by_addresses(addresses).await,
        }
    }

    /// How many messages retention asks [`Store::expire`] for at a time, each call one
    /// atomic write: with sled [`DELETE_BATCH`], since callbacks queue behind every write of
    /// its one writer; with PostgreSQL more, since a deletion is a transaction of its own
    /// that callbacks do not wait for.
    pub fn expiry_batch(&self) -> usize {
        match self {
            Store::Sled(_) => DELETE_BATCH,
            Store::Postgres(_) => super::postgres::EXPIRY_BATCH,
        }
    }

    /// Deletes at most `limit` of the messages last updated before `before`, oldest first;
    /// answers how many. Zero means nothing is left to delete, or every candidate found was
    /// updated meanwhile.
    pub async fn expire(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        match self {
            Store::Sled(store) => store.expire(before, limit).await,
            Store::Postgres(store) => store.expire(before, limit).await,
        }
    }

    /// The position an export reads at: everything committed so far, nothing after.
    pub async fn snapshot(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sled(store) => Ok(store.watermark()),
            Store::Postgres(store) => store.watermark().await,
        }
    }

    /// Up to `limit` messages in SID order after `after` (from the first without it), each
    /// as it stood at `snapshot`, with the events received by then.
    pub async fn export_page(
        &self,
        snapshot: u64,
        after: Option<MessageSid>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.export_page(snapshot, after.as_ref(), limit)).await
            }
            Store::Postgres(store) => store.export_page(snapshot, after.as_ref(), limit).await,
        }
    }

    /// Whether the store holds no message at all (import refuses a store that does).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        match self {
            Store::Sled(store) => {
                let store = store.clone();
                blocking(move || store.is_empty()).await
            }
            Store::Postgres(store) => store.is_empty().await,
        }
    }

    /// Writes a batch of exported messages as recording their events would have (see the
    /// module documentation); durable before it returns.
    pub async fn import(&self, messages: Vec<StoredMessage>) -> Result<Imported, ImportError> {
        match self {
            Store::Sled(store) => store.import(messages).await,
            Store::Postgres(store) => store.import(messages).await,
        }
    }

    /// Makes every change-feed position handed out from now on come after `seq`: after an
    /// import, where the feed of the store the export came from had got to (forwarding's
    /// progress and a consumer's `next` may lie past its last event, if that event was
    /// deleted). Durable before it returns.
    pub async fn continue_feed_after(&self, seq: u64) -> Result<(), StoreError> {
        match self {
            Store::Sled(store) => store.continue_feed_after(Timestamp(seq)).await,
            Store::Postgres(store) => store.continue_feed_after(seq).await,
        }
    }

    /// Counts by current status and error code of one account's messages last updated
    /// within `[since, until)`, like [`Store::stats`].
    pub async fn account_stats(
        &self,
        account_sid: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, StoreError> {
        match self {
            Store::Sled(store) => {
                let (store, account) = (store.clone(), account_sid.to_owned());
                blocking(move || store.account_stats(&account, since, until)).await
            }
            Store::Postgres(store) => store.account_stats(account_sid, since, until).await,
        }
    }
}

/// An exported message read back into what a store keeps of it.
pub(super) struct Replayed {
    /// Its events' transitions, at increasing arrival times.
    pub transitions: Vec<Transition>,
    /// The state they replay to, which is the one the export shows.
    pub state: MessageState,
    /// Events placed in another millisecond than the export shows.
    pub moved: u64,
}

/// Reads an exported message's events back into transitions, in their order, each at the
/// arrival time `place` answers for the time wanted (the event's feed position when it
/// lies in the millisecond the export shows, as a sled store's positions do, else that
/// millisecond; never before the message's previous event): the store's first free time
/// from there. Refused when the events do not replay to the status and error code the
/// export shows.
pub(super) fn replay_export(
    message: &StoredMessage,
    mut place: impl FnMut(Timestamp) -> Result<Timestamp, StoreError>,
) -> Result<Replayed, ImportError> {
    let invalid = |problem: String| ImportError::Invalid {
        sid: message.sid.clone(),
        problem,
    };
    let mut transitions: Vec<Transition> = Vec::with_capacity(message.events.len());
    let mut moved = 0;
    for event in &message.events {
        let previous = transitions.last().map_or(0, |t| t.received_at.0);
        let exact = event
            .seq
            .filter(|seq| seq / 1000 == event.received_at.0 / 1000)
            .unwrap_or(event.received_at.0);
        let at = place(Timestamp(exact.max(previous + 1)))?;
        moved += u64::from(at.0 / 1000 != event.received_at.0 / 1000);
        transitions.push(Transition {
            status: event.status.clone(),
            error_code: event.error_code,
            raw_dlr_done_date: event.raw_dlr_done_date.clone(),
            received_at: at,
            source: event.source,
        });
    }
    let state = MessageState::replay(&message.state.parties, &transitions)
        .ok_or_else(|| invalid("a message without events".into()))?;
    if (state.status, state.error_code) != (message.state.status, message.state.error_code) {
        return Err(invalid(
            "its events do not replay to the status the export shows".into(),
        ));
    }
    Ok(Replayed {
        transitions,
        state,
        moved,
    })
}
