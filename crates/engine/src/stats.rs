//! A node's figures for crsd's own monitoring history: one `INFO` of the sections it needs
//! (one round trip), parsed into the gauges and the raw counters redis keeps since its start.
//! Turning counters into rates and deltas between two looks is the caller's business (it
//! knows when it looked before); this module only reads.

use std::time::Duration;

use crate::admin;
use crate::{Engine, EngineError, NodeSpec};

/// The sections read, all in one `INFO` (redis 7 takes several).
const SECTIONS: [&str; 7] = [
    "server",
    "clients",
    "memory",
    "stats",
    "replication",
    "cpu",
    "keyspace",
];

/// How long the node has to answer: a local redis-server answers INFO in well under a
/// millisecond; one that takes this long is hung, and the caller's round moves on.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What one `INFO` tells of a node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeStats {
    /// `run_id`: a new one means the process restarted and its counters began again.
    pub run_id: String,
    /// `role:master` (else a replica).
    pub is_master: bool,
    /// `used_memory`, bytes.
    pub used_memory: u64,
    /// `connected_clients`.
    pub connected_clients: u64,
    /// `total_commands_processed`, since the start.
    pub commands: u64,
    /// `instantaneous_ops_per_sec`: redis's own recent rate.
    pub instantaneous_ops_per_sec: f64,
    /// `total_net_input_bytes` and `total_net_output_bytes`, since the start.
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    /// `instantaneous_input_kbps` and `instantaneous_output_kbps` (KB/s, 1024 bytes).
    pub instantaneous_input_kbps: f64,
    pub instantaneous_output_kbps: f64,
    /// `keyspace_hits` and `keyspace_misses`, since the start.
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// `expired_keys` and `evicted_keys`, since the start.
    pub expired_keys: u64,
    pub evicted_keys: u64,
    /// Keys in all databases.
    pub keys: u64,
    /// `master_repl_offset`: on a master the end of the replication stream it produced, on
    /// a replica how far into its master's stream it is.
    pub repl_offset: i64,
    /// `used_cpu_sys` + `used_cpu_user`: CPU seconds of the process since its start.
    pub cpu_secs: f64,
}

impl NodeStats {
    /// Reads the reply of `INFO server clients memory stats replication cpu keyspace`.
    pub fn parse(text: &str) -> Result<NodeStats, EngineError> {
        let info = admin::parse_info(text);
        let role: String = admin::field(&info, "role")?;
        let sys: f64 = admin::field(&info, "used_cpu_sys")?;
        let user: f64 = admin::field(&info, "used_cpu_user")?;
        Ok(NodeStats {
            run_id: admin::field(&info, "run_id")?,
            is_master: role == "master",
            used_memory: admin::field(&info, "used_memory")?,
            connected_clients: admin::field(&info, "connected_clients")?,
            commands: admin::field(&info, "total_commands_processed")?,
            instantaneous_ops_per_sec: admin::field(&info, "instantaneous_ops_per_sec")?,
            net_input_bytes: admin::field(&info, "total_net_input_bytes")?,
            net_output_bytes: admin::field(&info, "total_net_output_bytes")?,
            instantaneous_input_kbps: admin::field(&info, "instantaneous_input_kbps")?,
            instantaneous_output_kbps: admin::field(&info, "instantaneous_output_kbps")?,
            keyspace_hits: admin::field(&info, "keyspace_hits")?,
            keyspace_misses: admin::field(&info, "keyspace_misses")?,
            expired_keys: admin::field(&info, "expired_keys")?,
            evicted_keys: admin::field(&info, "evicted_keys")?,
            keys: crate::persistence::keyspace_keys(text),
            repl_offset: admin::field(&info, "master_repl_offset")?,
            cpu_secs: sys + user,
        })
    }
}

impl Engine {
    /// One `INFO` of the node, as crsd's admin user.
    pub async fn stats(&self, spec: &NodeSpec) -> Result<NodeStats, EngineError> {
        let mut con = admin::connect(self.config(), spec, RESPONSE_TIMEOUT).await?;
        let text: String = redis::cmd("INFO")
            .arg(&SECTIONS[..])
            .query_async(&mut con)
            .await?;
        NodeStats::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::NodeStats;

    #[test]
    fn a_replica_s_info_is_read() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\nuptime_in_seconds:9\r\n\
            \r\n# Clients\r\nconnected_clients:4\r\nblocked_clients:0\r\n\
            \r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
            \r\n# Stats\r\ntotal_commands_processed:1200\r\ninstantaneous_ops_per_sec:17\r\n\
            total_net_input_bytes:5000\r\ntotal_net_output_bytes:7000\r\n\
            instantaneous_input_kbps:0.52\r\ninstantaneous_output_kbps:1.25\r\n\
            expired_keys:3\r\nevicted_keys:2\r\nkeyspace_hits:90\r\nkeyspace_misses:10\r\n\
            \r\n# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
            master_repl_offset:4242\r\n\
            \r\n# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.500000\r\n\
            used_cpu_sys_children:9.000000\r\n\
            \r\n# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\ndb2:keys=2,expires=0,avg_ttl=0\r\n";
        let s = NodeStats::parse(text).unwrap();
        assert_eq!(s.run_id, "abc123");
        assert!(!s.is_master);
        assert_eq!(s.used_memory, 1_048_576);
        assert_eq!(s.connected_clients, 4);
        assert_eq!(s.commands, 1200);
        assert_eq!(s.instantaneous_ops_per_sec, 17.0);
        assert_eq!((s.net_input_bytes, s.net_output_bytes), (5000, 7000));
        assert_eq!(s.instantaneous_output_kbps, 1.25);
        assert_eq!((s.keyspace_hits, s.keyspace_misses), (90, 10));
        assert_eq!((s.expired_keys, s.evicted_keys), (3, 2));
        assert_eq!(s.keys, 7);
        assert_eq!(s.repl_offset, 4242);
        assert_eq!(s.cpu_secs, 1.75);
    }

    #[test]
    fn a_missing_field_is_an_error() {
        assert!(NodeStats::parse("# Server\r\nrun_id:abc\r\n").is_err());
    }
}
