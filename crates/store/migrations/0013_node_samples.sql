-- The history of per-node figures crsd keeps itself (see crsd_core::model::NodeSample), one
-- row per node per sampling interval, pruned by age after every round: its size is bounded by
-- retention / interval x nodes rows (about 1.44 million for 1,000 nodes at one a minute over
-- 24 h). No reference to instances or nodes: a deleted instance's history stays until it is
-- older than the retention.
CREATE TABLE node_samples (
    id              INTEGER PRIMARY KEY,
    node_id         TEXT    NOT NULL,
    instance_id     TEXT    NOT NULL,
    at              INTEGER NOT NULL,   -- unix seconds, by the service's clock
    role            TEXT    NOT NULL CHECK (role IN ('master', 'replica')),
    span_ms         INTEGER NOT NULL,   -- real time the deltas below cover; 0: first sample
    used_memory     INTEGER NOT NULL,   -- bytes
    ops_per_sec     REAL    NOT NULL,
    connections     INTEGER NOT NULL,
    keyspace_hits   INTEGER NOT NULL,   -- over the span
    keyspace_misses INTEGER NOT NULL,   -- over the span
    net_in_bps      REAL    NOT NULL,   -- bytes per second
    net_out_bps     REAL    NOT NULL,
    keys            INTEGER NOT NULL,
    expired_keys    INTEGER NOT NULL,   -- over the span
    evicted_keys    INTEGER NOT NULL,   -- over the span
    repl_lag_bytes  INTEGER,            -- replicas only
    cpu_secs        REAL    NOT NULL    -- over the span
);
-- An instance's history over a time range; at most one row per node and second.
CREATE UNIQUE INDEX node_samples_instance_at ON node_samples(instance_id, at, node_id);
-- Pruning by age.
CREATE INDEX node_samples_at ON node_samples(at);
