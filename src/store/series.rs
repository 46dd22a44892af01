//! Counts by current status and error code per hour or per UTC day of `updated_at`, for
//! charts.
//!
//! The writer keeps a counter per hour of `updated_at` for every status and error code
//! (see [`super::record`]), so a series is one range scan over those counters, however
//! many messages it covers. Hourly counters cannot split an hour, which is why a series
//! always covers whole buckets: [`BucketSize::floor`] and [`BucketSize::ceil`] widen a
//! window to them, and the store refuses to guess otherwise.

use std::collections::BTreeMap;

use super::record::{bucket_key, ERROR_HOURLY, HOUR, STATUS_HOURLY};
use super::{decode_count, Stats, Store, StoreError};
use crate::domain::{KnownStatus, Timestamp};

/// The width of one bucket of a series. Days are UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketSize {
    Hour,
    Day,
}

/// Counts of the messages last updated within each bucket of `[since, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub since: Timestamp,
    pub until: Timestamp,
    pub size: BucketSize,
    /// One entry per bucket, oldest first, empty buckets included.
    pub buckets: Vec<Stats>,
}

impl BucketSize {
    pub fn parse(raw: &str) -> Option<BucketSize> {
        match raw {
            "hour" => Some(BucketSize::Hour),
            "day" => Some(BucketSize::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BucketSize::Hour => "hour",
            BucketSize::Day => "day",
        }
    }

    /// The bucket's width in microseconds.
    pub fn micros(self) -> u64 {
        self.hours() * HOUR
    }

    fn hours(self) -> u64 {
        match self {
            BucketSize::Hour => 1,
            BucketSize::Day => 24,
        }
    }

    /// The start of the bucket holding `time`.
    pub fn floor(self, time: Timestamp) -> Timestamp {
        Timestamp(time.0 - time.0 % self.micros())
    }

    /// `time` if it starts a bucket, else the start of the next one.
    pub fn ceil(self, time: Timestamp) -> Timestamp {
        let floor = self.floor(time);
        if floor == time {
            time
        } else {
            Timestamp(floor.0.saturating_add(self.micros()))
        }
    }

    /// How many buckets `[since, until)` spans once widened to whole buckets.
    pub fn count(self, since: Timestamp, until: Timestamp) -> u64 {
        let (since, until) = (self.floor(since), self.ceil(until));
        until.0.saturating_sub(since.0) / self.micros()
    }
}

impl Store {
    /// Counts per bucket of the messages last updated within `[since, until)`, widened to
    /// whole buckets. Callers bound the number of buckets ([`BucketSize::count`]): the
    /// answer holds one entry for each.
    pub fn series(
        &self,
        since: Timestamp,
        until: Timestamp,
        size: BucketSize,
    ) -> Result<Series, StoreError> {
        let (since, until) = (size.floor(since), size.ceil(until));
        let buckets = size.count(since, until);
        let (first_hour, last_hour) = (since.0 / HOUR, until.0 / HOUR);
        let mut tallies = vec![Tally::default(); usize::try_from(buckets).unwrap_or(0)];
        for kind in [STATUS_HOURLY, ERROR_HOURLY] {
            let range = bucket_key(kind, first_hour, &[])..bucket_key(kind, last_hour, &[]);
            for entry in self.trees.data.range(range) {
                let (key, value) = entry?;
                // `c kind hour(4) value`
                let Some(hour) = key.get(2..6).and_then(|hour| hour.try_into().ok()) else {
                    continue;
                };
                let hour = u64::from(u32::from_be_bytes(hour));
                let index = (hour.saturating_sub(first_hour) / size.hours()) as usize;
                let Some(tally) = tallies.get_mut(index) else {
                    continue;
                };
                let count = decode_count(&value);
                match key.get(6..) {
                    Some([code]) if kind == STATUS_HOURLY => {
                        *tally.by_status.entry(*code).or_default() += count;
                    }
                    Some(error) if kind == ERROR_HOURLY => {
                        if let Ok(error) = error.try_into().map(u32::from_be_bytes) {
                            *tally.by_error.entry(error).or_default() += count;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Series {
            since,
            until,
            size,
            buckets: tallies.into_iter().map(Tally::into_stats).collect(),
        })
    }
}

#[derive(Default, Clone)]
struct Tally {
    by_status: BTreeMap<u8, u64>,
    by_error: BTreeMap<u32, u64>,
}

impl Tally {
    fn into_stats(self) -> Stats {
        Stats {
            by_status: self
                .by_status
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .filter_map(|(code, count)| Some((KnownStatus::from_code(code)?, count)))
                .collect(),
            by_error: self
                .by_error
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time in 2026 that starts no hour.
    const T: u64 = 1_790_000_000_123_456;

    #[test]
    fn windows_widen_to_whole_utc_hours_and_days() {
        let hour = BucketSize::Hour;
        assert_eq!(hour.floor(Timestamp(T)).0 % HOUR, 0);
        assert!(hour.floor(Timestamp(T)).0 > T - HOUR);
        assert_eq!(hour.ceil(Timestamp(T)).0, hour.floor(Timestamp(T)).0 + HOUR);
        let start = hour.floor(Timestamp(T));
        assert_eq!(hour.ceil(start), start, "a bucket start stays put");
        assert_eq!(hour.count(Timestamp(T), Timestamp(T + 1)), 1);
        assert_eq!(hour.count(start, Timestamp(start.0 + 2 * HOUR)), 2);
        let day = BucketSize::Day;
        assert_eq!(day.floor(Timestamp(T)).0 % (24 * HOUR), 0);
        assert_eq!(day.count(Timestamp(T), Timestamp(T + 1)), 1);
        assert_eq!(BucketSize::parse("week"), None);
    }
}
