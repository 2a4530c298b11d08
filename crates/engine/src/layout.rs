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
/// `appendfilename`: redis names the files inside [`AOF_DIR`] after it.
pub(crate) const AOF_FILE: &str = "appendonly.aof";
pub(crate) const RDB_FILE: &str = "dump.rdb";
/// Suffixes of [`AOF_DIR`] for a restore (see `restore.rs`): the complete staged AOF, the
/// staging area it is built in, and the node's own AOF kept until the restore is finished.
const RESTORE_SUFFIX: &str = ".restore";
const STAGING_SUFFIX: &str = ".restore-partial";
const BEFORE_RESTORE_SUFFIX: &str = ".before-restore";

#[derive(Clone, Debug)]
pub(crate) struct NodePaths {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    /// The AOF folder redis-server loads at start.
    pub aof_dir: PathBuf,
    /// Where `snapshot` finds the RDB redis wrote (`dbfilename`).
    pub rdb: PathBuf,
    /// A complete AOF folder waiting to be swapped in.
    pub restore_dir: PathBuf,
    /// Where `restore_dir` is built; never loaded, never swapped in.
    pub staging_dir: PathBuf,
    /// The node's own AOF folder while a swapped-in restore is not finished yet.
    pub before_restore_dir: PathBuf,
}

/// Whether `name` can be a folder name of its own: not empty, not `.` or `..`, no slash or
/// NUL, and not a name the previous layout used for node folders.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name != "master"
        && name != "replica"
        && !name.contains(['/', '\0'])
}

impl NodePaths {
    /// Whether `conf`, a config path a process was started with, is this node's: its own
    /// path, or a path through a link the layout migration left in the instance folder
    /// (the process was started by the previous release, before its folder moved).
    pub fn names_conf(&self, conf: &Path) -> bool {
        if conf == self.conf {
            return true;
        }
        let same_parent = conf
            .parent()
            .and_then(Path::parent)
            .is_some_and(|p| Some(p) == self.dir.parent());
        same_parent
            && matches!(
                (std::fs::canonicalize(conf), std::fs::canonicalize(&self.conf)),
                (Ok(a), Ok(b)) if a == b
            )
    }

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
            aof_dir: dir.join(AOF_DIR),
            rdb: dir.join(RDB_FILE),
            restore_dir: dir.join(format!("{AOF_DIR}{RESTORE_SUFFIX}")),
            staging_dir: dir.join(format!("{AOF_DIR}{STAGING_SUFFIX}")),
            before_restore_dir: dir.join(format!("{AOF_DIR}{BEFORE_RESTORE_SUFFIX}")),
            dir,
        })
    }
}
