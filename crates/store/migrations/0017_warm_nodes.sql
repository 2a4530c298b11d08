-- The warm pool: redis-server processes started ahead of any purchase, so that a create
-- takes running nodes instead of starting them (a cluster's masters also wait out Redis
-- Cluster's two seconds before a new master may serve). Each runs empty with secrets of its
-- own; the create that takes one moves it to `nodes` in its transaction and gives it the
-- instance's users (`warm_secret` until then). Its folder stays where it was started
-- (`folder`): a running process's paths cannot move.
CREATE TABLE warm_nodes (
    id           TEXT    PRIMARY KEY,
    -- 1: started with cluster-enabled (for cluster instances), 0: for standard ones.
    cluster      INTEGER NOT NULL CHECK (cluster IN (0, 1)),
    port         INTEGER NOT NULL UNIQUE,
    admin_secret TEXT    NOT NULL,
    repl_secret  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Only 'ready' nodes are taken. 'starting': recorded, its process being started;
    -- 'dropping': being stopped and removed. Each is the pool keeper's alone, so a create
    -- never takes a node the keeper is starting or removing.
    state        TEXT    NOT NULL CHECK (state IN ('starting', 'ready', 'dropping'))
);
-- '' for every node of an earlier release: its folder is its instance's.
ALTER TABLE nodes ADD COLUMN folder TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN warm_secret TEXT NOT NULL DEFAULT '';
