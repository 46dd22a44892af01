//! Listing messages from the indexes.
//!
//! A listing walks index entries newest first and reads the record of each candidate,
//! keeping those that pass every filter. The index walked is the most selective one the
//! filters allow: the recipient index for `to`, the sender index for `from` (unless the
//! sender has very many messages), the error-code index for `error_code`, the
//! status index for `status` (one range per status, merged), else every status range merged
//! (each message has exactly one status entry, so the merge is the newest-first order of
//! all messages). `since`, `until` and the cursor bound the ranges, so a page reads about
//! `limit` entries however large the store is.
//!
//! Stats over a time window are in `stats.rs`.
//!
//! Paging lists the messages as they stood when the first page was served (the snapshot
//! time, carried in the cursor with the position (updated_at, sid) of the last message
//! returned). Entries below the cursor belong to messages unchanged since the snapshot, so
//! their current state is their snapshot state. A message updated since has left its old
//! position for a newer one; each page also looks at the entries newer than the snapshot,
//! replays those messages' events up to the snapshot, and puts each back at its old
//! position when that lies below the cursor. So every message is visited exactly once,
//! whatever callbacks arrive meanwhile, and messages created meanwhile are not in the pages.
//! That look costs one read per message changed since the snapshot, on each page.

use std::cmp::Reverse;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::record::index::{self, BY_ERROR, BY_FROM, BY_STATUS, BY_TO, NO_STATUS};
use super::record::MessageRecord;
use super::{decode_record, Store, StoreError};
use crate::domain::{KnownStatus, MessageSid, Timestamp};

/// The most messages of one sender that a listing sorts itself; beyond, it walks by time.
const MAX_SORTED: usize = 10_000;

/// Filters of a listing; `None` and empty mean "any".
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub statuses: Vec<KnownStatus>,
    pub error_code: Option<u32>,
    pub to: Option<String>,
    pub from: Option<String>,
    /// Inclusive lower bound on `updated_at`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `updated_at`.
    pub until: Option<Timestamp>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// A position in the newest-first order of a listing taken at `snapshot`: the last message
/// a page returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    snapshot: Timestamp,
    updated_at: Timestamp,
    sid: MessageSid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = self.snapshot.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.updated_at.to_be_bytes());
        bytes.extend_from_slice(self.sid.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(raw: &str) -> Result<Cursor, String> {
        let invalid = || "cursor is not one this service returned".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        if bytes.len() != 16 + MessageSid::LEN {
            return Err(invalid());
        }
        let (snapshot, rest) = bytes.split_at(8);
        let (time, sid) = rest.split_at(8);
        let snapshot = u64::from_be_bytes(snapshot.try_into().map_err(|_| invalid())?);
        let time = u64::from_be_bytes(time.try_into().map_err(|_| invalid())?);
        let sid = std::str::from_utf8(sid).map_err(|_| invalid())?;
        let sid = MessageSid::parse(sid).map_err(|_| invalid())?;
        Ok(Cursor {
            snapshot: Timestamp(snapshot),
            updated_at: Timestamp(time),
            sid,
        })
    }

    fn position(&self) -> (Timestamp, &str) {
        (self.updated_at, self.sid.as_str())
    }

    /// The index-key tail `updated_at ++ sid` at this position.
    fn tail(&self) -> Vec<u8> {
        let mut tail = self.updated_at.to_be_bytes().to_vec();
        tail.extend_from_slice(self.sid.as_str().as_bytes());
        tail
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<(MessageSid, MessageRecord)>,
    pub next: Option<Cursor>,
}

impl Store {
    /// One page of the messages matching `query`, newest `updated_at` first.
    pub fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let snapshot = query
            .cursor
            .as_ref()
            .map_or_else(Timestamp::now, |cursor| cursor.snapshot);
        let mut messages = Vec::with_capacity(query.limit.min(1000) + 1);
        let mut keep = |sid: &str, record: MessageRecord| -> Result<bool, StoreError> {
            if matches(query, &record) {
                let sid = MessageSid::parse(sid).map_err(StoreError::Corrupt)?;
                messages.push((sid, record));
            }
            Ok(messages.len() <= query.limit)
        };
        let number_index = match (&query.to, &query.from, query.error_code) {
            (Some(to), _, _) => Some(index::prefix(BY_TO, &index::text_value(to))),
            (None, Some(from), None) => {
                let prefix = index::prefix(BY_FROM, &index::text_value(from));
                // A sender of very many messages is found faster by the time-ordered walk,
                // where its messages are dense, than by sorting them all.
                let count = self
                    .trees
                    .data
                    .scan_prefix(&prefix)
                    .keys()
                    .take(MAX_SORTED + 1)
                    .count();
                (count <= MAX_SORTED).then_some(prefix)
            }
            _ => None,
        };
        match (number_index, query.error_code) {
            (Some(prefix), _) => self.walk_number(query, snapshot, &prefix, &mut keep)?,
            (None, error) => {
                let prefixes = match error {
                    Some(error) => vec![index::prefix(BY_ERROR, &error.to_be_bytes())],
                    None => status_prefixes(&query.statuses),
                };
                // The walk sees messages unchanged since the snapshot...
                let after_snapshot = Timestamp(snapshot.0.saturating_add(1));
                let unchanged = ListQuery {
                    until: Some(
                        query
                            .until
                            .map_or(after_snapshot, |until| until.min(after_snapshot)),
                    ),
                    ..query.clone()
                };
                self.walk_ranges(&unchanged, prefixes, &mut keep)?;
                // ...and those changed since are put back where they stood then.
                let below = query.cursor.as_ref().map(Cursor::position);
                messages.extend(self.moved_since(query, snapshot, below)?);
                messages.sort_unstable_by(|a, b| position(b).cmp(&position(a)));
                messages.truncate(query.limit + 1);
            }
        }
        let next = if messages.len() > query.limit {
            messages.truncate(query.limit);
            messages.last().map(|(sid, record)| Cursor {
                snapshot,
                updated_at: record.updated_at,
                sid: sid.clone(),
            })
        } else {
            None
        };
        Ok(Page { messages, next })
    }

    /// The messages updated after `snapshot` that matched the query at the snapshot, as
    /// they were then, when their position then lies below `below` (if given). Each
    /// message has exactly one status entry, so walking the status index meets each once.
    fn moved_since(
        &self,
        query: &ListQuery,
        snapshot: Timestamp,
        below: Option<(Timestamp, &str)>,
    ) -> Result<Vec<(MessageSid, MessageRecord)>, StoreError> {
        let mut moved = Vec::new();
        let after = Timestamp(snapshot.0.saturating_add(1));
        for prefix in status_prefixes(&[]) {
            let (low, high) = bounds(&prefix, Some(after), None, None);
            for entry in self.trees.data.range(low..high) {
                let (key, _) = entry?;
                let Some((_, sid)) = index::tail(&key) else {
                    continue;
                };
                let Some((record, events)) = self.trees.read_full(sid)? else {
                    continue;
                };
                let Some(then) = record.as_of(&events, snapshot) else {
                    continue;
                };
                let above = below.is_some_and(|below| (then.updated_at, sid) >= below);
                if !above && matches(query, &then) {
                    moved.push((MessageSid::parse(sid).map_err(StoreError::Corrupt)?, then));
                }
            }
        }
        Ok(moved)
    }

    /// Walks the index ranges under `prefixes` newest first, merged, handing each entry's
    /// record to `keep` until it answers `false`.
    fn walk_ranges(
        &self,
        query: &ListQuery,
        prefixes: Vec<Vec<u8>>,
        keep: &mut impl FnMut(&str, MessageRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let cursor = query.cursor.as_ref().map(Cursor::tail);
        let mut ranges: Vec<_> = prefixes
            .iter()
            .map(|prefix| {
                let (low, high) = bounds(prefix, query.since, query.until, cursor.as_deref());
                self.trees.data.range(low..high).rev().peekable()
            })
            .collect();
        loop {
            // The newest head among the ranges; heads are compared by `updated_at ++ sid`.
            let mut newest: Option<(usize, Vec<u8>)> = None;
            for (i, range) in ranges.iter_mut().enumerate() {
                let head = match range.peek() {
                    None => continue,
                    Some(Err(_)) => {
                        return Err(range.next().and_then(Result::err).map_or_else(
                            || StoreError::Unavailable("index read failed".into()),
                            StoreError::from,
                        ))
                    }
                    Some(Ok((key, _))) => key,
                };
                let Some(tail) = tail_of(head) else { continue };
                if newest
                    .as_ref()
                    .is_none_or(|(_, best)| tail > best.as_slice())
                {
                    newest = Some((i, tail.to_vec()));
                }
            }
            let Some((i, tail)) = newest else {
                return Ok(());
            };
            ranges[i].next();
            let Some((updated_at, sid)) = index::tail(&tail) else {
                continue;
            };
            let Some(record) = self.read_record_str(sid)? else {
                continue;
            };
            // A record updated since the entry was read has moved above this position: it
            // belongs to a newer page, not this one.
            if record.updated_at != updated_at {
                continue;
            }
            if !keep(sid, record)? {
                return Ok(());
            }
        }
    }

    /// Lists the messages of one recipient or sender (`prefix` of the `t` or `f` index),
    /// each as it stood at the snapshot, sorted here.
    fn walk_number(
        &self,
        query: &ListQuery,
        snapshot: Timestamp,
        prefix: &[u8],
        keep: &mut impl FnMut(&str, MessageRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let cursor = query
            .cursor
            .as_ref()
            .map(|c| (c.updated_at, c.sid.as_str().to_owned()));
        let mut found = Vec::new();
        for entry in self.trees.data.scan_prefix(prefix) {
            let (key, _) = entry?;
            let Some(sid) = key
                .get(prefix.len()..)
                .and_then(|s| std::str::from_utf8(s).ok())
            else {
                continue;
            };
            // One recipient has few messages: each is taken as it stood at the snapshot.
            let Some((current, events)) = self.trees.read_full(sid)? else {
                continue;
            };
            let Some(record) = current.as_of(&events, snapshot) else {
                continue;
            };
            let position = (record.updated_at, sid.to_owned());
            let in_window = query.since.is_none_or(|since| record.updated_at >= since)
                && query.until.is_none_or(|until| record.updated_at < until)
                && cursor.as_ref().is_none_or(|cursor| &position < cursor);
            if in_window {
                found.push((position, record));
            }
        }
        found.sort_unstable_by(|a, b| Reverse(&a.0).cmp(&Reverse(&b.0)));
        for ((_, sid), record) in found {
            if !keep(&sid, record)? {
                break;
            }
        }
        Ok(())
    }

    fn read_record_str(&self, sid: &str) -> Result<Option<MessageRecord>, StoreError> {
        let mut key = vec![b'm'];
        key.extend_from_slice(sid.as_bytes());
        match self.trees.data.get(key)? {
            Some(value) => Ok(Some(decode_record(&value)?.0)),
            None => Ok(None),
        }
    }
}

fn matches(query: &ListQuery, record: &MessageRecord) -> bool {
    (query.statuses.is_empty()
        || record
            .known_status()
            .is_some_and(|status| query.statuses.contains(&status)))
        && query
            .error_code
            .is_none_or(|code| record.error_code == Some(code))
        && query
            .to
            .as_ref()
            .is_none_or(|to| record.to.as_ref() == Some(to))
        && query
            .from
            .as_ref()
            .is_none_or(|from| record.from.as_ref() == Some(from))
        && query.since.is_none_or(|since| record.updated_at >= since)
        && query.until.is_none_or(|until| record.updated_at < until)
}

/// Key bounds `[low, high)` of the entries under `prefix` with `since <= updated_at <
/// until`, strictly below the cursor's `updated_at ++ sid` if one is given.
pub(super) fn bounds(
    prefix: &[u8],
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    cursor: Option<&[u8]>,
) -> (Vec<u8>, Vec<u8>) {
    let mut low = prefix.to_vec();
    low.extend_from_slice(&since.unwrap_or(Timestamp(0)).to_be_bytes());
    let mut high = prefix.to_vec();
    match until {
        Some(until) => high.extend_from_slice(&until.to_be_bytes()),
        None => high.extend_from_slice(&[0xff; 9]),
    }
    if let Some(cursor) = cursor {
        let mut below = prefix.to_vec();
        below.extend_from_slice(cursor);
        high = high.min(below);
    }
    (low, high)
}

/// A listed message's position in the newest-first order.
fn position(message: &(MessageSid, MessageRecord)) -> (Timestamp, &str) {
    (message.1.updated_at, message.0.as_str())
}

/// The status-index prefixes of `statuses`, or of every status (and none) when empty.
fn status_prefixes(statuses: &[KnownStatus]) -> Vec<Vec<u8>> {
    let codes: Vec<u8> = if statuses.is_empty() {
        KnownStatus::ALL
            .iter()
            .map(|s| s.code())
            .chain([NO_STATUS])
            .collect()
    } else {
        statuses.iter().map(|s| s.code()).collect()
    };
    codes
        .iter()
        .map(|code| index::prefix(BY_STATUS, &[*code]))
        .collect()
}

fn tail_of(key: &[u8]) -> Option<&[u8]> {
    key.len()
        .checked_sub(8 + MessageSid::LEN)
        .map(|split| &key[split..])
}
