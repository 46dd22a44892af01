//! What a Twilio Event Streams webhook sink sends: CloudEvents 1.0 in JSON, one event
//! object or an array of them (a batch), decoded into status events. Pure: bytes in,
//! domain values out; no actix, no I/O, no clock.
//!
//! A CloudEvent is an object with the attributes `id`, `source`, `specversion` and `type`
//! (strings). Events whose `type` starts with `com.twilio.messaging.message.` carry a
//! message's status (schema `Messaging.MessageStatus`) in `data`: `messageSid`,
//! `messageStatus` (upper case: `DELIVERED`), `errorCode` (an integer in the schema, a
//! string in some of Twilio's examples), `accountSid`, `from`, `to`, and more fields with
//! each schema version. Such an event becomes a [`StatusEvent`] of source `event_stream`:
//! status in lower case, `errorCode` as its error code, and *every* field kept as a
//! parameter — the attributes under their own names (`id`, `type`, `time`, …), the fields
//! of `data` under `data.` (`data.messageSid`, `data.tags`, …), in the order they arrived.
//! Strings are kept as they are; other values (numbers, booleans, objects, arrays, null) as
//! their JSON text, nested objects in their own order. Since Twilio adds fields with new
//! schema versions, nothing is dropped and nothing unknown is refused.
//!
//! The event's `id` identifies it (Twilio delivers at least once, so the same `id` may come
//! again): its delivery token is `ce:{id}`, which the stores keep with the event like a
//! callback's `I-Twilio-Idempotency-Token`, so a repeat adds nothing.
//!
//! What is not a message status event is not an error: an event of another type is
//! [`Member::Ignored`] (the handler counts it by [`EventType`] and answers `200`, since
//! Twilio drops an event answered `4xx`). Only a member that is not a CloudEvent, or a
//! message status event whose message or status cannot be read, is [`Member::Invalid`].

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::domain::{MessageSid, MessageStatus, Source, StatusEvent, Timestamp};

/// The `type` prefix of message status events (`….queued`, `sent`, `delivered`,
/// `undelivered`, `failed`, `read`).
pub const MESSAGE_STATUS_TYPE: &str = "com.twilio.messaging.message.";

/// The prefix of the delivery token that a stream event's `id` becomes.
pub const TOKEN_PREFIX: &str = "ce:";

/// A request body, decoded.
#[derive(Debug)]
pub struct Decoded {
    /// The body was an array (a batch), not one event object.
    pub batch: bool,
    /// Every member, in the order of the body, except that the message status events are
    /// put in the order of their `data.timestamp` when every one of them has one (Twilio
    /// does not guarantee order; arrival order decides equal ranks).
    pub members: Vec<Member>,
}

/// One member of a body.
#[derive(Debug)]
pub enum Member {
    /// A message status event, ready to record with its delivery token.
    Status { event: StatusEvent, token: String },
    /// A CloudEvent of a type statushook does not store.
    Ignored(EventType),
    /// Not a CloudEvent, or a message status event that cannot be read.
    Invalid(Invalid),
}

/// Why a body is not CloudEvents JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is neither a CloudEvent object nor an array of them")]
    NotEventOrBatch,
}

/// Why a member cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("a batch member is not a JSON object")]
    NotAnObject,
    #[error("the CloudEvent attribute {0} is missing, empty or not a string")]
    MissingAttribute(&'static str),
    #[error("{0} is missing, empty or not a string")]
    MissingField(&'static str),
    #[error("data.messageSid {0}")]
    BadSid(String),
}

/// The label an event type is counted under: its name when it is one of a few well-known
/// Twilio types, else `other`, so that the metrics' label values stay few whatever
/// arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType(&'static str);

impl EventType {
    /// Event types Twilio documents that statushook does not store; anything else is
    /// `other`.
    pub const KNOWN: &'static [&'static str] = &[
        "com.twilio.messaging.inbound-message.received",
        "com.twilio.voice.status-callback.call.initiated",
        "com.twilio.voice.status-callback.call.ringing",
        "com.twilio.voice.status-callback.call.answered",
        "com.twilio.voice.status-callback.call.completed",
        "com.twilio.conversations.message.added",
        "com.twilio.conversations.message.removed",
        "com.twilio.conversations.message.updated",
        "com.twilio.accountsecurity.verify.message.delivered",
        "com.twilio.accountsecurity.verify.message.failed",
        "com.twilio.accountsecurity.verify.message.sent",
        "com.twilio.accountsecurity.verify.message.undelivered",
    ];
    pub const OTHER: EventType = EventType("other");

    pub fn of(name: &str) -> EventType {
        EventType::KNOWN
            .iter()
            .find(|known| **known == name)
            .map_or(EventType::OTHER, |known| EventType(known))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// A JSON value with the order of every object's fields kept as it arrived (a plain
/// `serde_json::Value` sorts them).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar(serde_json::Value),
}

/// Parses a body as JSON. Done once, before the signature is checked (see [`accounts`]);
/// the handler answers a body that does not parse with `400` only once its signature
/// verified.
pub fn parse(body: &[u8]) -> Result<Node, BodyError> {
    serde_json::from_slice(body).map_err(|error| BodyError::NotJson(error.to_string()))
}

/// The distinct `data.accountSid` values of the events in a parsed body: they choose which
/// configured account tokens the signature is checked under (never whether it is valid).
pub fn accounts(body: &Node) -> Vec<&str> {
    let events: &[Node] = match body {
        Node::Array(members) => members,
        one => std::slice::from_ref(one),
    };
    let mut accounts: Vec<&str> = Vec::new();
    for event in events {
        let sid = event
            .field("data")
            .and_then(|data| data.field("accountSid"))
            .and_then(Node::as_str);
        if let Some(sid) = sid {
            if !accounts.contains(&sid) {
                accounts.push(sid);
            }
        }
    }
    accounts
}

/// Decodes a parsed body into its members.
pub fn decode(body: Node) -> Result<Decoded, BodyError> {
    let (batch, nodes) = match body {
        Node::Array(members) => (true, members),
        object @ Node::Object(_) => (false, vec![object]),
        Node::Scalar(_) => return Err(BodyError::NotEventOrBatch),
    };
    let mut members: Vec<(Option<Timestamp>, Member)> = nodes.into_iter().map(member).collect();
    // The status events change places among themselves only: the others stay where they
    // are. A stable sort: events of equal time keep the body's order.
    let slots: Vec<usize> = (0..members.len())
        .filter(|&i| matches!(members[i].1, Member::Status { .. }))
        .collect();
    if slots.len() > 1 && slots.iter().all(|&i| members[i].0.is_some()) {
        let mut order = slots.clone();
        order.sort_by_key(|&i| members[i].0);
        let mut taken: Vec<Option<(Option<Timestamp>, Member)>> =
            members.into_iter().map(Some).collect();
        let sorted: Vec<(Option<Timestamp>, Member)> =
            order.iter().filter_map(|&i| taken[i].take()).collect();
        for (slot, member) in slots.iter().zip(sorted) {
            taken[*slot] = Some(member);
        }
        members = taken.into_iter().flatten().collect();
    }
    Ok(Decoded {
        batch,
        members: members.into_iter().map(|(_, member)| member).collect(),
    })
}

/// One member, with the `data.timestamp` of a message status event.
fn member(node: Node) -> (Option<Timestamp>, Member) {
    let Node::Object(attributes) = node else {
        return (None, Member::Invalid(Invalid::NotAnObject));
    };
    let event = Node::Object(attributes);
    for name in ["specversion", "id", "source"] {
        if event
            .field(name)
            .and_then(Node::as_str)
            .is_none_or(str::is_empty)
        {
            return (None, Member::Invalid(Invalid::MissingAttribute(name)));
        }
    }
    let Some(kind) = event
        .field("type")
        .and_then(Node::as_str)
        .filter(|t| !t.is_empty())
    else {
        return (None, Member::Invalid(Invalid::MissingAttribute("type")));
    };
    if !kind.starts_with(MESSAGE_STATUS_TYPE) {
        return (None, Member::Ignored(EventType::of(kind)));
    }
    match status_event(event) {
        Ok((time, event, token)) => (time, Member::Status { event, token }),
        Err(invalid) => (None, Member::Invalid(invalid)),
    }
}

/// A message status event's domain value, delivery token and `data.timestamp`.
fn status_event(event: Node) -> Result<(Option<Timestamp>, StatusEvent, String), Invalid> {
    let data = event.field("data");
    let text = |name: &'static str| {
        data.and_then(|data| data.field(name))
            .and_then(Node::as_str)
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let sid = text("messageSid").ok_or(Invalid::MissingField("data.messageSid"))?;
    let sid = MessageSid::parse(sid).map_err(Invalid::BadSid)?;
    let status = text("messageStatus")
        .and_then(|raw| MessageStatus::parse(&raw.to_ascii_lowercase()).ok())
        .ok_or(Invalid::MissingField("data.messageStatus"))?;
    let error_code = data
        .and_then(|data| data.field("errorCode"))
        .and_then(error_code);
    let raw_dlr_done_date = text("rawDlrDoneDate").and_then(dlr_done_date);
    let time = text("timestamp").and_then(|raw| Timestamp::parse_rfc3339(raw).ok());
    let id = event
        .field("id")
        .and_then(Node::as_str)
        .ok_or(Invalid::MissingAttribute("id"))?;
    let token = format!("{TOKEN_PREFIX}{id}");
    let event = StatusEvent::new(
        sid,
        status,
        error_code,
        raw_dlr_done_date,
        Source::EventStream,
        params(event),
    );
    Ok((time, event, token))
}

/// An error code from an integer, or from a string of digits.
fn error_code(node: &Node) -> Option<u32> {
    match node {
        Node::Scalar(serde_json::Value::Number(number)) => {
            number.as_u64().and_then(|code| u32::try_from(code).ok())
        }
        Node::Scalar(serde_json::Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
}

/// `RawDlrDoneDate` in the form callbacks carry it, `YYMMDDhhmm` (or with seconds), so
/// that the rule for equal ranks compares like with like: kept when it already is in that
/// form; an RFC 3339 time (as some stream events carry it) becomes its UTC minute in that
/// form; anything else is not used as a date (the parameter is kept all the same).
fn dlr_done_date(raw: &str) -> Option<String> {
    if matches!(raw.len(), 10 | 12) && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(raw.to_owned());
    }
    let time = chrono::DateTime::parse_from_rfc3339(raw).ok()?;
    Some(
        time.with_timezone(&chrono::Utc)
            .format("%y%m%d%H%M")
            .to_string(),
    )
}

/// Every attribute of the event under its own name, the fields of its `data` under
/// `data.`, in arrival order.
fn params(event: Node) -> Vec<(String, String)> {
    let Node::Object(attributes) = event else {
        return Vec::new();
    };
    let mut params = Vec::with_capacity(attributes.len() + 16);
    for (name, value) in attributes {
        match value {
            Node::Object(fields) if name == "data" => {
                for (field, value) in fields {
                    params.push((format!("data.{field}"), value.into_text()));
                }
            }
            value => params.push((name, value.into_text())),
        }
    }
    params
}

impl Node {
    /// The first field `name` of an object.
    pub fn field(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Object(fields) => fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(serde_json::Value::String(text)) => Some(text),
            _ => None,
        }
    }

    /// A string as it is; anything else as its JSON text, objects in their own order.
    pub fn into_text(self) -> String {
        match self {
            Node::Scalar(serde_json::Value::String(text)) => text,
            other => other.to_json(),
        }
    }

    /// The node's JSON text, compact, objects in their own order: it parses back into the
    /// same node.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Node::Scalar(value) => out.push_str(&value.to_string()),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Node::Object(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(name.clone()).to_string());
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Scalar(value.into()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Scalar(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Scalar(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Scalar(
            serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into),
        ))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Scalar(value.into()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Node, E> {
        Ok(Node::Scalar(value.into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(serde_json::Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((name, value)) = map.next_entry::<String, Node>()? {
            fields.push((name, value));
        }
        Ok(Node::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "SM0123456789abcdef0123456789abcdef";

    /// A `com.twilio.messaging.message.delivered` event as Twilio's documentation shows
    /// one (schema version 7), with an error code and tags.
    fn delivered(id: &str, status: &str, timestamp: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","type":"com.twilio.messaging.message.{}","source":"/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/{SID}.json","id":"{id}","dataschema":"https://events-schemas.twilio.com/Messaging.MessageStatus/7","datacontenttype":"application/json","time":"{timestamp}","data":{{"messageSid":"{SID}","timestamp":"{timestamp}","accountSid":"AC0123456789abcdef0123456789abcdef","eventName":"com.twilio.messaging.message.{}","from":"+15005550006","to":"+15005550009","messageStatus":"{status}","errorCode":30003,"tags":{{"b":"2","a":1}},"numberOfSegments":1}}}}"#,
            status.to_ascii_lowercase(),
            status.to_ascii_lowercase()
        )
    }

    fn decoded(body: &str) -> Decoded {
        decode(parse(body.as_bytes()).expect("JSON")).expect("CloudEvents")
    }

    #[test]
    fn a_message_status_event_becomes_a_status_event_with_every_field_kept_in_order() {
        let body = delivered("EZ1", "UNDELIVERED", "2026-11-26T09:00:01.000Z");
        let decoded = decoded(&body);
        assert!(!decoded.batch);
        let [Member::Status { event, token }] = decoded.members.as_slice() else {
            panic!("one status event: {:?}", decoded.members);
        };
        assert_eq!(token, "ce:EZ1");
        assert_eq!(event.sid().as_str(), SID);
        assert_eq!(event.status().as_str(), "undelivered");
        assert_eq!(event.error_code(), Some(30003));
        assert_eq!(event.source(), Source::EventStream);
        let names: Vec<&str> = event.params().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "specversion",
                "type",
                "source",
                "id",
                "dataschema",
                "datacontenttype",
                "time",
                "data.messageSid",
                "data.timestamp",
                "data.accountSid",
                "data.eventName",
                "data.from",
                "data.to",
                "data.messageStatus",
                "data.errorCode",
                "data.tags",
                "data.numberOfSegments"
            ]
        );
        assert_eq!(event.param("data.messageStatus"), Some("UNDELIVERED"));
        assert_eq!(event.param("data.errorCode"), Some("30003"));
        assert_eq!(event.param("data.tags"), Some(r#"{"b":"2","a":1}"#));
    }

    #[test]
    fn error_codes_come_as_integers_or_strings_and_dlr_dates_in_the_callbacks_form() {
        let cases = [
            (r#""errorCode":30005"#, Some(30005)),
            (r#""errorCode":"30005""#, Some(30005)),
            (r#""errorCode":null"#, None),
            (r#""errorCode":"""#, None),
            (r#""errorCode":-1"#, None),
        ];
        for (field, expected) in cases {
            let body = format!(
                r#"{{"specversion":"1.0","id":"EZ2","source":"s","type":"com.twilio.messaging.message.failed","data":{{"messageSid":"{SID}","messageStatus":"FAILED",{field}}}}}"#
            );
            let decoded = decoded(&body);
            let [Member::Status { event, .. }] = decoded.members.as_slice() else {
                panic!("{field}");
            };
            assert_eq!(event.error_code(), expected, "{field}");
        }
        assert_eq!(dlr_done_date("2611260905"), Some("2611260905".into()));
        assert_eq!(dlr_done_date("261126090530"), Some("261126090530".into()));
        assert_eq!(
            dlr_done_date("2026-11-26T10:05:30.5+01:00"),
            Some("2611260905".into())
        );
        assert_eq!(dlr_done_date("yesterday"), None);
    }

    #[test]
    fn a_batch_keeps_its_members_and_orders_status_events_by_their_timestamp() {
        let body = format!(
            "[{},{},{},{}]",
            delivered("EZ3", "DELIVERED", "2026-11-26T09:00:03Z"),
            r#"{"specversion":"1.0","id":"EZ4","source":"s","type":"com.twilio.voice.status-callback.call.completed","data":{}}"#,
            delivered("EZ5", "SENT", "2026-11-26T09:00:02Z"),
            "42",
        );
        let decoded = decoded(&body);
        assert!(decoded.batch);
        let kinds: Vec<String> = decoded
            .members
            .iter()
            .map(|member| match member {
                Member::Status { token, .. } => token.clone(),
                Member::Ignored(kind) => kind.as_str().to_owned(),
                Member::Invalid(invalid) => invalid.to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ce:EZ5",
                "com.twilio.voice.status-callback.call.completed",
                "ce:EZ3",
                "a batch member is not a JSON object"
            ]
        );
    }

    #[test]
    fn what_is_not_a_readable_cloudevent_is_invalid_and_other_types_are_ignored() {
        let cases = [
            (r#"{"id":"EZ6","source":"s","type":"t"}"#, "specversion"),
            (r#"{"specversion":"1.0","source":"s","type":"t"}"#, "id"),
            (
                r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#,
                "id",
            ),
            (r#"{"specversion":"1.0","id":"EZ6","type":"t"}"#, "source"),
            (r#"{"specversion":"1.0","id":"EZ6","source":"s"}"#, "type"),
            (
                r#"{"specversion":"1.0","id":"EZ6","source":"s","type":"com.twilio.messaging.message.sent"}"#,
                "data.messageSid",
            ),
            (
                r#"{"specversion":"1.0","id":"EZ6","source":"s","type":"com.twilio.messaging.message.sent","data":{"messageSid":"SM1","messageStatus":"SENT"}}"#,
                r#"data.messageSid "SM1""#,
            ),
            (
                &format!(
                    r#"{{"specversion":"1.0","id":"EZ6","source":"s","type":"com.twilio.messaging.message.sent","data":{{"messageSid":"{SID}","messageStatus":""}}}}"#
                ),
                "data.messageStatus",
            ),
        ];
        for (body, expected) in cases {
            let decoded = decoded(body);
            match decoded.members.as_slice() {
                [Member::Invalid(invalid)] => {
                    assert!(invalid.to_string().contains(expected), "{body}: {invalid}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let other =
            decoded(r#"{"specversion":"1.0","id":"EZ7","source":"s","type":"com.example.thing"}"#);
        assert!(matches!(
            other.members.as_slice(),
            [Member::Ignored(EventType::OTHER)]
        ));
        assert_eq!(
            parse(b"{").map(|_| ()),
            Err(BodyError::NotJson(
                "EOF while parsing an object at line 1 column 1".into()
            ))
        );
        assert_eq!(
            decode(parse(b"\"x\"").expect("JSON")).map(|_| ()).err(),
            Some(BodyError::NotEventOrBatch)
        );
        assert!(decoded("[]").members.is_empty());
    }

    #[test]
    fn the_accounts_a_body_names_are_found_once_each() {
        let body = format!(
            "[{},{},{}]",
            delivered("EZ8", "SENT", "2026-11-26T09:00:02Z"),
            delivered("EZ9", "DELIVERED", "2026-11-26T09:00:03Z"),
            r#"{"data":{"accountSid":"AC000000000000000000000000000000bb"}}"#
        );
        let parsed = parse(body.as_bytes()).expect("JSON");
        assert_eq!(
            accounts(&parsed),
            [
                "AC0123456789abcdef0123456789abcdef",
                "AC000000000000000000000000000000bb"
            ]
        );
    }
}
