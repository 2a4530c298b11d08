-- How many times the kernel killed a process of the instance (a redis-server or one of its
-- forks) because it reached its memory ceiling (maxmemory plus headroom, see the engine's
-- ceiling module). Counted by the supervisor; only ever grows.
ALTER TABLE instances ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0;
