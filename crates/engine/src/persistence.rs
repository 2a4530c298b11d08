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
}

impl Engine {
    pub async fn usage(&self, spec: &NodeSpec) -> Result<NodeUsage, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let text: String = redis::cmd("INFO")
            .arg("memory")
            .arg("persistence")
            .query_async(&mut con)
            .await?;
        let info = admin::parse_info(&text);
        let status: String = admin::field(&info, "aof_last_write_status")?;
        Ok(NodeUsage {
            used_memory: admin::field(&info, "used_memory")?,
            aof_writable: status != "err",
        })
    }
}
