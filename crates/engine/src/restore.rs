//! Restore staging: putting an RDB (e.g. from [`Engine::snapshot`]) in place as a node's
//! data, with a way back. Synchronous file operations on the node folder; the caller stops
//! and starts the nodes and decides between keeping and rolling back.
//!
//! # Why through the AOF folder
//!
//! Nodes run with `appendonly yes`, and then redis-server loads only its AOF at start,
//! never dump.rdb. With `aof-use-rdb-preamble yes` the base file of an AOF may itself be an
//! RDB, so a restore is an AOF folder whose manifest names the RDB as base (seq 1, type b)
//! and an empty increment file (seq 1, type i), exactly what redis 7.0 writes for a fresh
//! AOF. redis loads it like its own and takes over from there (rewrites, new sequences).
//!
//! # The folders (next to `appendonlydir/` in the node folder)
//!
//! * `appendonlydir.restore-partial/`: where a restore is built; never used for anything.
//! * `appendonlydir.restore/`: a complete restore, waiting to be swapped in. It only ever
//!   appears by a rename of the finished, fsynced staging folder.
//! * `appendonlydir.before-restore/`: the node's own AOF folder, from the swap until the
//!   restore is finished (deleted) or rolled back (renamed back). If the node had no AOF
//!   folder, it is an empty folder: rolled back, the node starts with an empty data set,
//!   as it would have before (redis treats an empty AOF folder like a missing one).
//! * `<name>.trash/`: a folder on its way out (see `durable`).
//!
//! # A restore, step by step
//!
//! `stage_restore` (node may run) -> stop -> `swap_in_restore` -> start, check ->
//! `finish_restore`, or stop -> `roll_back_restore` -> start. The swap also leaves the
//! restored RDB as `dump.rdb` (a second name of the new AOF's base file): `start_restored`
//! loads it with the AOF off, which keeps the replication id and offset the RDB records (a
//! load from an AOF does not), so a master and its replicas restored from the same RDB need
//! no full sync; `settle_restored` then turns the AOF on and allows writes again. A node
//! started on its AOF instead (a plain `start`) removes dump.rdb and loads the same data
//! from the AOF folder. A replica whose restore is rolled back gets `discard_data` while
//! stopped, so it cannot serve or partially resync from its old data and does a full sync
//! from the master.
//!
//! Every step is idempotent and leaves a state the same step, called again, completes:
//! changes are renames, followed by an fsync of the node folder. While
//! `appendonlydir.before-restore` exists, `appendonlydir` counts as the product of a swap
//! not yet finished: swapping in a newer staged restore replaces it. So a restore must end
//! with `finish_restore` (or `roll_back_restore`) once the caller has decided, before the
//! node takes writes worth keeping; otherwise a later restore would roll back past them.
//!
//! Calls for one node must not run concurrently with each other or with start/stop (the
//! caller serialises per node, as for every call of the engine).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::admin;
use crate::durable::{self, exists};
use crate::engine::prepare_dir;
use crate::error::io_err;
use crate::layout::{NodePaths, AOF_FILE};
use crate::poll::Backoff;
use crate::snapshot::check_magic;
use crate::{process, Engine, EngineError, NodeSpec};

impl Engine {
    /// Builds `appendonlydir.restore/` from the RDB file `rdb`: a copy of it as the AOF's
    /// base file, an empty increment file and the manifest, all fsynced (see the module
    /// docs). A restore staged earlier is replaced; the node's own data is not touched,
    /// so the node may be running. Creates the node folder (0700) if it does not exist yet
    /// (a restore into a node never started).
    ///
    /// Only checks that `rdb` starts with `REDIS` ([`EngineError::CorruptRdb`] otherwise);
    /// run [`Engine::check_rdb`] first for a full check.
    pub fn stage_restore(&self, spec: &NodeSpec, rdb: &Path) -> Result<(), EngineError> {
        let paths = self.node_paths(spec)?;
        check_magic(rdb)?;
        prepare_dir(&paths)?;
        let staging = &paths.staging_dir;
        durable::remove_dir_all_if_exists(staging)?;
        durable::create_private_dir(staging)?;
        let (base, incr, manifest) = aof_files();
        durable::link_or_copy_synced(rdb, &staging.join(&base))?;
        durable::write_new_synced(&staging.join(&incr), b"")?;
        durable::write_new_synced(&staging.join(AOF_MANIFEST), manifest.as_bytes())?;
        durable::sync_dir(staging)?;
        durable::discard_dir(&paths.dir, &paths.restore_dir)?;
        durable::rename_synced(&paths.dir, staging, &paths.restore_dir)?;
        tracing::info!(node = %spec.name, rdb = %rdb.display(), "restore staged");
        Ok(())
    }

    /// Node stopped: makes the staged restore the node's data. Moves `appendonlydir` to
    /// `appendonlydir.before-restore` (unless that exists already, from an earlier call;
    /// an empty one if there was no AOF folder), renames `appendonlydir.restore` to
    /// `appendonlydir`, and removes dump.rdb (never loaded while the AOF is on, but a stale
    /// copy of old data nobody should mistake for the restored one).
    ///
    /// Calling it again is harmless, and after a crash half-way it finishes the job.
    /// [`EngineError::NoRestoreStaged`] if nothing is staged and no swap is under way;
    /// [`EngineError::NodeRunning`] if the node's redis-server runs.
    pub fn swap_in_restore(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let paths = self.stopped_node(spec)?;
        if !exists(&paths.before_restore_dir)? {
            if !exists(&paths.restore_dir)? {
                return Err(EngineError::NoRestoreStaged);
            }
            if exists(&paths.aof_dir)? {
                durable::rename_synced(&paths.dir, &paths.aof_dir, &paths.before_restore_dir)?;
            } else {
                durable::create_private_dir(&paths.before_restore_dir)?;
                durable::sync_dir(&paths.dir)?;
            }
        }
        if exists(&paths.restore_dir)? {
            // The node's own data is safe in before-restore; what is here now came from an
            // earlier swap (see the module docs).
            durable::discard_dir(&paths.dir, &paths.aof_dir)?;
            durable::rename_synced(&paths.dir, &paths.restore_dir, &paths.aof_dir)?;
        }
        // The restored RDB as dump.rdb too (a second name of the AOF's base file: redis never
        // writes into a file it has written, it replaces files by rename), for
        // `start_restored`; a node started on its AOF removes it.
        durable::remove_file_synced(&paths.dir, &paths.rdb)?;
        let (base, _, _) = aof_files();
        durable::link_or_copy_synced(&paths.aof_dir.join(base), &paths.rdb)?;
        durable::sync_dir(&paths.dir)?;
        tracing::info!(node = %spec.name, "restore swapped in");
        Ok(())
    }

    /// Node stopped: undoes [`Engine::swap_in_restore`]. If `appendonlydir.before-restore`
    /// exists, the restored `appendonlydir` is removed and the node's own folder renamed
    /// back; a staged restore not swapped in yet is removed too. Idempotent.
    /// [`EngineError::NodeRunning`] if the node's redis-server runs.
    pub fn roll_back_restore(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let paths = self.stopped_node(spec)?;
        if exists(&paths.before_restore_dir)? {
            durable::discard_dir(&paths.dir, &paths.aof_dir)?;
            durable::rename_synced(&paths.dir, &paths.before_restore_dir, &paths.aof_dir)?;
        }
        durable::discard_dir(&paths.dir, &paths.restore_dir)?;
        durable::remove_dir_all_if_exists(&paths.staging_dir)?;
        durable::remove_file_synced(&paths.dir, &paths.rdb)?;
        tracing::info!(node = %spec.name, "restore rolled back");
        Ok(())
    }

    /// Keeps the restored data for good: removes `appendonlydir.before-restore` and any
    /// staged restore. Idempotent; the node may be running.
    pub fn finish_restore(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let paths = self.node_paths(spec)?;
        // dump.rdb first: while before-restore exists, `start_restored` would load it.
        durable::remove_file_synced(&paths.dir, &paths.rdb)?;
        durable::discard_dir(&paths.dir, &paths.before_restore_dir)?;
        durable::discard_dir(&paths.dir, &paths.restore_dir)?;
        durable::remove_dir_all_if_exists(&paths.staging_dir)?;
        tracing::info!(node = %spec.name, "restore finished");
        Ok(())
    }

    /// Node stopped: removes its data (`appendonlydir` and dump.rdb), for a replica that is
    /// to full-sync from a restored master: it must neither serve its old data while it
    /// waits for the master (`replica-serve-stale-data yes`) nor resync partially from it.
    /// Idempotent. [`EngineError::NodeRunning`] if the node's redis-server runs.
    pub fn discard_data(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let paths = self.stopped_node(spec)?;
        durable::discard_dir(&paths.dir, &paths.aof_dir)?;
        durable::remove_file_synced(&paths.dir, &paths.rdb)?;
        tracing::info!(node = %spec.name, "data discarded");
        Ok(())
    }

    /// After [`Engine::start_restored`] (and the replicas' resync): turns the node's AOF on
    /// and waits until its first rewrite has written the restored data set as the AOF's new
    /// base (`CONFIG SET appendonly yes`; from then on every write is in the AOF), then gives
    /// the customer's user its write commands back (the rules of this version, as
    /// [`Engine::conform`] does). A node already on its AOF (started plainly, or settled by
    /// an earlier call) only gets the rules checked: calling it again is harmless.
    /// [`EngineError::AofNotOn`] if the rewrite does not end within `timeout` (redis retries a
    /// failed one by itself).
    pub async fn settle_restored(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let paths = self.node_paths(spec)?;
        let deadline = Instant::now() + timeout;
        let mut con = self.admin_connection(spec).await?;
        let info = admin::info(&mut con, "persistence").await?;
        if admin::field::<u8>(&info, "aof_enabled")? == 0 {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("appendonly")
                .arg("yes")
                .query_async::<()>(&mut con)
                .await?;
            tracing::info!(node = %spec.name, "AOF turned on after a restored start");
        }
        let mut backoff = Backoff::new(
            Duration::from_millis(2),
            Duration::from_millis(100),
            Duration::from_millis(100),
        );
        loop {
            let info = admin::info(&mut con, "persistence").await?;
            // aof_enabled is 1 from CONFIG SET on; the AOF is the durable copy only once the
            // rewrite it started has ended well (redis retries a failed one by itself).
            let on = admin::field::<u8>(&info, "aof_enabled")? == 1
                && admin::field::<u8>(&info, "aof_rewrite_in_progress")? == 0
                && admin::field::<u8>(&info, "aof_rewrite_scheduled")? == 0
                && admin::field::<u64>(&info, "aof_rewrites_consecutive_failures")? == 0
                && admin::field::<String>(&info, "aof_last_bgrewrite_status")? == "ok";
            if on {
                break;
            }
            if Instant::now() >= deadline {
                return Err(EngineError::AofNotOn {
                    after: timeout,
                    log_tail: process::log_tail(&paths),
                });
            }
            backoff.wait().await;
        }
        self.conform_acl(spec).await?;
        Ok(())
    }

    /// The node's paths, or [`EngineError::NodeRunning`] if its redis-server runs.
    fn stopped_node(&self, spec: &NodeSpec) -> Result<NodePaths, EngineError> {
        let paths = self.node_paths(spec)?;
        // No redis.conf: no process can be running for this node (its argv names the file).
        if paths.conf.exists() {
            if let Some(pid) = process::find_running(self.config(), &paths) {
                return Err(EngineError::NodeRunning { pid });
            }
        }
        Ok(paths)
    }
}

/// The manifest's name inside the AOF folder.
const AOF_MANIFEST: &str = "appendonly.aof.manifest";

/// Names of the base and increment files, and the manifest naming them, as redis 7.0.15
/// writes them for a fresh AOF (`appendfilename` + `.1.base.rdb` / `.1.incr.aof`).
fn aof_files() -> (String, String, String) {
    let base = format!("{AOF_FILE}.1.base.rdb");
    let incr = format!("{AOF_FILE}.1.incr.aof");
    let manifest = format!("file {base} seq 1 type b\nfile {incr} seq 1 type i\n");
    (base, incr, manifest)
}

/// Whether `destroy` may delete a node folder in which no redis.conf was ever rendered:
/// a restore was staged (and maybe swapped in) for a node that was never started. True if
/// every entry is a folder of a restore (or `appendonlydir`, which a swap creates) and at
/// least one is restore-specific: a folder someone else's redis uses never has those.
pub(crate) fn holds_only_restore_folders(paths: &NodePaths) -> Result<bool, EngineError> {
    let restore_specific = [
        &paths.restore_dir,
        &paths.staging_dir,
        &paths.before_restore_dir,
    ];
    let is_one_of = |path: &Path, dirs: &[&PathBuf]| {
        dirs.iter()
            .any(|d| path == d.as_path() || path == durable::trash_path(d))
    };
    let listing = || io_err(format!("listing {}", paths.dir.display()));
    let mut seen_restore_folder = false;
    for entry in fs::read_dir(&paths.dir).map_err(listing())? {
        let entry = entry.map_err(listing())?;
        let path = entry.path();
        if !entry.file_type().map_err(listing())?.is_dir() {
            // The restored RDB's second name, which a swap makes.
            if path == paths.rdb {
                continue;
            }
            return Ok(false);
        }
        if is_one_of(&path, &restore_specific) {
            seen_restore_folder = true;
        } else if !is_one_of(&path, &[&paths.aof_dir]) {
            return Ok(false);
        }
    }
    Ok(seen_restore_folder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineConfig, Role};

    fn spec(dir: &Path) -> NodeSpec {
        NodeSpec {
            host: String::new(),
            name: dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("node")
                .to_string(),
            role: Role::Master,
            port: 7001,
            instance: dir
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("i")
                .to_string(),
            maxmemory_mb: 1,
            default_password_sha256: crate::acl_sha256_hex("pw"),
            admin_user: "crsd".into(),
            admin_secret: "a".into(),
            repl_user: "crsd-repl".into(),
            repl_secret: "r".into(),
            params: Vec::new(),
            cluster: None,
            master: None,
        }
    }

    /// A node folder with an AOF folder holding `marker`, and an RDB file to restore.
    fn node(tmp: &Path) -> (NodeSpec, NodePaths, PathBuf) {
        let s = spec(&tmp.join("node"));
        let paths = NodePaths::new(&tmp.join("node")).expect("paths");
        fs::create_dir_all(&paths.aof_dir).expect("mkdir");
        fs::write(paths.aof_dir.join("marker"), "old").expect("write");
        fs::write(&paths.rdb, "stale").expect("write");
        let rdb = tmp.join("backup.rdb");
        fs::write(&rdb, "REDIS0010 backup").expect("write");
        (s, paths, rdb)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn engine() -> Engine {
        // Tempdirs are made in the system's temp folder: each is an instance folder here.
        Engine::new(EngineConfig {
            root: std::env::temp_dir(),
            ..EngineConfig::default()
        })
    }

    #[test]
    fn stage_swap_twice_roll_back() {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let (s, paths, rdb) = node(tmp.path());
        let e = engine();
        e.stage_restore(&s, &rdb).expect("stage");
        assert_eq!(
            names(&paths.restore_dir),
            [
                "appendonly.aof.1.base.rdb",
                "appendonly.aof.1.incr.aof",
                "appendonly.aof.manifest"
            ]
        );
        assert_eq!(
            fs::read_to_string(paths.restore_dir.join(AOF_MANIFEST)).expect("manifest"),
            "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
        );
        assert_eq!(
            fs::read(paths.restore_dir.join("appendonly.aof.1.base.rdb")).expect("base"),
            b"REDIS0010 backup"
        );
        // Staging again replaces the staged restore.
        e.stage_restore(&s, &rdb).expect("stage again");
        assert_eq!(
            names(&paths.dir),
            ["appendonlydir", "appendonlydir.restore", "dump.rdb"]
        );

        for _ in 0..2 {
            e.swap_in_restore(&s).expect("swap");
            assert_eq!(
                names(&paths.dir),
                ["appendonlydir", "appendonlydir.before-restore", "dump.rdb"]
            );
            // dump.rdb is the restored RDB (the AOF's base), not the stale one.
            assert_eq!(fs::read(&paths.rdb).expect("dump.rdb"), b"REDIS0010 backup");
            assert!(paths.aof_dir.join(AOF_MANIFEST).exists());
            assert!(paths.before_restore_dir.join("marker").exists());
        }

        for _ in 0..2 {
            e.roll_back_restore(&s).expect("roll back");
            assert_eq!(names(&paths.dir), ["appendonlydir"]);
            assert_eq!(names(&paths.aof_dir), ["marker"]);
        }
        assert!(matches!(
            e.swap_in_restore(&s),
            Err(EngineError::NoRestoreStaged)
        ));
    }

    #[test]
    fn swap_finishes_after_a_crash_half_way_and_replaces_an_unfinished_restore() {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let (s, paths, rdb) = node(tmp.path());
        let e = engine();
        e.stage_restore(&s, &rdb).expect("stage");
        // Crash right after the node's own folder was moved aside.
        fs::rename(&paths.aof_dir, &paths.before_restore_dir).expect("rename");
        e.swap_in_restore(&s).expect("swap");
        assert!(paths.aof_dir.join(AOF_MANIFEST).exists());
        assert!(paths.before_restore_dir.join("marker").exists());

        // A second restore staged before the first was finished: the first one's folder is
        // replaced, the node's own data stays the one to roll back to.
        fs::write(paths.aof_dir.join("first-restore"), "x").expect("write");
        e.stage_restore(&s, &rdb).expect("stage");
        e.swap_in_restore(&s).expect("swap");
        assert!(!paths.aof_dir.join("first-restore").exists());
        assert!(paths.before_restore_dir.join("marker").exists());

        e.finish_restore(&s).expect("finish");
        e.finish_restore(&s).expect("finish again");
        assert_eq!(names(&paths.dir), ["appendonlydir"]);
        assert!(paths.aof_dir.join(AOF_MANIFEST).exists());
    }

    #[test]
    fn a_node_without_data_rolls_back_to_an_empty_aof_folder() {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let (s, paths, rdb) = node(tmp.path());
        let e = engine();
        e.discard_data(&s).expect("discard");
        e.discard_data(&s).expect("discard again");
        assert!(names(&paths.dir).is_empty());

        e.stage_restore(&s, &rdb).expect("stage");
        e.swap_in_restore(&s).expect("swap");
        assert!(names(&paths.before_restore_dir).is_empty());
        e.roll_back_restore(&s).expect("roll back");
        assert_eq!(names(&paths.dir), ["appendonlydir"]);
        assert!(names(&paths.aof_dir).is_empty());
    }

    #[test]
    fn stage_refuses_what_is_not_an_rdb_and_rebuilds_a_partial_one() {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let (s, paths, _) = node(tmp.path());
        let e = engine();
        let aof = tmp.path().join("not.rdb");
        fs::write(&aof, "*1\r\n$4\r\nPING\r\n").expect("write");
        assert!(matches!(
            e.stage_restore(&s, &aof),
            Err(EngineError::CorruptRdb { .. })
        ));
        assert!(!paths.restore_dir.exists());

        // Leftovers of a crash: a half-built staging folder and a half-deleted trash folder.
        fs::create_dir(&paths.staging_dir).expect("mkdir");
        fs::write(paths.staging_dir.join("appendonly.aof.manifest"), "half").expect("write");
        let trash = durable::trash_path(&paths.restore_dir);
        fs::create_dir(&trash).expect("mkdir");
        let rdb = tmp.path().join("b.rdb");
        fs::write(&rdb, "REDIS0010").expect("write");
        e.stage_restore(&s, &rdb).expect("stage");
        assert!(!paths.staging_dir.exists());
        assert!(!trash.exists());
        assert_eq!(names(&paths.restore_dir).len(), 3);
    }

    #[test]
    fn stage_into_a_node_never_started_and_destroy_may_delete_it() {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let s = spec(&tmp.path().join("fresh"));
        let paths = NodePaths::new(&tmp.path().join("fresh")).expect("paths");
        let rdb = tmp.path().join("b.rdb");
        fs::write(&rdb, "REDIS0010").expect("write");
        let e = engine();
        e.stage_restore(&s, &rdb).expect("stage");
        assert!(holds_only_restore_folders(&paths).expect("list"));
        e.swap_in_restore(&s).expect("swap");
        assert!(holds_only_restore_folders(&paths).expect("list"));

        // A folder with only an AOF folder could be anyone's redis: not ours to delete.
        e.finish_restore(&s).expect("finish");
        assert!(!holds_only_restore_folders(&paths).expect("list"));
        // Nor one with anything else in it.
        e.stage_restore(&s, &rdb).expect("stage");
        fs::write(paths.dir.join("notes.txt"), "x").expect("write");
        assert!(!holds_only_restore_folders(&paths).expect("list"));
    }
}
