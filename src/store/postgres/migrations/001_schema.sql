-- The whole store in one schema. Times are microseconds since the Unix epoch (UTC), the
-- same numbers the API's timestamps come from; to_timestamp(t / 1e6) shows them.

-- One row per message: its parties (set by the first event carrying them, never changed)
-- and its current state, as `domain::MessageState::replay` computes it from its events.
-- A row is inserted (empty) before its first event, inside the same transaction, so that
-- two replicas recording a new message at once both find a row to lock.
CREATE TABLE messages (
    sid text COLLATE "C" PRIMARY KEY,
    account_sid text,
    from_number text,
    to_number text,
    messaging_service_sid text,
    status text,
    error_code bigint,
    status_dlr_done text,
    created_at bigint,
    updated_at bigint
);
CREATE INDEX messages_to ON messages (to_number) WHERE to_number IS NOT NULL;
CREATE INDEX messages_from ON messages (from_number) WHERE from_number IS NOT NULL;

-- Every stored transition, with every parameter it arrived with. `n` counts a message's
-- events in arrival order; `seq` is the change feed's position, handed out in commit
-- order (see `statushook_take_seqs`).
CREATE TABLE events (
    sid text COLLATE "C" NOT NULL,
    n integer NOT NULL,
    seq bigint NOT NULL,
    status text NOT NULL,
    error_code bigint,
    raw_dlr_done_date text,
    received_at bigint NOT NULL,
    source text NOT NULL CHECK (source IN ('callback', 'sender', 'reconciler')),
    token text,
    params jsonb NOT NULL,
    PRIMARY KEY (sid, n)
);
CREATE UNIQUE INDEX events_seq ON events (seq);
-- Duplicates, as `domain::is_duplicate` defines them, made impossible by constraint too:
-- a repeated delivery token; a callback repeating an earlier callback's (status, error
-- code); a sender or reconciler event repeating another such event's. (A sender or
-- reconciler event repeating a callback is a duplicate as well; the writer finds those
-- under the message's row lock. A callback is never a duplicate of the other sources.)
CREATE UNIQUE INDEX events_token ON events (sid, token) WHERE token IS NOT NULL;
CREATE UNIQUE INDEX events_callback ON events (sid, status, coalesce(error_code, -1))
    WHERE source = 'callback';
CREATE UNIQUE INDEX events_other ON events (sid, status, coalesce(error_code, -1))
    WHERE source <> 'callback';

-- Listing positions: where a message stood in the newest-first order, from the change
-- that put it there (`placed_seq`) to the change that moved it (`replaced_seq`, NULL while
-- live). A listing at snapshot S shows the positions with placed_seq <= S < replaced_seq,
-- exactly one per message that existed at S. Replaced positions are deleted once no
-- cursor can need them (`replaced_at` older than a cursor's lifetime and a margin).
-- No index covers `replaced_seq` or `replaced_at`, and pages keep free space, so that
-- replacing a position is a HOT update that touches no index; the job that removes old
-- history scans the table once a minute instead.
CREATE TABLE positions (
    sid text COLLATE "C" NOT NULL,
    placed_seq bigint NOT NULL,
    replaced_seq bigint,
    replaced_at bigint,
    status text,
    error_code bigint,
    updated_at bigint NOT NULL,
    PRIMARY KEY (sid, placed_seq)
) WITH (fillfactor = 80);
CREATE INDEX positions_by_time ON positions (updated_at, sid);
CREATE INDEX positions_by_status ON positions (status, updated_at, sid);
CREATE INDEX positions_by_error ON positions (error_code, updated_at, sid)
    WHERE error_code IS NOT NULL;

-- Messages by current status ('s', the status) and by error code ('e', the code), all
-- time (span 'a', bucket 0) and per hour ('h') and minute ('m') of their `updated_at`.
-- Each replica adds its changes to its own stripe, so that replicas do not queue on one
-- hot row; a read sums the stripes.
CREATE TABLE counters (
    span "char" NOT NULL,
    bucket bigint NOT NULL,
    kind "char" NOT NULL,
    value text NOT NULL,
    stripe smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (span, bucket, kind, value, stripe)
);

CREATE SEQUENCE feed_seq;

-- Hands out `n` change-feed positions and returns the first. It takes the feed lock first
-- and the lock is held until the transaction ends, which is after its commit is visible:
-- so groups holding positions commit one after another, in position order, and a reader
-- that sees position N sees every smaller one (a rolled-back group leaves a gap, never a
-- late arrival).
CREATE FUNCTION statushook_take_seqs(n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7342001);
    first := nextval('feed_seq');
    IF n > 1 THEN
        PERFORM setval('feed_seq', first + n - 1);
    END IF;
    RETURN first;
END
$$;
