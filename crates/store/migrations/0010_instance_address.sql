-- Every instance has a stable address, its own port that always leads to its current master
-- (a proxy frontend), apart from its nodes' ports: a failover moves the master, never the
-- address. 0 marks an instance of the previous release: crsd gives it its master node's port
-- as its address at its next start and moves that node to a new port, live (see
-- `Service::adopt_addresses`), so its clients keep the address they had.
ALTER TABLE instances ADD COLUMN port INTEGER NOT NULL DEFAULT 0;
