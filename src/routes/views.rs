//! The JSON shapes of a message: what the API answers, what the export writes and what
//! the change feed and forwarded webhooks carry. Below the routes, the export and
//! forwarding alike, so that none of them depends on another.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{error_codes, MessageState, MessageStatus, RfcTime, Source};
use crate::store::{FeedEntry, StoredEvent, StoredMessage};

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
    /// The one event a change-feed entry or a forwarded webhook is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<EventView>,
}

#[derive(Serialize)]
pub struct EventView {
    status: MessageStatus,
    error_code: Option<u32>,
    error_description: Option<&'static str>,
    received_at: RfcTime,
    source: Source,
    raw_dlr_done_date: Option<String>,
    /// Every parameter as sent; a name Twilio repeated maps to the list of its values.
    params: Map<String, Value>,
    /// The event's change-feed position (`seq` of `GET /v1/events`), which an import
    /// keeps: what a feed consumer resumes from after a move.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

impl MessageView {
    pub fn summary(sid: &str, state: MessageState) -> Self {
        MessageView {
            sid: sid.to_owned(),
            status: state.status.map(|status| status.as_str()),
            error_code: state.error_code,
            error_description: state.error_code.and_then(error_codes::describe),
            created_at: RfcTime(state.created_at),
            updated_at: RfcTime(state.updated_at),
            account_sid: state.parties.account_sid,
            from: state.parties.from,
            to: state.parties.to,
            messaging_service_sid: state.parties.messaging_service_sid,
            events: None,
            event: None,
        }
    }

    /// The message as it stood right after `event`, with that event.
    pub fn after(sid: &str, state: MessageState, event: StoredEvent) -> Self {
        MessageView {
            event: Some(EventView::from(event)),
            ..MessageView::summary(sid, state)
        }
    }

    pub fn full(message: StoredMessage) -> Self {
        let events = message.events.into_iter().map(EventView::from).collect();
        MessageView {
            events: Some(events),
            ..MessageView::summary(message.sid.as_str(), message.state)
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
            seq: event.seq,
        }
    }
}

/// One transition as the feed and forwarded webhooks show it: the message as it stood
/// right after the transition, with the transition as `event`.
#[derive(Serialize)]
pub struct FeedEventView {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: RfcTime,
    pub data: MessageView,
}

impl From<FeedEntry> for FeedEventView {
    fn from(entry: FeedEntry) -> Self {
        FeedEventView {
            seq: entry.seq,
            kind: "message.status",
            timestamp: RfcTime(entry.event.received_at),
            data: MessageView::after(entry.sid.as_str(), entry.state, entry.event),
        }
    }
}
