//! `GET /v1/messages/{sid}`: one message, its current status and its whole history;
//! `GET /v1/messages`: the listing, filtered and paged; `POST /v1/messages`: send.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use super::ApiError;
use crate::domain::{error_codes, KnownStatus, MessageSid, RfcTime, Source, Timestamp};
use crate::sender::{self, CreateMessage};
use crate::startup::AppState;
use crate::store::{Cursor, ListQuery, MessageRecord, StoreError, StoredEvent, StoredMessage};

/// A message as the API shows it; `events` is left out of listings.
#[derive(Serialize)]
pub struct MessageView {
    sid: String,
    account_sid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    messaging_service_sid: Option<String>,
    status: Option<&'static str>,
    error_code: Option<u32>,
    /// Twilio's title of `error_code`, when the code is one statushook knows.
    error_description: Option<&'static str>,
    created_at: RfcTime,
    updated_at: RfcTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventView>>,
}

#[derive(Serialize)]
struct EventView {
    status: String,
    error_code: Option<u32>,
    error_description: Option<&'static str>,
    received_at: RfcTime,
    source: Source,
    raw_dlr_done_date: Option<String>,
    /// Every parameter as sent; a name Twilio repeated maps to the list of its values.
    params: Map<String, Value>,
}

impl MessageView {
    pub fn summary(sid: &str, record: MessageRecord) -> Self {
        MessageView {
            sid: sid.to_owned(),
            status: record.known_status().map(|status| status.as_str()),
            error_code: record.error_code,
            error_description: record.error_code.and_then(error_codes::describe),
            created_at: RfcTime(record.created_at),
            updated_at: RfcTime(record.updated_at),
            account_sid: record.account_sid,
            from: record.from,
            to: record.to,
            messaging_service_sid: record.messaging_service_sid,
            events: None,
        }
    }

    pub fn full(message: StoredMessage) -> Self {
        let events = message.events.into_iter().map(EventView::from).collect();
        MessageView {
            events: Some(events),
            ..MessageView::summary(message.sid.as_str(), message.record)
        }
    }
}

impl From<StoredEvent> for EventView {
    fn from(event: StoredEvent) -> Self {
        let mut params = Map::new();
        for (name, value) in event.params {
            match params.get_mut(&name) {
                None => {
                    params.insert(name, Value::String(value));
                }
                Some(Value::Array(values)) => values.push(Value::String(value)),
                Some(first) => {
                    let first = first.take();
                    params.insert(name, Value::Array(vec![first, Value::String(value)]));
                }
            }
        }
        EventView {
            status: event.status,
            error_code: event.error_code,
            error_description: event.error_code.and_then(error_codes::describe),
            received_at: RfcTime(event.received_at),
            source: event.source,
            raw_dlr_done_date: event.raw_dlr_done_date,
            params,
        }
    }
}

pub async fn get_message(
    sid: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sid = MessageSid::parse(&sid).map_err(ApiError::BadRequest)?;
    let message = state.store.message(&sid)?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(MessageView::full(message)))
}

/// The answer of `GET /v1/messages`.
#[derive(Serialize)]
struct ListView {
    messages: Vec<MessageView>,
    next_cursor: Option<String>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /v1/messages`: newest `updated_at` first, filtered, paged by an opaque cursor.
pub async fn list_messages(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = parse_list_query(request.query_string())?;
    let store = state.store.clone();
    // A page may read a thousand records: off the async workers.
    let page = web::block(move || store.list(&query)).await.map_err(|_| {
        ApiError::Unavailable(StoreError::Unavailable("listing was cancelled".into()))
    })??;
    let next_cursor = page.next.map(|cursor| cursor.encode());
    let messages = page
        .messages
        .into_iter()
        .map(|(sid, record)| MessageView::summary(sid.as_str(), record))
        .collect();
    Ok(HttpResponse::Ok().json(ListView {
        messages,
        next_cursor,
    }))
}

fn parse_list_query(raw: &str) -> Result<ListQuery, ApiError> {
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    let bad = |name: &str, problem: String| ApiError::BadRequest(format!("{name}: {problem}"));
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "status" => {
                let status = KnownStatus::parse(&value)
                    .ok_or_else(|| bad("status", format!("{value:?} is not a message status")))?;
                if !query.statuses.contains(&status) {
                    query.statuses.push(status);
                }
            }
            "error_code" => {
                let code = value
                    .parse()
                    .map_err(|_| bad("error_code", format!("{value:?} is not a whole number")))?;
                query.error_code = Some(code);
            }
            "to" => query.to = Some(non_empty("to", &value)?),
            "from" => query.from = Some(non_empty("from", &value)?),
            "since" => {
                query.since = Some(Timestamp::parse_rfc3339(&value).map_err(|e| bad("since", e))?)
            }
            "until" => {
                query.until = Some(Timestamp::parse_rfc3339(&value).map_err(|e| bad("until", e))?)
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("{value:?} is not a number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "cursor" => query.cursor = Some(Cursor::decode(&value).map_err(|e| bad("cursor", e))?),
            other => return Err(bad(other, "is not a parameter of this listing".into())),
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since >= until {
            return Err(bad("until", "must be later than since".into()));
        }
    }
    Ok(query)
}

fn non_empty(name: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Err(ApiError::BadRequest(format!("{name}: must not be empty")));
    }
    Ok(value.to_owned())
}

/// `POST /v1/messages`: creates a message through Twilio with statushook's callback
/// registered, and records it at once (source `sender`), so a lookup works before the first
/// callback arrives. Answers 201 with Twilio's message resource.
pub async fn send_message(
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let request: CreateMessage = serde_json::from_slice(&body)
        .map_err(|error| ApiError::BadRequest(format!("body: {error}")))?;
    request.validate().map_err(ApiError::Unprocessable)?;
    let twilio = state
        .twilio
        .as_ref()
        .ok_or(ApiError::SendingNotConfigured)?;
    let created = twilio
        .create_message(&request, &state.status_callback)
        .await?;
    match sender::event_from_resource(&created, Source::Sender) {
        // The message exists at Twilio whatever happens here: a failure to record it is
        // logged, not answered, or the caller would retry and send it twice. Its first
        // callback records it anyway.
        Some(event) => {
            if let Err(error) = state.store.record(event, None).await {
                tracing::error!(%error, "a sent message could not be recorded");
            }
        }
        None => tracing::warn!("twilio's answer carries no message sid or status"),
    }
    Ok(HttpResponse::Created().json(created))
}
