//! The service's own state on PostgreSQL (forwarding progress, replay requests, …): one
//! `meta` row per key, read and written by the callers of `Store::meta`, never by the writer.

use super::{corrupt, unavailable, PgStore};
use crate::store::StoreError;

impl PgStore {
    /// The state under `key`, if any.
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

    /// Sets the state under `key` to `value` only if it is `expected` now (`None`: no row);
    /// answers whether it did. One statement, so that of replicas racing on a key exactly
    /// one sees its expected value and wins.
    pub async fn swap_meta(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let changed = match (expected, value) {
            (None, Some(value)) => client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &value],
                )
                .await
                .map_err(unavailable)?,
            (Some(expected), Some(value)) => client
                .execute(
                    "UPDATE meta SET value = $3 WHERE key = $1 AND value = $2",
                    &[&key, &expected, &value],
                )
                .await
                .map_err(unavailable)?,
            (Some(expected), None) => client
                .execute(
                    "DELETE FROM meta WHERE key = $1 AND value = $2",
                    &[&key, &expected],
                )
                .await
                .map_err(unavailable)?,
            (None, None) => {
                let row = client
                    .query_opt("SELECT 1 FROM meta WHERE key = $1", &[&key])
                    .await
                    .map_err(unavailable)?;
                u64::from(row.is_none())
            }
        };
        Ok(changed == 1)
    }
}
