//! What the store keeps on disk: record layouts and key encodings.
//!
//! Everything lives in one sled tree, so that one callback's writes (record, event,
//! index entries, counters) go into one `Batch`, which sled applies atomically, also
//! across a crash. Each key starts with a one-byte kind:
//!
//! | kind | key                                   | value                   |
//! |------|---------------------------------------|-------------------------|
//! | `m`  | `m` sid                               | [`MessageRecord`], then each [`EventRecord`] |
//! | `s`  | `s` status(u8) updated_at sid         | empty (by status)       |
//! | `e`  | `e` error(u32) updated_at sid         | empty (by error code)   |
//! | `t`  | `t` to 0x00 sid                       | empty (by recipient)    |
//! | `f`  | `f` from 0x00 sid                     | empty (by sender)       |
//! | `c`  | `c` S status(u8) / `c` E error(u32)   | count (u64)             |
//! | `c`  | `c` H/M hour/minute(u32) status(u8)   | count (u64)             |
//! | `c`  | `c` h/m hour/minute(u32) error(u32)   | count (u64)             |
//!
//! Integers are big-endian, so byte order is time order and every listing is a range
//! scan. Values are bincode.

use serde::{Deserialize, Serialize};

use super::params::{self, Context, Packed};
use crate::domain::{KnownStatus, MessageSid, Source, StatusEvent, Timestamp};

/// The current state of one message. Keyed by its SID in the `messages` tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// The known status of highest rank seen, as a [`KnownStatus::code`]; `None` until a
    /// known status arrives.
    pub status: Option<u8>,
    /// The error code reported with the current status.
    pub error_code: Option<u32>,
    /// `RawDlrDoneDate` of the event that set the current status, to order equal ranks.
    pub status_dlr_done: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How many events the message has; the next event's sequence number.
    pub event_count: u32,
    /// (status, error code) of every stored event, so a duplicate is found without reading
    /// the history.
    pub seen: Vec<(String, Option<u32>)>,
    /// `I-Twilio-Idempotency-Token`s of the stored events. A token names one delivery of
    /// one callback, which concerns one message, so the message is where to remember it;
    /// that costs no extra read or write per callback.
    pub tokens: Vec<String>,
}

/// One stored transition. A message's events follow its record in the same value, in
/// arrival order. Their parameters are packed against the record (see [`super::params`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    status: String,
    error_code: Option<u32>,
    received_at: Timestamp,
    source: Source,
    raw_dlr_done_date: Option<String>,
    params: Packed,
}

/// One transition as it arrived, every parameter unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub status: String,
    pub error_code: Option<u32>,
    pub received_at: Timestamp,
    pub source: Source,
    pub raw_dlr_done_date: Option<String>,
    pub params: Vec<(String, String)>,
}

impl MessageRecord {
    pub fn known_status(&self) -> Option<KnownStatus> {
        self.status.and_then(KnownStatus::from_code)
    }

    /// Whether `event` (delivered with `token`, if any) is already stored.
    pub fn is_duplicate(&self, event: &StatusEvent, token: Option<&str>) -> bool {
        token.is_some_and(|token| self.tokens.iter().any(|seen| seen == token))
            || self.seen.iter().any(|(status, code)| {
                status == event.status().as_str() && *code == event.error_code()
            })
    }

    /// The record after `event`, received at `at`, is added to `previous` (or starts a new
    /// message). Account, sender, recipient and messaging service are set by the first
    /// event that carries them and never change after (they cannot change for a message,
    /// and stored events refer to them). The current status moves only to a higher rank, or to an equal rank that
    /// is newer by `RawDlrDoneDate`, else by arrival.
    pub fn with_event(
        previous: Option<&MessageRecord>,
        event: &StatusEvent,
        token: Option<&str>,
        at: Timestamp,
    ) -> MessageRecord {
        let mut record = previous.cloned().unwrap_or_else(|| MessageRecord {
            account_sid: None,
            from: None,
            to: None,
            messaging_service_sid: None,
            status: None,
            error_code: None,
            status_dlr_done: None,
            created_at: at,
            updated_at: at,
            event_count: 0,
            seen: Vec::new(),
            tokens: Vec::new(),
        });
        for (field, name) in [
            (&mut record.account_sid, "AccountSid"),
            (&mut record.from, "From"),
            (&mut record.to, "To"),
            (&mut record.messaging_service_sid, "MessagingServiceSid"),
        ] {
            if field.is_none() {
                *field = event.param(name).map(str::to_owned);
            }
        }
        if let Some(known) = event.status().known() {
            if record.takes_over(known, event.raw_dlr_done_date()) {
                record.status = Some(known.code());
                record.error_code = event.error_code();
                record.status_dlr_done = event.raw_dlr_done_date().map(str::to_owned);
            }
        }
        record.updated_at = at;
        record.event_count += 1;
        record
            .seen
            .push((event.status().as_str().to_owned(), event.error_code()));
        record.tokens.extend(token.map(str::to_owned));
        record
    }

    /// The record as it stood at `at`, replayed from its `events` (this record's own, in
    /// arrival order); `None` if the message did not exist yet. Paging uses it to list
    /// messages as they were when the first page was served.
    pub fn as_of(&self, events: &[EventRecord], at: Timestamp) -> Option<MessageRecord> {
        if self.updated_at <= at {
            return Some(self.clone());
        }
        if self.created_at > at {
            return None;
        }
        let mut record = MessageRecord {
            status: None,
            error_code: None,
            status_dlr_done: None,
            updated_at: self.created_at,
            event_count: 0,
            seen: Vec::new(),
            tokens: Vec::new(),
            ..self.clone()
        };
        for event in events.iter().filter(|event| event.received_at <= at) {
            if let Some(known) = KnownStatus::parse(&event.status) {
                if record.takes_over(known, event.raw_dlr_done_date.as_deref()) {
                    record.status = Some(known.code());
                    record.error_code = event.error_code;
                    record.status_dlr_done = event.raw_dlr_done_date.clone();
                }
            }
            record.updated_at = event.received_at;
            record.event_count += 1;
            record.seen.push((event.status.clone(), event.error_code));
        }
        Some(record)
    }

    fn takes_over(&self, new: KnownStatus, new_dlr: Option<&str>) -> bool {
        let Some(current) = self.known_status() else {
            return true;
        };
        match new.rank().cmp(&current.rank()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            // RawDlrDoneDate is YYMMDDhhmm (sometimes with seconds): fixed-width digits, so
            // byte order is time order. Without both dates, the later arrival wins.
            std::cmp::Ordering::Equal => match (self.status_dlr_done.as_deref(), new_dlr) {
                (Some(current), Some(new)) => new >= current,
                _ => true,
            },
        }
    }
}

impl EventRecord {
    /// The stored form of `event`; `record` is its message with the event applied.
    pub fn new(event: StatusEvent, at: Timestamp, record: &MessageRecord) -> EventRecord {
        let status = event.status().as_str().to_owned();
        let error_code = event.error_code();
        let source = event.source();
        let raw_dlr_done_date = event.raw_dlr_done_date().map(str::to_owned);
        let sid = event.sid().as_str().to_owned();
        let cx = Context {
            sid: &sid,
            status: &status,
            record,
        };
        let params = params::pack(event.into_params(), &cx);
        EventRecord {
            status,
            error_code,
            received_at: at,
            source,
            raw_dlr_done_date,
            params,
        }
    }

    /// The event as it arrived; `record` is its message as stored.
    pub fn unpack(self, sid: &MessageSid, record: &MessageRecord) -> StoredEvent {
        let cx = Context {
            sid: sid.as_str(),
            status: &self.status,
            record,
        };
        let params = params::unpack(self.params, &cx);
        StoredEvent {
            status: self.status,
            error_code: self.error_code,
            received_at: self.received_at,
            source: self.source,
            raw_dlr_done_date: self.raw_dlr_done_date,
            params,
        }
    }
}

pub fn record_key(sid: &MessageSid) -> Vec<u8> {
    keyed(b'm', sid.as_str().as_bytes())
}

/// Messages by current status / by the error code of their current status.
pub const STATUS_COUNTER: u8 = b'S';
pub const ERROR_COUNTER: u8 = b'E';
/// The same, per hour and per minute of the messages' `updated_at`, so that stats over a
/// time window add up a few buckets instead of counting index entries.
pub const STATUS_HOURLY: u8 = b'H';
pub const STATUS_MINUTELY: u8 = b'M';
pub const ERROR_HOURLY: u8 = b'h';
pub const ERROR_MINUTELY: u8 = b'm';
pub const HOUR: u64 = 3_600_000_000;
pub const MINUTE: u64 = 60_000_000;

pub fn counter_key(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut key = vec![b'c', kind];
    key.extend_from_slice(value);
    key
}

/// `c kind bucket value`: the bucket (hour or minute number since the epoch) comes first,
/// so the buckets of a time range are one key range.
pub fn bucket_key(kind: u8, bucket: u64, value: &[u8]) -> Vec<u8> {
    let bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
    let mut key = counter_key(kind, &bucket.to_be_bytes());
    key.extend_from_slice(value);
    key
}

/// Written by `/readyz` to prove the store takes writes.
pub const PROBE_KEY: &[u8] = b"p";
/// The writer's clock: the last arrival time handed out, so times stay increasing across
/// restarts even if the system clock steps back.
pub const CLOCK_KEY: &[u8] = b"T";

fn keyed(kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len() + 4);
    key.push(kind);
    key.extend_from_slice(rest);
    key
}

/// Index keys. Entries of the time-ordered indexes end in `updated_at ++ sid`, so within
/// one prefix the newest message comes last and a listing walks the prefix backwards.
///
/// Every message has exactly one entry in the status index (under [`NO_STATUS`] until a
/// known status arrives), so the newest-first listing of all messages is a merge of the
/// status prefixes and needs no index of its own: one index entry fewer to move on every
/// callback. The recipient and sender indexes end in the SID alone: they never move, and a
/// query sorts the messages of one number itself (falling back to the time-ordered walk
/// for a sender with very many messages).
pub mod index {
    use super::*;

    pub const BY_STATUS: u8 = b's';
    pub const BY_ERROR: u8 = b'e';
    pub const BY_TO: u8 = b't';
    pub const BY_FROM: u8 = b'f';
    /// The status-index code of a message that has no known status yet.
    pub const NO_STATUS: u8 = 0xff;

    /// The index entries a record implies. The writer removes the entries of the old record
    /// that the new one does not imply and inserts the new ones, in the same atomic batch as
    /// the record, which keeps indexes and records equal.
    pub fn entries(sid: &MessageSid, record: &MessageRecord) -> Vec<Vec<u8>> {
        let mut timed = vec![prefix(BY_STATUS, &[record.status.unwrap_or(NO_STATUS)])];
        if let Some(error) = record.error_code {
            timed.push(prefix(BY_ERROR, &error.to_be_bytes()));
        }
        for key in &mut timed {
            key.extend_from_slice(&record.updated_at.to_be_bytes());
            key.extend_from_slice(sid.as_str().as_bytes());
        }
        for (kind, number) in [(BY_TO, &record.to), (BY_FROM, &record.from)] {
            if let Some(number) = number {
                let mut key = prefix(kind, &text_value(number));
                key.extend_from_slice(sid.as_str().as_bytes());
                timed.push(key);
            }
        }
        timed
    }

    /// `kind ++ value`: the prefix shared by every entry of one index value.
    pub fn prefix(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(1 + value.len() + 8 + MessageSid::LEN);
        key.push(kind);
        key.extend_from_slice(value);
        key
    }

    /// A text value ends in a 0 byte so that `+1555` and `+15551` have disjoint prefixes.
    pub fn text_value(text: &str) -> Vec<u8> {
        let mut value = text.as_bytes().to_vec();
        value.push(0);
        value
    }

    /// Splits the `updated_at ++ sid` tail off an index key.
    pub fn tail(key: &[u8]) -> Option<(Timestamp, &str)> {
        let split = key.len().checked_sub(8 + MessageSid::LEN)?;
        let (time, sid) = key[split..].split_at(8);
        let time = u64::from_be_bytes(time.try_into().ok()?);
        Some((Timestamp(time), std::str::from_utf8(sid).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str, dlr: Option<&str>) -> StatusEvent {
        let mut params = vec![
            (
                "MessageSid".to_string(),
                "SM0123456789abcdef0123456789abcdef".to_string(),
            ),
            ("MessageStatus".to_string(), status.to_string()),
        ];
        if let Some(dlr) = dlr {
            params.push(("RawDlrDoneDate".into(), dlr.into()));
        }
        StatusEvent::from_params(params, Source::Callback).expect("valid")
    }

    fn status_after(events: &[StatusEvent]) -> Option<KnownStatus> {
        let mut record = None;
        for (i, e) in events.iter().enumerate() {
            record = Some(MessageRecord::with_event(
                record.as_ref(),
                e,
                None,
                Timestamp(i as u64),
            ));
        }
        record.and_then(|r| r.known_status())
    }

    #[test]
    fn equal_rank_goes_to_the_later_dlr_date_then_the_later_arrival() {
        let late = event("failed", Some("2611260905"));
        let early = event("delivered", Some("2611260901"));
        assert_eq!(
            status_after(&[late.clone(), early.clone()]),
            Some(KnownStatus::Failed)
        );
        assert_eq!(status_after(&[early, late]), Some(KnownStatus::Failed));
        let plain = [event("delivered", None), event("undelivered", None)];
        assert_eq!(status_after(&plain), Some(KnownStatus::Undelivered));
    }

    #[test]
    fn lower_ranks_and_unknown_statuses_do_not_move_the_current_status() {
        let events = [
            event("delivered", None),
            event("sent", None),
            event("bounced", None),
        ];
        assert_eq!(status_after(&events), Some(KnownStatus::Delivered));
        assert_eq!(status_after(&[event("bounced", None)]), None);
    }
}
