//! Adding and removing a cluster's shards live (task `changeShards`): online resharding.
//!
//! Whatever the direction, the task brings the cluster to one layout, decided by the shard
//! count alone: shard `i` (in the order of the shard ids) of `n` serves `even_slots(i, n)`,
//! the contiguous ranges a new cluster of `n` shards gets, which backups and their restore
//! rely on. The steps:
//! 1. more shards: their nodes (a master and the instance's replica count of replicas each,
//!    on ports whose cluster bus port is free too) are written to the database first, in one
//!    write transaction, so no purchase takes those ports;
//! 2. every node that must run is started, and the new ones join the cluster empty (the
//!    engine's `join_cluster`: masters claim no slot, replicas follow their masters);
//! 3. the engine moves every slot whose owner is not its final one (`move_slots`), keys and
//!    all, while clients keep working through `MOVED`/`ASK`;
//! 4. fewer shards: the emptied shards' nodes are destroyed, forgotten by every remaining
//!    node (`CLUSTER FORGET`) and dropped from the database with the task's end.
//!
//! Each step reads the database and the cluster again, so a task resumed after a crash of
//! crsd redoes only what is left: recorded nodes are not added twice, slots already where
//! they belong do not move, a slot left half-moved is moved again, and removed shards that
//! serve no slot any more are only destroyed. An undo is the same walk back to the shard
//! count the instance had.

use crate::steps::{engine_err, payload_i64, Finish};
use crate::Service;
use crsd_core::model::{Instance, InstanceStatus, Node, NodeRole, Task};
use crsd_core::spec::Spec;
use crsd_core::{Error, Result};
use crsd_engine::{even_slots, ClusterShard, ClusterView, Liveness, NodeSpec, SlotOwner};
use std::time::Duration;

/// How long new nodes may take to join: known everywhere, replicas synced.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long moving the slots may take (measured by hand: 400k keys in under 10 s).
const MOVE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Service {
    pub(crate) async fn change_shards(&self, task: &Task, inst: &Instance) -> Result<Finish> {
        let to = payload_i64(task, "shards")?;
        if to < 1 || !inst.is_cluster() {
            return Err(Error::internal(format!(
                "task {} asks for {to} shards of instance {}",
                task.id, inst.id
            )));
        }
        let mut f = Finish::to(InstanceStatus::Running);
        f.nodes = self.reshard(inst, to as usize).await?;
        // The address's backend holds exactly the nodes that remain.
        self.publish_addresses().await?;
        Ok(f)
    }

    /// After a failed change: back to the shards the instance had (`from`).
    pub(crate) async fn undo_change_shards(&self, task: &Task, inst: &Instance) -> Result<Finish> {
        let from = payload_i64(task, "from").unwrap_or(Spec::of(inst).shards);
        let mut f = Finish::to(InstanceStatus::Running);
        f.nodes = self.reshard(inst, from.max(1) as usize).await?;
        Ok(f)
    }

    /// Brings the cluster to `to` shards (see the module's doc); the nodes that remain when
    /// shards were removed.
    async fn reshard(&self, inst: &Instance, to: usize) -> Result<Option<Vec<Node>>> {
        let inst = self.record_new_shards(inst, to).await?;
        let ids = inst.shard_ids();
        let (kept, removed) = ids.split_at(to.min(ids.len()));
        // Removed shards still serving slots run until their keys are moved; once they serve
        // none they are only destroyed (a resumed task may have destroyed some already).
        let removed_serve = match self.live_cluster_view(&inst).await {
            Some(view) => removed.iter().any(|s| {
                inst.shard_nodes(*s).iter().any(|n| {
                    self.cluster_node(&view, n)
                        .is_some_and(|v| !v.slots.is_empty())
                })
            }),
            None => !removed.is_empty(),
        };
        let running: Vec<i64> = if removed_serve {
            ids.clone()
        } else {
            kept.to_vec()
        };
        let specs: Vec<NodeSpec> = inst
            .nodes
            .iter()
            .filter(|n| running.contains(&n.shard))
            .map(|n| self.node_spec(&inst, n))
            .collect();
        self.start_nodes(&specs).await?;
        let shards: Vec<ClusterShard> = running
            .iter()
            .filter_map(|s| self.cluster_shard(&inst, *s))
            .collect();
        self.runtime
            .join_cluster(&shards, JOIN_TIMEOUT)
            .await
            .map_err(engine_err)?;

        let view = self
            .live_cluster_view(&inst)
            .await
            .ok_or_else(|| Error::internal(format!("no node of {} answers", inst.id)))?;
        let mut owners = Vec::new();
        for (i, shard) in kept.iter().enumerate() {
            let master = self.serving_master(&inst, &view, *shard).ok_or_else(|| {
                Error::internal(format!("shard {shard} of {} has no master", inst.id))
            })?;
            let (first, last) = even_slots(i, to);
            owners.push(SlotOwner {
                master,
                first,
                last,
            });
        }
        // Every removed shard's master that runs may still serve slots (one view may lag).
        let others: Vec<NodeSpec> = removed
            .iter()
            .filter_map(|s| self.serving_master(&inst, &view, *s))
            .filter(|spec| matches!(self.runtime.liveness(spec), Liveness::Alive(_)))
            .collect();
        let moved = self
            .runtime
            .move_slots(&owners, &others, MOVE_TIMEOUT)
            .await
            .map_err(engine_err)?;
        let secs = moved.took.as_secs_f64().max(0.001);
        tracing::info!(instance = %inst.id, shards = to, slots = moved.slots, keys = moved.keys,
            seconds = secs, keys_per_second = (moved.keys as f64 / secs).round(),
            "slots moved to the layout of the new shard count");

        if removed.is_empty() {
            return Ok(None);
        }
        let victims: Vec<Node> = inst
            .nodes
            .iter()
            .filter(|n| removed.contains(&n.shard))
            .cloned()
            .collect();
        Ok(Some(self.remove_nodes(&inst, &victims).await?))
    }

    /// Writes the nodes of the shards `inst` lacks to reach `to` (a master and the
    /// instance's replica count of replicas each, on free ports whose cluster bus port is free
    /// too); returns the instance as recorded.
    async fn record_new_shards(&self, inst: &Instance, to: usize) -> Result<Instance> {
        let mut tx = self.store.write().await?;
        let mut inst = tx
            .instance(&inst.id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(inst.id.clone()))?;
        let have = inst.shard_ids();
        if have.len() >= to {
            return Ok(inst);
        }
        let replicas = Spec::of(&inst).replicas;
        let used = crate::purchase::taken_ports(&mut tx).await?;
        let mut free = self.free_cluster_ports(used);
        let first_new = have.last().map_or(0, |s| s + 1);
        let new_shards = to - have.len();
        for shard in (first_new..).take(new_shards) {
            for k in 0..=replicas {
                let port = free.next().ok_or(Error::NoFreePort)?;
                let seq = inst.next_node_seq();
                inst.node_seq = seq + 1;
                let role = if k == 0 {
                    NodeRole::Master
                } else {
                    NodeRole::Replica
                };
                let mut node = Node::new(&inst.id, seq, role, port);
                node.shard = shard;
                inst.nodes.push(node);
            }
        }
        drop(free);
        tx.update_instance(&inst).await?;
        tx.commit().await?;
        tracing::info!(instance = %inst.id, shards = to, "new shards' nodes recorded");
        Ok(inst)
    }

    /// The node of `shard` the cluster says is a live master (a failover may be ahead of the
    /// database), else the database's master.
    fn serving_master(&self, inst: &Instance, view: &ClusterView, shard: i64) -> Option<NodeSpec> {
        let nodes = inst.shard_nodes(shard);
        nodes
            .iter()
            .find(|n| {
                self.cluster_node(view, n)
                    .is_some_and(|v| v.master && !v.failing)
            })
            .or_else(|| nodes.iter().find(|n| n.role == NodeRole::Master))
            .map(|n| self.node_spec(inst, n))
    }

    fn cluster_node<'a>(
        &self,
        view: &'a ClusterView,
        node: &Node,
    ) -> Option<&'a crsd_engine::ClusterNodeView> {
        let host = self.node_host(node);
        // A node destroyed and started again has a new id at the same address: the live one.
        view.nodes
            .iter()
            .filter(|v| v.host == host && v.port == node.port)
            .min_by_key(|v| v.failing)
    }
}
