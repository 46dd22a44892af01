//! The sled store's series: one range scan over the hourly counters.

use std::collections::BTreeMap;

use super::keys::{bucket_key, decode_count, ERROR_HOURLY, STATUS_HOURLY};
use super::{unavailable, SledStore};
use crate::domain::counters::Width;
use crate::domain::{KnownStatus, Timestamp};
use crate::store::{BucketSize, Counts, Series, StoreError};

impl SledStore {
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
        let (first_hour, last_hour) = (Width::Hour.bucket(since), Width::Hour.bucket(until));
        let mut tallies = vec![Tally::default(); usize::try_from(buckets).unwrap_or(0)];
        for kind in [STATUS_HOURLY, ERROR_HOURLY] {
            let range = bucket_key(kind, first_hour, &[])..bucket_key(kind, last_hour, &[]);
            for entry in self.trees.data.range(range) {
                let (key, value) = entry.map_err(unavailable)?;
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
            buckets: tallies.into_iter().map(Tally::into_counts).collect(),
        })
    }
}

#[derive(Default, Clone)]
struct Tally {
    by_status: BTreeMap<u8, u64>,
    by_error: BTreeMap<u32, u64>,
}

impl Tally {
    fn into_counts(self) -> Counts {
        Counts {
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
