//! The history of node samples: a round is recorded in one transaction, read back by
//! instance and time range, and pruned by age in bounded chunks.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use crsd_core::model::{NodeRole, NodeSample};

fn sample(instance: &str, seq: i64, at: DateTime<Utc>) -> NodeSample {
    NodeSample {
        node_id: format!("{instance}-{seq}"),
        instance_id: instance.into(),
        at,
        role: if seq == 0 {
            NodeRole::Master
        } else {
            NodeRole::Replica
        },
        span_ms: 60_000,
        used_memory: 1_000_000 + seq,
        ops_per_sec: 12.5,
        connections: 3,
        keyspace_hits: 30,
        keyspace_misses: 10,
        net_in_bps: 100.25,
        net_out_bps: 200.5,
        keys: 42,
        expired_keys: 1,
        evicted_keys: 2,
        repl_lag_bytes: (seq > 0).then_some(7),
        cpu_secs: 0.75,
    }
}

#[tokio::test]
async fn rounds_are_read_back_by_instance_and_range_and_pruned_by_age() {
    let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let (_dir, store) = common::store_with_account(0, t0).await;
    // Ten rounds a minute apart of two instances of two nodes each.
    for round in 0..10 {
        let at = t0 + Duration::minutes(round);
        let batch: Vec<NodeSample> = ["crs-a", "crs-b"]
            .iter()
            .flat_map(|i| [sample(i, 0, at), sample(i, 1, at)])
            .collect();
        let mut tx = store.write().await.unwrap();
        tx.insert_node_samples(&batch).await.unwrap();
        tx.commit().await.unwrap();
    }

    let all = store
        .node_samples("crs-a", t0, t0 + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(all.len(), 20);
    assert_eq!(all[0], sample("crs-a", 0, t0));
    assert_eq!(all[1], sample("crs-a", 1, t0));
    assert_eq!(all[1].hit_ratio(), Some(0.75));
    assert!(all
        .windows(2)
        .all(|w| (w[0].at, &w[0].node_id) < (w[1].at, &w[1].node_id)));
    // Inclusive bounds.
    let some = store
        .node_samples(
            "crs-a",
            t0 + Duration::minutes(2),
            t0 + Duration::minutes(4),
        )
        .await
        .unwrap();
    assert_eq!(some.len(), 6);
    assert!(store
        .node_samples("crs-c", t0, t0 + Duration::hours(1))
        .await
        .unwrap()
        .is_empty());

    // The same node in the same second again: replaced, not doubled.
    let mut again = sample("crs-a", 0, t0);
    again.keys = 43;
    let mut tx = store.write().await.unwrap();
    tx.insert_node_samples(&[again]).await.unwrap();
    tx.commit().await.unwrap();
    let first = store.node_samples("crs-a", t0, t0).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].keys, 43);

    // Older than minute 6: 6 rounds of 4 rows, in chunks of 10.
    let cutoff = t0 + Duration::minutes(6);
    let mut pruned = Vec::new();
    loop {
        let mut tx = store.write().await.unwrap();
        let n = tx.prune_node_samples(cutoff, 10).await.unwrap();
        tx.commit().await.unwrap();
        pruned.push(n);
        if n < 10 {
            break;
        }
    }
    assert_eq!(pruned, vec![10, 10, 4]);
    let left = store
        .node_samples("crs-b", t0, t0 + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(left.len(), 8);
    assert!(left.iter().all(|s| s.at >= cutoff));
}

#[tokio::test]
async fn a_large_round_is_one_transaction_across_chunks() {
    let t0 = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let (_dir, store) = common::store_with_account(0, t0).await;
    // 1,200 nodes: three insert statements in one transaction.
    let batch: Vec<NodeSample> = (0..600)
        .flat_map(|i| {
            let id = format!("crs-{i:04}");
            [sample(&id, 0, t0), sample(&id, 1, t0)]
        })
        .collect();
    let mut tx = store.write().await.unwrap();
    tx.insert_node_samples(&batch).await.unwrap();
    // Dropped without a commit: nothing of it stays.
    drop(tx);
    assert!(store
        .node_samples("crs-0599", t0, t0)
        .await
        .unwrap()
        .is_empty());
    let mut tx = store.write().await.unwrap();
    tx.insert_node_samples(&batch).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.node_samples("crs-0599", t0, t0).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.node_samples("crs-0000", t0, t0).await.unwrap().len(),
        2
    );
}
