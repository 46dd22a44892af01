-- An import that keeps the change-feed positions its events had in the store they were
-- exported from (so that a consumer of the feed resumes after a move) writes them as they
-- are, under the feed lock, and moves the sequence past the largest: positions handed out
-- afterwards come after every kept one, and notifies `statushook_feed` like
-- statushook_take_seqs (migration 4) so that long polls wake. Returns the sequence's last
-- value.
CREATE FUNCTION statushook_keep_seqs(last bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7342001);
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO current
        FROM feed_seq;
    IF last > current THEN
        PERFORM setval('feed_seq', last);
        PERFORM pg_notify('statushook_feed', last::text);
        RETURN last;
    END IF;
    RETURN current;
END
$$;
