//! What the sled store keeps on disk: value layouts and key encodings.
//!
//! Everything lives in one sled tree, so that one group's writes (records, events, index
//! entries, counters) go into one `Batch`, which sled applies atomically, also across a
//! crash. Each key starts with a one-byte kind:
//!
//! | kind | key                                   | value                                  |
//! |------|---------------------------------------|----------------------------------------|
//! | `m`  | `m` sid                               | [`Record`]: parties, transitions, tokens |
//! | `v`  | `v` seq(u64)                          | a block of [`EventBody`]s (`events.rs`) |
//! | `s`  | `s` status(u8) updated_at sid         | empty, or `replaced_at` (history)      |
//! | `e`  | `e` error(u32) updated_at sid         | empty, or `replaced_at` (history)      |
//! | `t`  | `t` to 0x00 sid                       | empty (by recipient)                   |
//! | `f`  | `f` from 0x00 sid                     | empty (by sender)                      |
//! | `a`  | `a` account 0x00 sid                  | empty (by account)                     |
//! | `c`  | `c` S status(u8) / `c` E error(u32)   | count (u64)                            |
//! | `c`  | `c` H/M hour/minute(u32) status(u8)   | count (u64)                            |
//! | `c`  | `c` h/m hour/minute(u32) error(u32)   | count (u64)                            |
//! | `k`  | `k` name                              | the service's own state (`put_meta`)   |
//!
//! A callback rewrites its message's small record and adds one event to its group's block:
//! the parameters of earlier events are never rewritten. History entries (positions a
//! message has left) exist only while a listing may read them (`listings.rs`).
//! Integers are big-endian, so byte order is time order and every listing is a range scan.
//! Values are bincode with variable-length integers.
//!
//! The sequence number of an event is its arrival time from the writer's clock, which
//! is strictly increasing and handed out in commit order: the change feed, the listing
//! positions and the paging snapshot all use that one clock. Events are keyed by it, so
//! the events themselves, in key order, are the change feed, and new ones are appended at
//! the end of the tree; a message finds its own through the arrival times in its record
//! (the block keyed at or before each).

use serde::{Deserialize, Serialize};

use super::params::Packed;
use crate::domain::counters::{Counted, Counter, Span, Width};
use crate::domain::{effective, MessageSid, MessageState, Parties, Timestamp, Transition};
use crate::store::StoreError;

/// A message as stored: enough to replay its state at any time without its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub parties: Parties,
    /// Every stored transition, in arrival order (which is `received_at` order).
    pub transitions: Vec<Transition>,
    /// `I-Twilio-Idempotency-Token`s of the stored events. A token names one delivery of
    /// one callback, which concerns one message, so the message is where to remember it.
    pub tokens: Vec<String>,
}

impl Record {
    /// The current state; `None` for a record without transitions (never stored).
    pub fn state(&self) -> Option<MessageState> {
        MessageState::replay(&self.parties, &self.transitions)
    }

    /// The state as it stood at `at`.
    pub fn state_at(&self, at: Timestamp) -> Option<MessageState> {
        MessageState::as_of(&self.parties, &self.transitions, at)
    }
}

/// One event: its message and its parameters, packed against the message (see
/// [`super::params`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    pub sid: String,
    pub params: Packed,
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    use bincode::Options;
    bincode::options()
        .serialize(value)
        .map_err(StoreError::corrupt)
}

pub fn decode<'a, T: Deserialize<'a>>(value: &'a [u8]) -> Result<T, StoreError> {
    use bincode::Options;
    bincode::options()
        .with_limit(value.len() as u64)
        .deserialize(value)
        .map_err(StoreError::corrupt)
}

pub fn record_key(sid: &MessageSid) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + MessageSid::LEN);
    key.push(b'm');
    key.extend_from_slice(sid.as_str().as_bytes());
    key
}

pub const EVENT: u8 = b'v';

/// The key of the event stored at `seq`.
pub fn event_key(seq: u64) -> [u8; 9] {
    let mut key = [EVENT; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number of an event key.
pub fn event_seq(key: &[u8]) -> Result<u64, StoreError> {
    match key {
        [EVENT, seq @ ..] => {
            Ok(u64::from_be_bytes(seq.try_into().map_err(|_| {
                StoreError::corrupt("an event key is malformed")
            })?))
        }
        _ => Err(StoreError::corrupt("an event key is malformed")),
    }
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

pub fn counter_key(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut key = vec![b'c', kind];
    key.extend_from_slice(value);
    key
}

/// The key of a counter (see `domain::counters` for which counters there are).
pub fn key_of(counter: &Counter) -> Vec<u8> {
    let (status_kind, error_kind) = match counter.span {
        Span::AllTime => (STATUS_COUNTER, ERROR_COUNTER),
        Span::Bucket(width, _) => bucket_kinds(width),
    };
    let (kind, value) = match counter.counted {
        Counted::Status(status) => (status_kind, vec![status.code()]),
        Counted::Error(error) => (error_kind, error.to_be_bytes().to_vec()),
    };
    match counter.span {
        Span::AllTime => counter_key(kind, &value),
        Span::Bucket(_, bucket) => bucket_key(kind, bucket, &value),
    }
}

/// The kinds of the counters of buckets `width` wide: by status, by error code.
pub fn bucket_kinds(width: Width) -> (u8, u8) {
    match width {
        Width::Hour => (STATUS_HOURLY, ERROR_HOURLY),
        Width::Minute => (STATUS_MINUTELY, ERROR_MINUTELY),
    }
}

/// `c kind bucket value`: the bucket (hour or minute number since the epoch) comes first,
/// so the buckets of a time range are one key range.
pub fn bucket_key(kind: u8, bucket: u64, value: &[u8]) -> Vec<u8> {
    let bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
    let mut key = counter_key(kind, &bucket.to_be_bytes());
    key.extend_from_slice(value);
    key
}

/// A counter's value: a big-endian u64 (0 if malformed).
pub fn decode_count(value: &[u8]) -> u64 {
    value.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// `k` name: the service's own state (e.g. forwarding progress), see `Store::put_meta`.
pub fn meta_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(b'k');
    key.extend_from_slice(name);
    key
}

/// Written by `/readyz` to prove the store takes writes.
pub const PROBE_KEY: &[u8] = b"p";
/// The writer's clock: the last arrival time handed out, so times stay increasing across
/// restarts even if the system clock steps back.
pub const CLOCK_KEY: &[u8] = b"T";

/// Index keys. Entries of the time-ordered indexes end in `updated_at ++ sid`, so within
/// one prefix the newest message comes last and a listing walks the prefix backwards.
///
/// Every message has exactly one *live* entry in the status index (under [`NO_STATUS`]
/// until a known status arrives), so the newest-first listing of all messages is a merge
/// of the status prefixes and needs no index of its own. When a message moves, its old
/// entries stay for a while as *history*, their value the time they were replaced: paging
/// lists a message at the entry that was live at its snapshot, which is exactly one of
/// them. A sweep of the job leader (`SledStore::forget_history`, every few minutes) removes
/// history older than the cursor lifetime and a margin. The recipient and
/// sender indexes end in the SID alone: they never move, and a query sorts the messages
/// of one number itself.
pub mod index {
    use super::*;

    pub const BY_STATUS: u8 = b's';
    pub const BY_ERROR: u8 = b'e';
    pub const BY_TO: u8 = b't';
    pub const BY_FROM: u8 = b'f';
    pub const BY_ACCOUNT: u8 = b'a';
    /// The status-index code of a message that has no known status yet.
    pub const NO_STATUS: u8 = 0xff;

    /// The time-ordered entries (status, and error code if any) of a message in `state`.
    pub fn timed(sid: &MessageSid, state: &MessageState) -> Vec<Vec<u8>> {
        let status = state.status.map_or(NO_STATUS, |s| s.code());
        let mut keys = vec![prefix(BY_STATUS, &[status])];
        if let Some(error) = state.error_code {
            keys.push(prefix(BY_ERROR, &error.to_be_bytes()));
        }
        for key in &mut keys {
            key.extend_from_slice(&state.updated_at.to_be_bytes());
            key.extend_from_slice(sid.as_str().as_bytes());
        }
        keys
    }

    /// The recipient, sender and account entries of a message with `parties`.
    pub fn numbers(sid: &MessageSid, parties: &Parties) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for (kind, number) in [
            (BY_TO, &parties.to),
            (BY_FROM, &parties.from),
            (BY_ACCOUNT, &parties.account_sid),
        ] {
            if let Some(number) = number {
                let mut key = prefix(kind, &text_value(number));
                key.extend_from_slice(sid.as_str().as_bytes());
                keys.push(key);
            }
        }
        keys
    }

    /// Every entry a record implies: live ones with an empty value, history ones (the
    /// positions it left) with the time each was replaced, oldest first.
    pub fn implied(sid: &MessageSid, record: &Record) -> Vec<(Vec<u8>, Option<Timestamp>)> {
        let mut entries = Vec::new();
        let mut state: Option<MessageState> = None;
        // An echo moves nothing (see `domain::is_echo`): it leaves no history.
        for (_, transition) in effective(&record.transitions) {
            if let Some(old) = &state {
                for key in timed(sid, old) {
                    entries.push((key, Some(transition.received_at)));
                }
            }
            match state.as_mut() {
                Some(state) => state.apply(transition),
                None => state = Some(MessageState::first(record.parties.clone(), transition)),
            }
        }
        if let Some(state) = &state {
            entries.extend(timed(sid, state).into_iter().map(|key| (key, None)));
        }
        entries.extend(numbers(sid, &record.parties).into_iter().map(|k| (k, None)));
        entries
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

    /// When an entry was replaced: `None` for a live entry (empty value).
    pub fn replaced_at(value: &[u8]) -> Option<Timestamp> {
        let bytes: [u8; 8] = value.try_into().ok()?;
        Some(Timestamp(u64::from_be_bytes(bytes)))
    }
}
