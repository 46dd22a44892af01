//! Listing messages from the indexes, exactly once per message at a snapshot.
//!
//! A listing walks index entries newest first and keeps those whose message stood at that
//! entry at the snapshot (see `store::listing`). The snapshot is the writer's watermark:
//! every write with a clock at or below it is applied, none above it is. An entry is the
//! position a message took at `updated_at` and left at `replaced_at` (empty while live),
//! so the message stood there at the snapshot exactly when `updated_at <= snapshot <
//! replaced_at`: one entry per message, whatever moved meanwhile. The record read for a
//! kept entry is replayed to the snapshot, so a page shows each message as it was then.
//!
//! The index walked is the most selective one the filters allow: the recipient index for
//! `to`, the sender index for `from`, the account index for `account_sid` (each unless
//! the number or account has very many messages), the
//! error-code index for `error_code`, the status index for `status` (one range per status,
//! merged), else every status range merged. `since`, `until` and the cursor bound the
//! ranges, so a page reads about `limit` entries plus the history entries among them
//! (positions left within the cursor lifetime), however large the store is.

use std::cmp::Reverse;

use super::keys::index::{self, BY_ACCOUNT, BY_ERROR, BY_FROM, BY_STATUS, BY_TO, NO_STATUS};
use super::{unavailable, SledStore};
use crate::domain::{KnownStatus, MessageSid, MessageState, Timestamp};
use crate::store::breakdown::Tally;
use crate::store::{Breakdown, Cursor, ListQuery, Page, Party, StoreError};

/// The most messages of one number that a listing sorts itself; beyond, it walks by time.
const MAX_SORTED: usize = 10_000;

impl SledStore {
    /// One page of the messages matching `query`, newest `updated_at` first.
    pub fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let snapshot = match &query.cursor {
            Some(cursor) => Timestamp(cursor.snapshot),
            None => Timestamp(self.shared.listings.snapshot(
                self.now(),
                &self.shared.watermark,
                &self.shared.failed,
            )?),
        };
        let issued_at = query
            .cursor
            .as_ref()
            .map_or_else(|| self.now(), |c| c.issued_at);
        let mut messages = Vec::with_capacity(query.limit.min(1000) + 1);
        let mut keep = |sid: &str, state: MessageState| -> Result<bool, StoreError> {
            if query.matches(&state) {
                let sid = MessageSid::parse(sid).map_err(StoreError::corrupt)?;
                messages.push((sid, state));
            }
            Ok(messages.len() <= query.limit)
        };
        let number_index = match (&query.to, &query.from, &query.account_sid) {
            (Some(to), _, _) => Some(index::prefix(BY_TO, &index::text_value(to))),
            (None, Some(from), _) => Some(index::prefix(BY_FROM, &index::text_value(from))),
            (None, None, Some(account)) => {
                Some(index::prefix(BY_ACCOUNT, &index::text_value(account)))
            }
            _ => None,
        };
        // A number with very many messages is found faster by the time-ordered walk,
        // where its messages are dense, than by sorting them all.
        let number_index = number_index.filter(|prefix| {
            let count = self
                .trees
                .data
                .scan_prefix(prefix)
                .keys()
                .take(MAX_SORTED + 1);
            count.count() <= MAX_SORTED
        });
        match number_index {
            Some(prefix) => self.walk_number(query, snapshot, &prefix, &mut keep)?,
            None => {
                let prefixes = match query.error_code {
                    Some(error) => vec![index::prefix(BY_ERROR, &error.to_be_bytes())],
                    None => status_prefixes(&query.statuses),
                };
                self.walk_ranges(query, snapshot, prefixes, &mut keep)?;
            }
        }
        let next = if messages.len() > query.limit {
            messages.truncate(query.limit);
            messages.last().map(|(sid, state)| Cursor {
                snapshot: snapshot.0,
                issued_at,
                updated_at: state.updated_at,
                sid: sid.clone(),
            })
        } else {
            None
        };
        Ok(Page { messages, next })
    }

    /// The messages last updated within `[since, until)`, newest first, grouped by
    /// `party`: the same walk as an unfiltered listing, at the watermark (every applied
    /// write), so it registers no snapshot and keeps no history.
    pub fn breakdown(
        &self,
        party: Party,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Breakdown, StoreError> {
        let query = ListQuery {
            since,
            until,
            ..ListQuery::default()
        };
        let mut tally = Tally::new();
        let snapshot = Timestamp(self.watermark());
        self.walk_ranges(&query, snapshot, status_prefixes(&[]), &mut |_, state| {
            Ok(tally.add(party.of(&state), state.status, state.error_code))
        })?;
        Ok(tally.finish())
    }

    /// Walks the index ranges under `prefixes` newest first, merged, handing each message
    /// that stood at its entry at `snapshot` to `keep` until it answers `false`.
    fn walk_ranges(
        &self,
        query: &ListQuery,
        snapshot: Timestamp,
        prefixes: Vec<Vec<u8>>,
        keep: &mut impl FnMut(&str, MessageState) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let cursor = query.cursor.as_ref().map(tail);
        // Entries newer than the snapshot were made after it: not part of this listing.
        let after_snapshot = Timestamp(snapshot.0.saturating_add(1));
        let until = Some(
            query
                .until
                .map_or(after_snapshot, |u| u.min(after_snapshot)),
        );
        let mut ranges: Vec<_> = prefixes
            .iter()
            .map(|prefix| {
                let (low, high) = bounds(prefix, query.since, until, cursor.as_deref());
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
                        let error = range.next().and_then(Result::err);
                        return Err(error.map_or_else(
                            || StoreError::unavailable("an index read failed"),
                            unavailable,
                        ));
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
            let Some((i, _)) = newest else {
                return Ok(());
            };
            let Some(Ok((key, value))) = ranges[i].next() else {
                continue;
            };
            // A position left at or before the snapshot is not where the message stood.
            if index::replaced_at(&value).is_some_and(|replaced| replaced <= snapshot) {
                continue;
            }
            let Some((updated_at, sid)) = index::tail(&key) else {
                continue;
            };
            let Some(state) = self.state_at(sid, snapshot)? else {
                continue;
            };
            // The record is replayed to the snapshot: a message that moved between the
            // index read and the record read still shows its position then.
            if state.updated_at != updated_at {
                continue;
            }
            if !keep(sid, state)? {
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
        keep: &mut impl FnMut(&str, MessageState) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let cursor = query.cursor.as_ref().map(Cursor::position);
        let mut found = Vec::new();
        for entry in self.trees.data.scan_prefix(prefix) {
            let (key, _) = entry.map_err(unavailable)?;
            let Some(sid) = key
                .get(prefix.len()..)
                .and_then(|s| std::str::from_utf8(s).ok())
            else {
                continue;
            };
            let Some(state) = self.state_at(sid, snapshot)? else {
                continue;
            };
            let below_cursor = cursor.is_none_or(|cursor| (state.updated_at, sid) < cursor);
            if below_cursor && query.matches(&state) {
                found.push(((state.updated_at, sid.to_owned()), state));
            }
        }
        found.sort_unstable_by(|a, b| Reverse(&a.0).cmp(&Reverse(&b.0)));
        for ((_, sid), state) in found {
            if !keep(&sid, state)? {
                break;
            }
        }
        Ok(())
    }

    /// The state of message `sid` at `snapshot`, if it existed then.
    fn state_at(&self, sid: &str, snapshot: Timestamp) -> Result<Option<MessageState>, StoreError> {
        let mut key = Vec::with_capacity(1 + sid.len());
        key.push(b'm');
        key.extend_from_slice(sid.as_bytes());
        let Some(record) = self.trees.record_by_key(&key)? else {
            return Ok(None);
        };
        Ok(record.state_at(snapshot))
    }
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

/// The index-key tail `updated_at ++ sid` at a cursor's position.
fn tail(cursor: &Cursor) -> Vec<u8> {
    let mut tail = cursor.updated_at.to_be_bytes().to_vec();
    tail.extend_from_slice(cursor.sid.as_str().as_bytes());
    tail
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
