//! Counting messages by current status and error code, all time or within a window of
//! `updated_at`.
//!
//! All-time counts come from the counters the writer maintains with every commit. A window
//! is read in the pieces `domain::counters::split` cuts it into: hourly counters for its
//! whole hours, minutely counters for the whole minutes of its partial hours, and index
//! entries only for the partial minutes at its edges: a few hundred keys however many
//! messages it holds.

use std::collections::BTreeMap;

use super::keys::index::{self, BY_ERROR, BY_STATUS};
use super::keys::{
    bucket_key, bucket_kinds, counter_key, decode_count, ERROR_COUNTER, STATUS_COUNTER,
};
use super::query::bounds;
use super::{unavailable, SledStore};
use crate::domain::counters::{self, Piece};
use crate::domain::{KnownStatus, Timestamp};
use crate::store::{Counts, StoreError};

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
        let (from, to) = counters::window(since, until, self.now());
        let errors: Vec<u32> = counts.by_error.iter().map(|(error, _)| *error).collect();
        let mut tally = Tally::default();
        for piece in counters::split(from, to) {
            match piece {
                Piece::Buckets { width, first, last } => {
                    let (status_kind, error_kind) = bucket_kinds(width);
                    self.add_buckets(status_kind, error_kind, first, last, &mut tally)?;
                }
                Piece::Exact { from, to } => self.add_exact(from, to, &errors, &mut tally)?,
            }
        }
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

    /// Counts live index entries in a window `[from, to)` shorter than a minute.
    fn add_exact(
        &self,
        from: u64,
        to: u64,
        errors: &[u32],
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        let (since, until) = (Some(Timestamp(from)), Some(Timestamp(to)));
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
