//! `statushook import FILE`: loads a JSON-lines export into an empty store, of either kind.
//!
//! Each line is a message exactly as `GET /v1/messages/{sid}` shows it. It is read back
//! into the store's own form (its parties, and its events with their status, error code,
//! `received_at`, source, `RawDlrDoneDate` and every parameter) and written in batches
//! through [`Store::import`], which writes what recording those events one by one would
//! have written; so after an import the API answers exactly as the exporting service did.
//! A store that already holds messages is refused: an import is a move, not a merge.
//!
//! Parameters come back in the order the export shows them (by name, a repeated name's
//! values in their order), which is the order every API answer shows them in.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::{MessageSid, MessageState, MessageStatus, Parties, Source, Timestamp};
use crate::store::{ImportError, Imported, Store, StoreError, StoredEvent, StoredMessage};

/// Messages written per store batch.
pub const BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the store already holds messages; import loads into an empty store only")]
    NotEmpty,
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("cannot read the export: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(ImportError),
}

/// Loads every line of `input` into `store`, which must be empty; answers what was written.
pub async fn load(store: &Store, input: impl BufRead) -> Result<Imported, LoadError> {
    if !store.is_empty().await? {
        return Err(LoadError::NotEmpty);
    }
    let mut total = Imported::default();
    let mut batch = Vec::with_capacity(BATCH);
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let message = parse_line(&line).map_err(|problem| LoadError::Line {
            line: index + 1,
            problem,
        })?;
        batch.push(message);
        if batch.len() == BATCH {
            add(&mut total, write(store, std::mem::take(&mut batch)).await?);
        }
    }
    if !batch.is_empty() {
        add(&mut total, write(store, batch).await?);
    }
    Ok(total)
}

async fn write(store: &Store, batch: Vec<StoredMessage>) -> Result<Imported, LoadError> {
    store.import(batch).await.map_err(|error| match error {
        ImportError::Store(error) => LoadError::Store(error),
        refused => LoadError::Refused(refused),
    })
}

fn add(total: &mut Imported, batch: Imported) {
    total.messages += batch.messages;
    total.events += batch.events;
    total.moved += batch.moved;
}

/// A message line as the API shows it.
#[derive(Deserialize)]
struct MessageLine {
    sid: String,
    account_sid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    messaging_service_sid: Option<String>,
    status: Option<String>,
    error_code: Option<u32>,
    created_at: String,
    updated_at: String,
    events: Vec<EventLine>,
}

#[derive(Deserialize)]
struct EventLine {
    status: String,
    error_code: Option<u32>,
    received_at: String,
    source: Source,
    raw_dlr_done_date: Option<String>,
    params: serde_json::Map<String, Value>,
    /// The event's change-feed position in the store it was exported from (exports made
    /// before exports showed it have none).
    seq: Option<u64>,
}

/// Reads one exported message back into the store's form.
pub fn parse_line(line: &str) -> Result<StoredMessage, String> {
    let message: MessageLine =
        serde_json::from_str(line).map_err(|error| format!("not an exported message: {error}"))?;
    let sid = MessageSid::parse(&message.sid).map_err(|error| format!("sid: {error}"))?;
    let time = |name: &str, raw: &str| {
        Timestamp::parse_rfc3339(raw).map_err(|error| format!("{name}: {error}"))
    };
    let status = match message.status.as_deref() {
        None => None,
        Some(raw) => Some(
            crate::domain::KnownStatus::parse(raw)
                .ok_or_else(|| format!("status: {raw:?} is not a message status"))?,
        ),
    };
    let mut events = Vec::with_capacity(message.events.len());
    for event in message.events {
        let mut params = Vec::with_capacity(event.params.len());
        for (name, value) in event.params {
            match value {
                Value::String(value) => params.push((name, value)),
                Value::Array(values) => {
                    for value in values {
                        let Value::String(value) = value else {
                            return Err(format!("params.{name}: expected strings"));
                        };
                        params.push((name.clone(), value));
                    }
                }
                _ => return Err(format!("params.{name}: expected a string or a list")),
            }
        }
        events.push(StoredEvent {
            status: MessageStatus::parse(&event.status)
                .map_err(|error| format!("status: {error}"))?,
            error_code: event.error_code,
            received_at: time("received_at", &event.received_at)?,
            source: event.source,
            raw_dlr_done_date: event.raw_dlr_done_date,
            params,
            seq: event.seq,
        });
    }
    let state = MessageState {
        parties: Parties {
            account_sid: message.account_sid,
            from: message.from,
            to: message.to,
            messaging_service_sid: message.messaging_service_sid,
        },
        status,
        error_code: message.error_code,
        status_dlr_done: None,
        created_at: time("created_at", &message.created_at)?,
        updated_at: time("updated_at", &message.updated_at)?,
    };
    Ok(StoredMessage { sid, state, events })
}
