//! Listing messages exactly once per message at a snapshot.
//!
//! The snapshot is a change-feed position: the highest one committed when the first page
//! was served (every smaller one is committed too, see `writer.rs`). A message stood at a
//! listing position at snapshot S when the position was placed at or before S and
//! replaced after it (or is live); that is exactly one position per message existing at
//! S, whatever moved since. A page is a keyset walk over those positions, newest
//! `(updated_at, sid)` first, below the cursor; each message is then shown as it stood
//! at S: `MessageState::replay` over its events committed at or below S.
//!
//! Several statuses are one `UNION ALL` branch per status, each an ordered range of the
//! `(status, updated_at, sid)` index, merged by PostgreSQL; an error code uses its own
//! index; `to`, `from` and `account_sid` join the message's parties, which never change
//! once set.

use tokio_postgres::types::ToSql;

use super::{corrupt, now, rows, to_i64, unavailable, watermark, PgStore};
use crate::domain::MessageSid;
use crate::store::{Cursor, ListQuery, Page, StoreError};

impl PgStore {
    /// One page of the messages matching `query`, newest `updated_at` first.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let client = self.client().await?;
        let (snapshot, issued_at) = match &query.cursor {
            Some(cursor) => (cursor.snapshot, cursor.issued_at),
            // The issue time comes from the database's clock, which every replica reads:
            // a cursor issued by one replica is judged by another against the same clock.
            None => tokio::try_join!(watermark(&client), now(&client))?,
        };
        let limit = query.limit.min(1000);
        let sql = page_sql(query);
        let snapshot_param = to_i64(snapshot);
        let since = to_i64(query.since.map_or(0, |t| t.0));
        let until = to_i64(query.until.map_or(u64::MAX, |t| t.0));
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let (cursor_at, cursor_sid) = match &query.cursor {
            Some(cursor) => (to_i64(cursor.updated_at.0), cursor.sid.as_str().to_owned()),
            // Above every real position: the walk starts at the newest.
            None => (i64::MAX, String::new()),
        };
        let error_code = query.error_code.map(i64::from);
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &snapshot_param,
            &since,
            &until,
            &cursor_at,
            &cursor_sid,
            &fetch,
        ];
        if let Some(code) = &error_code {
            params.push(code);
        }
        if let Some(to) = &query.to {
            params.push(to);
        }
        if let Some(from) = &query.from {
            params.push(from);
        }
        if let Some(account) = &query.account_sid {
            params.push(account);
        }
        for status in &statuses {
            params.push(status);
        }
        let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
        let found = client
            .query(&statement, &params)
            .await
            .map_err(unavailable)?;
        let mut listed = Vec::with_capacity(found.len());
        for row in &found {
            let sid: String = row.try_get(0).map_err(corrupt)?;
            let updated_at: i64 = row.try_get(1).map_err(corrupt)?;
            listed.push((sid, updated_at));
        }
        let sids: Vec<String> = listed.iter().map(|(sid, _)| sid.clone()).collect();
        let histories = rows::histories(&client, &sids, snapshot_param).await?;
        let mut messages = Vec::with_capacity(listed.len());
        for (sid, updated_at) in listed {
            let Some(state) = histories.get(&sid).and_then(|h| h.state_at(snapshot_param)) else {
                continue;
            };
            // The position and the replayed state agree by construction; a message that
            // would not is left out rather than shown twice or out of order.
            if to_i64(state.updated_at.0) != updated_at || !query.matches(&state) {
                continue;
            }
            let sid = MessageSid::parse(&sid).map_err(StoreError::corrupt)?;
            messages.push((sid, state));
        }
        let next = if messages.len() > limit {
            messages.truncate(limit);
            messages.last().map(|(sid, state)| Cursor {
                snapshot,
                issued_at,
                updated_at: state.updated_at,
                sid: sid.clone(),
            })
        } else {
            None
        };
        Ok(Page { messages, next })
    }
}

/// The statement of a page. Parameters: $1 snapshot, $2 since, $3 until, $4 and $5 the
/// cursor's (updated_at, sid), $6 how many rows, then the error code, `to`, `from` and
/// `account_sid` if given, then the statuses.
fn page_sql(query: &ListQuery) -> String {
    let mut next = 7;
    let mut take = || {
        let n = next;
        next += 1;
        n
    };
    let mut filters = String::new();
    let mut join = "";
    if query.error_code.is_some() {
        filters.push_str(&format!(" AND p.error_code = ${}", take()));
    }
    if query.to.is_some() || query.from.is_some() || query.account_sid.is_some() {
        join = " JOIN messages m ON m.sid = p.sid";
    }
    if query.to.is_some() {
        filters.push_str(&format!(" AND m.to_number = ${}", take()));
    }
    if query.from.is_some() {
        filters.push_str(&format!(" AND m.from_number = ${}", take()));
    }
    if query.account_sid.is_some() {
        filters.push_str(&format!(" AND m.account_sid = ${}", take()));
    }
    let branch = |status: Option<usize>| {
        let status = status.map_or(String::new(), |n| format!(" AND p.status = ${n}"));
        format!(
            "(SELECT p.sid, p.updated_at FROM positions p{join} \
             WHERE p.placed_seq <= $1 AND (p.replaced_seq IS NULL OR p.replaced_seq > $1) \
             AND p.updated_at >= $2 AND p.updated_at < $3 \
             AND (p.updated_at, p.sid) < ($4, $5){status}{filters} \
             ORDER BY p.updated_at DESC, p.sid DESC LIMIT $6)"
        )
    };
    if query.statuses.is_empty() {
        return branch(None);
    }
    let branches: Vec<String> = query
        .statuses
        .iter()
        .map(|_| branch(Some(take())))
        .collect();
    format!(
        "SELECT sid, updated_at FROM ({}) AS page ORDER BY updated_at DESC, sid DESC LIMIT $6",
        branches.join(" UNION ALL ")
    )
}
