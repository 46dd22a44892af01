//! Versioned schema migrations, embedded in the binary and applied in order at start-up
//! (and by `statushook migrate`). Applied versions are recorded in
//! `statushook.schema_migrations`; replicas starting together serialise on an advisory
//! lock, so each migration runs once, in one transaction with its record.

use super::url::connect_failed;
use super::{corrupt, unavailable, DatabaseUrl};
use crate::store::StoreError;

/// Every migration, in order: (version, name, SQL). Append only; never edit one that has
/// shipped. A version is applied when it is not recorded, so versions need only be unique
/// and increasing, not contiguous.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "schema", include_str!("migrations/001_schema.sql")),
    (2, "meta", include_str!("migrations/002_meta.sql")),
    (3, "lifecycle", include_str!("migrations/003_lifecycle.sql")),
    (4, "notify", include_str!("migrations/004_feed_notify.sql")),
    (5, "clock", include_str!("migrations/005_clock.sql")),
    (
        6,
        "kept positions",
        include_str!("migrations/006_kept_positions.sql"),
    ),
    (7, "vacuum", include_str!("migrations/007_vacuum.sql")),
    (
        8,
        "event_stream",
        include_str!("migrations/008_event_stream.sql"),
    ),
];

/// The advisory lock key of migrations (distinct from the feed and leader keys).
const MIGRATION_LOCK: i64 = 7_342_000;

/// Applies the migrations not yet recorded; answers the versions it applied.
pub async fn run(url: &DatabaseUrl) -> Result<Vec<u32>, StoreError> {
    let (mut client, connection) = url
        .session()
        .await
        .map_err(|error| connect_failed(&error))?;
    let driver = tokio::spawn(connection);
    let applied = apply(&mut client).await;
    drop(client);
    let _ = driver.await;
    applied
}

async fn apply(client: &mut tokio_postgres::Client) -> Result<Vec<u32>, StoreError> {
    let transaction = client.transaction().await.map_err(unavailable)?;
    transaction
        // Warnings only: `CREATE SCHEMA IF NOT EXISTS` would say at every start, as a
        // NOTICE logged at INFO, that the schema exists.
        .batch_execute(&format!(
            "SET LOCAL client_min_messages = warning;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE SCHEMA IF NOT EXISTS statushook;
             CREATE TABLE IF NOT EXISTS statushook.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .map_err(unavailable)?;
    let rows = transaction
        .query("SELECT version FROM statushook.schema_migrations", &[])
        .await
        .map_err(unavailable)?;
    let mut present = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i32 = row.try_get(0).map_err(corrupt)?;
        present.push(u32::try_from(version).map_err(corrupt)?);
    }
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if let Some(newer) = present.iter().copied().filter(|v| *v > known).max() {
        tracing::warn!(
            database = newer,
            binary = known,
            "the database schema is newer than this statushook; upgrade it"
        );
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if present.contains(version) {
            continue;
        }
        transaction
            .batch_execute(&format!("SET LOCAL search_path = statushook;\n{sql}"))
            .await
            .map_err(unavailable)?;
        transaction
            .execute(
                "INSERT INTO statushook.schema_migrations (version, name) VALUES ($1, $2)",
                &[&i32::try_from(*version).map_err(corrupt)?, name],
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(version, name, "applied a schema migration");
        applied.push(*version);
    }
    transaction.commit().await.map_err(unavailable)?;
    Ok(applied)
}
