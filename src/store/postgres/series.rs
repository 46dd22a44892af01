//! Series of counts per hour or per UTC day for charts, from the hourly counters: one
//! statement over a range of buckets, however many messages they count.

use std::collections::BTreeMap;

use super::columns::{KIND_ERROR, KIND_STATUS, SPAN_HOUR};
use super::stats::counts;
use super::{corrupt, to_i64, unavailable, PgStore};
use crate::domain::counters::Width;
use crate::domain::{KnownStatus, Timestamp};
use crate::store::{BucketSize, Series, StoreError};

impl PgStore {
    /// Counts per bucket, from the hourly counters summed over the replicas' stripes, in
    /// one statement.
    pub async fn series(
        &self,
        since: Timestamp,
        until: Timestamp,
        size: BucketSize,
    ) -> Result<Series, StoreError> {
        let (since, until) = (size.floor(since), size.ceil(until));
        let buckets = usize::try_from(size.count(since, until)).unwrap_or(0);
        let (first_hour, last_hour) = (Width::Hour.bucket(since), Width::Hour.bucket(until));
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT bucket, kind::text, value, sum(n)::bigint FROM counters \
                 WHERE span = $1 AND bucket >= $2 AND bucket < $3 \
                 GROUP BY bucket, kind, value",
                &[&SPAN_HOUR, &to_i64(first_hour), &to_i64(last_hour)],
            )
            .await
            .map_err(unavailable)?;
        let mut tallies = vec![(BTreeMap::<u8, u64>::new(), BTreeMap::<u32, u64>::new()); buckets];
        for row in &rows {
            let hour: i64 = row.try_get(0).map_err(corrupt)?;
            let kind: &str = row.try_get(1).map_err(corrupt)?;
            let value: &str = row.try_get(2).map_err(corrupt)?;
            let count = row.try_get::<_, i64>(3).map_err(corrupt)?.max(0) as u64;
            let index = (hour.max(0) as u64).saturating_sub(first_hour) / size.hours();
            let Some((by_status, by_error)) = tallies.get_mut(index as usize) else {
                continue;
            };
            match kind.as_bytes().first().map(|b| *b as i8) {
                Some(KIND_STATUS) => {
                    let status = KnownStatus::parse(value)
                        .ok_or_else(|| StoreError::corrupt(format!("unknown status {value:?}")))?;
                    *by_status.entry(status.code()).or_default() += count;
                }
                Some(KIND_ERROR) => {
                    let error: u32 = value.parse().map_err(corrupt)?;
                    *by_error.entry(error).or_default() += count;
                }
                _ => {}
            }
        }
        let buckets = tallies
            .into_iter()
            .map(|(by_status, by_error)| counts(by_status, by_error))
            .collect();
        Ok(Series {
            since,
            until,
            size,
            buckets,
        })
    }
}
