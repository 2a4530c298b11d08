//! The cluster edition: what crsd does for Redis Cluster instances beside what every instance
//! gets (nodes started, supervised, conformed; the stable address).
//!
//! Redis Cluster decides failovers itself (no Sentinel): a master silent for
//! `cluster-node-timeout` is replaced by a replica its shard's replicas elect. crsd's part is
//! to form the cluster once (the engine's `cluster.rs`), to follow it, and never to decide:
//! * the database's roles follow the cluster's (`follow_cluster`, every supervisor pass):
//!   the node the cluster says serves a shard's slots is that shard's master;
//! * a dead master whose shard has a live replica is left to the cluster's failover for
//!   `failover_grace`, like Sentinel's (`cluster_dead_master`); it is started again once the
//!   cluster has promoted a replica, and rejoins as its replica (its identity is in its
//!   `nodes.conf`), or in place when no failover came;
//! * crsd never assigns slots to paper over a failure.

use crate::Service;
use crsd_core::model::{Instance, NodeRole, TaskKind};
use crsd_core::Result;
use crsd_engine::{ClusterView, Liveness, NodeSpec};
use std::time::Duration;

/// How long one node may take to answer `CLUSTER NODES` in a supervisor pass.
const VIEW_TIMEOUT: Duration = Duration::from_millis(500);

impl Service {
    /// The shards of a cluster instance to form, as the database records them (shard 0
    /// first: it takes the first slots).
    pub(crate) fn cluster_shards(&self, inst: &Instance) -> Vec<crsd_engine::ClusterShard> {
        inst.shard_ids()
            .into_iter()
            .filter_map(|shard| self.cluster_shard(inst, shard))
            .collect()
    }

    /// Shard `shard` to form or join: its master (as the database names it) and replicas.
    pub(crate) fn cluster_shard(
        &self,
        inst: &Instance,
        shard: i64,
    ) -> Option<crsd_engine::ClusterShard> {
        let nodes = inst.shard_nodes(shard);
        let (master, replicas) = nodes.split_first()?;
        (master.role == NodeRole::Master).then(|| crsd_engine::ClusterShard {
            master: self.node_spec(inst, master),
            replicas: replicas.iter().map(|n| self.node_spec(inst, n)).collect(),
        })
    }

    /// The master of every shard: for a cluster, as the cluster itself says now (a
    /// failover may be a pass ahead of the database); for a standard instance, the one the
    /// database names.
    pub(crate) async fn master_specs(&self, inst: &Instance) -> Vec<NodeSpec> {
        if !inst.is_cluster() {
            return inst
                .master()
                .map(|m| self.node_spec(inst, m))
                .into_iter()
                .collect();
        }
        if let Some(view) = self.live_cluster_view(inst).await {
            let specs = self.node_specs(inst);
            let masters: Vec<NodeSpec> = specs
                .into_iter()
                .filter(|s| {
                    view.at(&self.host_or_shared(&s.host), s.port)
                        .is_some_and(|n| n.master && !n.failing && !n.slots.is_empty())
                })
                .collect();
            if !masters.is_empty() {
                return masters;
            }
        }
        inst.masters().map(|m| self.node_spec(inst, m)).collect()
    }

    /// What the first node of `inst` that answers says of the cluster.
    pub(crate) async fn live_cluster_view(&self, inst: &Instance) -> Option<ClusterView> {
        for spec in self.node_specs(inst) {
            if !matches!(self.runtime.liveness(&spec), Liveness::Alive(_)) {
                continue;
            }
            let ask = tokio::time::timeout(VIEW_TIMEOUT, self.runtime.cluster_view(&spec));
            if let Ok(Ok(view)) = ask.await {
                return Some(view);
            }
        }
        None
    }

    /// The node of shard `shard` that the cluster says serves its slots now, if it is not
    /// the one the database names: the cluster failed the shard over.
    fn promoted_in_shard<'a>(
        &self,
        inst: &'a Instance,
        view: &ClusterView,
        shard: i64,
    ) -> Option<&'a crsd_core::model::Node> {
        let nodes = inst.shard_nodes(shard);
        let serving: Vec<_> = nodes
            .iter()
            .filter(|n| {
                view.at(&self.node_host(n), n.port)
                    .is_some_and(|v| v.master && !v.failing && !v.slots.is_empty())
            })
            .collect();
        match serving.as_slice() {
            [one] if one.role != NodeRole::Master => Some(one),
            _ => None,
        }
    }

    /// Records every failover the cluster made: the node that serves a shard's slots now
    /// becomes its master in the database, and a `switchMaster` task says when.
    pub(crate) async fn follow_cluster(&self, inst: &Instance) -> Result<usize> {
        let Some(view) = self.live_cluster_view(inst).await else {
            return Ok(0);
        };
        let mut recorded = 0;
        for shard in inst.shard_ids() {
            if let Some(node) = self.promoted_in_shard(inst, &view, shard) {
                tracing::warn!(instance = %inst.id, shard, node = %node.id,
                    "the cluster promoted a replica; the database follows");
                self.record_switch(&inst.id, &node.id, TaskKind::SwitchMaster)
                    .await?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }

    /// Whether the supervisor leaves dead master `node` of a cluster to the cluster's own
    /// failover now: one of its shard's replicas lives and the cluster has not promoted it
    /// yet, within `failover_grace` of the first pass that saw it dead.
    pub(crate) async fn cluster_dead_master_waits(
        &self,
        inst: &Instance,
        node: &crsd_core::model::Node,
    ) -> bool {
        let replica_alive = inst.shard_nodes(node.shard).iter().any(|n| {
            n.id != node.id
                && matches!(
                    self.runtime.liveness(&self.node_spec(inst, n)),
                    Liveness::Alive(_)
                )
        });
        if !replica_alive {
            self.forget_dead_master(&node.id);
            return false;
        }
        if let Some(view) = self.live_cluster_view(inst).await {
            if self.promoted_in_shard(inst, &view, node.shard).is_some() {
                // Promoted: the node comes back as the new master's replica.
                self.forget_dead_master(&node.id);
                return false;
            }
        }
        self.awaits_failover(&node.id, "the cluster")
    }
}

/// How long a drill waits for the cluster to serve every slot again.
const DRILL_TIMEOUT: Duration = Duration::from_secs(30);

impl Service {
    /// KillMasterGroup's `ShardIds` for a cluster: named, each a shard of the instance with a
    /// replica to promote.
    pub(crate) fn check_drill_shards(
        &self,
        inst: &Instance,
        shard_ids: &[i64],
    ) -> Result<Vec<i64>> {
        use crsd_core::{Error, Field};
        if shard_ids.is_empty() {
            return Err(Error::invalid(
                "ShardIds",
                "a drill of a cluster names the shards whose masters it kills",
            ));
        }
        let mut shards = shard_ids.to_vec();
        shards.sort_unstable();
        shards.dedup();
        for s in &shards {
            if inst.shard_nodes(*s).len() < 2 {
                return Err(Error::invalid_field(
                    Field::InstanceId,
                    format!("shard {s} is not a shard of the instance with a replica"),
                ));
            }
        }
        Ok(shards)
    }

    /// A cluster's `killMasterGroup`: SIGKILL to the master of each named shard (as the
    /// cluster says now), then wait until the cluster serves every slot again and the
    /// database follows its failover. A resumed task whose shards were failed over already
    /// kills nothing more (never the new masters): the database's master of each shard is
    /// killed only while it still serves the shard's slots.
    pub(crate) async fn drill_shard_kill(
        &self,
        task: &crsd_core::model::Task,
        inst: &Instance,
    ) -> Result<()> {
        let shards: Vec<i64> = task
            .payload
            .get("shards")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let view = self.live_cluster_view(inst).await;
        let mut killed = Vec::new();
        for shard in &shards {
            let Some(master) = inst
                .shard_nodes(*shard)
                .into_iter()
                .find(|n| n.role == NodeRole::Master)
            else {
                continue;
            };
            let serving = view
                .as_ref()
                .and_then(|v| v.at(&self.node_host(master), master.port))
                .is_some_and(|v| v.master && !v.failing);
            if !serving {
                continue;
            }
            let spec = self.node_spec(inst, master);
            self.runtime.kill(&spec).map_err(crate::steps::engine_err)?;
            tracing::warn!(instance = %inst.id, shard, node = %master.id, "drill: the shard's master killed");
            killed.push(master.id.clone());
        }
        let deadline = tokio::time::Instant::now() + DRILL_TIMEOUT;
        loop {
            self.follow_cluster(inst).await?;
            let now = self.store.instance(&inst.id).await?;
            let moved = now.as_ref().is_some_and(|i| {
                shards.iter().all(|s| {
                    i.shard_nodes(*s)
                        .first()
                        .is_some_and(|m| m.role == NodeRole::Master && !killed.contains(&m.id))
                })
            });
            let ok = self.live_cluster_view(inst).await.is_some_and(|v| v.ok);
            if (moved || killed.is_empty()) && ok {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(crsd_core::Error::internal(
                    "the cluster did not serve every slot again in time",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long a shard's master waits for its replicas to have every write before the snapshot.
const SHARD_BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

impl Service {
    /// A cluster's backup: every shard at once, each a replication barrier on its master and
    /// a snapshot of one of its replicas (of the master when it has none), stored as the
    /// shard's file of `backup_id`. Returns the total size and the shards.
    pub(crate) async fn take_shard_backups(
        &self,
        inst: &Instance,
        backup_id: &str,
    ) -> Result<(u64, Vec<crsd_core::model::BackupShard>)> {
        use crsd_core::Error;
        // Roles as the cluster has them now.
        self.follow_cluster(inst).await?;
        let inst = self
            .store
            .instance(&inst.id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(inst.id.clone()))?;
        let view = self.live_cluster_view(&inst).await.ok_or_else(|| {
            Error::internal(format!("no node of {} answers CLUSTER NODES", inst.id))
        })?;
        let mut jobs = Vec::new();
        for shard in inst.shard_ids() {
            let nodes = inst.shard_nodes(shard);
            let Some((master, replicas)) = nodes.split_first() else {
                continue;
            };
            let master_spec = self.node_spec(&inst, master);
            let replica_specs: Vec<NodeSpec> =
                replicas.iter().map(|n| self.node_spec(&inst, n)).collect();
            let slots = view
                .at(&self.node_host(master), master.port)
                .map(|n| n.slots_text())
                .unwrap_or_default();
            if slots.is_empty() {
                return Err(Error::internal(format!(
                    "shard {shard}'s master {} serves no slots now",
                    master.id
                )));
            }
            let key = crsd_backupstore::BackupKey {
                instance_id: inst.id.clone(),
                backup_id: format!("{backup_id}-s{shard}"),
            };
            jobs.push(self.shard_backup(shard, slots, master_spec, replica_specs, key));
        }
        let shards = futures_util::future::try_join_all(jobs).await?;
        let size = shards.iter().map(|s| s.size).sum();
        Ok((size, shards))
    }

    async fn shard_backup(
        &self,
        shard: i64,
        slots: String,
        master: NodeSpec,
        replicas: Vec<NodeSpec>,
        key: crsd_backupstore::BackupKey,
    ) -> Result<crsd_core::model::BackupShard> {
        use crsd_core::Error;
        let err = crate::steps::engine_err;
        self.runtime
            .replication_barrier(&master, replicas.len(), SHARD_BARRIER_TIMEOUT)
            .await
            .map_err(err)?;
        let source = replicas.first().unwrap_or(&master);
        let rdb = self
            .runtime
            .snapshot(source, self.config().backups.snapshot_timeout)
            .await
            .map_err(err)?;
        let store = self.backup_store.clone();
        let name = key.to_string();
        // No record exists yet: a file under this key is an interrupted attempt's.
        let stored = tokio::task::spawn_blocking(move || {
            store.delete(&key).and_then(|()| store.ingest(&key, &rdb))
        })
        .await
        .map_err(|e| Error::internal(format!("ingest panicked: {e}")))?
        .map_err(|e| Error::internal(format!("storing backup {name}: {e}")))?;
        Ok(crsd_core::model::BackupShard {
            shard,
            slots,
            size: stored.size,
            sha256: stored.sha256,
        })
    }

    /// A restore puts each shard's file where the same slots are served now: a backup of
    /// another layout (another shard count, slots moved since, a standard instance's backup
    /// into a cluster or the other way) is refused before anything is touched.
    pub(crate) async fn check_restore_layout(
        &self,
        inst: &Instance,
        backup: &crsd_core::model::Backup,
    ) -> Result<()> {
        use crsd_core::{Error, Field};
        let mismatch = |why: String| {
            Err(Error::invalid_field(
                Field::BackupId,
                format!("the backup's shard layout does not match the instance's: {why}"),
            ))
        };
        match (inst.is_cluster(), backup.shards.is_empty()) {
            (false, true) => return Ok(()),
            (false, false) => return mismatch("it is a cluster's backup".into()),
            (true, true) => return mismatch("it is not a cluster's backup".into()),
            (true, false) => {}
        }
        let shards = inst.shard_ids();
        let mut backed: Vec<i64> = backup.shards.iter().map(|s| s.shard).collect();
        backed.sort_unstable();
        if backed != shards {
            return mismatch(format!(
                "{} shards in the backup, {} in the instance",
                backed.len(),
                shards.len()
            ));
        }
        let Some(view) = self.live_cluster_view(inst).await else {
            return Err(Error::InstanceStatusAbnormal {
                id: inst.id.clone(),
                status: "no node answers CLUSTER NODES".into(),
            });
        };
        for s in &backup.shards {
            let now: Vec<String> = inst
                .shard_nodes(s.shard)
                .iter()
                .filter_map(|n| view.at(&self.node_host(n), n.port))
                .filter(|n| n.master && !n.slots.is_empty())
                .map(|n| n.slots_text())
                .collect();
            if now != [s.slots.clone()] {
                return mismatch(format!(
                    "shard {} served slots {} then and {} now",
                    s.shard,
                    s.slots,
                    now.join(" ")
                ));
            }
        }
        Ok(())
    }
}
