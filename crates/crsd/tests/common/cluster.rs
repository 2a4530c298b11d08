//! What the cluster tests share: a crsd whose ports leave room for cluster buses, and a
//! cluster bought through API 3.0.

#![allow(dead_code)]

use super::tc3::Tc3;
use super::{port_range, test_config};
use serde_json::json;

/// The password of the clusters these tests buy.
pub const PASSWORD: &str = "Cluster-2024-Pass";

/// A test config whose node ports leave room for their cluster buses (10000 above) below the
/// kernel's ephemeral range.
pub fn cluster_config() -> (tempfile::TempDir, crsd::config::Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let (lo, hi) = loop {
        let r = port_range(40);
        if r.1 < 22000 {
            break r;
        }
    };
    cfg.instances.port_min = lo;
    cfg.instances.port_max = hi;
    (dir, cfg)
}

/// A running cluster of `shards` shards × 1 replica, 1 GB a shard; its id.
pub async fn create_cluster(c: &Tc3, shards: i64) -> String {
    let r = c
        .ok(
            "CreateInstances",
            json!({"TypeId": 18, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
                "BillingMode": 1, "ZoneId": 100002, "Password": PASSWORD,
                "RedisShardNum": shards, "RedisReplicasNum": 1}),
        )
        .await;
    let deal = r["DealId"].as_str().unwrap().to_string();
    let d = c.wait_deal(&deal).await;
    d["InstanceIds"][0].as_str().unwrap().to_string()
}
