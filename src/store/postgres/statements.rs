//! The SQL the writer sends, prepared once per connection: every statement of a group's
//! two round trips, each multi-row (`unnest` of arrays, one array per column), so that a
//! group costs the same statements whether it holds one callback or a thousand. Deletions
//! and imports (`lifecycle.rs`) prepare the same statements on their own connections.

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Statement;

use super::rows;

/// The writer connection's settings. Every statement of the writer reaches a handful of
/// rows through a primary key or a unique index, whatever the size of the tables, so it is
/// planned once per connection (a generic plan) instead of at each execution, which cost a
/// third as much as running it; and sequential scans are ruled out, so that a plan made
/// while a table was new and small (and never analyzed) is not a scan of it later.
pub(super) const WRITER_SETTINGS: &str =
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

/// The writer's statements, prepared once per connection (and used by the deletions and
/// imports of `lifecycle.rs` on theirs).
pub(super) struct Statements {
    pub insert_messages: Statement,
    pub lock_messages: Statement,
    pub read_events: Statement,
    /// The database's clock (`statushook_now()`), every replica's one clock.
    pub now: Statement,
    pub update_messages: Statement,
    pub add_counters: Statement,
    pub take_seqs: Statement,
    /// For an import that keeps its events' feed positions.
    pub keep_seqs: Statement,
    pub replace_positions: Statement,
    pub insert_events: Statement,
    pub insert_positions: Statement,
}

impl Statements {
    pub(super) async fn prepare(
        client: &ClientWrapper,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            insert_messages: client
                .prepare_cached(
                    "INSERT INTO messages (sid) SELECT s FROM unnest($1::text[]) AS s ORDER BY s \
                     ON CONFLICT (sid) DO NOTHING",
                )
                .await?,
            lock_messages: client
                .prepare_cached(&format!(
                    "SELECT m.sid, {} FROM messages m WHERE m.sid = ANY($1::text[]) \
                     ORDER BY m.sid FOR UPDATE",
                    rows::PARTIES
                ))
                .await?,
            read_events: client
                .prepare_cached(&format!(
                    "SELECT {}, e.token FROM events e WHERE e.sid = ANY($1::text[]) \
                     ORDER BY e.sid, e.n",
                    rows::EVENT_WITH_SID
                ))
                .await?,
            now: client.prepare_cached("SELECT statushook_now()").await?,
            update_messages: client
                .prepare_cached(
                    "UPDATE messages AS m SET account_sid = u.account_sid, \
                     from_number = u.from_number, to_number = u.to_number, \
                     messaging_service_sid = u.messaging_service_sid, status = u.status, \
                     error_code = u.error_code, status_dlr_done = u.status_dlr_done, \
                     created_at = u.created_at, updated_at = u.updated_at \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::int8[], $8::text[], $9::int8[], $10::int8[]) \
                     AS u(sid, account_sid, from_number, to_number, messaging_service_sid, \
                     status, error_code, status_dlr_done, created_at, updated_at) \
                     WHERE m.sid = u.sid",
                )
                .await?,
            add_counters: client
                .prepare_cached(
                    "INSERT INTO counters (span, bucket, kind, value, stripe, n) \
                     SELECT u.span, u.bucket, u.kind, u.value, $5::int2, u.n \
                     FROM unnest($1::\"char\"[], $2::int8[], $3::\"char\"[], $4::text[], \
                     $6::int8[]) AS u(span, bucket, kind, value, n) \
                     ORDER BY u.span, u.bucket, u.kind, u.value \
                     ON CONFLICT (span, bucket, kind, value, stripe) \
                     DO UPDATE SET n = counters.n + excluded.n",
                )
                .await?,
            take_seqs: client
                .prepare_cached("SELECT statushook_take_seqs($1::int8)")
                .await?,
            keep_seqs: client
                .prepare_cached("SELECT statushook_keep_seqs($1::int8)")
                .await?,
            replace_positions: client
                .prepare_cached(
                    "UPDATE positions AS p \
                     SET replaced_seq = currval('feed_seq') - $4::int8 + u.seq, replaced_at = u.at \
                     FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(sid, seq, at) \
                     WHERE p.sid = u.sid AND p.replaced_seq IS NULL",
                )
                .await?,
            insert_events: client
                .prepare_cached(
                    "INSERT INTO events (sid, n, seq, status, error_code, raw_dlr_done_date, \
                     received_at, source, token, params) \
                     SELECT u.sid, u.n, coalesce($12::int8, currval('feed_seq') - $11::int8) \
                     + u.seq, u.status, \
                     u.error_code, u.dlr, u.received_at, \
                     u.source, u.token, u.params::jsonb \
                     FROM unnest($1::text[], $2::int4[], $3::int8[], $4::text[], $5::int8[], \
                     $6::text[], $7::int8[], $8::text[], $9::text[], $10::text[]) \
                     AS u(sid, n, seq, status, error_code, dlr, received_at, source, token, \
                     params)",
                )
                .await?,
            insert_positions: client
                .prepare_cached(
                    "INSERT INTO positions (sid, placed_seq, status, error_code, updated_at) \
                     SELECT u.sid, coalesce($7::int8, currval('feed_seq') - $6::int8) \
                     + u.placed, u.status, \
                     u.error_code, u.updated_at \
                     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[]) \
                     AS u(sid, placed, status, error_code, updated_at)",
                )
                .await?,
        })
    }
}
