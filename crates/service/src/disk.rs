//! The host's disk reserve.
//!
//! Instances' append-only files, backups and the metadata database share the data disk. When
//! it fills up, SQLite cannot commit (no task can end, no state can change) and every
//! redis-server on it refuses writes. crsd cannot stop a tenant's own writes from growing its
//! AOF, but it must not fill the disk itself: a backup (an RDB written on the data disk by
//! the replica, then kept in the backup store) or a restore (a copy of a backup beside the
//! master's data) is refused with [`Error::DiskSpaceLow`] when it would leave less free space
//! than the reserve on either folder's filesystem.

use crate::Service;
use crsd_core::{Error, Result};
use std::path::{Path, PathBuf};

/// How much free space to keep: the smaller of `min_free_bytes` and `min_free_percent` of the
/// filesystem (0 in either turns the reserve off).
#[derive(Debug, Clone)]
pub struct DiskReserve {
    pub min_free_bytes: u64,
    pub min_free_percent: u8,
    /// The backup store's folder, when it is a local one.
    pub backup_dir: Option<PathBuf>,
}

impl Default for DiskReserve {
    fn default() -> DiskReserve {
        DiskReserve {
            min_free_bytes: 1 << 30,
            min_free_percent: 5,
            backup_dir: None,
        }
    }
}

impl DiskReserve {
    /// The reserve on a filesystem of `total` bytes.
    pub fn reserve_of(&self, total: u64) -> u64 {
        let share = total / 100 * u64::from(self.min_free_percent.min(100));
        self.min_free_bytes.min(share)
    }
}

/// Free space (for an unprivileged writer) and size of the filesystem holding `path`, and its
/// id, so two folders on one filesystem are counted once.
struct Space {
    fsid: u64,
    free: u64,
    total: u64,
}

fn space(path: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(Space {
        fsid: s.f_fsid,
        free: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

impl Service {
    /// Refuses (`DiskSpaceLow`) an operation that writes about `need` bytes to the data dir
    /// and to the backup store, when that would leave less than the reserve on either
    /// filesystem. A folder that cannot be examined is logged and not counted.
    pub(crate) fn check_disk_for(&self, need: u64) -> Result<()> {
        let reserve = &self.cfg.disk;
        let mut dirs = vec![self.cfg.data_dir.clone()];
        dirs.extend(reserve.backup_dir.clone());
        let mut seen = Vec::new();
        for dir in dirs {
            let s = match space(&dir) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read free disk space");
                    continue;
                }
            };
            if seen.contains(&s.fsid) {
                continue;
            }
            seen.push(s.fsid);
            let keep = reserve.reserve_of(s.total);
            if s.free < keep.saturating_add(need) {
                tracing::warn!(
                    dir = %dir.display(),
                    free = s.free,
                    reserve = keep,
                    need,
                    "refused: the operation would eat into the disk reserve"
                );
                return Err(Error::DiskSpaceLow);
            }
        }
        Ok(())
    }

    /// The bytes a backup or restore of instance `id` is expected to write: its last known
    /// `used_memory` (an RDB is rarely larger).
    pub(crate) fn expected_dump_bytes(&self, id: &str) -> u64 {
        self.usage
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_the_smaller_share() {
        let r = DiskReserve::default();
        // 1 TiB: 5% would be 51 GiB; 1 GiB is kept.
        assert_eq!(r.reserve_of(1 << 40), 1 << 30);
        // 10 GiB: 5% is 512 MiB.
        assert_eq!(r.reserve_of(10 << 30), (10u64 << 30) / 100 * 5);
        let off = DiskReserve {
            min_free_bytes: 0,
            ..DiskReserve::default()
        };
        assert_eq!(off.reserve_of(1 << 40), 0);
    }

    #[test]
    fn free_space_of_a_real_folder() {
        let dir = tempfile::tempdir().unwrap();
        let s = space(dir.path()).unwrap();
        assert!(s.total > 0 && s.free <= s.total);
    }
}
