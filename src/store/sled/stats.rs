//! Counting messages by current status and error code, all time or within a window of
//! `updated_at`.
//!
//! All-time counts come from the counters the writer maintains with every commit. A window
//! adds up hourly counters for its whole hours, minutely counters for the whole minutes of
//! its partial hours, and counts index entries only for the partial minutes at its edges:
//! a few hundred keys however many messages it holds.

use std::collections::BTreeMap;

use super::keys::index::{self, BY_ERROR, BY_STATUS};
use super::keys::{
    bucket_key, counter_key, decode_count, ERROR_COUNTER, ERROR_HOURLY, ERROR_MINUTELY, HOUR,
    MINUTE, STATUS_COUNTER, STATUS_HOURLY, STATUS_MINUTELY,
};
use super::query::bounds;
use super::{unavailable, SledStore};
use crate::domain::{KnownStatus, Timestamp};
use crate::store::{Counts, StoreError};

/// A time window `[from, to)` in microseconds.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: u64,
    to: u64,
}

/// One bucket size of the time-bucketed counters.
struct Level {
    size: u64,
    status_kind: u8,
    error_kind: u8,
}

const LEVELS: &[Level] = &[
    Level {
        size: HOUR,
        status_kind: STATUS_HOURLY,
        error_kind: ERROR_HOURLY,
    },
    Level {
        size: MINUTE,
        status_kind: STATUS_MINUTELY,
        error_kind: ERROR_MINUTELY,
    },
];

#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u8, u64>,
    by_error: BTreeMap<u32, u64>,
}

impl SledStore {
    /// Counts by current status and error code of the messages last updated within
    /// `[since, until)`. Without bounds the all-time counters answer. With bounds, the
    /// whole hours inside the window are added up from hourly counters, the whole minutes
    /// of the partial hours from minutely ones, and only the partial minutes at each edge
    /// are counted in the indexes: a window costs a few hundred keys however many
    /// messages it holds.
    pub fn stats(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, StoreError> {
        let counts = self.counts()?;
        if since.is_none() && until.is_none() {
            return Ok(counts);
        }
        // Nothing is updated in the future: bounding `until` keeps bucket numbers small.
        let horizon = Timestamp::now().0.saturating_add(HOUR);
        let window = Window {
            from: since.map_or(0, |t| t.0),
            to: until.map_or(horizon, |t| t.0.min(horizon)),
        };
        let errors: Vec<u32> = counts.by_error.iter().map(|(error, _)| *error).collect();
        let mut tally = Tally::default();
        self.add_window(window, LEVELS, &errors, &mut tally)?;
        Ok(Counts {
            by_status: tally
                .by_status
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .filter_map(|(code, count)| Some((KnownStatus::from_code(code)?, count)))
                .collect(),
            by_error: tally
                .by_error
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .collect(),
        })
    }

    /// Adds up `window` at the coarsest bucket size of `levels` that fits inside it, and
    /// its edges at the next sizes; what is left below the finest size is counted in the
    /// indexes.
    fn add_window(
        &self,
        window: Window,
        levels: &[Level],
        errors: &[u32],
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        let Some((level, finer)) = levels.split_first() else {
            return self.add_exact(window, errors, tally);
        };
        let (first, last) = (window.from.div_ceil(level.size), window.to / level.size);
        if first >= last {
            return self.add_window(window, finer, errors, tally);
        }
        self.add_buckets(level.status_kind, level.error_kind, first, last, tally)?;
        let head = Window {
            from: window.from,
            to: first * level.size,
        };
        let tail = Window {
            from: last * level.size,
            to: window.to,
        };
        self.add_window(head, finer, errors, tally)?;
        self.add_window(tail, finer, errors, tally)
    }

    /// Adds the counters of buckets `[first, last)`.
    fn add_buckets(
        &self,
        status_kind: u8,
        error_kind: u8,
        first: u64,
        last: u64,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        for kind in [status_kind, error_kind] {
            let range = bucket_key(kind, first, &[])..bucket_key(kind, last, &[]);
            for entry in self.trees.data.range(range) {
                let (key, value) = entry.map_err(unavailable)?;
                let count = decode_count(&value);
                // `c kind bucket(4) value`
                match key.get(6..) {
                    Some([code]) if kind == status_kind => {
                        *tally.by_status.entry(*code).or_default() += count
                    }
                    Some(error) if kind == error_kind => {
                        if let Ok(error) = error.try_into().map(u32::from_be_bytes) {
                            *tally.by_error.entry(error).or_default() += count;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Counts live index entries in a window shorter than a minute.
    fn add_exact(
        &self,
        window: Window,
        errors: &[u32],
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        if window.from >= window.to {
            return Ok(());
        }
        let (since, until) = (Some(Timestamp(window.from)), Some(Timestamp(window.to)));
        for status in KnownStatus::ALL {
            let count =
                self.count_range(&index::prefix(BY_STATUS, &[status.code()]), since, until)?;
            *tally.by_status.entry(status.code()).or_default() += count;
        }
        for error in errors {
            let count =
                self.count_range(&index::prefix(BY_ERROR, &error.to_be_bytes()), since, until)?;
            *tally.by_error.entry(*error).or_default() += count;
        }
        Ok(())
    }

    fn count_range(
        &self,
        prefix: &[u8],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let (low, high) = bounds(prefix, since, until, None);
        let mut count = 0;
        for entry in self.trees.data.range(low..high) {
            let (_, value) = entry.map_err(unavailable)?;
            // History entries (positions messages have left) are not counted.
            count += u64::from(value.is_empty());
        }
        Ok(count)
    }
}

impl SledStore {
    /// All-time counts, from the counters the writer maintains with every commit.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        let all_time = [
            counter_key(STATUS_COUNTER, &[]),
            counter_key(ERROR_COUNTER, &[]),
        ];
        for entry in all_time
            .iter()
            .flat_map(|prefix| self.trees.data.scan_prefix(prefix))
        {
            let (key, value) = entry.map_err(unavailable)?;
            let count = decode_count(&value);
            if count == 0 {
                continue;
            }
            match (key.get(1), key.get(2..)) {
                (Some(&STATUS_COUNTER), Some([code])) => {
                    if let Some(status) = KnownStatus::from_code(*code) {
                        counts.by_status.push((status, count));
                    }
                }
                (Some(&ERROR_COUNTER), Some(error)) => {
                    if let Ok(error) = error.try_into().map(u32::from_be_bytes) {
                        counts.by_error.push((error, count));
                    }
                }
                _ => {}
            }
        }
        Ok(counts)
    }
}
