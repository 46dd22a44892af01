//! Forgetting listing history: the replaced listing positions that no valid cursor can
//! read any more. The job leader runs it now and then, for every replica; the writer
//! only ever adds history (`group.rs`), so this is the one place that removes it outside
//! a deletion.

use deadpool_postgres::Pool;

use super::{now, to_i64};
use crate::store::{StoreError, HISTORY_KEPT};

/// Deletes replaced listing positions older than any valid cursor; returns how many.
pub async fn forget_history(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await.map_err(StoreError::unavailable)?;
    // By the database's clock, which stamped `replaced_at`.
    let horizon = to_i64(
        now(&client)
            .await?
            .0
            .saturating_sub(HISTORY_KEPT.as_micros() as u64),
    );
    let mut total = 0;
    loop {
        // In batches, so that no transaction holds many row locks for long.
        let deleted = client
            .execute(
                "DELETE FROM positions WHERE ctid = ANY(ARRAY(SELECT ctid FROM positions \
                 WHERE replaced_at < $1 LIMIT 5000))",
                &[&horizon],
            )
            .await
            .map_err(StoreError::unavailable)?;
        total += deleted;
        if deleted < 5000 {
            return Ok(total);
        }
    }
}
