-- An instance is a set of nodes (redis-server processes), no longer a row with two ports.
-- Each node has a stable id (`<instance id>-<seq>`, seq counted per instance and never
-- reused), a desired role, the shard it serves (0 for a standard instance) and its port.
-- Existing instances are carried over: their master becomes node 0, their replica node 1
-- (the node folders are moved by crsd at its next start, while the processes keep running).
-- A deleted instance has no nodes: its ports are free.
CREATE TABLE nodes (
    id          TEXT    PRIMARY KEY,
    instance_id TEXT    NOT NULL REFERENCES instances(id),
    seq         INTEGER NOT NULL,
    shard       INTEGER NOT NULL DEFAULT 0,
    role        TEXT    NOT NULL CHECK (role IN ('master', 'replica')),
    port        INTEGER NOT NULL,
    UNIQUE (instance_id, seq)
);
CREATE UNIQUE INDEX nodes_port ON nodes(port);

INSERT INTO nodes (id, instance_id, seq, shard, role, port)
    SELECT id || '-0', id, 0, 0, 'master', port FROM instances WHERE status != -3;
INSERT INTO nodes (id, instance_id, seq, shard, role, port)
    SELECT id || '-1', id, 1, 0, 'replica', replica_port FROM instances WHERE status != -3;

-- The sequence number the instance's next node gets: node ids are never reused, also after a
-- replica was removed.
ALTER TABLE instances ADD COLUMN next_node_seq INTEGER NOT NULL DEFAULT 0;
UPDATE instances SET next_node_seq = 2 WHERE status != -3;

DROP INDEX instances_port;
DROP INDEX instances_replica_port;
ALTER TABLE instances DROP COLUMN port;
ALTER TABLE instances DROP COLUMN replica_port;
