//! Backup and restore primitives against real redis-server processes: the replication
//! barrier, snapshots of the replica (loaded into a scratch redis-server to compare), the
//! RDB check, and restore staging on a stopped pair.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crsd_engine::EngineError;
use redis::aio::MultiplexedConnection;
use support::{
    dataset, load_rdb_in_scratch_server, start_pair, user_conn, Pair, SpecDir, PASSWORD,
};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn set_many(con: &mut MultiplexedConnection, prefix: &str, range: std::ops::Range<u32>) {
    let mut pipe = redis::pipe();
    for i in range {
        pipe.cmd("SET")
            .arg(format!("{prefix}:{i}"))
            .arg(format!("{prefix}-value-{i}"))
            .ignore();
    }
    pipe.query_async::<()>(con).await.expect("SETs");
}

/// Barrier on the master, snapshot on the replica, and the file moved to `to`.
async fn back_up(p: &Pair, to: &Path) {
    p.engine
        .replication_barrier(&p.master, 1, TIMEOUT)
        .await
        .expect("barrier");
    let rdb = p
        .engine
        .snapshot(&p.replica, TIMEOUT)
        .await
        .expect("snapshot");
    assert_eq!(rdb, p.replica.dir().join("dump.rdb"));
    std::fs::rename(&rdb, to).expect("move the snapshot away");
}

async fn master_data(p: &Pair) -> BTreeMap<String, String> {
    let mut con = user_conn(p.master.port, PASSWORD).await.expect("auth");
    dataset(&mut con).await.expect("master data")
}

async fn replica_data(p: &Pair) -> BTreeMap<String, String> {
    let mut con = user_conn(p.replica.port, PASSWORD).await.expect("auth");
    dataset(&mut con).await.expect("replica data")
}

#[tokio::test]
async fn barrier_makes_every_acknowledged_write_readable_on_the_replica_at_once() {
    const N: usize = 1000;
    const ROUNDS: usize = 5;
    let p = Pair::new();
    start_pair(&p).await;
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    let mut replica = user_conn(p.replica.port, PASSWORD).await.expect("auth");
    let keys: Vec<String> = (0..N).map(|i| format!("k:{i}")).collect();
    // Right after the first sync the master may not list the replica as online until the
    // replica's next periodic ACK; the timed rounds measure the steady state.
    p.engine
        .replication_barrier(&p.master, 1, TIMEOUT)
        .await
        .expect("first barrier");

    let mut total = Duration::ZERO;
    for round in 0..ROUNDS {
        // 8 KiB values (8 MiB a round): the replica needs a few ms to apply them, so a
        // read right after the writes would miss some without the barrier.
        let value = format!("{round}").repeat(8 * 1024);
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("SET").arg(key).arg(&value).ignore();
        }
        pipe.query_async::<()>(&mut master).await.expect("SETs");
        let t0 = Instant::now();
        p.engine
            .replication_barrier(&p.master, 1, TIMEOUT)
            .await
            .expect("barrier");
        total += t0.elapsed();
        // Read back in slices: one 8 MiB reply would exceed the node's `maxmemory-clients`
        // (a share of its 32 MB) and get the client evicted.
        let mut values: Vec<Option<String>> = Vec::new();
        for slice in keys.chunks(100) {
            let part: Vec<Option<String>> = redis::cmd("MGET")
                .arg(slice)
                .query_async(&mut replica)
                .await
                .expect("MGET on replica");
            values.extend(part);
        }
        let stale = values
            .iter()
            .filter(|v| v.as_deref() != Some(value.as_str()))
            .count();
        assert_eq!(
            stale, 0,
            "round {round}: keys missing or old on the replica"
        );
    }
    // WAIT asks the replica for its offset at once; waiting for its once-a-second ACK
    // would cost about half a second a round on average.
    assert!(
        total < Duration::from_millis(200 * ROUNDS as u64),
        "{ROUNDS} barriers took {total:?}"
    );

    // More replicas than there are: a typed error once the timeout has passed.
    let t0 = Instant::now();
    match p
        .engine
        .replication_barrier(&p.master, 2, Duration::from_millis(200))
        .await
    {
        Err(EngineError::ReplicasNotInSync {
            wanted: 2,
            caught_up: 1,
            ..
        }) => {}
        other => panic!("expected ReplicasNotInSync, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(200));
    // Only a master has replicas to wait for.
    assert!(matches!(
        p.engine
            .replication_barrier(&p.replica, 1, Duration::from_millis(100))
            .await,
        Err(EngineError::WrongRole { .. })
    ));
}

#[tokio::test]
async fn snapshot_of_the_replica_holds_every_key_and_two_in_a_row_differ() {
    let p = Pair::new();
    start_pair(&p).await;
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    set_many(&mut master, "k", 0..500).await;
    redis::cmd("HSET")
        .arg("h")
        .arg("f1")
        .arg("v1")
        .arg("f2")
        .arg("v2")
        .query_async::<()>(&mut master)
        .await
        .expect("HSET");
    redis::cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .arg("c")
        .query_async::<()>(&mut master)
        .await
        .expect("RPUSH");

    let first = p.tmp.path().join("first.rdb");
    back_up(&p, &first).await;
    let bytes = std::fs::read(&first).expect("read snapshot");
    assert!(bytes.starts_with(b"REDIS00"), "{:?}", &bytes[..9]);
    p.engine.check_rdb(&first).await.expect("check_rdb");

    let expected = master_data(&p).await;
    assert_eq!(expected.len(), 502);
    let mut scratch = load_rdb_in_scratch_server(p.tmp.path(), "scratch1", &first).await;
    assert_eq!(dataset(&mut scratch).await.expect("scratch data"), expected);

    // A second snapshot right away (same second as the first): it is a new save, and it
    // has the key written in between.
    redis::cmd("SET")
        .arg("between")
        .arg("snapshots")
        .query_async::<()>(&mut master)
        .await
        .expect("SET");
    let second = p.tmp.path().join("second.rdb");
    back_up(&p, &second).await;
    p.engine.check_rdb(&second).await.expect("check_rdb");
    let mut scratch = load_rdb_in_scratch_server(p.tmp.path(), "scratch2", &second).await;
    let v: Option<String> = redis::cmd("GET")
        .arg("between")
        .query_async(&mut scratch)
        .await
        .expect("GET");
    assert_eq!(v.as_deref(), Some("snapshots"));
    assert_eq!(dataset(&mut scratch).await.expect("data").len(), 503);
}

#[tokio::test]
async fn snapshots_taken_while_a_client_writes_are_consistent_and_complete() {
    let p = Pair::new();
    start_pair(&p).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let mut con = user_conn(p.master.port, PASSWORD).await.expect("auth");
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // One key and the counter together: any consistent snapshot has
                // counter == number of k:* keys.
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(format!("k:{n}"))
                    .arg(n)
                    .ignore()
                    .cmd("INCR")
                    .arg("counter")
                    .ignore()
                    .query_async::<()>(&mut con)
                    .await
                    .expect("MULTI/EXEC");
                n += 1;
                acked.store(n, Ordering::SeqCst);
            }
            n
        })
    };

    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let acked_before = acked.load(Ordering::SeqCst);
        let rdb = p.tmp.path().join(format!("live{round}.rdb"));
        back_up(&p, &rdb).await;
        p.engine.check_rdb(&rdb).await.expect("check_rdb");
        let mut scratch =
            load_rdb_in_scratch_server(p.tmp.path(), &format!("scratch{round}"), &rdb).await;
        let counter: u64 = redis::cmd("GET")
            .arg("counter")
            .query_async(&mut scratch)
            .await
            .expect("GET counter");
        let keys: u64 = redis::cmd("DBSIZE")
            .query_async(&mut scratch)
            .await
            .expect("DBSIZE");
        assert_eq!(
            keys,
            counter + 1,
            "round {round}: counter and keys disagree"
        );
        assert!(
            counter >= acked_before,
            "round {round}: snapshot has {counter} writes, {acked_before} were acknowledged before the barrier"
        );
        let last: Option<u64> = redis::cmd("GET")
            .arg(format!("k:{}", counter - 1))
            .query_async(&mut scratch)
            .await
            .expect("GET last");
        assert_eq!(last, Some(counter - 1));
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.await.expect("writer");
    assert!(written > 0);
}

#[tokio::test]
async fn check_rdb_rejects_truncated_flipped_and_foreign_files() {
    let p = Pair::new();
    start_pair(&p).await;
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    set_many(&mut master, "k", 0..1000).await;
    let good = p.tmp.path().join("good.rdb");
    back_up(&p, &good).await;
    p.engine.check_rdb(&good).await.expect("a good file passes");
    let bytes = std::fs::read(&good).expect("read");
    assert!(bytes.len() > 1000, "{} bytes", bytes.len());

    let write = |name: &str, content: &[u8]| -> PathBuf {
        let path = p.tmp.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    };
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let cases = [
        write("truncated.rdb", &bytes[..bytes.len() / 2]),
        write("no-checksum.rdb", &bytes[..bytes.len() - 4]),
        write("flipped.rdb", &flipped),
        write("aof.rdb", b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"),
        write("text.rdb", b"hello world\n"),
        write("empty.rdb", b""),
        write("magic-only.rdb", b"REDIS0010"),
    ];
    for path in &cases {
        match p.engine.check_rdb(path).await {
            Err(EngineError::CorruptRdb { detail }) => assert!(!detail.is_empty()),
            other => panic!("{}: expected CorruptRdb, got {other:?}", path.display()),
        }
    }
    assert!(matches!(
        p.engine.check_rdb(&p.tmp.path().join("missing.rdb")).await,
        Err(EngineError::Io(_))
    ));
}

#[tokio::test]
async fn restore_puts_a_snapshot_back_on_the_pair_and_can_be_rolled_back() {
    let p = Pair::new();
    start_pair(&p).await;
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");

    // State A, backed up.
    set_many(&mut master, "a", 0..200).await;
    redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("A")
        .query_async::<()>(&mut master)
        .await
        .expect("HSET");
    let state_a = master_data(&p).await;
    let backup = p.tmp.path().join("backup-a.rdb");
    back_up(&p, &backup).await;
    p.engine.check_rdb(&backup).await.expect("check_rdb");

    // State B: changed, deleted and new keys, on both nodes.
    set_many(&mut master, "b", 0..50).await;
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("a:{i}")).arg("B").ignore();
    }
    for i in 150..200 {
        pipe.cmd("DEL").arg(format!("a:{i}")).ignore();
    }
    pipe.cmd("HSET").arg("h").arg("f").arg("B").ignore();
    pipe.query_async::<()>(&mut master).await.expect("state B");
    drop(master);
    p.engine
        .replication_barrier(&p.master, 1, TIMEOUT)
        .await
        .expect("barrier");
    assert_ne!(master_data(&p).await, state_a);

    // Staging may happen while the node runs; the rest refuses.
    p.engine
        .stage_restore(&p.master, &backup)
        .expect("stage while running");
    for spec in [&p.master, &p.replica] {
        for (what, result) in [
            ("swap", p.engine.swap_in_restore(spec)),
            ("roll back", p.engine.roll_back_restore(spec)),
            ("discard", p.engine.discard_data(spec)),
        ] {
            assert!(
                matches!(result, Err(EngineError::NodeRunning { .. })),
                "{what} on {}: {result:?}",
                spec.name
            );
        }
    }

    p.engine.stop(&p.replica).await.expect("stop replica");
    p.engine.stop(&p.master).await.expect("stop master");
    p.engine.swap_in_restore(&p.master).expect("swap");
    p.engine.swap_in_restore(&p.master).expect("swap again");
    p.engine.discard_data(&p.replica).expect("discard replica");
    assert!(!p.replica.dir().join("appendonlydir").exists());
    assert!(!p.replica.dir().join("dump.rdb").exists());

    p.engine.start(&p.master).await.expect("start master");
    p.engine.start(&p.replica).await.expect("start replica");
    p.engine
        .wait_replica_synced(&p.replica, TIMEOUT)
        .await
        .expect("replica synced");
    assert_eq!(master_data(&p).await, state_a, "master holds state A");
    assert_eq!(replica_data(&p).await, state_a, "replica holds state A");
    p.engine.finish_restore(&p.master).expect("finish");
    assert!(!p.master.dir().join("appendonlydir.before-restore").exists());

    // The restored master takes writes and keeps them across a restart (its AOF goes on
    // from the restored base).
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    redis::cmd("SET")
        .arg("c")
        .arg("C")
        .query_async::<()>(&mut master)
        .await
        .expect("SET");
    drop(master);
    let state_c = master_data(&p).await;
    assert_eq!(state_c.len(), state_a.len() + 1);

    // Roll back: stage A again, swap it in, change our mind before starting.
    p.engine.stage_restore(&p.master, &backup).expect("stage");
    p.engine.stop(&p.replica).await.expect("stop replica");
    p.engine.stop(&p.master).await.expect("stop master");
    p.engine.swap_in_restore(&p.master).expect("swap");
    p.engine.roll_back_restore(&p.master).expect("roll back");
    p.engine
        .roll_back_restore(&p.master)
        .expect("roll back again");
    assert!(!p.master.dir().join("appendonlydir.restore").exists());
    assert!(!p.master.dir().join("appendonlydir.before-restore").exists());
    p.engine.start(&p.master).await.expect("start master");
    p.engine.start(&p.replica).await.expect("start replica");
    p.engine
        .wait_replica_synced(&p.replica, TIMEOUT)
        .await
        .expect("replica synced");
    assert_eq!(master_data(&p).await, state_c, "master is back to state C");
    p.engine
        .replication_barrier(&p.master, 1, TIMEOUT)
        .await
        .expect("barrier");
    assert_eq!(
        replica_data(&p).await,
        state_c,
        "replica is back to state C"
    );

    // Nothing staged, nothing swapped: nothing to swap in.
    p.engine.stop(&p.master).await.expect("stop master");
    assert!(matches!(
        p.engine.swap_in_restore(&p.master),
        Err(EngineError::NoRestoreStaged)
    ));

    // destroy removes the node folder with whatever a restore left in it.
    p.engine.stage_restore(&p.master, &backup).expect("stage");
    p.engine.destroy(&p.master).await.expect("destroy");
    assert!(!p.master.dir().exists());
}

/// `INFO <section>` field of a node, read as crsd's admin user.
async fn info_field(p: &Pair, spec: &crsd_engine::NodeSpec, section: &str, name: &str) -> String {
    let mut con = p.engine.admin_connection(spec).await.expect("admin");
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut con)
        .await
        .expect("INFO");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("INFO {section} has no {name}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn a_restored_pair_starts_on_the_rdb_together_and_the_replica_continues_without_a_full_sync()
{
    let p = Pair::new();
    start_pair(&p).await;
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    set_many(&mut master, "a", 0..300).await;
    let state_a = master_data(&p).await;
    let backup = p.tmp.path().join("backup-a.rdb");
    back_up(&p, &backup).await;
    set_many(&mut master, "b", 0..50).await;
    drop(master);

    for spec in [&p.master, &p.replica] {
        p.engine.stage_restore(spec, &backup).expect("stage");
    }
    p.engine.stop(&p.replica).await.expect("stop replica");
    p.engine.stop(&p.master).await.expect("stop master");
    for spec in [&p.master, &p.replica] {
        p.engine.swap_in_restore(spec).expect("swap");
    }
    let (m, r) = tokio::join!(
        p.engine.start_restored(&p.master, TIMEOUT),
        p.engine.start_restored(&p.replica, TIMEOUT)
    );
    let (m, _r) = (m.expect("start master"), r.expect("start replica"));
    p.engine
        .wait_replica_linked(&p.replica, TIMEOUT)
        .await
        .expect("replica linked");
    // The replica continued from the RDB's offset: the master never sent a full copy.
    assert_eq!(info_field(&p, &p.master, "stats", "sync_full").await, "0");
    assert_eq!(
        info_field(&p, &p.master, "stats", "sync_partial_ok").await,
        "1"
    );
    assert_eq!(master_data(&p).await, state_a, "master holds state A");
    assert_eq!(replica_data(&p).await, state_a, "replica holds state A");
    // No write before the AOF holds the data.
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    let refused = redis::cmd("SET")
        .arg("early")
        .arg("x")
        .query_async::<()>(&mut master)
        .await
        .expect_err("a write before the AOF is on");
    assert!(refused.to_string().contains("NOPERM"), "{refused}");

    for spec in [&p.master, &p.replica] {
        p.engine
            .settle_restored(spec, TIMEOUT)
            .await
            .expect("settle");
        p.engine
            .settle_restored(spec, TIMEOUT)
            .await
            .expect("settle again");
        assert_eq!(
            info_field(&p, spec, "persistence", "aof_enabled").await,
            "1"
        );
        p.engine.finish_restore(spec).expect("finish");
        assert!(!spec.dir().join("dump.rdb").exists());
        assert!(!spec.dir().join("appendonlydir.before-restore").exists());
    }
    // Writes again, and an acknowledged one survives a kill -9 of the master.
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    redis::cmd("SET")
        .arg("c")
        .arg("C")
        .query_async::<()>(&mut master)
        .await
        .expect("SET after the AOF is on");
    drop(master);
    let state_c = master_data(&p).await;
    assert_eq!(state_c.len(), state_a.len() + 1);
    // SAFETY: plain syscall on the pid start_restored reported for our master.
    unsafe {
        libc::kill(m.pid as libc::pid_t, libc::SIGKILL);
    }
    support::wait_until("master gone", TIMEOUT, || async {
        support::is_zombie_or_gone(m.pid)
    })
    .await;
    p.engine.start(&p.master).await.expect("start master again");
    assert_eq!(master_data(&p).await, state_c, "the write survived kill -9");
    p.engine
        .wait_replica_synced(&p.replica, TIMEOUT)
        .await
        .expect("replica follows");
    p.engine
        .replication_barrier(&p.master, 1, TIMEOUT)
        .await
        .expect("barrier");
    assert_eq!(replica_data(&p).await, state_c, "replica follows");

    // The same backup restored again (the replica's redis.conf now holds what CONFIG REWRITE
    // persisted under the restored start's marker): again no full sync.
    for spec in [&p.master, &p.replica] {
        p.engine.stage_restore(spec, &backup).expect("stage again");
    }
    p.engine.stop(&p.replica).await.expect("stop replica");
    p.engine.stop(&p.master).await.expect("stop master");
    for spec in [&p.master, &p.replica] {
        p.engine.swap_in_restore(spec).expect("swap again");
        assert!(spec.dir().join("dump.rdb").exists());
    }
    let (m, r) = tokio::join!(
        p.engine.start_restored(&p.master, TIMEOUT),
        p.engine.start_restored(&p.replica, TIMEOUT)
    );
    m.expect("start master");
    r.expect("start replica");
    p.engine
        .wait_replica_linked(&p.replica, TIMEOUT)
        .await
        .expect("replica linked");
    assert_eq!(info_field(&p, &p.master, "stats", "sync_full").await, "0");
    assert_eq!(master_data(&p).await, state_a, "master holds state A again");
    assert_eq!(
        replica_data(&p).await,
        state_a,
        "replica holds state A again"
    );
}

#[tokio::test]
async fn snapshot_waits_out_a_replica_busy_with_a_long_script() {
    let p = Pair::new();
    start_pair(&p).await;
    let mut master = user_conn(p.master.port, PASSWORD).await.expect("auth");
    set_many(&mut master, "busy", 0..100).await;
    p.engine
        .replication_barrier(&p.master, 1, Duration::from_secs(10))
        .await
        .expect("barrier");
    // A read-only script that keeps the replica busy for 2.5 s (longer than a login may
    // take), started just before the snapshot.
    let mut replica = user_conn(p.replica.port, PASSWORD).await.expect("auth");
    let script = tokio::spawn(async move {
        redis::cmd("EVAL_RO")
            .arg(
                "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
                 while true do local n = redis.call('TIME') \
                 if n[1] * 1000000 + n[2] - s > 2500000 then return 1 end end",
            )
            .arg(0)
            .query_async::<i64>(&mut replica)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let rdb = p
        .engine
        .snapshot(&p.replica, Duration::from_secs(30))
        .await
        .expect("the snapshot waits for the busy replica instead of failing");
    assert!(t0.elapsed() >= Duration::from_secs(1), "it really waited");
    assert_eq!(script.await.expect("join").expect("script"), 1);
    p.engine.check_rdb(&rdb).await.expect("a whole RDB");
}
