//! Idempotency keys on the embedded store (the contract is in `store/idempotency.rs`).
//!
//! Keys live in their own tree, `idempotency`, apart from the writer's: a claim is one sled
//! transaction (serializable, so two claims of one key cannot both succeed), run on a
//! blocking thread, then made durable by the writer (a probe: its flush and fsync cover
//! every tree, and share the group commit of the callbacks). `k` + key holds the [`Entry`]; `e` +
//! claim time (big-endian) + key indexes claims by age, so expired keys are swept a few at
//! a time by later claims. Entries are a few KiB, far below the size sled moves to a blob
//! file, so the log holds them.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::keys::{decode, encode};
use super::SledStore;
use crate::domain::Timestamp;
use crate::store::idempotency::{expired, judge, micros, Held, IDEMPOTENCY_WINDOW};
use crate::store::{Claim, ClaimTicket, Finish, KeptReply, KeyRequest, StoreError};

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

impl Entry {
    fn held(self) -> Held {
        Held {
            request_hash: self.request_hash,
            claimed_at: self.claimed_at,
            in_flight_at_most: self.in_flight_at_most,
            reply: self.reply,
            claimant_gone: self.owner != process_id(),
        }
    }
}

const ENTRY: u8 = b'k';
const EXPIRY: u8 = b'e';
/// Expired keys removed by one claim, at most.
const SWEEP: usize = 64;

impl SledStore {
    pub async fn claim_idempotency_key(&self, request: KeyRequest) -> Result<Claim, StoreError> {
        let store = self.clone();
        let claim = blocking(move || store.claim_now(&request)).await?;
        if let Claim::Claimed(_) = claim {
            self.probe().await?;
        }
        Ok(claim)
    }

    pub async fn finish_idempotency_key(
        &self,
        ticket: ClaimTicket,
        finish: Finish,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        blocking(move || store.finish_now(&ticket, finish)).await?;
        self.probe().await
    }

    fn claim_now(&self, request: &KeyRequest) -> Result<Claim, StoreError> {
        let tree = self.idempotency_tree()?;
        let key = entry_key(&request.key);
        let claim_id = fastrand::u64(..);
        let claim = tree
            .transaction(|tx| {
                if let Some(value) = tx.get(&key)? {
                    let entry =
                        decode::<Entry>(&value).map_err(ConflictableTransactionError::Abort)?;
                    if !expired(entry.claimed_at, request.now) {
                        return Ok(judge(entry.held(), request));
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
            let mut entry = decode::<Entry>(&value).map_err(ConflictableTransactionError::Abort)?;
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
        Ok(())
    }

    /// Removes a few keys whose window has ended, oldest first.
    fn sweep(&self, tree: &sled::Tree, now: Timestamp) -> Result<(), StoreError> {
        // Claimed at or before `now - window` is expired (see `expired`).
        let first_unexpired = now.0.saturating_sub(micros(IDEMPOTENCY_WINDOW)) + 1;
        let mut end = vec![EXPIRY];
        end.extend_from_slice(&first_unexpired.to_be_bytes());
        for index in tree.range(vec![EXPIRY]..end).take(SWEEP) {
            let (index, _) = index.map_err(StoreError::unavailable)?;
            let Some(claimed) = index.get(1..9).and_then(|bytes| bytes.try_into().ok()) else {
                continue;
            };
            let claimed = Timestamp(u64::from_be_bytes(claimed));
            let key = entry_key_bytes(&index[9..]);
            tree.transaction(|tx| {
                // The key may have been claimed again since: only its old claim goes.
                if let Some(value) = tx.get(&key)? {
                    let entry =
                        decode::<Entry>(&value).map_err(ConflictableTransactionError::Abort)?;
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
        self.trees
            .db
            .open_tree("idempotency")
            .map_err(StoreError::unavailable)
    }
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

fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::unavailable(error),
    }
}

/// Runs sled's blocking work (and its fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        StoreError::unavailable(format!(
            "an idempotency key operation was cancelled: {error}"
        ))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::counters::HOUR;

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

    async fn answered(store: &SledStore, key: &str, now: u64) {
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
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("a store");
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
        let store = SledStore::open(dir.path(), Box::new(|_| {})).expect("a store");
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
