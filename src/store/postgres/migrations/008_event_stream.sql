-- Events from Twilio Event Streams (source 'event_stream'), beside callbacks. A stream
-- event repeating an earlier stream event's (status, error code) is a duplicate, as a
-- callback repeating a callback's is; a stream event and a callback of the same
-- transition are both kept (the second is an echo, see `domain::is_echo`), and neither is
-- a duplicate of a sender or reconciler event. So the index of the other sources no longer
-- covers stream events, which get an index of their own.
ALTER TABLE events DROP CONSTRAINT events_source_check;
ALTER TABLE events ADD CONSTRAINT events_source_check
    CHECK (source IN ('callback', 'sender', 'reconciler', 'event_stream'));
CREATE UNIQUE INDEX events_other_sources ON events (sid, status, coalesce(error_code, -1))
    WHERE source IN ('sender', 'reconciler');
DROP INDEX events_other;
ALTER INDEX events_other_sources RENAME TO events_other;
CREATE UNIQUE INDEX events_stream ON events (sid, status, coalesce(error_code, -1))
    WHERE source = 'event_stream';
