//! crsd-backupstore: where backups (RDB files) are kept.
//!
//! Backups outlive the redis-server that produced them and may later live in S3-compatible
//! storage, so the service talks to one small, storage-agnostic trait, [`BackupStore`]: take a
//! finished file in, find it, delete it, clean up after a crash. The default, [`LocalStore`],
//! keeps them in a folder under crsd's data dir.
//!
//! Everything here is blocking `std::fs` code (hashing and copying gigabytes is CPU and disk
//! work, not waiting): async callers wrap each call in `tokio::task::spawn_blocking`.
//!
//! This crate holds no business rules (retention, quotas, who may download): it stores what the
//! service decides to keep.

mod key;
mod local;

pub use key::BackupKey;
pub use local::{hash_file, LocalStore};

use std::path::{Path, PathBuf};

/// What a completed ingest recorded about the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An instance or backup id that is not `[A-Za-z0-9-]{1,64}`; never touches the disk.
    #[error("invalid backup key: {0}")]
    InvalidKey(String),
    /// A backup is already stored under this key; ingest never replaces one.
    #[error("backup {0} already exists")]
    Exists(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the store ran out of space (ENOSPC, or a quota: EDQUOT).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Where backups are kept. Implementations are blocking; see the crate docs.
pub trait BackupStore: Send + Sync + 'static {
    /// Takes the file at `src` in as backup `key`. `src` is consumed: moved when it is on the
    /// same filesystem (rename), else copied and removed.
    /// The backup becomes visible under `key` only complete: written/moved to a temporary name
    /// in the store, fsynced, renamed, folder fsynced.
    /// On any error (e.g. ENOSPC) nothing is left under `key`, no temporary file remains and
    /// `src` is where it was.
    fn ingest(&self, key: &BackupKey, src: &Path) -> Result<Stored, StoreError>;

    /// The local file of a stored backup, if this store keeps local files (downloads stream it,
    /// restores copy it); None when it does not exist.
    fn local_path(&self, key: &BackupKey) -> Option<PathBuf>;

    /// Removes the backup; removing a missing one is Ok.
    fn delete(&self, key: &BackupKey) -> Result<(), StoreError>;

    /// Every backup stored, in no particular order (entries that are not backups are skipped).
    /// The service compares it with its records at start to remove files a crash orphaned.
    fn list(&self) -> Result<Vec<BackupKey>, StoreError>;

    /// Removes temporary files left by a crash; returns how many. Call at startup, before any
    /// ingest: an ingest in flight would lose its temporary file.
    fn sweep(&self) -> Result<usize, StoreError>;
}
