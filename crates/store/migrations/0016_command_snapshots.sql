-- Each node's command counters (INFO commandstats, and LATENCY HISTOGRAM folded into the
-- monitoring ladder) as they stood at one time, kept every 10 minutes so that a span's counts
-- are the live counters minus the snapshot nearest the span's start (see the service's
-- `monitor` module). Counters are a JSON object by command name; one row per node and
-- snapshot time, about 144 a node a day, pruned with the history's retention.
CREATE TABLE command_snapshots (
    node_id     TEXT    NOT NULL,
    instance_id TEXT    NOT NULL,
    at          INTEGER NOT NULL,   -- unix seconds, by the service's clock
    run_id      TEXT    NOT NULL,   -- the process whose counters these are
    commands    TEXT    NOT NULL,   -- {"set": {"calls": N, "usec": N, "within": [N, ...]}, ...}
    PRIMARY KEY (node_id, at)
);
-- Pruning by age.
CREATE INDEX command_snapshots_at ON command_snapshots(at);
