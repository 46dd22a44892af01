//! Idempotency keys on PostgreSQL (the contract is in `store/idempotency.rs`).
//!
//! One row per key in `idempotency_keys`. A claim is one `INSERT … ON CONFLICT DO UPDATE`
//! whose update applies only to a claim that has left the window: it takes a free key,
//! takes over an expired claim, or leaves a live one alone, atomically whatever other
//! replicas do, and it is committed (with `synchronous_commit` on) before the caller
//! calls Twilio. A live claim is read back in the same round trip and judged. Expired
//! rows are swept a few at a time by later claims; finishing is one `UPDATE` or `DELETE`
//! of the caller's own in-flight claim.
//!
//! Whether the replica that made an in-flight claim is still alive is known from the
//! database: each replica holds, on a session of its own and for as long as it runs, an
//! advisory lock on its *owner* key, which each of its claims records. PostgreSQL releases
//! the lock when the process dies and its connection closes; a claim whose owner's lock is
//! not held was cut off. (A replica that only lost that session is taken for gone by the
//! others until it takes the lock again: its claims then answer "may have been created",
//! which never sends twice.)

use std::time::Duration;

use deadpool_postgres::Object;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{corrupt, leader, to_i64, unavailable, DatabaseUrl, PgStore};
use crate::domain::Timestamp;
use crate::store::idempotency::{expired, judge, micros, Held};
use crate::store::IDEMPOTENCY_WINDOW;
use crate::store::{Claim, ClaimTicket, Finish, KeptReply, KeyRequest, StoreError};

/// The upper 32 bits of every owner key, apart from the fixed advisory lock keys
/// (7_342_000 to 7_342_003, which fit in the lower ones); the lower 32 bits are random.
const OWNER_CLASS: i64 = 7_342_004;
/// Expired keys removed by one claim, at most.
const SWEEP: i64 = 64;
/// How many times a claim reads again a key that changed between its two statements.
const TRIES: usize = 3;

/// A new owner key for this replica.
pub fn new_owner() -> i64 {
    (OWNER_CLASS << 32) | i64::from(fastrand::u32(..))
}

/// Holds the advisory lock on `owner` while the store is open, taking it again after a
/// lost connection; aborting the task releases it.
pub fn hold_owner(url: DatabaseUrl, owner: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut lease = leader::acquire(&url, owner).await;
            lease.lost().await;
        }
    })
}

impl PgStore {
    pub async fn claim_idempotency_key(&self, request: KeyRequest) -> Result<Claim, StoreError> {
        let client = self.client().await?;
        let claim = client
            .prepare_cached(
                "INSERT INTO idempotency_keys AS k (key, request_hash, claimed_at, claim_id, \
                 owner, in_flight_at_most) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, \
                 claimed_at = excluded.claimed_at, claim_id = excluded.claim_id, \
                 owner = excluded.owner, in_flight_at_most = excluded.in_flight_at_most, \
                 reply_status = NULL, reply_body = NULL \
                 WHERE k.claimed_at <= $7 RETURNING k.claim_id",
            )
            .await
            .map_err(unavailable)?;
        let read = client
            .prepare_cached(
                "SELECT request_hash, claimed_at, owner, in_flight_at_most, reply_status, \
                 reply_body FROM idempotency_keys WHERE key = $1",
            )
            .await
            .map_err(unavailable)?;
        // The claim's own test of `store::idempotency::expired`, as a bound on claimed_at.
        let expired_at_or_before = request.now.0.saturating_sub(micros(IDEMPOTENCY_WINDOW));
        let sweep = client
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE claimed_at <= $1 AND key IN \
                 (SELECT key FROM idempotency_keys WHERE claimed_at <= $1 \
                 ORDER BY claimed_at LIMIT $2)",
            )
            .await
            .map_err(unavailable)?;
        let claim_id = fastrand::u64(..i64::MAX as u64);
        let (key, hash) = (&request.key, request.request_hash.as_slice());
        let (now, id) = (to_i64(request.now.0), to_i64(claim_id));
        let at_most = to_i64(micros(request.in_flight_at_most));
        let bound = to_i64(expired_at_or_before);
        let claim_params: [&(dyn ToSql + Sync); 7] =
            [key, &hash, &now, &id, &self.owner, &at_most, &bound];
        let read_params: [&(dyn ToSql + Sync); 1] = [key];
        let sweep_params: [&(dyn ToSql + Sync); 2] = [&bound, &SWEEP];
        for _ in 0..TRIES {
            // One round trip: the claim (committed on its own), then the key as it stands.
            let (claimed, held, swept) = tokio::join!(
                client.query_opt(&claim, &claim_params),
                client.query_opt(&read, &read_params),
                client.execute(&sweep, &sweep_params),
            );
            if let Err(error) = swept {
                tracing::warn!(%error, "sweeping expired idempotency keys failed");
            }
            if claimed.map_err(unavailable)?.is_some() {
                return Ok(Claim::Claimed(ClaimTicket {
                    key: request.key,
                    claim_id,
                }));
            }
            // The key was released or taken over between the two statements: again.
            let Some(row) = held.map_err(unavailable)? else {
                continue;
            };
            let held = self.held(&client, &row).await?;
            if expired(held.claimed_at, request.now) {
                continue;
            }
            return Ok(judge(held, &request));
        }
        Err(StoreError::unavailable(
            "an idempotency key kept changing while it was claimed",
        ))
    }

    pub async fn finish_idempotency_key(
        &self,
        ticket: ClaimTicket,
        finish: Finish,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let (key, id) = (&ticket.key, to_i64(ticket.claim_id));
        match finish {
            Finish::Answer(reply) => {
                client
                    .execute(
                        "UPDATE idempotency_keys SET reply_status = $3, reply_body = $4 \
                         WHERE key = $1 AND claim_id = $2 AND reply_status IS NULL",
                        &[key, &id, &i32::from(reply.status), &reply.body],
                    )
                    .await
            }
            Finish::Release => {
                client
                    .execute(
                        "DELETE FROM idempotency_keys \
                         WHERE key = $1 AND claim_id = $2 AND reply_status IS NULL",
                        &[key, &id],
                    )
                    .await
            }
        }
        .map_err(unavailable)?;
        Ok(())
    }

    /// A key's row as the contract's [`Held`]; asks the database whether its claimant
    /// still runs only for an in-flight claim of another replica.
    async fn held(&self, client: &Object, row: &Row) -> Result<Held, StoreError> {
        let hash: Vec<u8> = row.try_get(0).map_err(corrupt)?;
        let claimed_at: i64 = row.try_get(1).map_err(corrupt)?;
        let owner: i64 = row.try_get(2).map_err(corrupt)?;
        let in_flight_at_most: i64 = row.try_get(3).map_err(corrupt)?;
        let status: Option<i32> = row.try_get(4).map_err(corrupt)?;
        let body: Option<Vec<u8>> = row.try_get(5).map_err(corrupt)?;
        let reply = match status {
            Some(status) => Some(KeptReply {
                status: u16::try_from(status).map_err(corrupt)?,
                body: body.unwrap_or_default(),
            }),
            None => None,
        };
        let claimant_gone = reply.is_none() && owner != self.owner && !alive(client, owner).await?;
        Ok(Held {
            request_hash: hash
                .try_into()
                .map_err(|_| corrupt("a request hash of another length"))?,
            claimed_at: Timestamp(u64::try_from(claimed_at).map_err(corrupt)?),
            in_flight_at_most: Duration::from_micros(
                u64::try_from(in_flight_at_most).map_err(corrupt)?,
            ),
            reply,
            claimant_gone,
        })
    }
}

/// Whether the replica with owner key `owner` holds its lock: it still runs.
async fn alive(client: &Object, owner: i64) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d \
             ON d.oid = l.database WHERE d.datname = current_database() \
             AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid::int8 = $1::int8 >> 32 AND l.objid::int8 = $1::int8 & 4294967295)",
            &[&owner],
        )
        .await
        .map_err(unavailable)?;
    row.try_get(0).map_err(corrupt)
}
