//! LocalStore against real files in temporary folders: both ingest paths, key checks, delete,
//! sweep, and a full disk (a 1 MiB tmpfs mounted as the store root, which needs root /
//! CAP_SYS_ADMIN; without it that test prints why it skipped and passes).

use crsd_backupstore::{BackupKey, BackupStore, LocalStore, StoreError};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift64), so files don't compress or dedupe.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The hash as coreutils computes it: independent of the code under test.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn write_src(dir: &Path, name: &str, len: usize) -> (PathBuf, String) {
    let path = dir.join(name);
    fs::write(&path, bytes(len, len as u64)).unwrap();
    let hash = sha256sum(&path);
    (path, hash)
}

fn key(backup: &str) -> BackupKey {
    BackupKey::new("crs-abc123", backup).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn temporaries(store: &LocalStore) -> usize {
    fs::read_dir(store.root().join(".tmp")).unwrap().count()
}

/// Checks one successful ingest of `src` (hash `want`, `len` bytes).
fn assert_stored(store: &LocalStore, k: &BackupKey, src: &Path, want: &str, len: usize) {
    let stored = store.ingest(k, src).unwrap();
    assert_eq!(stored.size, len as u64);
    assert_eq!(stored.sha256, want);
    assert!(!src.exists(), "the source is consumed");
    let path = store.local_path(k).expect("stored");
    assert_eq!(
        path,
        store
            .root()
            .join("crs-abc123")
            .join(format!("{}.rdb", k.backup_id))
    );
    assert_eq!(sha256sum(&path), want);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(store.root()), 0o700);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(temporaries(store), 0, "no temporary left");
}

#[test]
fn same_filesystem_ingest_moves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups")).unwrap();
    let (src, want) = write_src(dir.path(), "dump.rdb", 5 * 1024 * 1024 + 7);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
    let ino = fs::metadata(&src).unwrap().ino();
    assert_stored(&store, &key("b-1"), &src, &want, 5 * 1024 * 1024 + 7);
    let stored = store.local_path(&key("b-1")).unwrap();
    assert_eq!(
        fs::metadata(stored).unwrap().ino(),
        ino,
        "renamed, not copied"
    );
}

#[test]
fn forced_copy_ingest_copies_and_removes_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups"))
        .unwrap()
        .force_copy();
    let (src, want) = write_src(dir.path(), "dump.rdb", 3 * 1024 * 1024 + 1);
    let ino = fs::metadata(&src).unwrap().ino();
    assert_stored(&store, &key("b-2"), &src, &want, 3 * 1024 * 1024 + 1);
    let stored = store.local_path(&key("b-2")).unwrap();
    assert_ne!(fs::metadata(stored).unwrap().ino(), ino, "a copy");
}

#[test]
fn cross_filesystem_ingest_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups")).unwrap();
    let shm = Path::new("/dev/shm");
    let other_fs =
        fs::metadata(shm).is_ok_and(|m| m.dev() != fs::metadata(dir.path()).unwrap().dev());
    if !other_fs {
        eprintln!("skipped: /dev/shm is not another filesystem here (the forced-copy test covers the copy path)");
        return;
    }
    let src_dir = tempfile::tempdir_in(shm).unwrap();
    let (src, want) = write_src(src_dir.path(), "dump.rdb", 2 * 1024 * 1024 + 3);
    assert_stored(&store, &key("b-3"), &src, &want, 2 * 1024 * 1024 + 3);
}

#[test]
fn empty_file_is_a_valid_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups")).unwrap();
    let (src, want) = write_src(dir.path(), "empty.rdb", 0);
    assert_eq!(
        want,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_stored(&store, &key("b-0"), &src, &want, 0);
}

#[test]
fn bad_keys_are_refused_without_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups")).unwrap();
    let (src, want) = write_src(dir.path(), "dump.rdb", 1000);
    for (instance, backup) in [
        ("..", "b"),
        ("i", ".."),
        ("i", "../../etc/passwd"),
        ("", "b"),
        ("i", "a.b"),
        ("i/j", "b"),
    ] {
        assert!(BackupKey::new(instance, backup).is_err());
        let k = BackupKey {
            instance_id: instance.into(),
            backup_id: backup.into(),
        };
        assert!(
            matches!(store.ingest(&k, &src), Err(StoreError::InvalidKey(_))),
            "{k:?}"
        );
        assert!(store.local_path(&k).is_none());
        assert!(matches!(store.delete(&k), Err(StoreError::InvalidKey(_))));
    }
    assert_eq!(sha256sum(&src), want, "source untouched");
    assert_eq!(fs::read_dir(store.root()).unwrap().count(), 1, "only .tmp");
}

#[test]
fn an_existing_backup_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    for copy in [false, true] {
        let mut store = LocalStore::open(dir.path().join("backups")).unwrap();
        if copy {
            store = store.force_copy();
        }
        let k = key(if copy { "b-copy" } else { "b-move" });
        let (first, want) = write_src(dir.path(), "first.rdb", 100);
        store.ingest(&k, &first).unwrap();
        let (second, second_hash) = write_src(dir.path(), "second.rdb", 200);
        assert!(matches!(
            store.ingest(&k, &second),
            Err(StoreError::Exists(_))
        ));
        assert_eq!(sha256sum(&second), second_hash, "source kept");
        assert_eq!(sha256sum(&store.local_path(&k).unwrap()), want);
        assert_eq!(temporaries(&store), 0);
    }
}

#[test]
fn delete_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups")).unwrap();
    let (src, _) = write_src(dir.path(), "dump.rdb", 1000);
    store.ingest(&key("b-1"), &src).unwrap();
    store.delete(&key("b-1")).unwrap();
    assert!(store.local_path(&key("b-1")).is_none());
    store.delete(&key("b-1")).unwrap();
    store
        .delete(&BackupKey::new("never-seen", "b-9").unwrap())
        .unwrap();
}

#[test]
fn list_names_every_stored_backup_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("backups");
    let store = LocalStore::open(&root).unwrap();
    assert!(store.list().unwrap().is_empty());
    for name in ["b-1", "b-2"] {
        let (src, _) = write_src(dir.path(), name, 100);
        store.ingest(&key(name), &src).unwrap();
    }
    let (src, _) = write_src(dir.path(), "other", 100);
    let other = BackupKey::new("crs-other", "b-3").unwrap();
    store.ingest(&other, &src).unwrap();
    // Debris that is not a backup: a stray file and a temporary.
    fs::write(root.join("crs-abc123").join("notes.txt"), b"x").unwrap();
    fs::write(root.join(".tmp").join("x.part"), b"x").unwrap();
    let mut got = store.list().unwrap();
    got.sort_by_key(|k| k.to_string());
    assert_eq!(got, vec![key("b-1"), key("b-2"), other.clone()]);
    store.delete(&key("b-1")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn sweep_removes_part_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("backups")).unwrap();
    let tmp = store.root().join(".tmp");
    fs::write(tmp.join("a1b2.part"), b"half").unwrap();
    fs::write(tmp.join("c3d4.part"), b"").unwrap();
    fs::write(tmp.join("README"), b"not ours").unwrap();
    let (src, _) = write_src(dir.path(), "dump.rdb", 10);
    store.ingest(&key("b-1"), &src).unwrap();
    assert_eq!(store.sweep().unwrap(), 2);
    assert!(tmp.join("README").exists());
    assert!(
        store.local_path(&key("b-1")).is_some(),
        "backups are not temporaries"
    );
    assert_eq!(store.sweep().unwrap(), 0);
    // Reopening keeps the store (and tightens a loosened root).
    fs::set_permissions(store.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let again = LocalStore::open(store.root()).unwrap();
    assert_eq!(mode(again.root()), 0o700);
    assert!(again.local_path(&key("b-1")).is_some());
}

/// A tmpfs mounted for one test; unmounted on drop, so also when the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "1m") at `dir`; None when not permitted.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={size},mode=0700")).unwrap();
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if rc == 0 {
            return Some(Tmpfs(dir.to_path_buf()));
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EPERM),
            "mount tmpfs at {dir:?}: {err}"
        );
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path. MNT_DETACH: unmount even if something is open.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// ENOSPC mid-copy: the store root is a 1 MiB tmpfs and the source (3 MiB) lives on another
/// filesystem, so ingest copies and runs out of space. Needs CAP_SYS_ADMIN to mount.
#[test]
fn disk_full_leaves_nothing_and_keeps_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "1m") else {
        eprintln!("skipped: needs CAP_SYS_ADMIN to mount tmpfs");
        return;
    };
    let store = LocalStore::open(&mnt).unwrap();
    let (src, want) = write_src(dir.path(), "dump.rdb", 3 * 1024 * 1024);
    let k = key("b-full");
    let err = store.ingest(&k, &src).unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert!(store.local_path(&k).is_none());
    assert!(!mnt.join("crs-abc123").join("b-full.rdb").exists());
    assert_eq!(temporaries(&store), 0, "no temporary left");
    assert_eq!(sha256sum(&src), want, "the source is untouched");
    // The space came back: a small backup still fits.
    let (small, small_hash) = write_src(dir.path(), "small.rdb", 100 * 1024);
    assert_eq!(
        store.ingest(&key("b-small"), &small).unwrap().sha256,
        small_hash
    );
}
