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
}
