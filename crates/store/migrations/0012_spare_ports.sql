-- Ports of the proxy's spare frontends (pre-bound addresses a new instance takes without a
-- proxy reload; see crsd_engine::Proxy::take_spare). A port is here or an instance's, never
-- both: a purchase moves it from here to its instance in one transaction.
CREATE TABLE spare_ports (port INTEGER PRIMARY KEY);
