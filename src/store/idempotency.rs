//! Idempotency keys of `POST /v1/messages`: a key is claimed durably before Twilio is
//! called, and finished with the answer the caller got, which is then answered again to any
//! repeat of the request within [`IDEMPOTENCY_WINDOW`].
//!
//! The contract, which both stores keep (sled in `sled/idempotency.rs`; PostgreSQL in
//! `postgres/idempotency.rs`, a table keyed by the key, claimed with `INSERT … ON CONFLICT`):
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
//!   process id was made by a process that has stopped; with PostgreSQL, the claiming replica
//!   no longer holds the advisory lock its session keeps while it lives), or it is older than
//!   the longest a send can take (`in_flight_at_most`, which also covers a replica that is
//!   alive but stuck). Whether that request created the message is unknown; the claim is
//!   kept as it is until the window ends, so the key never sends.
//!
//! The types and the judgement of a held key ([`judge`]) belong to no store; each store
//! keeps and reads its claims its own way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::domain::Timestamp;

/// How long a key's answer is kept and answered again.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The answer kept for a key: the status code and the body, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A key's unexpired claim, as a store read it.
pub(super) struct Held {
    pub request_hash: [u8; 32],
    pub claimed_at: Timestamp,
    pub in_flight_at_most: Duration,
    /// `None` while the request is in flight.
    pub reply: Option<KeptReply>,
    /// The process that made the claim has stopped (see the module documentation).
    pub claimant_gone: bool,
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
    pub(super) key: String,
    pub(super) claim_id: u64,
}

/// How a claim ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Keep this answer for the rest of the window.
    Answer(KeptReply),
    /// Free the key: nothing was sent, so a retry under the key may send.
    Release,
}

impl Store {
    /// Claims `request.key` for a request, or says why it cannot be claimed (see the module
    /// documentation). Returns once a new claim is durable.
    pub async fn claim_idempotency_key(&self, request: KeyRequest) -> Result<Claim, StoreError> {
        match self {
            Store::Sled(store) => store.claim_idempotency_key(request).await,
            Store::Postgres(store) => store.claim_idempotency_key(request).await,
        }
    }

    /// Ends the caller's claim with its answer, or frees the key; returns once durable.
    pub async fn finish_idempotency_key(
        &self,
        ticket: ClaimTicket,
        finish: Finish,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sled(store) => store.finish_idempotency_key(ticket, finish).await,
            Store::Postgres(store) => store.finish_idempotency_key(ticket, finish).await,
        }
    }
}

/// What an unexpired claim means for a request under its key.
pub(super) fn judge(held: Held, request: &KeyRequest) -> Claim {
    if held.request_hash != request.request_hash {
        return Claim::Conflict;
    }
    if let Some(reply) = held.reply {
        return Claim::Answered(reply);
    }
    let deadline = held
        .claimed_at
        .0
        .saturating_add(micros(held.in_flight_at_most));
    if held.claimant_gone || request.now.0 > deadline {
        return Claim::Abandoned {
            claimed_at: held.claimed_at,
        };
    }
    Claim::InFlight
}

/// Whether a claim made at `claimed_at` has left the window at `now` (its key is free).
pub(super) fn expired(claimed_at: Timestamp, now: Timestamp) -> bool {
    now.0 >= claimed_at.0.saturating_add(micros(IDEMPOTENCY_WINDOW))
}

pub(super) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
