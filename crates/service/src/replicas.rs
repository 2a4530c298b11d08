//! Adding and removing replicas of a running instance (task `changeReplicas`).
//!
//! A cluster's replica count is per shard: each shard gets or loses the same number, new
//! replicas join the cluster as replicas of their shard's master (the engine's forming, a
//! no-op for the nodes already in), and removed ones are forgotten by every remaining node
//! (`CLUSTER FORGET`) once destroyed.
//!
//! Adding: the new nodes are written to the database first (ports taken in the same write
//! transaction as every other allocation, so no purchase can take them), then started as
//! replicas of the current master; the task ends once each has full-synced. Removing: the
//! newest replicas are destroyed; the master is never touched and keeps serving. Each step
//! reads the database again, so a task resumed after a crash of crsd picks up where it was:
//! nodes already recorded are not added twice, replicas already gone are not looked for.

use crate::steps::{engine_err, payload_i64, Finish};
use crate::Service;
use crsd_core::model::{Instance, InstanceStatus, Node, NodeRole, Task};
use crsd_core::{Error, Result};
use std::collections::HashSet;
use std::time::Duration;

/// How long a new replica may take to finish its first sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

impl Service {
    pub(crate) async fn change_replicas(&self, task: &Task, inst: &Instance) -> Result<Finish> {
        let wanted = payload_i64(task, "replicas")?;
        if wanted < 1 {
            return Err(Error::internal(format!(
                "task {} asks for {wanted} replicas",
                task.id
            )));
        }
        let current = crsd_core::spec::Spec::of(inst).replicas;
        let mut f = Finish::to(InstanceStatus::Running);
        if wanted >= current {
            let inst = self.record_new_replicas(inst, wanted).await?;
            self.start_nodes(&self.node_specs(&inst)).await?;
            if inst.is_cluster() {
                // New nodes meet the cluster and follow their shards' masters.
                self.runtime
                    .form_cluster(&self.cluster_shards(&inst), SYNC_TIMEOUT)
                    .await
                    .map_err(engine_err)?;
            } else {
                for replica in self.replica_specs(&inst) {
                    self.runtime
                        .wait_replica_synced(&replica, SYNC_TIMEOUT)
                        .await
                        .map_err(engine_err)?;
                }
            }
        } else {
            f.nodes = Some(self.remove_newest_replicas(inst, wanted as usize).await?);
            self.forget_removed_nodes(&inst.id).await?;
        }
        // The address's backend holds exactly the nodes that remain.
        self.publish_addresses().await?;
        Ok(f)
    }

    /// After a failed change: back to the replicas the instance had (`from`).
    pub(crate) async fn undo_change_replicas(
        &self,
        task: &Task,
        inst: &Instance,
    ) -> Result<Finish> {
        let now = crsd_core::spec::Spec::of(inst).replicas;
        let from = payload_i64(task, "from").unwrap_or(now);
        let mut f = Finish::to(InstanceStatus::Running);
        if now > from {
            // Added ones go (the newest); the master and the old replicas keep serving.
            f.nodes = Some(self.remove_newest_replicas(inst, from as usize).await?);
        } else {
            // A removal that did not finish: what is still recorded runs again.
            self.start_nodes(&self.node_specs(inst)).await?;
        }
        Ok(f)
    }

    /// Writes nodes for the replicas `inst` lacks to reach `wanted`, on free ports; returns
    /// the instance as recorded.
    async fn record_new_replicas(&self, inst: &Instance, wanted: i64) -> Result<Instance> {
        let mut tx = self.store.write().await?;
        let mut inst = tx
            .instance(&inst.id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(inst.id.clone()))?;
        if inst.is_cluster() {
            // Each shard to `wanted` replicas, on ports whose cluster bus is free too.
            let used = crate::purchase::taken_ports(&mut tx).await?;
            let mut free = self.free_cluster_ports(used);
            let mut added = false;
            for shard in inst.shard_ids() {
                let have = inst.shard_nodes(shard).len() as i64 - 1;
                for _ in have..wanted {
                    let port = free.next().ok_or(Error::NoFreePort)?;
                    let seq = inst.next_node_seq();
                    inst.node_seq = seq + 1;
                    let mut node = Node::new(&inst.id, seq, NodeRole::Replica, port);
                    node.shard = shard;
                    inst.nodes.push(node);
                    added = true;
                }
            }
            drop(free);
            if added {
                tx.update_instance(&inst).await?;
                tx.commit().await?;
                tracing::info!(instance = %inst.id, replicas = wanted, "new replica nodes recorded in every shard");
            }
            return Ok(inst);
        }
        let missing = wanted - inst.replica_count() as i64;
        if missing <= 0 {
            return Ok(inst);
        }
        if inst.has_own_address() {
            // On an address of its own from the pool, at the instance's port.
            let used: HashSet<String> = tx.used_hosts().await?.into_iter().collect();
            let mut hosts = self.free_hosts(used, inst.port);
            let mut new = Vec::new();
            for _ in 0..missing {
                new.push(hosts.next().ok_or(Error::NoFreeAddress)?);
            }
            drop(hosts);
            let port = inst.port;
            for host in new {
                inst.add_node_at(NodeRole::Replica, host, port);
            }
        } else {
            let used = crate::purchase::taken_ports(&mut tx).await?;
            let mut free = self.free_ports(used);
            for _ in 0..missing {
                let port = free.next().ok_or(Error::NoFreePort)?;
                inst.add_node(NodeRole::Replica, port);
            }
        }
        tx.update_instance(&inst).await?;
        tx.commit().await?;
        tracing::info!(instance = %inst.id, replicas = wanted, "new replica nodes recorded");
        Ok(inst)
    }

    /// Destroys the newest replicas until `keep` are left; returns the nodes that remain.
    async fn remove_newest_replicas(&self, inst: &Instance, keep: usize) -> Result<Vec<Node>> {
        // The newest replicas of each shard (a standard instance is one shard).
        let mut victims: Vec<Node> = Vec::new();
        for shard in inst.shard_ids() {
            let mut replicas: Vec<&Node> = inst
                .nodes
                .iter()
                .filter(|n| n.shard == shard && n.role == NodeRole::Replica)
                .collect();
            replicas.sort_by_key(|n| n.seq);
            victims.extend(replicas.iter().skip(keep).map(|n| (*n).clone()));
        }
        self.remove_nodes(inst, &victims).await
    }

    /// Destroys `victims`, then has every remaining node of a cluster forget them (`CLUSTER
    /// FORGET`); returns the nodes that remain.
    pub(crate) async fn remove_nodes(
        &self,
        inst: &Instance,
        victims: &[Node],
    ) -> Result<Vec<Node>> {
        // A cluster's node ids, read before the nodes go: the others forget them. Every id
        // seen at a victim's address (one destroyed and started again had a new one).
        let mut cluster_ids = Vec::new();
        if inst.is_cluster() {
            if let Some(view) = self.live_cluster_view(inst).await {
                for node in victims {
                    let host = self.node_host(node);
                    for v in view
                        .nodes
                        .iter()
                        .filter(|v| v.host == host && v.port == node.port)
                    {
                        cluster_ids.push(v.id.clone());
                    }
                }
            }
        }
        for node in victims {
            let spec = self.node_spec(inst, node);
            self.runtime.destroy(&spec).await.map_err(engine_err)?;
            self.forget_conformed(&spec.name);
            tracing::info!(instance = %inst.id, node = %node.id, "node removed");
        }
        for remaining in inst
            .nodes
            .iter()
            .filter(|n| !victims.iter().any(|v| v.id == n.id))
        {
            let spec = self.node_spec(inst, remaining);
            for id in &cluster_ids {
                self.runtime
                    .cluster_forget(&spec, id)
                    .await
                    .map_err(engine_err)?;
            }
        }
        Ok(inst
            .nodes
            .iter()
            .filter(|n| !victims.iter().any(|v| v.id == n.id))
            .cloned()
            .collect())
    }
}
