-- Messages by account, newest last: the account filter of listings and of stats.
CREATE INDEX messages_account ON messages (account_sid, updated_at)
    WHERE account_sid IS NOT NULL;

-- Idempotency-Key claims of POST /v1/messages (see store/idempotency.rs), one row per key.
-- A claim is in flight while `reply_status` is NULL, then holds the answer given again.
-- `owner` is the advisory lock key the claiming replica holds for as long as it lives
-- (see `store/postgres/idempotency.rs`): a claim whose owner holds no lock was cut off.
-- Times are microseconds since the Unix epoch.
CREATE TABLE idempotency_keys (
    key text COLLATE "C" PRIMARY KEY,
    request_hash bytea NOT NULL,
    claimed_at bigint NOT NULL,
    claim_id bigint NOT NULL,
    owner bigint NOT NULL,
    in_flight_at_most bigint NOT NULL,
    reply_status integer,
    reply_body bytea
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (claimed_at);
