//! Compact storage of callback parameters.
//!
//! Every parameter Twilio sends is kept, in order, byte for byte. Most of them repeat what
//! the message already records: `MessageSid` and `SmsSid` are the SID, `MessageStatus` and
//! `SmsStatus` the event's status, `AccountSid`, `From`, `To` and `MessagingServiceSid` the
//! message's own fields. Such a value is stored as a one-byte reference, and a well-known
//! name as a one-byte code, which shrinks a typical event from about 400 bytes to about 40.
//! A reference is only used when the value is exactly equal, and the record's fields never
//! change once set, so unpacking gives back precisely what arrived.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::domain::Parties;

/// Parameter names Twilio sends with message status callbacks. Append only: the index
/// of a name is stored.
const NAMES: &[&str] = &[
    "MessageSid",
    "SmsSid",
    "MessageStatus",
    "SmsStatus",
    "AccountSid",
    "From",
    "To",
    "MessagingServiceSid",
    "ApiVersion",
    "ErrorCode",
    "ErrorMessage",
    "RawDlrDoneDate",
    "ChannelToAddress",
    "ChannelPrefix",
    "ChannelInstallSid",
    "StructuredMessage",
    "SmsMessageSid",
    "NumSegments",
    "NumMedia",
    "Body",
    "Price",
    "PriceUnit",
    // Twilio Event Streams: the CloudEvent's attributes, then its data's fields under
    // `data.` (see `twilio::cloudevents`).
    "id",
    "type",
    "source",
    "specversion",
    "time",
    "dataschema",
    "datacontenttype",
    "data.messageSid",
    "data.messageStatus",
    "data.accountSid",
    "data.from",
    "data.to",
    "data.messagingServiceSid",
    "data.errorCode",
    "data.timestamp",
    "data.eventName",
    "data.apiVersion",
    "data.body",
    "data.statusCallBackUrl",
    "data.tags",
    "data.mnc",
    "data.mcc",
    "data.rawDlrDoneDate",
    "data.numberOfSegments",
    "data.dateUpdated",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packed(Vec<(Name, Value)>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Name {
    Known(u8),
    Other(String),
}

/// A value: a reference to a field of the message or the event, or the value itself.
/// Append only: the index of a variant is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Value {
    Sid,
    Status,
    AccountSid,
    From,
    To,
    MessagingServiceSid,
    Literal(String),
    /// The status in upper case, as Event Streams writes it (`data.messageStatus`).
    UpperStatus,
    /// `com.twilio.messaging.message.{status}`: a stream event's `type` and `eventName`.
    StreamType,
    /// `/2010-04-01/Accounts/{account}/Messages/{sid}.json`: a stream event's `source`.
    MessageSource,
}

/// What references resolve against: the event's SID and status, and its message.
pub struct Context<'a> {
    pub sid: &'a str,
    pub status: &'a str,
    pub parties: &'a Parties,
}

impl Context<'_> {
    /// Every value a reference may stand for; a reference is only ever used for a value
    /// exactly equal to one of them. The stream event's values are made from the others,
    /// and only for a stream event (`stream`), so that a callback costs no more than it did.
    fn fields(&self, stream: bool) -> [(Value, Option<Cow<'_, str>>); 9] {
        let made =
            |make: &dyn Fn() -> Option<String>| if stream { make().map(Cow::Owned) } else { None };
        [
            (Value::Sid, Some(Cow::Borrowed(self.sid))),
            (Value::Status, Some(Cow::Borrowed(self.status))),
            (
                Value::AccountSid,
                self.parties.account_sid.as_deref().map(Cow::Borrowed),
            ),
            (Value::From, self.parties.from.as_deref().map(Cow::Borrowed)),
            (Value::To, self.parties.to.as_deref().map(Cow::Borrowed)),
            (
                Value::MessagingServiceSid,
                self.parties
                    .messaging_service_sid
                    .as_deref()
                    .map(Cow::Borrowed),
            ),
            (
                Value::UpperStatus,
                made(&|| Some(self.status.to_ascii_uppercase())),
            ),
            (
                Value::StreamType,
                made(&|| Some(format!("com.twilio.messaging.message.{}", self.status))),
            ),
            (
                Value::MessageSource,
                made(&|| {
                    let account = self.parties.account_sid.as_deref()?;
                    Some(format!(
                        "/2010-04-01/Accounts/{account}/Messages/{}.json",
                        self.sid
                    ))
                }),
            ),
        ]
    }
}

pub fn pack(params: Vec<(String, String)>, cx: &Context<'_>) -> Packed {
    // A CloudEvent always has `specversion`; a callback never does.
    let stream = params.iter().any(|(name, _)| name == "specversion");
    let fields = cx.fields(stream);
    Packed(
        params
            .into_iter()
            .map(|(name, value)| {
                let name = match NAMES.iter().position(|known| *known == name) {
                    Some(i) => Name::Known(i as u8),
                    None => Name::Other(name),
                };
                let value = fields
                    .iter()
                    .find(|(_, field)| field.as_deref() == Some(value.as_str()))
                    .map_or(Value::Literal(value), |(reference, _)| reference.clone());
                (name, value)
            })
            .collect(),
    )
}

pub fn unpack(packed: Packed, cx: &Context<'_>) -> Vec<(String, String)> {
    let stream = packed.0.iter().any(|(_, value)| {
        matches!(
            value,
            Value::UpperStatus | Value::StreamType | Value::MessageSource
        )
    });
    let fields = cx.fields(stream);
    packed
        .0
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Known(i) => NAMES.get(usize::from(i)).copied().unwrap_or("").to_owned(),
                Name::Other(name) => name,
            };
            let value = match value {
                Value::Literal(value) => value,
                reference => fields
                    .iter()
                    .find(|(field, _)| *field == reference)
                    .and_then(|(_, value)| value.as_deref())
                    .unwrap_or_default()
                    .to_owned(),
            };
            (name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn callbacks_and_stream_events_unpack_to_exactly_what_arrived_stream_fields_by_reference() {
        let sid = "SM0123456789abcdef0123456789abcdef";
        let account = "AC0123456789abcdef0123456789abcdef";
        let parties = Parties {
            account_sid: Some(account.into()),
            ..Parties::default()
        };
        let cx = Context {
            sid,
            status: "delivered",
            parties: &parties,
        };
        let source = format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json");
        let stream = pairs(&[
            ("specversion", "1.0"),
            ("type", "com.twilio.messaging.message.delivered"),
            ("source", &source),
            ("data.messageStatus", "DELIVERED"),
            ("data.eventName", "com.twilio.messaging.message.delivered"),
            ("data.accountSid", account),
            // Near misses stay literal.
            ("data.other", "Delivered"),
            ("data.type", "com.twilio.messaging.message.sent"),
        ]);
        let callback = pairs(&[
            ("MessageStatus", "delivered"),
            ("SmsStatus", "DELIVERED"),
            ("type", "com.twilio.messaging.message.delivered"),
        ]);
        for (params, references) in [(stream, 5), (callback, 1)] {
            let packed = pack(params.clone(), &cx);
            let referenced = packed
                .0
                .iter()
                .filter(|(_, value)| !matches!(value, Value::Literal(_)))
                .count();
            assert_eq!(referenced, references, "{params:?}");
            assert_eq!(unpack(packed, &cx), params);
        }
    }
}
