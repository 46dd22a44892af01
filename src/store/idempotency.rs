//! Idempotency keys of `POST /v1/messages`: a key is claimed durably before Twilio is
//! called, and finished with the answer the caller got, which is then answered again to any
//! repeat of the request within [`IDEMPOTENCY_WINDOW`].
//!
//! The contract, which a PostgreSQL store keeps too (a table keyed by the key, claimed with
//! `INSERT … ON CONFLICT`):
//!
//! - [`Store::claim_idempotency_key`] looks at the key and, in one atomic step, either takes
//!   it for the caller or says why not. A key is free when it was never used or its claim is
//!   older than the window (an expired key is overwritten). Taking it writes an in-flight
//!   claim that is durable (fsynced) before the method returns, so that two requests, or a
//!   request and its retry after a crash, can never both call Twilio.
//! - [`Store::finish_idempotency_key`] replaces the caller's own in-flight claim with the
//!   answer ([`Finish::Answer`]), or removes it ([`Finish::Release`]) when nothing was sent
//!   and a retry under the same key should send; durable before it returns. A claim that is
//!   no longer the caller's (it expired and was claimed again) is left alone.
//! - An in-flight claim whose request cannot finish any more is *abandoned*: the process that
//!   claimed it is gone (with sled only one process opens a folder, so a claim made by another
//!   process id was made by a process that has stopped), or it is older than the longest a
//!   send can take (`in_flight_at_most`; the only test a store shared by replicas can make).
//!   Whether that request created the message is unknown; the claim is kept as it is until
//!   the window ends, so the key never sends.
//!
//! Keys live in their own sled tree, `idempotency`: `k` + key holds the [`Entry`], and
//! `e` + claim time (big-endian) + key indexes claims by age, so expired keys are swept a few
//! at a time by later claims.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{encode, Store, StoreError};
use crate::domain::Timestamp;

/// How long a key's answer is kept and answered again.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The answer kept for a key: the status code and the body, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A request for a key.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub key: String,
    /// A digest of the request's content: the same key with another digest is a conflict.
    pub request_hash: [u8; 32],
    pub now: Timestamp,
    /// The longest a claimed request can take to finish; an in-flight claim older than this
    /// is abandoned.
    pub in_flight_at_most: Duration,
}

/// What [`Store::claim_idempotency_key`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free and is now durably claimed by the caller, which sends and then
    /// calls [`Store::finish_idempotency_key`] with this ticket.
    Claimed(ClaimTicket),
    /// The same request was answered under this key within the window: answer it again.
    Answered(KeptReply),
    /// The same request holds the key and is still in flight.
    InFlight,
    /// The same request claimed the key and was abandoned before its outcome was kept: it
    /// may or may not have created the message.
    Abandoned { claimed_at: Timestamp },
    /// A different request used this key within the window.
    Conflict,
}

/// The caller's hold on a claimed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTicket {
    key: String,
    claim_id: u64,
}

/// How a claim ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Keep this answer for the rest of the window.
    Answer(KeptReply),
    /// Free the key: nothing was sent, so a retry under the key may send.
    Release,
}

/// A key's stored state.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    request_hash: [u8; 32],
    claimed_at: Timestamp,
    claim_id: u64,
    /// The process that claimed the key (see [`process_id`]).
    owner: u64,
    in_flight_at_most: Duration,
    /// `None` while the request is in flight.
    reply: Option<KeptReply>,
}

const ENTRY: u8 = b'k';
const EXPIRY: u8 = b'e';
/// Expired keys removed by one claim, at most.
const SWEEP: usize = 64;

impl Store {
    /// Claims `request.key` for a request, or says why it cannot be claimed (see the module
    /// documentation). Returns once a new claim is durably on disk.
    pub async fn claim_idempotency_key(&self, request: KeyRequest) -> Result<Claim, StoreError> {
        let store = self.clone();
        blocking(move || store.claim_now(&request)).await
    }

    /// Ends the caller's claim with its answer, or frees the key; returns once durable.
    pub async fn finish_idempotency_key(
        &self,
        ticket: ClaimTicket,
        finish: Finish,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        blocking(move || store.finish_now(&ticket, finish)).await
    }

    fn claim_now(&self, request: &KeyRequest) -> Result<Claim, StoreError> {
        let tree = self.idempotency_tree()?;
        let key = entry_key(&request.key);
        let claim_id = fastrand::u64(..);
        let claim = tree
            .transaction(|tx| {
                if let Some(value) = tx.get(&key)? {
                    let entry = decode(&value).map_err(ConflictableTransactionError::Abort)?;
                    if !expired(&entry, request.now) {
                        return Ok(judge(&entry, request));
                    }
                    // Expired: the key is free, and its old claim goes from the age index.
                    tx.remove(expiry_key(entry.claimed_at, &request.key))?;
                }
                let entry = Entry {
                    request_hash: request.request_hash,
                    claimed_at: request.now,
                    claim_id,
                    owner: process_id(),
                    in_flight_at_most: request.in_flight_at_most,
                    reply: None,
                };
                let value = encode(&entry).map_err(ConflictableTransactionError::Abort)?;
                tx.insert(key.as_slice(), value)?;
                tx.insert(expiry_key(request.now, &request.key), &[][..])?;
                Ok(Claim::Claimed(ClaimTicket {
                    key: request.key.clone(),
                    claim_id,
                }))
            })
            .map_err(transaction_error)?;
        if let Claim::Claimed(_) = claim {
            self.sweep(&tree, request.now)?;
            self.make_durable()?;
        }
        Ok(claim)
    }

    fn finish_now(&self, ticket: &ClaimTicket, finish: Finish) -> Result<(), StoreError> {
        let tree = self.idempotency_tree()?;
        let key = entry_key(&ticket.key);
        tree.transaction(|tx| {
            let Some(value) = tx.get(&key)? else {
                return Ok(());
            };
            let mut entry = decode(&value).map_err(ConflictableTransactionError::Abort)?;
            if entry.claim_id != ticket.claim_id || entry.reply.is_some() {
                return Ok(());
            }
            match &finish {
                Finish::Answer(reply) => {
                    entry.reply = Some(reply.clone());
                    let value = encode(&entry).map_err(ConflictableTransactionError::Abort)?;
                    tx.insert(key.as_slice(), value)?;
                }
                Finish::Release => {
                    tx.remove(key.as_slice())?;
                    tx.remove(expiry_key(entry.claimed_at, &ticket.key))?;
                }
            }
            Ok(())
        })
        .map_err(transaction_error)?;
        self.make_durable()
    }

    /// Removes a few keys whose window has ended, oldest first.
    fn sweep(&self, tree: &sled::Tree, now: Timestamp) -> Result<(), StoreError> {
        // Claimed at or before `now - window` is expired (see `expired`).
        let first_unexpired = now.0.saturating_sub(micros(IDEMPOTENCY_WINDOW)) + 1;
        let mut end = vec![EXPIRY];
        end.extend_from_slice(&first_unexpired.to_be_bytes());
        for index in tree.range(vec![EXPIRY]..end).take(SWEEP) {
            let (index, _) = index?;
            let Some(claimed) = index.get(1..9).and_then(|bytes| bytes.try_into().ok()) else {
                continue;
            };
            let claimed = Timestamp(u64::from_be_bytes(claimed));
            let key = entry_key_bytes(&index[9..]);
            tree.transaction(|tx| {
                // The key may have been claimed again since: only its old claim goes.
                if let Some(value) = tx.get(&key)? {
                    let entry = decode(&value).map_err(ConflictableTransactionError::Abort)?;
                    if entry.claimed_at == claimed {
                        tx.remove(key.as_slice())?;
                    }
                }
                tx.remove(&index)?;
                Ok(())
            })
            .map_err(transaction_error)?;
        }
        Ok(())
    }

    fn idempotency_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.trees.db.open_tree("idempotency")?)
    }

    /// sled's `flush` writes its log with `sync_file_range`, which a power cut can undo;
    /// an fdatasync of the log file makes the write survive one.
    fn make_durable(&self) -> Result<(), StoreError> {
        self.trees.db.flush()?;
        std::fs::File::open(self.trees.dir.join("db"))
            .and_then(|file| file.sync_data())
            .map_err(|error| StoreError::Unavailable(format!("cannot sync the store: {error}")))
    }
}

/// What an unexpired entry means for a request under its key.
fn judge(entry: &Entry, request: &KeyRequest) -> Claim {
    if entry.request_hash != request.request_hash {
        return Claim::Conflict;
    }
    if let Some(reply) = &entry.reply {
        return Claim::Answered(reply.clone());
    }
    let deadline = entry
        .claimed_at
        .0
        .saturating_add(micros(entry.in_flight_at_most));
    if entry.owner != process_id() || request.now.0 > deadline {
        return Claim::Abandoned {
            claimed_at: entry.claimed_at,
        };
    }
    Claim::InFlight
}

fn expired(entry: &Entry, now: Timestamp) -> bool {
    now.0
        >= entry
            .claimed_at
            .0
            .saturating_add(micros(IDEMPOTENCY_WINDOW))
}

/// This process's id, drawn once: a claim made under another id was made by a process that
/// has stopped, since only one process at a time opens a sled folder.
fn process_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| fastrand::u64(..))
}

fn entry_key(key: &str) -> Vec<u8> {
    entry_key_bytes(key.as_bytes())
}

fn entry_key_bytes(key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + key.len());
    bytes.push(ENTRY);
    bytes.extend_from_slice(key);
    bytes
}

fn expiry_key(claimed_at: Timestamp, key: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(9 + key.len());
    bytes.push(EXPIRY);
    bytes.extend_from_slice(&claimed_at.to_be_bytes());
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn decode(value: &[u8]) -> Result<Entry, StoreError> {
    use bincode::Options;
    bincode::options()
        .deserialize(value)
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => error.into(),
    }
}

/// Runs sled's blocking work (and its fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| StoreError::Unavailable("an idempotency key operation was cancelled".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000;

    fn request(key: &str, hash: u8, now: u64) -> KeyRequest {
        KeyRequest {
            key: key.into(),
            request_hash: [hash; 32],
            now: Timestamp(now),
            in_flight_at_most: Duration::from_secs(120),
        }
    }

    fn reply() -> KeptReply {
        KeptReply {
            status: 201,
            body: b"{}".to_vec(),
        }
    }

    async fn answered(store: &Store, key: &str, now: u64) {
        let Ok(Claim::Claimed(ticket)) = store.claim_idempotency_key(request(key, 1, now)).await
        else {
            panic!("a new key is claimed");
        };
        store
            .finish_idempotency_key(ticket, Finish::Answer(reply()))
            .await
            .expect("finished");
    }

    #[tokio::test]
    async fn a_key_is_answered_for_24_hours_then_free_again_and_swept() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(dir.path(), Box::new(|_| {})).expect("a store");
        let start = 1_000 * HOUR;
        answered(&store, "k", start).await;
        answered(&store, "old", start).await;

        let within = store
            .claim_idempotency_key(request("k", 1, start + 24 * HOUR - 1))
            .await
            .expect("read");
        assert_eq!(within, Claim::Answered(reply()));
        let other = store
            .claim_idempotency_key(request("k", 2, start + HOUR))
            .await
            .expect("read");
        assert_eq!(other, Claim::Conflict);

        // After the window the key is free, also for another request; the claim sweeps
        // the other expired key away.
        let later = start + 24 * HOUR;
        let again = store
            .claim_idempotency_key(request("k", 2, later))
            .await
            .expect("claimed");
        assert!(matches!(again, Claim::Claimed(_)), "{again:?}");
        let tree = store.idempotency_tree().expect("the tree");
        assert!(
            tree.get(entry_key("old")).expect("read").is_none(),
            "not swept"
        );
        assert_eq!(tree.len(), 2, "only the new claim and its age entry remain");
    }

    #[tokio::test]
    async fn an_in_flight_claim_is_abandoned_past_its_deadline_and_a_released_key_is_free() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(dir.path(), Box::new(|_| {})).expect("a store");
        let start = 1_000 * HOUR;
        let Claim::Claimed(ticket) = store
            .claim_idempotency_key(request("k", 1, start))
            .await
            .expect("claimed")
        else {
            panic!("a new key is claimed");
        };
        let during = store
            .claim_idempotency_key(request("k", 1, start + 1))
            .await
            .expect("read");
        assert_eq!(during, Claim::InFlight);
        let past = store
            .claim_idempotency_key(request("k", 1, start + HOUR))
            .await
            .expect("read");
        assert_eq!(
            past,
            Claim::Abandoned {
                claimed_at: Timestamp(start)
            }
        );

        store
            .finish_idempotency_key(ticket, Finish::Release)
            .await
            .expect("released");
        let free = store
            .claim_idempotency_key(request("k", 1, start + HOUR))
            .await
            .expect("claimed");
        assert!(matches!(free, Claim::Claimed(_)));
    }
}
