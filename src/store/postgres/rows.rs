//! Reading rows back into domain values: the column lists the queries select, and their
//! decoding. A value that cannot be decoded is `Corrupt`, never guessed.

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::{corrupt, unavailable};
use crate::domain::{
    is_echo, KnownStatus, MessageSid, MessageState, MessageStatus, Parties, Source, Timestamp,
    Transition,
};
use crate::store::{StoreError, StoredEvent, StoredMessage};

/// A message's parties, from `messages m` (4 columns).
pub const PARTIES: &str = "m.account_sid, m.from_number, m.to_number, m.messaging_service_sid";
/// What the state machine needs of an event, from `events e` (6 columns).
pub const EVENT: &str = "e.n, e.status, e.error_code, e.raw_dlr_done_date, e.received_at, e.source";
/// The same, after the event's SID (7 columns).
pub const EVENT_WITH_SID: &str =
    "e.sid, e.n, e.status, e.error_code, e.raw_dlr_done_date, e.received_at, e.source";

pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::Callback => "callback",
        Source::Sender => "sender",
        Source::Reconciler => "reconciler",
        Source::EventStream => "event_stream",
    }
}

fn source(name: &str) -> Result<Source, StoreError> {
    match name {
        "callback" => Ok(Source::Callback),
        "sender" => Ok(Source::Sender),
        "reconciler" => Ok(Source::Reconciler),
        "event_stream" => Ok(Source::EventStream),
        other => Err(StoreError::corrupt(format!(
            "unknown event source {other:?}"
        ))),
    }
}

/// The parties in the 4 columns from `at`.
pub fn parties(row: &Row, at: usize) -> Result<Parties, StoreError> {
    Ok(Parties {
        account_sid: row.try_get(at).map_err(corrupt)?,
        from: row.try_get(at + 1).map_err(corrupt)?,
        to: row.try_get(at + 2).map_err(corrupt)?,
        messaging_service_sid: row.try_get(at + 3).map_err(corrupt)?,
    })
}

/// A message's current state as its row keeps it, from `messages m` (6 columns, after
/// [`PARTIES`]): what the writer stored from `MessageState::replay` of its events.
pub const STATE: &str = "m.status, m.error_code, m.status_dlr_done, m.created_at, m.updated_at";

/// The state of a message row: its parties in the 4 columns from `at`, then the 5 of
/// [`STATE`]; `None` for a row without events (not committed yet, or being deleted).
pub fn state(row: &Row, at: usize) -> Result<Option<MessageState>, StoreError> {
    let parties = parties(row, at)?;
    let status: Option<&str> = row.try_get(at + 4).map_err(corrupt)?;
    let error_code: Option<i64> = row.try_get(at + 5).map_err(corrupt)?;
    let created_at: Option<i64> = row.try_get(at + 7).map_err(corrupt)?;
    let updated_at: Option<i64> = row.try_get(at + 8).map_err(corrupt)?;
    let (Some(created_at), Some(updated_at)) = (created_at, updated_at) else {
        return Ok(None);
    };
    let status = match status {
        None => None,
        Some(name) => Some(
            KnownStatus::parse(name)
                .ok_or_else(|| StoreError::corrupt(format!("unknown status {name:?}")))?,
        ),
    };
    let time = |micros: i64| u64::try_from(micros).map(Timestamp).map_err(corrupt);
    Ok(Some(MessageState {
        parties,
        status,
        error_code: error_code.map(u32::try_from).transpose().map_err(corrupt)?,
        status_dlr_done: row.try_get(at + 6).map_err(corrupt)?,
        created_at: time(created_at)?,
        updated_at: time(updated_at)?,
    }))
}

/// An event's number and transition, in the 6 columns from `at`.
pub fn transition(row: &Row, at: usize) -> Result<(i32, Transition), StoreError> {
    let n: i32 = row.try_get(at).map_err(corrupt)?;
    let status: &str = row.try_get(at + 1).map_err(corrupt)?;
    let error_code: Option<i64> = row.try_get(at + 2).map_err(corrupt)?;
    let received_at: i64 = row.try_get(at + 4).map_err(corrupt)?;
    let source_name: &str = row.try_get(at + 5).map_err(corrupt)?;
    Ok((
        n,
        Transition {
            status: MessageStatus::parse(status).map_err(StoreError::corrupt)?,
            error_code: error_code.map(u32::try_from).transpose().map_err(corrupt)?,
            raw_dlr_done_date: row.try_get(at + 3).map_err(corrupt)?,
            received_at: Timestamp(u64::try_from(received_at).map_err(corrupt)?),
            source: source(source_name)?,
        },
    ))
}

/// An event's SID and transition, in the 7 columns from `at`.
pub fn transition_with_sid(row: &Row, at: usize) -> Result<(MessageSid, Transition), StoreError> {
    let sid: &str = row.try_get(at).map_err(corrupt)?;
    let sid = MessageSid::parse(sid).map_err(StoreError::corrupt)?;
    let (_, transition) = transition(row, at + 1)?;
    Ok((sid, transition))
}

/// The event as the API shows it: its transition, its parameters (a JSON array of
/// `[name, value]` pairs, in arrival order) and its change-feed position.
pub fn stored_event(
    transition: &Transition,
    params: &str,
    seq: i64,
) -> Result<StoredEvent, StoreError> {
    let params: Vec<(String, String)> = serde_json::from_str(params).map_err(corrupt)?;
    Ok(StoredEvent {
        status: transition.status.clone(),
        error_code: transition.error_code,
        received_at: transition.received_at,
        source: transition.source,
        raw_dlr_done_date: transition.raw_dlr_done_date.clone(),
        params,
        seq: Some(u64::try_from(seq).map_err(corrupt)?),
    })
}

/// The columns of [`messages`]: a message's SID and parties, then one of its events with
/// its parameters and change-feed position, from `messages m` joined with `events e` (13
/// columns).
pub const MESSAGE_EVENT: &str = "m.sid, m.account_sid, m.from_number, m.to_number, \
    m.messaging_service_sid, e.n, e.status, e.error_code, e.raw_dlr_done_date, e.received_at, \
    e.source, e.params::text, e.seq";

/// Whole messages from rows of [`MESSAGE_EVENT`] ordered by SID and then by event: each
/// message with its events and the state they replay to.
pub fn messages(found: &[Row]) -> Result<Vec<StoredMessage>, StoreError> {
    let same_message =
        |a: &Row, b: &Row| a.try_get::<_, &str>(0).ok() == b.try_get::<_, &str>(0).ok();
    let mut messages = Vec::new();
    for rows in found.chunk_by(same_message) {
        messages.extend(message(rows)?);
    }
    Ok(messages)
}

/// One message from its rows of [`MESSAGE_EVENT`].
fn message(rows: &[Row]) -> Result<Option<StoredMessage>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let sid: &str = first.try_get(0).map_err(corrupt)?;
    let sid = MessageSid::parse(sid).map_err(StoreError::corrupt)?;
    let parties = parties(first, 1)?;
    let mut transitions = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let (_, transition) = transition(row, 5)?;
        events.push(stored_event(
            &transition,
            row.try_get(11).map_err(corrupt)?,
            row.try_get(12).map_err(corrupt)?,
        )?);
        transitions.push(transition);
    }
    let Some(state) = MessageState::replay(&parties, &transitions) else {
        return Ok(None);
    };
    Ok(Some(StoredMessage { sid, state, events }))
}

/// A message's parties and transitions, each with its change-feed position.
pub struct History {
    pub parties: Parties,
    pub transitions: Vec<Transition>,
    pub seqs: Vec<i64>,
}

impl History {
    /// The state right after the transition received at `at`.
    pub fn state_through(&self, at: Timestamp) -> Option<MessageState> {
        MessageState::as_of(&self.parties, &self.transitions, at)
    }

    /// Whether the event at change-feed position `seq` is an echo (`domain::is_echo`).
    pub fn is_echo(&self, seq: i64) -> bool {
        self.seqs
            .iter()
            .position(|known| *known == seq)
            .is_some_and(|index| is_echo(&self.transitions[..index], &self.transitions[index]))
    }

    /// The state at snapshot `snapshot`: after the transitions committed at or below it.
    pub fn state_at(&self, snapshot: i64) -> Option<MessageState> {
        let committed = self.seqs.iter().take_while(|seq| **seq <= snapshot).count();
        MessageState::replay(&self.parties, &self.transitions[..committed])
    }
}

/// The histories of `sids` up to change-feed position `through`, by SID.
pub async fn histories(
    client: &Object,
    sids: &[String],
    through: i64,
) -> Result<HashMap<String, History>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT m.sid, {PARTIES}, e.seq, {EVENT} FROM messages m JOIN events e ON e.sid = m.sid \
             WHERE m.sid = ANY($1) AND e.seq <= $2 ORDER BY m.sid, e.n"
        ))
        .await
        .map_err(unavailable)?;
    let found = client
        .query(&statement, &[&sids, &through])
        .await
        .map_err(unavailable)?;
    let mut histories: HashMap<String, History> = HashMap::with_capacity(sids.len());
    for row in &found {
        let sid: String = row.try_get(0).map_err(corrupt)?;
        let seq: i64 = row.try_get(5).map_err(corrupt)?;
        let (_, transition) = transition(row, 6)?;
        let history = match histories.get_mut(&sid) {
            Some(history) => history,
            None => histories.entry(sid).or_insert(History {
                parties: parties(row, 1)?,
                transitions: Vec::new(),
                seqs: Vec::new(),
            }),
        };
        history.transitions.push(transition);
        history.seqs.push(seq);
    }
    Ok(histories)
}
