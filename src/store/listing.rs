//! What a listing asks for and gets, the same for both stores.
//!
//! Paging is exact: a listing shows the messages as they stood at a *snapshot* taken
//! when its first page was served, and the cursor carries that snapshot. The snapshot is
//! a watermark of applied writes (every write at or below it is visible, none above it
//! is), never a wall-clock reading, so a write in flight while the first page is served
//! is either wholly inside the snapshot or wholly outside it. A message changed after the
//! snapshot is still listed once, at the position and with the state it had then; one
//! created after it waits for the next listing. Each store keeps the old positions of
//! changed messages for [`CURSOR_LIFETIME`] (and a little more), which bounds what a page
//! reads; an older cursor is refused.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::domain::counters::MINUTE;
use crate::domain::{KnownStatus, MessageSid, MessageState, Timestamp};

/// How long a cursor stays valid after its listing's first page.
pub const CURSOR_LIFETIME: Duration = Duration::from_secs(3600);

/// How long a position a message has left (history) is kept for the cursors that may still
/// list the message there: a little more than a cursor lives. Both stores keep history this
/// long, so it follows `CURSOR_LIFETIME` by construction.
pub const HISTORY_KEPT: Duration = CURSOR_LIFETIME.saturating_add(HISTORY_MARGIN);

/// What history outlives a cursor by: slack for the clocks of different replicas and for
/// the sweep's own timing.
const HISTORY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Filters of a listing; `None` and empty mean "any".
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub statuses: Vec<KnownStatus>,
    pub error_code: Option<u32>,
    pub to: Option<String>,
    pub from: Option<String>,
    /// The `AC…` account (or subaccount) the messages belong to.
    pub account_sid: Option<String>,
    /// Inclusive lower bound on `updated_at`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `updated_at`.
    pub until: Option<Timestamp>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl ListQuery {
    /// Whether a message in `state` passes every filter.
    pub fn matches(&self, state: &MessageState) -> bool {
        (self.statuses.is_empty() || state.status.is_some_and(|s| self.statuses.contains(&s)))
            && self
                .error_code
                .is_none_or(|code| state.error_code == Some(code))
            && self
                .to
                .as_ref()
                .is_none_or(|to| state.parties.to.as_ref() == Some(to))
            && self
                .from
                .as_ref()
                .is_none_or(|from| state.parties.from.as_ref() == Some(from))
            && self
                .account_sid
                .as_ref()
                .is_none_or(|account| state.parties.account_sid.as_ref() == Some(account))
            && self.since.is_none_or(|since| state.updated_at >= since)
            && self.until.is_none_or(|until| state.updated_at < until)
    }
}

/// A position in the newest-first order of a listing taken at `snapshot`: the last message
/// a page returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The store's watermark of applied writes when the first page was served.
    pub snapshot: u64,
    /// When the first page was served; the cursor expires [`CURSOR_LIFETIME`] after.
    pub issued_at: Timestamp,
    pub updated_at: Timestamp,
    pub sid: MessageSid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is not one this service returned")]
    Invalid,
    #[error("cursor has expired (listings last an hour): start the listing again")]
    Expired,
}

impl Cursor {
    const LEN: usize = 24 + MessageSid::LEN;

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(Self::LEN);
        bytes.extend_from_slice(&self.snapshot.to_be_bytes());
        bytes.extend_from_slice(&self.issued_at.0.to_be_bytes());
        bytes.extend_from_slice(&self.updated_at.0.to_be_bytes());
        bytes.extend_from_slice(self.sid.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor, refusing one issued more than [`CURSOR_LIFETIME`] before `now` (or
    /// in the future: it was not issued by this service).
    pub fn decode(raw: &str, now: Timestamp) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| CursorError::Invalid)?;
        if bytes.len() != Self::LEN {
            return Err(CursorError::Invalid);
        }
        let number = |at: usize| -> Result<u64, CursorError> {
            let field = bytes.get(at..at + 8).ok_or(CursorError::Invalid)?;
            Ok(u64::from_be_bytes(
                field.try_into().map_err(|_| CursorError::Invalid)?,
            ))
        };
        let sid = std::str::from_utf8(&bytes[24..]).map_err(|_| CursorError::Invalid)?;
        let cursor = Cursor {
            snapshot: number(0)?,
            issued_at: Timestamp(number(8)?),
            updated_at: Timestamp(number(16)?),
            sid: MessageSid::parse(sid).map_err(|_| CursorError::Invalid)?,
        };
        let lifetime = CURSOR_LIFETIME.as_micros() as u64;
        // A minute of slack for clocks of different replicas.
        if cursor.issued_at.0 > now.0.saturating_add(MINUTE) {
            return Err(CursorError::Invalid);
        }
        if cursor.issued_at.0.saturating_add(lifetime) < now.0 {
            return Err(CursorError::Expired);
        }
        Ok(cursor)
    }

    /// The position `(updated_at, sid)` of the last message returned.
    pub fn position(&self) -> (Timestamp, &str) {
        (self.updated_at, self.sid.as_str())
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<(MessageSid, MessageState)>,
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(issued_at: u64) -> Cursor {
        Cursor {
            snapshot: 42,
            issued_at: Timestamp(issued_at),
            updated_at: Timestamp(7),
            sid: MessageSid::parse("SM0123456789abcdef0123456789abcdef").expect("sid"),
        }
    }

    #[test]
    fn a_cursor_round_trips_until_it_expires() {
        let now = 10_000_000_000;
        let fresh = cursor(now - 1_000_000);
        assert_eq!(Cursor::decode(&fresh.encode(), Timestamp(now)), Ok(fresh));
        let old = cursor(now - 3_601_000_000);
        assert_eq!(
            Cursor::decode(&old.encode(), Timestamp(now)),
            Err(CursorError::Expired)
        );
        let future = cursor(now + 3_600_000_000);
        assert_eq!(
            Cursor::decode(&future.encode(), Timestamp(now)),
            Err(CursorError::Invalid)
        );
        for garbage in ["", "AAAA", "!!", &"A".repeat(300)] {
            assert_eq!(
                Cursor::decode(garbage, Timestamp(now)),
                Err(CursorError::Invalid)
            );
        }
    }

    #[test]
    fn history_is_kept_for_as_long_as_a_cursor_is_accepted() {
        let issued = 10_000_000_000;
        let lifetime = CURSOR_LIFETIME.as_micros() as u64;
        let last_use = issued + lifetime;
        let listing = cursor(issued).encode();
        assert!(Cursor::decode(&listing, Timestamp(last_use)).is_ok());
        assert_eq!(
            Cursor::decode(&listing, Timestamp(last_use + 1)),
            Err(CursorError::Expired)
        );
        // A sweep at the cursor's last use removes history replaced before this horizon;
        // the listing reads only history replaced after its snapshot, taken when `issued`.
        let horizon = last_use - HISTORY_KEPT.as_micros() as u64;
        assert!(
            horizon < issued,
            "the sweep leaves what the cursor may read"
        );
        assert_eq!(HISTORY_KEPT, CURSOR_LIFETIME + HISTORY_MARGIN);
    }
}
