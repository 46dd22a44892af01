//! Counting messages by current status and error code, all time or within a window of
//! `updated_at`, with the same answers as the sled store.
//!
//! All-time counts sum the all-time counters over the replicas' stripes. A window is read
//! in the pieces `domain::counters::split` cuts it into: hourly counters for its whole
//! hours, minutely counters for the whole minutes of its partial hours, and live listing
//! positions only in the partial minutes at its edges, all in one statement (one
//! snapshot): a few hundred rows however many messages the window holds.

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;

use super::columns::{span_of, KIND_ERROR, KIND_STATUS, SPAN_ALL};
use super::{corrupt, now, to_i64, unavailable, PgStore};
use crate::domain::counters::{self, Piece};
use crate::domain::{KnownStatus, Timestamp};
use crate::store::breakdown::Tally;
use crate::store::{Breakdown, Counts, Party, StoreError, MAX_SCANNED};

/// What a window is read as: counter bucket ranges `[first, last)` per span, and the
/// sub-minute edges `[from, to)` counted exactly.
#[derive(Default)]
struct Plan {
    spans: Vec<i8>,
    firsts: Vec<i64>,
    lasts: Vec<i64>,
    edge_from: Vec<i64>,
    edge_to: Vec<i64>,
}

impl PgStore {
    pub async fn stats(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let mut plan = Plan::default();
        if since.is_none() && until.is_none() {
            plan.spans.push(SPAN_ALL);
            plan.firsts.push(0);
            plan.lasts.push(1);
        } else {
            // An open window ends an hour after now, by the database's clock.
            let (from, to) = counters::window(since, until, now(&client).await?);
            for piece in counters::split(from, to) {
                match piece {
                    Piece::Buckets { width, first, last } => {
                        plan.spans.push(span_of(width));
                        plan.firsts.push(to_i64(first));
                        plan.lasts.push(to_i64(last));
                    }
                    Piece::Exact { from, to } => {
                        plan.edge_from.push(to_i64(from));
                        plan.edge_to.push(to_i64(to));
                    }
                }
            }
        }
        let (sql, values) = window_sql(&plan);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
        let found = client
            .query(&statement, &params)
            .await
            .map_err(unavailable)?;
        let mut by_status: BTreeMap<u8, u64> = BTreeMap::new();
        let mut by_error: BTreeMap<u32, u64> = BTreeMap::new();
        for row in &found {
            let kind: &str = row.try_get(0).map_err(corrupt)?;
            let value: &str = row.try_get(1).map_err(corrupt)?;
            let count: i64 = row.try_get(2).map_err(corrupt)?;
            let kind = kind.as_bytes().first().map(|b| *b as i8);
            if kind == Some(KIND_STATUS) {
                let status = KnownStatus::parse(value)
                    .ok_or_else(|| StoreError::corrupt(format!("unknown status {value:?}")))?;
                *by_status.entry(status.code()).or_default() += count.max(0) as u64;
            } else if kind == Some(KIND_ERROR) {
                let error: u32 = value.parse().map_err(corrupt)?;
                *by_error.entry(error).or_default() += count.max(0) as u64;
            }
        }
        Ok(counts(by_status, by_error))
    }

    /// Counts of one account's messages by current status and error code, updated within
    /// `[since, until)`: read from the messages rows through the account index, so it
    /// costs a row per message of the account in the window.
    pub async fn account_stats(
        &self,
        account_sid: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT status, error_code, count(*) FROM messages \
                 WHERE account_sid = $1 AND updated_at >= $2 AND updated_at < $3 \
                 AND status IS NOT NULL GROUP BY status, error_code",
            )
            .await
            .map_err(unavailable)?;
        let since = to_i64(since.map_or(0, |t| t.0));
        let until = to_i64(until.map_or(u64::MAX, |t| t.0));
        let found = client
            .query(&statement, &[&account_sid, &since, &until])
            .await
            .map_err(unavailable)?;
        let mut by_status: BTreeMap<u8, u64> = BTreeMap::new();
        let mut by_error: BTreeMap<u32, u64> = BTreeMap::new();
        for row in &found {
            let status: &str = row.try_get(0).map_err(corrupt)?;
            let error: Option<i64> = row.try_get(1).map_err(corrupt)?;
            let count = row.try_get::<_, i64>(2).map_err(corrupt)?.max(0) as u64;
            let status = KnownStatus::parse(status)
                .ok_or_else(|| StoreError::corrupt(format!("unknown status {status:?}")))?;
            *by_status.entry(status.code()).or_default() += count;
            if let Some(error) = error {
                let error = u32::try_from(error).map_err(corrupt)?;
                *by_error.entry(error).or_default() += count;
            }
        }
        Ok(counts(by_status, by_error))
    }
}

impl PgStore {
    /// The messages last updated within `[since, until)`, newest first through the live
    /// listing positions' time index, grouped by `party`: at most `MAX_SCANNED` rows and
    /// one more to tell whether the window held more, in one statement (one snapshot).
    pub async fn breakdown(
        &self,
        party: Party,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Breakdown, StoreError> {
        let column = match party {
            Party::From => "m.from_number",
            Party::To => "m.to_number",
            Party::MessagingService => "m.messaging_service_sid",
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {column}, m.status, m.error_code FROM positions p \
                 JOIN messages m ON m.sid = p.sid \
                 WHERE p.replaced_seq IS NULL AND p.status IS NOT NULL \
                 AND p.updated_at >= $1 AND p.updated_at < $2 \
                 ORDER BY p.updated_at DESC, p.sid DESC LIMIT $3"
            ))
            .await
            .map_err(unavailable)?;
        let since = to_i64(since.map_or(0, |t| t.0));
        let until = to_i64(until.map_or(u64::MAX, |t| t.0));
        let most = to_i64(MAX_SCANNED + 1);
        let rows = client
            .query(&statement, &[&since, &until, &most])
            .await
            .map_err(unavailable)?;
        let mut tally = Tally::new();
        for row in &rows {
            let key: Option<&str> = row.try_get(0).map_err(corrupt)?;
            let status: Option<&str> = row.try_get(1).map_err(corrupt)?;
            let error: Option<i64> = row.try_get(2).map_err(corrupt)?;
            let status = status
                .map(|raw| {
                    KnownStatus::parse(raw)
                        .ok_or_else(|| StoreError::corrupt(format!("unknown status {raw:?}")))
                })
                .transpose()?;
            let error = error.map(u32::try_from).transpose().map_err(corrupt)?;
            if !tally.add(key, status, error) {
                break;
            }
        }
        Ok(tally.finish())
    }
}

/// Counts from tallies by status code and by error code, without the ones at zero.
pub(super) fn counts(by_status: BTreeMap<u8, u64>, by_error: BTreeMap<u32, u64>) -> Counts {
    Counts {
        by_status: by_status
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .filter_map(|(code, count)| Some((KnownStatus::from_code(code)?, count)))
            .collect(),
        by_error: by_error
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .collect(),
    }
}

/// The statement of a window and its parameters: one index range of `counters` per
/// bucket range, and one range of the listing positions' time index per exact edge (at
/// most two, under a minute each), so that nothing else is read.
fn window_sql(plan: &Plan) -> (String, Vec<i64>) {
    let mut values = Vec::new();
    let mut param = |value: i64| {
        values.push(value);
        format!("${}", values.len())
    };
    let ranges: Vec<String> = (0..plan.spans.len())
        .map(|i| {
            format!(
                "(c.span = {}::int8::int4::\"char\" AND c.bucket >= {} AND c.bucket < {})",
                param(i64::from(plan.spans[i])),
                param(plan.firsts[i]),
                param(plan.lasts[i])
            )
        })
        .collect();
    let mut sql =
        String::from("SELECT c.kind::text, c.value, sum(c.n)::int8 FROM counters c WHERE ");
    sql.push_str(&if ranges.is_empty() {
        "false".to_owned()
    } else {
        ranges.join(" OR ")
    });
    sql.push_str(" GROUP BY c.kind, c.value");
    let edges: Vec<String> = (0..plan.edge_from.len())
        .map(|i| {
            format!(
                "(p.updated_at >= {} AND p.updated_at < {})",
                param(plan.edge_from[i]),
                param(plan.edge_to[i])
            )
        })
        .collect();
    if !edges.is_empty() {
        let edges = edges.join(" OR ");
        sql.push_str(&format!(
            " UNION ALL SELECT 's', p.status, count(*) FROM positions p \
             WHERE ({edges}) AND p.replaced_seq IS NULL AND p.status IS NOT NULL \
             GROUP BY p.status \
             UNION ALL SELECT 'e', p.error_code::text, count(*) FROM positions p \
             WHERE ({edges}) AND p.replaced_seq IS NULL AND p.error_code IS NOT NULL \
             GROUP BY p.error_code"
        ));
    }
    (sql, values)
}
