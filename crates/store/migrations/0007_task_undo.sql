-- A failed task is undone, and an undo that fails is retried with backoff; this state must
-- survive a restart, or a resumed task would run its steps again instead of its undo.
-- undo_status: NULL while the steps run; once the task failed, the status it ends with (3 or
-- -1) when its undo succeeds. undo_attempts: undo attempts that failed. retry_at (ms): the
-- runner leaves the task alone until then. detail: the operator's account of the failure
-- (server paths, internal errors), never shown to a tenant; `error` is the tenant's summary.
ALTER TABLE tasks ADD COLUMN undo_status INTEGER;
ALTER TABLE tasks ADD COLUMN undo_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN retry_at INTEGER;
ALTER TABLE tasks ADD COLUMN detail TEXT;
-- Messages recorded before this column held internal detail: the detail moves here, the
-- tenant keeps a summary.
UPDATE tasks SET detail = error, error = 'the task failed' WHERE error IS NOT NULL;
