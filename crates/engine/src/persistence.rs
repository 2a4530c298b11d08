//! What the usage poller reads of a node in one round trip: its memory and whether it can
//! write its append-only file.
//!
//! When the disk under a node is full, redis-server cannot append to its AOF and then refuses
//! every write, deletions included (`MISCONF Errors writing to the AOF file`), until a retry
//! (once a second, by itself) succeeds. Nothing a client does changes that; the operator must
//! free space. The caller watches this to tell the operator which instances are stuck.

use crate::{admin, Engine, EngineError, NodeSpec};

/// `INFO memory persistence` of a node, the parts crsd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeUsage {
    /// `used_memory`, bytes.
    pub used_memory: u64,
    /// False while the last AOF write failed (`aof_last_write_status:err`).
    pub aof_writable: bool,
    /// Keys in all databases (`INFO keyspace`).
    pub keys: u64,
}

impl Engine {
    pub async fn usage(&self, spec: &NodeSpec) -> Result<NodeUsage, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let text: String = redis::cmd("INFO")
            .arg("memory")
            .arg("persistence")
            .arg("keyspace")
            .query_async(&mut con)
            .await?;
        let info = admin::parse_info(&text);
        let status: String = admin::field(&info, "aof_last_write_status")?;
        Ok(NodeUsage {
            used_memory: admin::field(&info, "used_memory")?,
            aof_writable: status != "err",
            keys: keyspace_keys(&text),
        })
    }
}

/// The sum of `keys=` over the `dbN:keys=..,expires=..,avg_ttl=..` lines of `INFO keyspace`.
pub(crate) fn keyspace_keys(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("db"))
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(_, fields)| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_of_every_database_are_summed() {
        let info =
            "# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\ndb3:keys=2,expires=0,avg_ttl=0\r\n";
        assert_eq!(super::keyspace_keys(info), 7);
        assert_eq!(super::keyspace_keys("# Keyspace\r\n"), 0);
    }
}
