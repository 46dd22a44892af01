//! Compact storage of callback parameters.
//!
//! Every parameter Twilio sends is kept, in order, byte for byte. Most of them repeat what
//! the message already records: `MessageSid` and `SmsSid` are the SID, `MessageStatus` and
//! `SmsStatus` the event's status, `AccountSid`, `From`, `To` and `MessagingServiceSid` the
//! message's own fields. Such a value is stored as a one-byte reference, and a well-known
//! name as a one-byte code, which shrinks a typical event from about 400 bytes to about 40.
//! A reference is only used when the value is exactly equal, and the record's fields never
//! change once set, so unpacking gives back precisely what arrived.

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Value {
    Sid,
    Status,
    AccountSid,
    From,
    To,
    MessagingServiceSid,
    Literal(String),
}

/// What references resolve against: the event's SID and status, and its message.
pub struct Context<'a> {
    pub sid: &'a str,
    pub status: &'a str,
    pub parties: &'a Parties,
}

impl Context<'_> {
    fn fields(&self) -> [(Value, Option<&str>); 6] {
        [
            (Value::Sid, Some(self.sid)),
            (Value::Status, Some(self.status)),
            (Value::AccountSid, self.parties.account_sid.as_deref()),
            (Value::From, self.parties.from.as_deref()),
            (Value::To, self.parties.to.as_deref()),
            (
                Value::MessagingServiceSid,
                self.parties.messaging_service_sid.as_deref(),
            ),
        ]
    }
}

pub fn pack(params: Vec<(String, String)>, cx: &Context<'_>) -> Packed {
    let fields = cx.fields();
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
                    .find(|(_, field)| *field == Some(value.as_str()))
                    .map_or(Value::Literal(value), |(reference, _)| reference.clone());
                (name, value)
            })
            .collect(),
    )
}

pub fn unpack(packed: Packed, cx: &Context<'_>) -> Vec<(String, String)> {
    let fields = cx.fields();
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
                    .and_then(|(_, value)| *value)
                    .unwrap_or_default()
                    .to_owned(),
            };
            (name, value)
        })
        .collect()
}
