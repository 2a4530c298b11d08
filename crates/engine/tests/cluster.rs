//! A real Redis Cluster of redis-server processes formed by the engine: slots, roles, node
//! identities across a kill -9, and forming again as a no-op.

mod support;

use std::time::Duration;

use crsd_engine::{ClusterSettings, ClusterShard, Engine, NodeSpec, Role};
use support::{
    engine_config, free_port, kill_all_mentioning, node_spec, random_secret, tests_root, user_conn,
    PASSWORD,
};
use tempfile::TempDir;

/// A free port whose cluster bus port (10000 above) is free too and below the ephemeral
/// range.
fn cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 22768 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

struct Cluster {
    engine: Engine,
    shards: Vec<ClusterShard>,
    tmp: TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        kill_all_mentioning(self.tmp.path());
    }
}

fn cluster(masters: usize, replicas: usize) -> Cluster {
    let tmp = TempDir::new_in(tests_root()).expect("tempdir");
    let (admin, repl) = (random_secret(), random_secret());
    let node = |name: String, role: Role| NodeSpec {
        role,
        cluster: Some(ClusterSettings {
            node_timeout_ms: 1000,
        }),
        ..node_spec(&name, cluster_port(), tmp.path(), &admin, &repl, None)
    };
    let shards = (0..masters)
        .map(|s| ClusterShard {
            master: node(format!("s{s}-m"), Role::Master),
            replicas: (0..replicas)
                .map(|r| node(format!("s{s}-r{r}"), Role::Replica))
                .collect(),
        })
        .collect();
    Cluster {
        engine: Engine::new(engine_config()),
        shards,
        tmp,
    }
}

fn all(c: &Cluster) -> Vec<&NodeSpec> {
    c.shards
        .iter()
        .flat_map(|s| std::iter::once(&s.master).chain(&s.replicas))
        .collect()
}

#[tokio::test]
async fn forms_a_cluster_whose_nodes_keep_their_identity() {
    let c = cluster(3, 1);
    for spec in all(&c) {
        c.engine.start(spec).await.expect("start");
    }
    c.engine
        .form_cluster(&c.shards, Duration::from_secs(30))
        .await
        .expect("form");

    let view = c
        .engine
        .cluster_view(&c.shards[0].master)
        .await
        .expect("view");
    assert!(view.ok);
    assert_eq!(view.nodes.len(), 6);
    let mut covered = 0u32;
    for (i, shard) in c.shards.iter().enumerate() {
        let m = view
            .at("127.0.0.1", shard.master.port)
            .expect("master listed");
        assert!(m.master, "shard {i}'s master");
        assert_eq!(m.slots, vec![crsd_engine::even_slots(i, 3)]);
        covered += m.slot_count();
        let r = view
            .at("127.0.0.1", shard.replicas[0].port)
            .expect("replica listed");
        assert!(!r.master);
        assert_eq!(r.master_id.as_deref(), Some(m.id.as_str()));
        assert!(r.slots.is_empty(), "a replica never holds slots of its own");
    }
    assert_eq!(covered, u32::from(crsd_engine::SLOTS));

    // The customer's user reaches the cluster's commands a cluster client needs, and not
    // the ones that change it.
    let mut user = user_conn(c.shards[0].master.port, PASSWORD)
        .await
        .expect("user");
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut user)
        .await
        .expect("CLUSTER SLOTS");
    assert!(
        matches!(slots, redis::Value::Array(ref a) if a.len() == 3),
        "{slots:?}"
    );
    let refused = redis::cmd("CLUSTER")
        .arg("FORGET")
        .arg(&view.nodes[1].id)
        .query_async::<()>(&mut user)
        .await;
    assert!(refused.is_err(), "the customer must not change the cluster");

    // Forming again changes nothing.
    c.engine
        .form_cluster(&c.shards, Duration::from_secs(30))
        .await
        .expect("form again");
    let again = c
        .engine
        .cluster_view(&c.shards[0].master)
        .await
        .expect("view");
    let ids = |v: &crsd_engine::ClusterView| {
        let mut ids: Vec<String> = v.nodes.iter().map(|n| n.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&again), ids(&view));

    // A replica killed and started again is the same node (nodes.conf).
    let replica = &c.shards[1].replicas[0];
    let before = view
        .at("127.0.0.1", replica.port)
        .expect("listed")
        .id
        .clone();
    let pid = c.engine.running_pid(replica).expect("runs");
    // SAFETY: plain syscall on the pid the engine just proved is this node's redis-server.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    support::wait_until("the replica is gone", Duration::from_secs(5), || async {
        c.engine.running_pid(replica).is_none()
    })
    .await;
    c.engine.start(replica).await.expect("restart");
    let mine = c.engine.cluster_view(replica).await.expect("view");
    assert_eq!(mine.myself, before);
    let me = mine.node(&mine.myself).expect("myself");
    assert_eq!(
        me.master_id.as_deref(),
        view.at("127.0.0.1", c.shards[1].master.port)
            .map(|m| m.id.as_str())
    );
}
