//! The smaller pieces of the boundary on PostgreSQL: the service's own state (`meta`), the
//! backlog of the change feed, and series of counts per hour or day.

use std::collections::{BTreeMap, HashSet};

use super::stats::counts;
use super::writer::{HOUR, KIND_ERROR, KIND_STATUS, SPAN_HOUR};
use super::{corrupt, to_i64, unavailable, PgStore};
use crate::domain::{KnownStatus, Timestamp};
use crate::store::{BucketSize, Series, StoreError};

impl PgStore {
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(unavailable)?;
        row.map(|row| row.try_get::<_, Vec<u8>>(0).map_err(corrupt))
            .transpose()
    }

    /// Committed (with `synchronous_commit` on) before it returns.
    pub async fn put_meta(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let client = self.client().await?;
        match value {
            Some(value) => client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&key, &value],
                )
                .await
                .map_err(unavailable)?,
            None => client
                .execute("DELETE FROM meta WHERE key = $1", &[&key])
                .await
                .map_err(unavailable)?,
        };
        Ok(())
    }

    /// Which of `seqs` are stored events.
    pub async fn stored_seqs(&self, seqs: &[u64]) -> Result<HashSet<u64>, StoreError> {
        let seqs: Vec<i64> = seqs.iter().map(|seq| to_i64(*seq)).collect();
        let client = self.client().await?;
        let rows = client
            .query("SELECT seq FROM events WHERE seq = ANY($1)", &[&seqs])
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(corrupt)?;
                u64::try_from(seq).map_err(corrupt)
            })
            .collect()
    }

    /// How many transitions were committed after `after`.
    pub async fn feed_len(&self, after: u64) -> Result<u64, StoreError> {
        let watermark = self.watermark().await?;
        if after >= watermark {
            return Ok(0);
        }
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM events WHERE seq > $1 AND seq <= $2",
                &[&to_i64(after), &to_i64(watermark)],
            )
            .await
            .map_err(unavailable)?;
        let count: i64 = row.try_get(0).map_err(corrupt)?;
        Ok(count.max(0) as u64)
    }

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
        let (first_hour, last_hour) = (since.0 / HOUR, until.0 / HOUR);
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
