-- Wakes the change feed's long polls without polling: every transaction that takes feed
-- positions notifies `statushook_feed` with the last position it took. PostgreSQL
-- delivers a notification at commit, never for a transaction rolled back, and in commit
-- order, which the feed lock makes the order of positions; each replica listens on one
-- session of its own (see `store/postgres/listen.rs`). Otherwise as in 001_schema.sql.
CREATE OR REPLACE FUNCTION statushook_take_seqs(n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7342001);
    first := nextval('feed_seq');
    IF n > 1 THEN
        PERFORM setval('feed_seq', first + n - 1);
    END IF;
    PERFORM pg_notify('statushook_feed', (first + n - 1)::text);
    RETURN first;
END
$$;
