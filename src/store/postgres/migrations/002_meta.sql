-- The service's own small state (forwarding progress, replay requests), by name.
CREATE TABLE meta (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
