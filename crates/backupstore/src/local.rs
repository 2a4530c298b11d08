//! The default store: a folder under crsd's data dir.
//!
//! Layout: `root/<instance_id>/<backup_id>.rdb`, temporaries `root/.tmp/<random>.part`.
//! Folders are 0700 and files 0600 because backups hold customers' data.
//!
//! Why the dance in [`LocalStore::ingest`]: a backup must never be visible half-written (a
//! download or restore would serve a truncated RDB), and a failed ingest (typically ENOSPC)
//! must leave no debris and keep the source. So the bytes first land under a temporary name
//! inside the store (a rename when the source is on the same filesystem, else a copy), are
//! hashed and fsynced there, and only then renamed to their final name (never replacing one),
//! after which the folder is fsynced so the name survives a power cut. The temporary lives in
//! `root/.tmp` so that a crash leaves it where [`BackupStore::sweep`] finds it, and on the
//! store's filesystem so the final rename is atomic. The temporary name is a
//! [`tempfile::TempPath`], which removes it on every early return.
//!
//! The SHA-256 is computed while the bytes are read anyway (copy) or in one extra read (move).
//! `sha2` 0.10 picks its SHA-NI backend at run time on x86-64 (`cpufeatures`, default
//! features, no `asm` feature needed), so hashing runs at GB/s and costs less than the disk.

use crate::{io_err, BackupKey, BackupStore, StoreError, Stored};
use sha2::{Digest, Sha256};
use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tempfile::TempPath;

const TMP_DIR: &str = ".tmp";
const PART_SUFFIX: &str = ".part";
/// Read (and hash, and write) in 1 MiB chunks: big enough that syscalls don't matter.
const CHUNK: usize = 1 << 20;

/// Backups as files in a local folder. Blocking; see the crate docs.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    force_copy: bool,
}

impl LocalStore {
    /// Opens (creating it, 0700) the store at `root`, and its temporary folder.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore, StoreError> {
        let root = root.into();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(io_err("create", &root))?;
        // An existing folder too: backups must not be readable by other local users.
        fs::set_permissions(&root, Permissions::from_mode(0o700))
            .map_err(io_err("chmod", &root))?;
        let tmp = root.join(TMP_DIR);
        make_dir(&tmp)?;
        Ok(LocalStore {
            root,
            force_copy: false,
        })
    }

    /// Always copy, as if every source were on another filesystem. Tests use it to reach the
    /// copy path without a second filesystem.
    #[doc(hidden)]
    pub fn force_copy(mut self) -> LocalStore {
        self.force_copy = true;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &BackupKey) -> PathBuf {
        self.root
            .join(&key.instance_id)
            .join(format!("{}.rdb", key.backup_id))
    }

    /// Brings `src` under a fresh temporary name in the store; true when it was moved (then
    /// the open handle of the placeholder is useless), false when the caller must copy.
    fn take_in(&self, src: &Path, tmp: &TempPath) -> Result<bool, StoreError> {
        if self.force_copy {
            return Ok(false);
        }
        match fs::rename(src, tmp) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Ok(false),
            Err(e) => Err(io_err("move", src)(e)),
        }
    }
}

impl BackupStore for LocalStore {
    fn ingest(&self, key: &BackupKey, src: &Path) -> Result<Stored, StoreError> {
        key.validate()?;
        let dest = self.path_of(key);
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(StoreError::Exists(key.to_string()));
        }
        let dir = self.root.join(&key.instance_id);
        if make_dir(&dir)? {
            fsync_dir(&self.root)?;
        }
        let tmp_dir = self.root.join(TMP_DIR);
        // An empty 0600 placeholder with a random name, created O_EXCL.
        let (file, tmp) = tempfile::Builder::new()
            .suffix(PART_SUFFIX)
            .rand_bytes(16)
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create temporary in", &tmp_dir))?
            .into_parts();
        let moved = self.take_in(src, &tmp)?;
        let sealed = if moved {
            drop(file);
            seal_moved(&tmp)
        } else {
            copy_in(src, file, &tmp)
        };
        let stored = match sealed {
            Ok(stored) => stored,
            Err(e) => return Err(give_back(e, tmp, moved, src)),
        };
        if let Err(e) = tmp.persist_noclobber(&dest) {
            let err = if e.error.kind() == io::ErrorKind::AlreadyExists {
                StoreError::Exists(key.to_string())
            } else {
                io_err("rename into place", &dest)(e.error)
            };
            return Err(give_back(err, e.path, moved, src));
        }
        if let Err(e) = fsync_dir(&dir) {
            // Visible but maybe not durable: take it back out rather than report an error
            // while the key exists.
            let back = if moved {
                fs::rename(&dest, src)
            } else {
                fs::remove_file(&dest)
            };
            if back.is_err() {
                let _ = fs::remove_file(&dest);
            }
            return Err(e);
        }
        if !moved {
            // The backup is safely stored; a source that cannot be removed is the caller's
            // leftover, not a failed ingest.
            let _ = fs::remove_file(src);
        }
        Ok(stored)
    }

    fn local_path(&self, key: &BackupKey) -> Option<PathBuf> {
        key.validate().ok()?;
        let path = self.path_of(key);
        path.is_file().then_some(path)
    }

    fn delete(&self, key: &BackupKey) -> Result<(), StoreError> {
        key.validate()?;
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.root.join(&key.instance_id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    fn list(&self) -> Result<Vec<BackupKey>, StoreError> {
        let mut keys = Vec::new();
        for instance in fs::read_dir(&self.root).map_err(io_err("list", &self.root))? {
            let dir = instance.map_err(io_err("list", &self.root))?.path();
            let Some(instance_id) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if instance_id == TMP_DIR || !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let path = file.map_err(io_err("list", &dir))?.path();
                let backup_id = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".rdb"));
                if let Some(key) = backup_id.and_then(|b| BackupKey::new(instance_id, b).ok()) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    fn sweep(&self) -> Result<usize, StoreError> {
        let tmp_dir = self.root.join(TMP_DIR);
        let entries = match fs::read_dir(&tmp_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("list", &tmp_dir)(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let path = entry.map_err(io_err("list", &tmp_dir))?.path();
            let is_part = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(PART_SUFFIX));
            if is_part && path.is_file() {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
        }
        Ok(removed)
    }
}

/// After a failed ingest: a moved source goes back where it came from; otherwise (or when
/// that fails) dropping the temporary path removes it.
fn give_back(err: StoreError, tmp: TempPath, moved: bool, src: &Path) -> StoreError {
    if moved {
        let _ = tmp.persist(src);
    }
    err
}

/// The moved-in file: make it 0600, hash it, make it durable.
fn seal_moved(tmp: &Path) -> Result<Stored, StoreError> {
    fs::set_permissions(tmp, Permissions::from_mode(0o600)).map_err(io_err("chmod", tmp))?;
    let mut file = File::open(tmp).map_err(io_err("open", tmp))?;
    let stored = hash_copy(&mut file, None).map_err(io_err("read", tmp))?;
    file.sync_all().map_err(io_err("fsync", tmp))?;
    Ok(stored)
}

/// Copies `src` into the placeholder `out`, hashing on the way, and makes it durable.
fn copy_in(src: &Path, mut out: File, tmp: &Path) -> Result<Stored, StoreError> {
    let mut input = File::open(src).map_err(io_err("open", src))?;
    let stored = hash_copy(&mut input, Some(&mut out)).map_err(io_err("copy into", tmp))?;
    out.sync_all().map_err(io_err("fsync", tmp))?;
    Ok(stored)
}

/// Size and SHA-256 of a file, read the way `ingest` reads it: what a restore checks a stored
/// backup against its record with.
pub fn hash_file(path: &Path) -> io::Result<Stored> {
    hash_copy(&mut File::open(path)?, None)
}

/// Reads `input` to its end in [`CHUNK`]s, hashing and, when given, writing every chunk.
fn hash_copy(input: &mut File, mut out: Option<&mut File>) -> io::Result<Stored> {
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
        size += n as u64;
    }
    Ok(Stored {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Creates a 0700 folder; true when it did not exist before.
fn make_dir(dir: &Path) -> Result<bool, StoreError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(io_err("create", dir)(e)),
    }
}

/// Makes the folder's entries (a rename, a removal) durable.
fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}
