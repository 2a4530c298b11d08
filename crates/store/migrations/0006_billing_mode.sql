-- How an instance is paid for: 1 prepaid (the period before this column existed), 0 postpaid
-- (charged by the hour; `deadline` is then the end of the last hour charged).
ALTER TABLE instances ADD COLUMN billing_mode INTEGER NOT NULL DEFAULT 1;
