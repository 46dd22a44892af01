-- Retention deletes old messages with their events and listing positions as fast as it
-- can, and PostgreSQL reuses the space of deleted rows only once vacuum has found them.
-- With the defaults (a table is vacuumed once a fifth of it is dead, at a throttled pace)
-- the space of a large deletion was free minutes after it, and a store refilled before
-- then grew by a quarter. These tables are vacuumed once a hundredth of them is dead, at
-- full speed, so that vacuum follows retention and the space is free when it ends.
ALTER TABLE events SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE positions SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE messages SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
