//! A full data disk. crsd's data folder is a small tmpfs (mounting one needs root /
//! CAP_SYS_ADMIN; without it each test says why it skipped and passes). An instance fills it
//! while a backup runs, so the backup fails, and crsd's own commits fail too. Once space comes
//! back, crsd must heal without a restart: the API answers and writes, the failed backup has
//! ended and released its instance (a later backup is accepted and succeeds), and no message
//! a tenant can read names a server path or the database. Also: the disk reserve refuses a
//! backup before the disk is full (v2's documented "try later" error), and a failed task's
//! undo state survives a restart and ends, after too many failed attempts, in error with the
//! instance released.

mod common;

use common::{main_app_id, redis_conn, service, test_config, TestCrsd};
use redis::aio::MultiplexedConnection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Disk2024(full";

/// A tmpfs mounted for one test; unmounted (lazily: something may still hold a file) on drop,
/// so also when the test panics. Declare it before the crsd that uses it: dropped after.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        common::kill_redis_under(&self.0);
        // A node the supervisor started again while the harness stopped (its pid file may be
        // gone with the folder): found by its working directory, which is on this mount.
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cwd.starts_with(&self.0) && String::from_utf8_lossy(&cmd).contains("redis-server") {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem is full (or `limit` bytes).
fn fill(path: &Path, limit: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0;
    while written < limit && f.write_all(&chunk).is_ok() {
        written += chunk.len();
    }
    let _ = f.sync_all();
}

/// A connection as crsd's own ACL user on the instance's replica.
async fn replica_admin(
    svc: &crsd_service::Service,
    id: &str,
) -> redis::RedisResult<MultiplexedConnection> {
    let inst = svc.store().instance(id).await.unwrap().expect("instance");
    let url = format!(
        "redis://{}:{}@{}:{}/",
        crsd_service::ADMIN_USER,
        inst.admin_secret,
        inst.vip,
        common::replica_port(&inst)
    );
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// A field of INFO `section`; empty when the node does not answer.
async fn info_field(conn: &mut MultiplexedConnection, section: &str, name: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Polls `cond` every 50 ms for up to `secs`.
async fn until<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every text a tenant can read about `tasks`: the task list and each task's message.
async fn tenant_texts(crsd: &TestCrsd, id: &str, tasks: &[i64]) -> Vec<String> {
    let c = crsd.client();
    let list = c
        .ok(
            "GetRedisTaskList",
            &[("limit", "100"), ("offset", "0"), ("redisId", id)],
        )
        .await;
    let mut texts = vec![list.to_string()];
    let svc = service(crsd);
    for t in tasks {
        let task = svc.task_info(main_app_id(crsd), *t).await.unwrap();
        texts.push(task.error.unwrap_or_default());
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crsd_heals_after_the_data_disk_was_full() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_tmpfs) = Tmpfs::mount(&data, "48m") else {
        // CI runs as root: there the test must run, not pass by skipping.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs under CI"
        );
        eprintln!("skipped: needs CAP_SYS_ADMIN to mount tmpfs");
        return;
    };
    // Space the operator frees later (think: old logs on the same disk).
    let ballast = data.join("ballast");
    fill(&ballast, 12 << 20);

    let mut cfg = test_config(dir.path());
    cfg.data_dir = data.clone();
    cfg.backups.min_free_bytes = 0;
    cfg.loops.undo_backoff_max_secs = 1;
    cfg.loops.undo_attempts = 10_000;
    cfg.api.rate_per_second = 0.0;
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let c = crsd.client();
    let svc = service(&crsd);
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();
    let port = inst["port"].as_u64().unwrap() as u16;
    let mut tenant = redis_conn("127.0.0.1", port, PASSWORD).await.unwrap();
    for k in 0..3 {
        let _: () = redis::cmd("SET")
            .arg(format!("small{k}"))
            .arg("v")
            .query_async(&mut tenant)
            .await
            .unwrap();
    }
    let mut replica = replica_admin(&svc, &id).await.unwrap();
    until(10, "the replica has the keys", || {
        let mut r = replica.clone();
        async move {
            info_field(&mut r, "keyspace", "db0")
                .await
                .starts_with("keys=3")
        }
    })
    .await;

    // A slow snapshot (2 s per key), so the disk fills while it runs.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg("2000000")
        .query_async(&mut replica)
        .await
        .unwrap();
    let v = c
        .ok(
            "ManualBackupInstance",
            &[("redisId", &id), ("remark", "full")],
        )
        .await;
    let failed_backup = v["data"]["requestId"].as_i64().unwrap();
    until(20, "the backup's BGSAVE", || {
        let mut r = replica.clone();
        async move { info_field(&mut r, "persistence", "rdb_bgsave_in_progress").await == "1" }
    })
    .await;

    // The tenant fills the disk: 1 MB values until redis refuses (its AOF cannot grow).
    let big = vec![b'x'; 1 << 20];
    let mut refused = None;
    for k in 0..100 {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("big{k}"))
            .arg(&big[..])
            .query_async(&mut tenant)
            .await;
        if let Err(e) = r {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("the disk never filled");
    assert!(refused.contains("MISCONF"), "{refused}");
    // What redis leaves free, taken too.
    fill(&data.join("filler"), usize::MAX);

    // Full: the backup's snapshot fails; crsd's own writes fail (at least some of them).
    // (A replica that cannot append a write from its master aborts; either way the
    // snapshot is lost.)
    until(60, "the snapshot to fail", || {
        let mut r = replica.clone();
        async move {
            let info: redis::RedisResult<String> = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut r)
                .await;
            info.map_or(true, |i| i.contains("rdb_last_bgsave_status:err"))
        }
    })
    .await;
    // (Space comes and goes as the supervisor restarts the replica: take what is left.)
    fill(&data.join("filler2"), usize::MAX);
    let mut write_failures = 0;
    for n in 0..200 {
        let v = c
            .call(
                "ModifyRedisName",
                &[("redisId", &id), ("redisName", &format!("full{n}"))],
            )
            .await;
        if v["code"] != 0 {
            assert_eq!(v["code"], 6000, "{v}");
            write_failures += 1;
        }
    }
    assert!(
        write_failures > 0,
        "no write of crsd failed on the full disk"
    );
    // The operator frees space.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(data.join("filler")).unwrap();
    std::fs::remove_file(data.join("filler2")).unwrap();
    until(10, "redis takes writes again", || {
        let mut t = tenant.clone();
        async move {
            redis::cmd("DEL")
                .arg("big0")
                .query_async::<i64>(&mut t)
                .await
                .is_ok()
        }
    })
    .await;
    for k in 1..100 {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("big{k}"))
            .query_async(&mut tenant)
            .await
            .unwrap();
    }

    // Healed, without a restart: every write answers, on whichever connection it lands.
    for n in 0..100 {
        c.ok(
            "ModifyRedisName",
            &[("redisId", &id), ("redisName", &format!("back{n}"))],
        )
        .await;
    }
    // The next backup is expected to be as big as the data set now.
    svc.refresh_usage(&id).await.unwrap();
    // The failed backup ended and released its instance.
    let status = c.wait_task(failed_backup).await;
    assert_eq!(status, 3, "the backup failed and was undone");
    // The replica (restarted by the supervisor if it aborted) in sync again, snapshots fast.
    until(30, "the replica back in sync", || {
        let svc = svc.clone();
        let id = id.clone();
        async move {
            let Ok(mut r) = replica_admin(&svc, &id).await else {
                return false;
            };
            let _: redis::RedisResult<()> = redis::cmd("CONFIG")
                .arg("SET")
                .arg("rdb-key-save-delay")
                .arg("0")
                .query_async(&mut r)
                .await;
            info_field(&mut r, "replication", "master_link_status").await == "up"
        }
    })
    .await;
    let v = c
        .ok(
            "ManualBackupInstance",
            &[("redisId", &id), ("remark", "again")],
        )
        .await;
    let next = v["data"]["requestId"].as_i64().unwrap();
    assert_eq!(c.wait_task(next).await, 2, "a later backup runs");
    let shown = c.describe_one(&id).await;
    assert_eq!(shown["status"], 2, "{shown}");

    // No path and no database error in anything the tenant can read.
    let data_text = data.display().to_string();
    for text in tenant_texts(&crsd, &id, &[failed_backup, next]).await {
        let lower = text.to_lowercase();
        assert!(!text.contains(&data_text), "a server path: {text}");
        assert!(
            !text.contains("/instances/") && !text.contains("/backups/"),
            "{text}"
        );
        assert!(
            !lower.contains("sqlite") && !lower.contains("database"),
            "{text}"
        );
    }
    let failed = svc
        .task_info(main_app_id(&crsd), failed_backup)
        .await
        .unwrap();
    assert_eq!(failed.error.as_deref(), Some("internal error"));
    assert!(failed.detail.is_some_and(|d| !d.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_are_refused_before_the_disk_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    // The whole filesystem is the reserve: no backup fits.
    cfg.backups.min_free_bytes = u64::MAX;
    cfg.backups.min_free_percent = 100;
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let c = crsd.client();
    let id = c.create(PASSWORD, 1).await[0]["redisId"]
        .as_str()
        .unwrap()
        .to_string();
    let v = c
        .err(
            "ManualBackupInstance",
            &[("redisId", &id), ("remark", "")],
            5100,
            None,
        )
        .await;
    assert_eq!(v["codeDesc"], "ResourceInsufficient", "{v}");
    // Nothing was recorded: the instance is not held, other tasks run.
    let v = c
        .ok("ClearRedis", &[("redisId", &id), ("password", PASSWORD)])
        .await;
    let clear = v["data"]["requestId"].as_i64().unwrap();
    assert_eq!(c.wait_task(clear).await, 2);
    let svc = service(&crsd);
    let app = main_app_id(&crsd);
    let (total, tasks) = svc
        .task_list(
            app,
            crsd_service::TaskQuery {
                limit: 100,
                kinds: vec![crsd_core::model::TaskKind::BackupInstance],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((total, tasks.len()), (0, 0));
    // The daily backup waits too.
    crsd.clock.advance(chrono::Duration::days(1));
    assert_eq!(svc.daily_backups_once().await.unwrap(), 0);
}

/// Records, while crsd is stopped, that `task` (a backup of `id`, holding it) failed and that
/// `attempts` undo attempts failed since, as a full disk would have left it.
async fn record_failed_backup(crsd: &TestCrsd, app_id: i64, id: &str, attempts: i64) -> i64 {
    use crsd_store::{NewTask, Store};
    let store = Store::open(&crsd.data_dir().join("crsd.db")).await.unwrap();
    let now = chrono::Utc::now();
    let mut tx = store.write().await.unwrap();
    let task_id = tx
        .insert_task(
            &NewTask {
                app_id,
                kind: crsd_core::model::TaskKind::BackupInstance,
                instance_id: Some(id.to_string()),
                deal_id: None,
                payload: serde_json::json!({
                    "backupId": format!("b-{id}"),
                    "backupType": "manualBackupInstance",
                    "remark": "",
                }),
            },
            now,
        )
        .await
        .unwrap();
    let mut inst = tx.instance(id).await.unwrap().unwrap();
    inst.lock_task = Some(task_id);
    tx.update_instance(&inst).await.unwrap();
    let mut task = tx.task(task_id).await.unwrap().unwrap();
    task.status = crsd_core::model::TaskStatus::Running;
    task.undo = Some(crsd_core::model::TaskStatus::Failed);
    task.undo_attempts = attempts;
    task.retry_at = Some(now);
    task.error = Some("internal error".into());
    task.detail = Some(format!(
        "storing {}: No space left on device",
        crsd.data_dir().display()
    ));
    tx.update_task(&task).await.unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    task_id
}

/// A failed task's undo state is durable: after a restart the runner goes on undoing it (it
/// never runs the steps again), and one that failed its undo too often is given up, ending in
/// error with its instance released and running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_undo_resumes_after_a_restart_and_is_given_up_in_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.loops.undo_attempts = 3;
    let mut crsd = TestCrsd::start_with(dir, cfg).await;
    let c = crsd.client();
    let ids: Vec<String> = c
        .create(PASSWORD, 2)
        .await
        .iter()
        .map(|i| i["redisId"].as_str().unwrap().to_string())
        .collect();
    let app = main_app_id(&crsd);
    crsd.stop().await;
    let undone = record_failed_backup(&crsd, app, &ids[0], 1).await;
    let given_up = record_failed_backup(&crsd, app, &ids[1], 3).await;

    let running = crsd::server::start(crsd.config.clone(), crsd.clock.clone())
        .await
        .expect("crsd starts again");
    crsd.url = format!("http://{}", running.addr);
    crsd.running = Some(running);
    let c = crsd.client();

    // Undone, not run again: no backup was taken, the task failed, the instance is free.
    assert_eq!(c.wait_task(undone).await, 3);
    let list = c
        .ok(
            "GetRedisBackupList",
            &[("redisId", &ids[0]), ("limit", "10"), ("offset", "0")],
        )
        .await;
    assert_eq!(list["totalCount"], 0, "{list}");
    // Given up: error, released, running; the tenant reads a summary only.
    assert_eq!(c.wait_task(given_up).await, -1);
    let svc = service(&crsd);
    for (id, task) in [(&ids[0], undone), (&ids[1], given_up)] {
        let shown = c.describe_one(id).await;
        assert_eq!(shown["status"], 2, "{shown}");
        let inst = svc.store().instance(id).await.unwrap().unwrap();
        assert_eq!(inst.lock_task, None);
        let t = svc.task_info(app, task).await.unwrap();
        let message = t.error.unwrap_or_default();
        assert!(!message.contains('/'), "{message}");
        assert!(t.detail.is_some_and(|d| d.contains("No space left")));
        // Free for the next task.
        let v = c
            .ok("ManualBackupInstance", &[("redisId", id), ("remark", "")])
            .await;
        let next = v["data"]["requestId"].as_i64().unwrap();
        assert_eq!(c.wait_task(next).await, 2);
    }
    let t = svc.task_info(app, given_up).await.unwrap();
    assert!(t.error.unwrap_or_default().contains("operator"));
}
