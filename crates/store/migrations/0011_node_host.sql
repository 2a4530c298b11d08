-- With an address pool (`instances.address_pool`) every node listens on an address of its
-- own, at its instance's port, and the instance's address (`vip`) is held by its current
-- master alone: no proxy hop. '' marks a node on the host's shared address (`instances.bind`),
-- as every node of an earlier release, served through the proxy.
ALTER TABLE nodes ADD COLUMN host TEXT NOT NULL DEFAULT '';
-- A port is unique per address: nodes on addresses of their own share their instance's port.
DROP INDEX nodes_port;
CREATE UNIQUE INDEX nodes_host_port ON nodes(host, port);
