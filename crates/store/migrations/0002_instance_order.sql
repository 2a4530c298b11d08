-- DescribeRedis pages an account's instances newest first: let SQLite walk an index instead of
-- sorting every row of the account on each request.
CREATE INDEX instances_by_account_created ON instances(app_id, created_at, id);
