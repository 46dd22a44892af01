//! Counts by current status and error code per hour or per UTC day of `updated_at`, for
//! charts.
//!
//! The writer keeps a counter per hour of `updated_at` for every status and error code
//! (see the stores), so a series is one range scan over those counters, however
//! many messages it covers. Hourly counters cannot split an hour, which is why a series
//! always covers whole buckets: [`BucketSize::floor`] and [`BucketSize::ceil`] widen a
//! window to them, and the store refuses to guess otherwise.

use super::Counts;
use crate::domain::counters::{DAY, HOUR};
use crate::domain::Timestamp;

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
    pub buckets: Vec<Counts>,
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
        match self {
            BucketSize::Hour => HOUR,
            BucketSize::Day => DAY,
        }
    }

    pub fn hours(self) -> u64 {
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
