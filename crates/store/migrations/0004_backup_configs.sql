-- Per-instance automatic backup settings (API 3.0 ModifyAutoBackupConfig). An instance without
-- a row is backed up every day at the operator's default time.
CREATE TABLE backup_configs (
    instance_id  TEXT    PRIMARY KEY,
    -- Comma-separated English day names, e.g. "Monday,Thursday".
    week_days    TEXT    NOT NULL,
    -- Local hour (0-23) at which the backup is due.
    start_hour   INTEGER NOT NULL
);
