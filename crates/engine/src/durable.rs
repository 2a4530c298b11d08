//! File operations that must survive a crash (of crsd or of the machine).
//!
//! A rename or unlink is only durable once the folder holding it is fsynced, and a file's
//! bytes only once the file is; without both, a power loss can bring back a folder that
//! names a file whose content never reached the disk. Folders redis-server would load are
//! never deleted in place: `remove_dir_all` unlinks file by file, so a crash half-way could
//! leave an AOF manifest whose files are gone, or worse, a base file without its increments
//! (silently older data). They are renamed out of the way first (atomic), then deleted.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::EngineError;

/// fsync of a folder: makes the renames, creations and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing folder {}", dir.display())))
}

/// Whether something (file, folder, symlink) exists at `path`; other errors are errors.
pub(crate) fn exists(path: &Path) -> Result<bool, EngineError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(format!("inspecting {}", path.display()))(e)),
    }
}

/// Creates a private (0700) folder; it must not exist yet.
pub(crate) fn create_private_dir(path: &Path) -> Result<(), EngineError> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_err(format!("creating {}", path.display())))
}

/// Creates a private (0600) file that must not exist yet, with `bytes`, fsynced.
pub(crate) fn write_new_synced(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let mut f = create_new_private(path)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(format!("writing {}", path.display())))
}

/// Copies `from` to a new private (0600) file `to`, fsynced.
pub(crate) fn copy_synced(from: &Path, to: &Path) -> Result<(), EngineError> {
    let mut src = File::open(from).map_err(io_err(format!("opening {}", from.display())))?;
    let mut dst = create_new_private(to)?;
    io::copy(&mut src, &mut dst)
        .and_then(|_| dst.sync_all())
        .map_err(io_err(format!(
            "copying {} to {}",
            from.display(),
            to.display()
        )))?;
    Ok(())
}

/// A new name `to` for the file `from` (a hard link: no byte copied, nothing more to fsync
/// than the folder, which the caller does), or a copy as [`copy_synced`] makes where a link
/// cannot be made (another filesystem). Only for files nobody writes into once written: both
/// names are the same file.
pub(crate) fn link_or_copy_synced(from: &Path, to: &Path) -> Result<(), EngineError> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io_err(format!(
            "linking {} to {}",
            from.display(),
            to.display()
        ))(e)),
        Err(_) => copy_synced(from, to),
    }
}

fn create_new_private(path: &Path) -> Result<File, EngineError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("creating {}", path.display())))
}

/// Renames `from` to `to` (same folder `dir`) and fsyncs the folder.
pub(crate) fn rename_synced(dir: &Path, from: &Path, to: &Path) -> Result<(), EngineError> {
    fs::rename(from, to).map_err(io_err(format!(
        "renaming {} to {}",
        from.display(),
        to.display()
    )))?;
    sync_dir(dir)
}

/// Removes the folder `path` (inside `dir`) if it exists: renamed to `<path>.trash` first,
/// so it disappears atomically, then deleted. A trash folder left by a crash is deleted
/// on the next call. The folder is fsynced even if `path` was already gone: an earlier,
/// interrupted call may have renamed it without making that durable.
pub(crate) fn discard_dir(dir: &Path, path: &Path) -> Result<(), EngineError> {
    let trash = trash_path(path);
    remove_dir_all_if_exists(&trash)?;
    if exists(path)? {
        fs::rename(path, &trash).map_err(io_err(format!(
            "renaming {} to {}",
            path.display(),
            trash.display()
        )))?;
    }
    sync_dir(dir)?;
    remove_dir_all_if_exists(&trash)
}

/// Deletes a folder nobody loads (a staging area, a trash folder) if it exists.
pub(crate) fn remove_dir_all_if_exists(path: &Path) -> Result<(), EngineError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("removing {}", path.display()))(e)),
    }
}

/// Removes the file `path` (inside `dir`) if it exists, then fsyncs the folder (always,
/// for the same reason as [`discard_dir`]).
pub(crate) fn remove_file_synced(dir: &Path, path: &Path) -> Result<(), EngineError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("removing {}", path.display()))(e)),
    }
    sync_dir(dir)
}

/// Where [`discard_dir`] moves `path` before deleting it.
pub(crate) fn trash_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".trash");
    PathBuf::from(name)
}
