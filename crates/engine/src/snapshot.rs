//! Backup primitives: a replication barrier, a point-in-time RDB of a node, and a check of
//! an RDB file. What to back up when, and where the files go, is the caller's business.
//!
//! # Why on the replica, and why a barrier first
//!
//! `BGSAVE` forks; on a master the fork (and its copy-on-write memory) would compete with
//! customer traffic, so backups are taken on the replica. A replica lags its master a
//! little, though: [`Engine::replication_barrier`] on the master first makes sure every
//! write the master acknowledged before that call has been applied on the replica, so the
//! snapshot taken afterwards contains all of them. `WAIT` makes the master ask its replicas
//! for their offset at once (`REPLCONF GETACK`), so this takes milliseconds, whereas
//! [`Engine::wait_replicas`] depends on the replica's once-a-second acknowledgement.
//!
//! # Telling one save from the next
//!
//! `LASTSAVE` and `rdb_last_save_time` have a resolution of one second, so two snapshots in
//! the same second would look alike. `INFO persistence` also has `rdb_saves`, which redis
//! 7.0 increments when it forks a background save: a save counted after this call read the
//! counter was forked after the call began, and once `rdb_bgsave_in_progress` is 0 again it
//! has ended (both change in the same event-loop step of redis-server, so one `INFO` never
//! shows a half-way state).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::admin;
use crate::error::io_err;
use crate::layout::NodePaths;
use crate::poll::Backoff;
use crate::process;
use crate::{Engine, EngineError, NodeSpec, Role};

/// The channel `replication_barrier` publishes to. PUBLISH is propagated to replicas, which
/// is all the barrier needs; nobody has to listen.
const BARRIER_CHANNEL: &str = "__crsd:barrier";
/// Added to the connection's response timeout on top of the barrier's own timeout, so the
/// WAIT reply (sent by redis when its timeout ends) is read rather than cut off.
const BARRIER_REPLY_MARGIN: Duration = Duration::from_secs(5);
/// Longest pause between polls of a background save (a small data set saves in a few ms).
const SNAPSHOT_POLL_CAP: Duration = Duration::from_millis(100);
/// Every RDB starts with these bytes (followed by a 4-digit version).
const RDB_MAGIC: &[u8] = b"REDIS";
/// What redis-check-rdb prints for a good file.
const CHECK_RDB_OK: &str = "RDB looks OK";
/// How many lines of redis-check-rdb's output an error carries.
const CHECK_RDB_DETAIL_LINES: usize = 8;

impl Engine {
    /// For a master: once this returns `Ok`, every write the master acknowledged before the
    /// call has been applied on at least `replicas` replicas (so a snapshot taken on the
    /// replica afterwards contains it).
    ///
    /// `PUBLISH __crsd:barrier` moves the master's replication offset (PUBLISH is propagated
    /// to replicas), then `WAIT <replicas> <timeout>` blocks until that many replicas
    /// acknowledged that offset. The master asks them for it at once, so a current replica
    /// answers within milliseconds, unlike [`Engine::wait_replicas`], which depends on the
    /// once-a-second acknowledgement. [`EngineError::ReplicasNotInSync`] if fewer replicas
    /// caught up within `timeout`, [`EngineError::WrongRole`] if the node is a replica.
    pub async fn replication_barrier(
        &self,
        master: &NodeSpec,
        replicas: usize,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let mut con = admin::connect(self.config(), master, timeout + BARRIER_REPLY_MARGIN).await?;
        let info = admin::info(&mut con, "replication").await?;
        let role: String = admin::field(&info, "role")?;
        if role != "master" {
            return Err(EngineError::WrongRole {
                expected: Role::Master,
                actual: role,
            });
        }
        redis::cmd("PUBLISH")
            .arg(BARRIER_CHANNEL)
            .arg("barrier")
            .query_async::<()>(&mut con)
            .await?;
        // WAIT 0 would block forever.
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let caught_up: usize = redis::cmd("WAIT")
            .arg(replicas)
            .arg(millis)
            .query_async(&mut con)
            .await?;
        if caught_up >= replicas {
            Ok(())
        } else {
            Err(EngineError::ReplicasNotInSync {
                wanted: replicas,
                caught_up,
                after: timeout,
            })
        }
    }

    /// Writes a point-in-time RDB of the node and returns its path, `<dir>/dump.rdb`. Meant
    /// for the replica (after [`Engine::replication_barrier`] on the master), so the master
    /// never forks; on a master it works the same.
    ///
    /// Sends `BGSAVE SCHEDULE` (a plain BGSAVE is refused while an AOF rewrite runs, as it
    /// does right after a replica's first sync; SCHEDULE starts the save when the rewrite
    /// ends) and polls `INFO persistence` until a save forked after this call began has
    /// ended (see the module docs). A save already running when the call came is waited
    /// out first: its data predates the call.
    ///
    /// When this returns `Ok` the file is complete: redis writes `temp-<pid>.rdb`, fsyncs
    /// it and renames it to dump.rdb before the save counts as done. redis 7.0 does not
    /// fsync the folder after that rename, so the caller makes the name durable when it
    /// moves the file away (rename, then fsync of the destination folder). It must move it
    /// before anything can write dump.rdb again: the next snapshot, and also a full resync
    /// of this replica, which stores the master's RDB under the same name.
    ///
    /// [`EngineError::SnapshotFailed`] (with the tail of redis.log) if redis reports the
    /// save failed; [`EngineError::SnapshotTimedOut`] after `timeout`, in which case the
    /// save may still complete later.
    pub async fn snapshot(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<PathBuf, EngineError> {
        let paths = self.node_paths(spec)?;
        let deadline = Instant::now() + timeout;
        let mut con = self.patient_admin_connection(spec, deadline).await?;
        tokio::time::timeout_at(deadline, save_in_background(&mut con, &paths))
            .await
            .map_err(|_| EngineError::SnapshotTimedOut { after: timeout })??;
        tracing::info!(node = %spec.name, rdb = %paths.rdb.display(), "snapshot written");
        Ok(paths.rdb)
    }

    /// An admin connection, retried until `deadline` while the node is too busy to answer
    /// the login in time (e.g. a customer's long script on the replica): a busy node is not
    /// a failed backup.
    async fn patient_admin_connection(
        &self,
        spec: &NodeSpec,
        deadline: Instant,
    ) -> Result<MultiplexedConnection, EngineError> {
        let mut backoff = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        loop {
            match self.admin_connection(spec).await {
                Err(EngineError::Redis(e)) if e.is_timeout() && Instant::now() < deadline => {
                    tracing::info!(node = %spec.name, "node busy; connecting again");
                    backoff.wait().await;
                }
                other => return other,
            }
        }
    }

    /// Checks that `path` is a complete, readable RDB: it must start with `REDIS`, and
    /// `redis-check-rdb` (the configured redis-server binary in its check mode, see
    /// `process::check_rdb_command`) must read it to the end, checksum included, and say
    /// it is OK. [`EngineError::CorruptRdb`] with the last lines of its output otherwise;
    /// [`EngineError::Io`] if the file cannot be read or the checker not run.
    ///
    /// The checker reads the whole file (about as long as loading it); dropping the future
    /// kills it.
    pub async fn check_rdb(&self, path: &Path) -> Result<(), EngineError> {
        check_magic(path)?;
        let output = process::check_rdb_command(self.config(), path)
            .output()
            .await
            .map_err(io_err(format!(
                "running {} as redis-check-rdb",
                self.config().redis_server.display()
            )))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        if output.status.success() && text.contains(CHECK_RDB_OK) {
            return Ok(());
        }
        Err(EngineError::CorruptRdb {
            detail: format!(
                "redis-check-rdb ({}):\n{}",
                output.status,
                last_lines(&text)
            ),
        })
    }
}

/// `BGSAVE SCHEDULE`, then polls until a save forked after the call began has ended.
async fn save_in_background(
    con: &mut MultiplexedConnection,
    paths: &NodePaths,
) -> Result<(), EngineError> {
    let mut backoff = Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(100),
        SNAPSHOT_POLL_CAP,
    );
    let saves_before = loop {
        let info = admin::info(con, "persistence").await?;
        let saves: u64 = admin::field(&info, "rdb_saves")?;
        if bgsave_schedule(con, paths).await? {
            break saves;
        }
        backoff.wait().await;
    };
    loop {
        let info = admin::info(con, "persistence").await?;
        let saves: u64 = admin::field(&info, "rdb_saves")?;
        let in_progress: u8 = admin::field(&info, "rdb_bgsave_in_progress")?;
        if saves > saves_before && in_progress == 0 {
            let status: String = admin::field(&info, "rdb_last_bgsave_status")?;
            if status == "ok" {
                return Ok(());
            }
            return Err(EngineError::SnapshotFailed {
                log_tail: process::log_tail(paths),
            });
        }
        backoff.wait().await;
    }
}

/// `BGSAVE SCHEDULE`: `true` if a save was started or scheduled, `false` if another save
/// is running (try again once it has ended).
async fn bgsave_schedule(
    con: &mut MultiplexedConnection,
    paths: &NodePaths,
) -> Result<bool, EngineError> {
    match redis::cmd("BGSAVE")
        .arg("SCHEDULE")
        .query_async::<String>(con)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().contains("already in progress") => Ok(false),
        // redis could not fork; why is in redis.log.
        Err(e) if e.kind() == redis::ErrorKind::ResponseError => {
            tracing::warn!(error = %e, "BGSAVE refused");
            Err(EngineError::SnapshotFailed {
                log_tail: process::log_tail(paths),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The file must start with `REDIS` (an RDB; an AOF would start with `*`).
pub(crate) fn check_magic(path: &Path) -> Result<(), EngineError> {
    let mut head = Vec::with_capacity(RDB_MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(RDB_MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(io_err(format!("reading {}", path.display())))?;
    if head == RDB_MAGIC {
        Ok(())
    } else {
        Err(EngineError::CorruptRdb {
            detail: format!("{} does not start with REDIS", path.display()),
        })
    }
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(CHECK_RDB_DETAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_checked_before_anything_runs() {
        let tmp = tempfile::TempDir::new().expect("tempdir");
        let good = tmp.path().join("good.rdb");
        std::fs::write(&good, b"REDIS0010rest").expect("write");
        check_magic(&good).expect("REDIS prefix");
        for (name, bytes) in [
            ("aof", &b"*2\r\n$6\r\nSELECT\r\n"[..]),
            ("short", &b"REDI"[..]),
            ("empty", &b""[..]),
        ] {
            let p = tmp.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            assert!(
                matches!(check_magic(&p), Err(EngineError::CorruptRdb { .. })),
                "{name}"
            );
        }
        assert!(matches!(
            check_magic(&tmp.path().join("missing")),
            Err(EngineError::Io(_))
        ));
    }

    #[test]
    fn keeps_the_last_lines() {
        let text = (1..=20).map(|i| format!("line {i}\n")).collect::<String>();
        let tail = last_lines(&text);
        assert!(tail.starts_with("line 13\n"));
        assert!(tail.ends_with("line 20"));
    }
}
