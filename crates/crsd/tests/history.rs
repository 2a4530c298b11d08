//! crsd's own history of node figures, with real redis-server processes and the injected
//! clock: every round samples each node of each running instance once; writes move keys, ops
//! and hits; samples age out after the retention; a deleted instance is no longer sampled; a
//! node that does not answer is left out without failing the round.

mod common;

use chrono::Duration as Age;
use common::{redis_conn, service, TestCrsd};
use crsd_core::model::NodeRole;
use std::time::Duration;

const PASSWORD: &str = "History2024(ok";

/// A crsd whose own sampler never runs during the test: rounds are the test's.
async fn start() -> TestCrsd {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.monitor.sample_interval_secs = 3600;
    cfg.monitor.retention_hours = 24;
    TestCrsd::start_with(dir, cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_accumulate_move_with_writes_and_age_out() {
    let crsd = start().await;
    let c = crsd.client();
    let made = c.create(PASSWORD, 2).await;
    let ids: Vec<String> = made
        .iter()
        .map(|i| i["redisId"].as_str().unwrap().to_string())
        .collect();
    let (a, b) = (&ids[0], &ids[1]);
    let svc = service(&crsd);
    let t0 = svc.now();

    let first = svc.sample_once().await.unwrap();
    assert_eq!((first.sampled, first.skipped), (4, 0), "{first:?}");

    // Keys, hits and misses on instance a, through its address.
    let inst = &made[0];
    let host = inst["wanIp"].as_str().unwrap();
    let port = inst["port"].as_u64().unwrap() as u16;
    let mut con = redis_conn(host, port, PASSWORD).await.unwrap();
    for i in 0..100 {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async::<()>(&mut con)
            .await
            .unwrap();
    }
    for i in 0..20 {
        redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async::<Option<String>>(&mut con)
            .await
            .unwrap();
        redis::cmd("GET")
            .arg(format!("missing{i}"))
            .query_async::<Option<String>>(&mut con)
            .await
            .unwrap();
    }
    // The replica has it all before the next round.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(acked, 1);

    crsd.clock.advance(Age::seconds(60));
    let second = svc.sample_once().await.unwrap();
    assert_eq!((second.sampled, second.skipped), (4, 0), "{second:?}");

    let now = svc.now();
    let of_a = svc.node_samples(a, t0, now).await.unwrap();
    assert_eq!(of_a.len(), 4, "two rounds of two nodes: {of_a:#?}");
    assert!(of_a.iter().all(|s| &s.instance_id == a));
    // A minute by crsd's clock, plus the real time between the two rounds (the writes, the
    // WAIT): the sample times are whole seconds, so a second boundary crossed meanwhile
    // makes it 61.
    let apart = (of_a[2].at - of_a[0].at).num_seconds();
    assert!(
        (60..=62).contains(&apart),
        "rounds are a minute apart by crsd's clock: {apart} s"
    );
    let (first_round, second_round) = of_a.split_at(2);
    assert!(first_round.iter().all(|s| s.span_ms == 0 && s.keys == 0));
    let master = second_round
        .iter()
        .find(|s| s.role == NodeRole::Master)
        .expect("a master sample");
    let replica = second_round
        .iter()
        .find(|s| s.role == NodeRole::Replica)
        .expect("a replica sample");
    assert_eq!(master.keys, 100, "{master:?}");
    assert_eq!(replica.keys, 100, "{replica:?}");
    assert!(master.span_ms > 0);
    assert!(master.ops_per_sec > 0.0, "{master:?}");
    assert!(master.keyspace_hits >= 20, "{master:?}");
    assert!(master.keyspace_misses >= 20, "{master:?}");
    assert!(master.hit_ratio().is_some());
    assert!(master.used_memory > 0);
    assert!(master.connections >= 1);
    assert!(master.net_in_bps > 0.0 && master.net_out_bps > 0.0);
    assert!(master.cpu_secs >= 0.0);
    assert_eq!(master.repl_lag_bytes, None);
    assert!(
        replica.repl_lag_bytes.is_some_and(|l| l >= 0),
        "{replica:?}"
    );
    let of_b = svc.node_samples(b, t0, now).await.unwrap();
    assert_eq!(of_b.len(), 4);
    assert!(of_b.iter().all(|s| s.keys == 0));

    // A day and an hour later: both earlier rounds are past the retention.
    crsd.clock.advance(Age::hours(25));
    let third = svc.sample_once().await.unwrap();
    assert_eq!(third.sampled, 4);
    assert_eq!(third.pruned, 8, "{third:?}");
    assert!(svc.node_samples(a, t0, now).await.unwrap().is_empty());
    let latest = svc.node_samples(a, t0, svc.now()).await.unwrap();
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|s| s.keys == 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_instances_and_dead_nodes_are_left_out() {
    let crsd = start().await;
    let c = crsd.client();
    let made = c.create(PASSWORD, 2).await;
    let ids: Vec<String> = made
        .iter()
        .map(|i| i["redisId"].as_str().unwrap().to_string())
        .collect();
    let (a, b) = (&ids[0], &ids[1]);
    let svc = service(&crsd);
    let t0 = svc.now();
    assert_eq!(svc.sample_once().await.unwrap().sampled, 4);

    let task = svc.delete(common::main_app_id(&crsd), b).await.unwrap();
    assert_eq!(c.wait_task(task).await, 2);
    crsd.clock.advance(Age::seconds(60));
    let after_delete = svc.sample_once().await.unwrap();
    assert_eq!((after_delete.sampled, after_delete.skipped), (2, 0));
    let of_b = svc.node_samples(b, t0, svc.now()).await.unwrap();
    assert_eq!(of_b.len(), 2, "only the round before the delete: {of_b:#?}");
    assert!(of_b.iter().all(|s| s.at == of_b[0].at));

    // A replica killed, with the supervisor stopped so it stays dead: the round goes on.
    crsd.running.as_ref().unwrap().stop_loops();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inst = svc.store().instance(a).await.unwrap().unwrap();
    let replica = svc.replica_specs(&inst).remove(0);
    assert!(svc.runtime().kill(&replica).unwrap());
    crsd.clock.advance(Age::seconds(60));
    let started = std::time::Instant::now();
    let round = svc.sample_once().await.unwrap();
    assert_eq!((round.sampled, round.skipped), (1, 1), "{round:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let last = svc.node_samples(a, svc.now(), svc.now()).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].role, NodeRole::Master);
    assert_eq!(last[0].node_id, inst.master().unwrap().id);
}
