-- Backups: one row per complete RDB file in the backup store (a backup task inserts the row
-- when the file is whole, in the transaction that finishes the task).
CREATE TABLE backups (
    id           TEXT    PRIMARY KEY,
    app_id       INTEGER NOT NULL REFERENCES accounts(app_id),
    instance_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    remark       TEXT    NOT NULL,
    state        INTEGER NOT NULL,
    lock_task    INTEGER,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL
);
CREATE INDEX backups_by_instance ON backups(instance_id, started_at);
CREATE INDEX backups_by_state ON backups(state, started_at);

-- The daily automatic backup of an instance: one row per (day, instance) in the operator's
-- time zone, written with the backup task, so a restart never backs up twice on one day.
CREATE TABLE daily_backups (
    day          TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL,
    task_id      INTEGER NOT NULL,
    PRIMARY KEY (day, instance_id)
);
