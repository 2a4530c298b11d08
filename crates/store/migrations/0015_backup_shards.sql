-- A cluster's backup is one RDB per shard under one backup id: the shards' files, sizes,
-- SHA-256 and slots as JSON (`[{"shard":0,"slots":"0-5460","size":..,"sha256":".."}]`); a
-- standard instance's backup keeps its one file in `size`/`sha256` and an empty list.
ALTER TABLE backups ADD COLUMN shards TEXT NOT NULL DEFAULT '[]';
