//! Messages of a window grouped by one of their parties (sender, recipient, messaging
//! service), for `GET /v1/stats/breakdown`.
//!
//! No counter is kept per party: a sender or a recipient is an unbounded set of values,
//! and a counter for each, per hour, would grow with the traffic. A breakdown instead
//! reads the messages last updated in the window, newest first, at most [`MAX_SCANNED`]
//! of them, and tallies their current states by party; [`Breakdown::complete`] says
//! whether that was all of the window. Each store walks its own newest-first index
//! (sled: the status ranges merged, as a listing does; PostgreSQL: the listing positions'
//! time index), so the cost is bounded by `MAX_SCANNED` however large the store is.

use std::collections::{BTreeMap, HashMap};

use super::Counts;
use crate::domain::{KnownStatus, MessageState};

/// The most messages one breakdown reads.
pub const MAX_SCANNED: u64 = 50_000;

/// Which party of a message a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    From,
    To,
    MessagingService,
}

impl Party {
    /// The party's value in `state`, if the message has one.
    pub fn of(self, state: &MessageState) -> Option<&str> {
        let parties = &state.parties;
        match self {
            Party::From => parties.from.as_deref(),
            Party::To => parties.to.as_deref(),
            Party::MessagingService => parties.messaging_service_sid.as_deref(),
        }
    }
}

/// Counts by current status and error code per value of a party (`None`: the messages
/// without one), of the newest messages last updated in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breakdown {
    pub groups: Vec<(Option<String>, Counts)>,
    /// How many messages were read (those with a known status).
    pub scanned: u64,
    /// Whether those were all the window's messages; `false` when it held more than
    /// [`MAX_SCANNED`].
    pub complete: bool,
}

/// Tallies by status and by error code of one group.
type Tallies = (BTreeMap<KnownStatus, u64>, BTreeMap<u32, u64>);

/// A breakdown being read: both stores feed it one message at a time, newest first.
#[derive(Default)]
pub(super) struct Tally {
    groups: HashMap<Option<String>, Tallies>,
    scanned: u64,
    complete: bool,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            complete: true,
            ..Tally::default()
        }
    }

    /// Counts one message under `key`; answers whether the tally takes more. A message
    /// without a known status is not counted, as in `Store::stats`.
    pub fn add(
        &mut self,
        key: Option<&str>,
        status: Option<KnownStatus>,
        error_code: Option<u32>,
    ) -> bool {
        let Some(status) = status else {
            return true;
        };
        if self.scanned == MAX_SCANNED {
            self.complete = false;
            return false;
        }
        self.scanned += 1;
        let (by_status, by_error) = self.groups.entry(key.map(str::to_owned)).or_default();
        *by_status.entry(status).or_default() += 1;
        if let Some(code) = error_code {
            *by_error.entry(code).or_default() += 1;
        }
        true
    }

    pub fn finish(self) -> Breakdown {
        Breakdown {
            groups: self
                .groups
                .into_iter()
                .map(|(key, (by_status, by_error))| {
                    let counts = Counts {
                        by_status: by_status.into_iter().collect(),
                        by_error: by_error.into_iter().collect(),
                    };
                    (key, counts)
                })
                .collect(),
            scanned: self.scanned,
            complete: self.complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_stops_at_the_bound_and_says_it_is_incomplete() {
        let mut tally = Tally::new();
        for _ in 0..MAX_SCANNED {
            assert!(tally.add(Some("+15005550006"), Some(KnownStatus::Sent), None));
        }
        assert!(!tally.add(None, Some(KnownStatus::Failed), Some(30003)));
        let breakdown = tally.finish();
        assert_eq!(breakdown.scanned, MAX_SCANNED);
        assert!(!breakdown.complete);
        assert_eq!(breakdown.groups.len(), 1);
    }

    #[test]
    fn messages_without_a_known_status_are_not_counted() {
        let mut tally = Tally::new();
        assert!(tally.add(Some("+15005550006"), None, None));
        assert!(tally.add(Some("+15005550006"), Some(KnownStatus::Failed), Some(30003)));
        let breakdown = tally.finish();
        assert_eq!(breakdown.scanned, 1);
        assert!(breakdown.complete);
        assert_eq!(
            breakdown.groups,
            vec![(
                Some("+15005550006".to_owned()),
                Counts {
                    by_status: vec![(KnownStatus::Failed, 1)],
                    by_error: vec![(30003, 1)],
                }
            )]
        );
    }
}
