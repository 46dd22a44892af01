//! `GET /v1/messages/{sid}`: one message, its current status and its whole history.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};

use super::ApiError;
use crate::domain::{MessageSid, RfcTime, Source};
use crate::startup::AppState;
use crate::store::{EventRecord, MessageRecord, StoredMessage};

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
    created_at: RfcTime,
    updated_at: RfcTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventView>>,
}

#[derive(Serialize)]
struct EventView {
    status: String,
    error_code: Option<u32>,
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

impl From<EventRecord> for EventView {
    fn from(event: EventRecord) -> Self {
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
