//! The record of a message Twilio refused.
//!
//! A refused CreateMessage creates nothing at Twilio, and Twilio's error body (`code`,
//! `message`, `more_info`, `status`) carries no `MessageSid`. So that every send attempt can
//! still be looked up, statushook mints a SID of its own for the attempt, in Twilio's shape
//! (`SM` + 32 hex digits, so `GET /v1/messages/{sid}` takes it), answers it as `sid`, and
//! records the attempt under it: status `failed`, source `sender`, Twilio's code as
//! `ErrorCode`, and `LocalSid=true` saying that Twilio never knew this SID. The SID is 128
//! random bits, like Twilio's own, so it cannot be mistaken for one of the account's real
//! messages in practice.

use crate::domain::{Source, StatusEvent};

use super::client::TwilioError;
use super::create_message::CreateMessage;

/// The `failed` event recording an attempt Twilio refused, under a freshly minted SID
/// (`event.sid()`): who it was for and from, and Twilio's error. The message's content is
/// not kept, as for a created message.
pub fn refused_event(
    account_sid: &str,
    request: &CreateMessage,
    error: &TwilioError,
) -> Option<StatusEvent> {
    let sid = format!("SM{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let mut params = vec![
        ("MessageSid".to_owned(), sid),
        ("MessageStatus".to_owned(), "failed".to_owned()),
        ("AccountSid".to_owned(), account_sid.to_owned()),
        ("To".to_owned(), request.to.clone()),
    ];
    for (name, value) in [
        ("From", &request.from),
        ("MessagingServiceSid", &request.messaging_service_sid),
    ] {
        if let Some(value) = value {
            params.push((name.to_owned(), value.clone()));
        }
    }
    if let Some(code) = error.code {
        params.push(("ErrorCode".to_owned(), code.to_string()));
    }
    params.push(("ErrorMessage".to_owned(), error.message.clone()));
    params.push(("LocalSid".to_owned(), "true".to_owned()));
    StatusEvent::from_params(params, Source::Sender).ok()
}
