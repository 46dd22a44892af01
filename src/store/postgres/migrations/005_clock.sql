-- The one clock of every replica: the database server's, in microseconds since the Unix
-- epoch, the unit of every time column. Arrival times, the issue time of listing cursors,
-- the "now" of stats windows, of retention and of the removal of old listing history all
-- come from it, so that replicas whose own clocks disagree still agree on order, windows
-- and ages. `clock_timestamp()` is the time of the call, not of the transaction's start.
CREATE FUNCTION statushook_now() RETURNS bigint LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;
