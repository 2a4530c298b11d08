//! Where a node's files live inside its folder.
//!
//! The paths are made absolute once, here, because the config file path is part of the
//! process identity (`/proc/<pid>/cmdline` is `<redis-server> <dir>/redis.conf`) and redis
//! resolves `CONFIG REWRITE` against the path it was started with: both must be stable.

use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::EngineError;

pub(crate) const CONF_FILE: &str = "redis.conf";
pub(crate) const PID_FILE: &str = "redis.pid";
pub(crate) const LOG_FILE: &str = "redis.log";
pub(crate) const AOF_DIR: &str = "appendonlydir";
pub(crate) const RDB_FILE: &str = "dump.rdb";

#[derive(Clone, Debug)]
pub(crate) struct NodePaths {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl NodePaths {
    pub fn new(dir: &Path) -> Result<NodePaths, EngineError> {
        if dir.as_os_str().is_empty() {
            return Err(EngineError::Config("node dir is empty".into()));
        }
        let dir = std::path::absolute(dir).map_err(io_err(format!(
            "making node dir {} absolute",
            dir.display()
        )))?;
        if dir.parent().is_none() {
            return Err(EngineError::Config(
                "node dir must not be the filesystem root".into(),
            ));
        }
        Ok(NodePaths {
            conf: dir.join(CONF_FILE),
            pid: dir.join(PID_FILE),
            log: dir.join(LOG_FILE),
            dir,
        })
    }
}
