//! The steps of each task kind, and their undo.
//!
//! Every step is idempotent: starting a node that runs adopts it, setting maxmemory or a
//! password twice is harmless, flushing twice is the same flush. The final step writes the
//! instance, the deal and the task together in one transaction.

use crate::Service;
use crsd_core::model::{deal_status, Backup, Instance, InstanceStatus, Task, TaskKind, TaskStatus};
use crsd_core::{Error, Result};
use std::time::Duration;

/// How long a new replica may take to finish its first sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cluster may take to form: every node ok, every replica synced (2 s at least:
/// a master declares the cluster ok no sooner after its start).
const CLUSTER_FORM_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn engine_err(e: crsd_engine::EngineError) -> Error {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    Error::Internal(detail)
}

/// What the last transaction of a task writes besides the task itself.
pub(crate) struct Finish {
    pub status: InstanceStatus,
    pub mem_mb: Option<i64>,
    pub password: Option<(String, String)>,
    pub deal: Option<i64>,
    pub deleted_refund: Option<i64>,
    /// A backup the task took: recorded only now, with the task's end.
    pub new_backup: Option<Backup>,
    /// A backup the task held (a restore, an export): released with the task's end.
    pub unlock_backup: Option<String>,
    /// The state the released backup takes (an export's end); `None`: it keeps its own.
    pub backup_state: Option<crsd_core::model::BackupState>,
    /// User parameters to record (merged into the instance's).
    pub params: Option<std::collections::BTreeMap<String, String>>,
    /// The instance's nodes from now on (replicas added or removed).
    pub nodes: Option<Vec<crsd_core::model::Node>>,
}

impl Finish {
    pub fn to(status: InstanceStatus) -> Finish {
        Finish {
            status,
            mem_mb: None,
            password: None,
            deal: None,
            deleted_refund: None,
            new_backup: None,
            unlock_backup: None,
            backup_state: None,
            params: None,
            nodes: None,
        }
    }
}

impl Service {
    /// Starts (or adopts) every node at once, each on its own task so that their file work
    /// and spawn run in parallel. A replica that comes up before its master listens is
    /// reconnected by `wait_replica_synced`. `start` adopts a node that already runs, so a
    /// resumed task simply starts again.
    pub(crate) async fn start_nodes(&self, nodes: &[crsd_engine::NodeSpec]) -> Result<()> {
        self.start_nodes_as(nodes, None, &[]).await
    }

    /// [`Service::start_nodes`] for a new instance: the nodes it took from the warm pool
    /// (still with the pool's secret) are taken over in place (`NodeRuntime::claim`), the
    /// others started.
    async fn start_or_claim_nodes(
        &self,
        inst: &Instance,
        nodes: &[crsd_engine::NodeSpec],
    ) -> Result<()> {
        let warm: Vec<(String, String)> = inst
            .nodes
            .iter()
            .filter(|n| !n.warm_secret.is_empty())
            .map(|n| (n.id.clone(), n.warm_secret.clone()))
            .collect();
        self.start_nodes_as(nodes, None, &warm).await
    }

    /// [`Service::start_nodes`] for nodes whose restore was just swapped in: each loads the
    /// restored RDB itself (`NodeRuntime::start_restored`), all at once.
    pub(crate) async fn start_restored_nodes(
        &self,
        nodes: &[crsd_engine::NodeSpec],
        load_timeout: std::time::Duration,
    ) -> Result<()> {
        self.start_nodes_as(nodes, Some(load_timeout), &[]).await
    }

    /// `restored`: start on the restored RDB, loading for up to this long. `warm`: (node,
    /// secret) of the nodes to take over from the warm pool.
    async fn start_nodes_as(
        &self,
        nodes: &[crsd_engine::NodeSpec],
        restored: Option<std::time::Duration>,
        warm: &[(String, String)],
    ) -> Result<()> {
        let started: Vec<_> = nodes
            .iter()
            .map(|spec| {
                let runtime = self.runtime.clone();
                let spec = spec.clone();
                let warm_secret = warm
                    .iter()
                    .find(|(node, _)| *node == spec.name)
                    .map(|(_, secret)| secret.clone());
                tokio::spawn(async move {
                    if let Some(load_timeout) = restored {
                        runtime.start_restored(&spec, load_timeout).await
                    } else if let Some(secret) = warm_secret {
                        runtime.claim(&spec, &secret).await
                    } else {
                        runtime.start(&spec).await
                    }
                })
            })
            .collect();
        let mut first_error = None;
        for (spec, joined) in nodes.iter().zip(started) {
            match joined.await {
                Ok(Ok(h)) => self.conformed_now(&spec.name, h.pid),
                Ok(Err(e)) => {
                    first_error.get_or_insert(engine_err(e));
                }
                Err(e) => {
                    first_error.get_or_insert(Error::internal(format!(
                        "starting node {}: {e}",
                        spec.name
                    )));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn task_instance(&self, task: &Task) -> Result<Instance> {
        let id = task
            .instance_id
            .as_deref()
            .ok_or_else(|| Error::internal(format!("task {} names no instance", task.id)))?;
        self.store
            .instance(id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(id.to_string()))
    }

    pub(crate) async fn execute(self: &std::sync::Arc<Self>, mut task: Task) -> Result<()> {
        let inst = self.task_instance(&task).await?;
        let nodes = self.node_specs(&inst);
        let runtime = &self.runtime;
        let finish = match task.kind {
            TaskKind::NewInstance | TaskKind::StartInstance if inst.is_cluster() => {
                // The nodes start, the cluster forms (a no-op when it has formed before), and
                // the stable address, which leads cluster clients to a live master to learn
                // the slot map from, serves. No Sentinel: the cluster fails itself over.
                let formed = async {
                    self.start_or_claim_nodes(&inst, &nodes).await?;
                    runtime
                        .form_cluster(&self.cluster_shards(&inst), CLUSTER_FORM_TIMEOUT)
                        .await
                        .map_err(engine_err)
                };
                let (formed, served) = tokio::join!(formed, self.serve_address(&inst));
                formed?;
                served?;
                self.wait_address_ready(&inst).await?;
                let mut f = Finish::to(InstanceStatus::Running);
                if task.kind == TaskKind::NewInstance {
                    f.deal = task.deal_id;
                }
                f
            }
            TaskKind::NewInstance | TaskKind::StartInstance => {
                // At once (one after the other they doubled a create's time): the nodes start
                // and the replicas sync; the stable address gets its frontend; Sentinel
                // watches the instance. The last two need no node up: Sentinel reconnects to
                // a master that does not listen yet and promotes no replica before
                // `keep_promotable` allows it, and the frontend marks the master UP, which
                // this task starts as master (checked once it runs).
                let up = async {
                    self.start_or_claim_nodes(&inst, &nodes).await?;
                    let synced = async {
                        for replica in self.replica_specs(&inst) {
                            runtime
                                .wait_replica_synced(&replica, SYNC_TIMEOUT)
                                .await
                                .map_err(engine_err)?;
                        }
                        Ok::<_, Error>(())
                    };
                    let master = async {
                        match inst.master() {
                            Some(m) => runtime
                                .is_master_now(&self.node_spec(&inst, m))
                                .await
                                .unwrap_or(false),
                            None => false,
                        }
                    };
                    let (synced, master_is_master) = tokio::join!(synced, master);
                    synced.map(|()| master_is_master)
                };
                let (up, served, watched) =
                    tokio::join!(up, self.serve_address(&inst), self.watch(&inst));
                let master_is_master = up?;
                served?;
                watched?;
                if !master_is_master && !inst.has_own_address() {
                    // A resumed task whose master was failed over meanwhile: the proxy's
                    // checks find the master.
                    self.publish_addresses().await?;
                }
                self.wait_address_ready(&inst).await?;
                // Sentinel may promote a replica once its master's writes reach it: at once,
                // or up to a second after its full sync (see `keep_promotable`). The task does
                // not wait for that second; the supervisor's pass would see it too.
                let svc = self.clone();
                let started = inst.clone();
                tokio::spawn(async move {
                    svc.keep_promotable(&started, crate::ha::STREAM_CHECK_AFTER_SYNC)
                        .await
                });
                let mut f = Finish::to(InstanceStatus::Running);
                if task.kind == TaskKind::NewInstance {
                    f.deal = task.deal_id;
                }
                f
            }
            TaskKind::ResizeInstance => {
                let mem = payload_i64(&task, "memMb")?;
                for spec in &nodes {
                    runtime
                        .set_maxmemory(spec, mem as u64)
                        .await
                        .map_err(engine_err)?;
                }
                let mut f = Finish::to(InstanceStatus::Running);
                f.mem_mb = Some(mem);
                f.deal = task.deal_id;
                f
            }
            TaskKind::SetPassword => {
                let hash = payload_str(&task, "passwordHash")?;
                let acl = payload_str(&task, "passwordAcl")?;
                for spec in &nodes {
                    runtime
                        .set_default_password(spec, &acl)
                        .await
                        .map_err(engine_err)?;
                }
                let mut f = Finish::to(InstanceStatus::Running);
                f.password = Some((hash, acl));
                f
            }
            TaskKind::CleanInstance => {
                // Every shard's master (a standard instance has one).
                for master in self.master_specs(&inst).await {
                    runtime.flush_all(&master).await.map_err(engine_err)?;
                }
                Finish::to(InstanceStatus::Running)
            }
            TaskKind::CloseInstance => {
                // Stopped on purpose: Sentinel must not take it for a failure, and its address
                // closes first.
                self.unwatch(&inst.id).await?;
                self.publish_addresses_but(Some(&inst.id)).await?;
                // Replicas first: a master stopped before them would make them retry.
                for spec in nodes.iter().rev() {
                    runtime.stop(spec).await.map_err(engine_err)?;
                }
                Finish::to(InstanceStatus::Isolated)
            }
            TaskKind::DeleteInstance => {
                self.unwatch(&inst.id).await?;
                self.publish_addresses_but(Some(&inst.id)).await?;
                for spec in nodes.iter().rev() {
                    runtime.destroy(spec).await.map_err(engine_err)?;
                }
                if let Err(e) = runtime.remove_instance(&inst.id) {
                    tracing::warn!(instance = %inst.id, error = %e, "cannot remove the instance's folder");
                }
                Finish::to(InstanceStatus::Deleted)
            }
            TaskKind::BackupInstance => self.take_backup(&task, &inst).await?,
            TaskKind::ModifyParams => {
                let changes = payload_params(&task)?;
                let list: Vec<(String, String)> = changes.clone().into_iter().collect();
                for spec in &nodes {
                    runtime.set_params(spec, &list).await.map_err(engine_err)?;
                }
                let mut f = Finish::to(InstanceStatus::Running);
                f.params = Some(changes);
                f
            }
            TaskKind::RestoreBackup => self.restore_backup(&mut task, &inst).await?,
            TaskKind::ExportBackup => self.export_files(&task).await?,
            TaskKind::ChangeReplicas => {
                let mut f = self.change_replicas(&task, &inst).await?;
                f.deal = task.deal_id;
                f
            }
            TaskKind::ChangeShards => {
                let mut f = self.change_shards(&task, &inst).await?;
                f.deal = task.deal_id;
                f
            }
            TaskKind::ChangeReplicaToMaster => {
                self.switch_master(&task, &inst).await?;
                Finish::to(InstanceStatus::Running)
            }
            TaskKind::KillMasterGroup => {
                self.drill_master_kill(&task, &inst).await?;
                Finish::to(InstanceStatus::Running)
            }
            other => {
                return Err(Error::internal(format!(
                    "task kind {} is not carried out by this version",
                    other.name()
                )))
            }
        };
        let kind = task.kind;
        self.finish(task, TaskStatus::Succeeded, finish).await?;
        if matches!(kind, TaskKind::DeleteInstance | TaskKind::CloseInstance) {
            // Its address is no longer served (best effort: the next change renders it too).
            if let Err(e) = self.publish_addresses().await {
                tracing::warn!(error = ?e, "cannot remove a deleted instance's address from the proxy");
            }
        }
        Ok(())
    }

    /// Puts things back after a failed task and records how it ended (`status`, with the
    /// task's `error` and `detail` as they are). `give_up`: the undo failed too often, so a
    /// step that cannot be undone no longer stops it: the instance ends in the state that
    /// tells the truth (a restore that cannot be rolled back leaves it isolated, its
    /// processes stopped).
    pub(crate) async fn undo(&self, task: &Task, status: TaskStatus, give_up: bool) -> Result<()> {
        let inst = match self.task_instance(task).await {
            Ok(inst) => inst,
            // Gone: nothing to put back; the task still ends.
            Err(Error::InstanceNotFound(_)) if give_up => {
                return self
                    .finish(task.clone(), status, Finish::to(InstanceStatus::Deleted))
                    .await
            }
            Err(e) => return Err(e),
        };
        let nodes = self.node_specs(&inst);
        let runtime = &self.runtime;
        let finish = match task.kind {
            TaskKind::NewInstance => {
                // Nothing was delivered: remove what was started and give the money back.
                let _ = self.unwatch(&inst.id).await;
                for spec in nodes.iter().rev() {
                    let _ = runtime.destroy(spec).await;
                }
                let _ = runtime.remove_instance(&inst.id);
                let mut f = Finish::to(InstanceStatus::Deleted);
                f.deal = task.deal_id;
                f.deleted_refund = Some(payload_i64(task, "price").unwrap_or(0));
                f
            }
            TaskKind::ResizeInstance => {
                for spec in &nodes {
                    let _ = runtime.set_maxmemory(spec, inst.mem_mb as u64).await;
                }
                let mut f = Finish::to(InstanceStatus::Running);
                f.deal = task.deal_id;
                f.deleted_refund = Some(payload_i64(task, "price").unwrap_or(0));
                f
            }
            TaskKind::SetPassword => {
                for spec in &nodes {
                    let _ = runtime.set_default_password(spec, &inst.password_acl).await;
                }
                Finish::to(InstanceStatus::Running)
            }
            TaskKind::StartInstance | TaskKind::CloseInstance => {
                // Leave it isolated; the supervisor does not touch isolated instances.
                let _ = self.unwatch(&inst.id).await;
                for spec in nodes.iter().rev() {
                    let _ = runtime.stop(spec).await;
                }
                Finish::to(InstanceStatus::Isolated)
            }
            TaskKind::BackupInstance => {
                self.undo_backup(task, &inst).await;
                Finish::to(inst.status_after_unlock())
            }
            TaskKind::ExportBackup => {
                // Not exported: the backup is as it was (status 2).
                let mut f = Finish::to(inst.status_after_unlock());
                f.unlock_backup = payload_str(task, "backupId").ok();
                f.backup_state = Some(crsd_core::model::BackupState::Normal);
                f
            }
            TaskKind::RestoreBackup => match self.undo_restore(task, &inst).await {
                Ok(f) => f,
                Err(e) if give_up => {
                    tracing::error!(task = task.id, instance = %inst.id, error = ?e,
                        "the restore cannot be rolled back; isolating the instance");
                    for spec in nodes.iter().rev() {
                        let _ = runtime.stop(spec).await;
                    }
                    let mut f = Finish::to(InstanceStatus::Isolated);
                    f.unlock_backup = payload_str(task, "backupId").ok();
                    f
                }
                Err(e) => return Err(e),
            },
            TaskKind::ModifyParams => {
                // Back to what the instance had (or the default) for every name touched.
                if let Ok(changes) = payload_params(task) {
                    let old: Vec<(String, String)> = changes
                        .keys()
                        .map(|name| {
                            let v = crsd_core::params::current(&inst.params, name);
                            (name.clone(), v.unwrap_or_default())
                        })
                        .collect();
                    for spec in &nodes {
                        let _ = runtime.set_params(spec, &old).await;
                    }
                }
                Finish::to(inst.status_after_unlock())
            }
            TaskKind::ChangeReplicas => {
                // A change bought and not delivered: the replicas it added go, those it was
                // to remove run again, the money goes back, the instance is released.
                let mut f = self.undo_change_replicas(task, &inst).await?;
                f.deal = task.deal_id;
                f.deleted_refund = Some(payload_i64(task, "price").unwrap_or(0));
                f
            }
            TaskKind::ChangeShards => {
                // Not delivered: back to the shards it had, the money back.
                let mut f = self.undo_change_shards(task, &inst).await?;
                f.deal = task.deal_id;
                f.deleted_refund = Some(payload_i64(task, "price").unwrap_or(0));
                f
            }
            _ => Finish::to(inst.status_after_unlock()),
        };
        self.finish(task.clone(), status, finish).await?;
        // What the undo left running or stopped is what the proxy serves.
        if let Err(e) = self.publish_addresses().await {
            tracing::warn!(error = ?e, "cannot bring the proxy up to date after an undo");
        }
        Ok(())
    }

    /// Ends a task whose undo failed `undo_retry.attempts` times: in error (-1), its instance
    /// released (see `undo` with `give_up`), the tenant told that the operator must look, and
    /// the operator told what to check, with the whole detail, in the log.
    pub(crate) async fn give_up(&self, task: &Task) -> Result<()> {
        let mut t = task.clone();
        let summary = t.error.clone().unwrap_or_else(|| "internal error".into());
        t.error = Some(format!(
            "{summary}; the task could not be undone completely and the operator was asked to check the instance"
        ));
        tracing::error!(
            task = t.id,
            kind = t.kind.name(),
            instance = t.instance_id.as_deref().unwrap_or(""),
            detail = t.detail.as_deref().unwrap_or(""),
            check = operator_hint(t.kind),
            "giving up a failed task that could not be undone; its instance is released"
        );
        self.undo(&t, TaskStatus::Error, true).await
    }

    /// The last transaction of a task: instance, deal, money and the task's end, together.
    async fn finish(&self, mut task: Task, status: TaskStatus, f: Finish) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        let id = task.instance_id.clone().unwrap_or_default();
        if let Some(mut inst) = tx.instance(&id).await? {
            inst.status = f.status;
            if f.status == InstanceStatus::Deleted {
                // Its ports are free again.
                inst.nodes.clear();
            }
            if inst.lock_task == Some(task.id) {
                inst.lock_task = None;
            }
            if let Some(mem) = f.mem_mb {
                inst.mem_mb = mem;
            }
            if let Some(mut nodes) = f.nodes {
                // The roles as recorded now: Sentinel may have switched the master while
                // the task ran (see `ha.rs`).
                for n in &mut nodes {
                    if let Some(current) = inst.nodes.iter().find(|c| c.id == n.id) {
                        n.role = current.role;
                    }
                }
                inst.nodes = nodes;
            }
            if let Some(changes) = f.params {
                inst.params.extend(changes);
            }
            if let Some((hash, acl)) = f.password {
                inst.password_hash = hash;
                inst.password_acl = acl;
            }
            if status == TaskStatus::Succeeded {
                // Nodes taken from the warm pool have the instance's users by now.
                for n in &mut inst.nodes {
                    n.warm_secret.clear();
                }
            }
            tx.update_instance(&inst).await?;
        }
        if let Some(backup) = &f.new_backup {
            tx.insert_backup(backup).await?;
        }
        if let Some(backup_id) = &f.unlock_backup {
            if let Some(mut backup) = tx.backup(backup_id).await? {
                if backup.lock_task == Some(task.id) {
                    backup.lock_task = None;
                    if let Some(state) = f.backup_state {
                        backup.state = state;
                    }
                    tx.update_backup(&backup).await?;
                }
            }
        }
        if let Some(deal_id) = f.deal {
            if let Some(deal) = tx.deal(deal_id).await? {
                if let Some(refund) = f.deleted_refund {
                    if let Some(acct) = tx.account(deal.app_id).await? {
                        tx.set_balance(deal.app_id, acct.balance + refund).await?;
                    }
                    tx.set_deal_status(deal_id, deal_status::DELIVERY_FAILED, Some(now))
                        .await?;
                } else if deal.status == deal_status::DELIVERING {
                    // Delivered once every instance of the deal runs.
                    let mut all = true;
                    for other in deal.detail.instance_ids() {
                        if other == &id {
                            continue;
                        }
                        match tx.instance(other).await? {
                            Some(i) if i.status == InstanceStatus::Running => {}
                            _ => all = false,
                        }
                    }
                    if all {
                        tx.set_deal_status(deal_id, deal_status::DELIVERED, Some(now))
                            .await?;
                    }
                }
            }
        }
        task.status = status;
        task.updated_at = now;
        task.retry_at = None;
        tx.update_task(&task).await?;
        tx.commit().await?;
        let took = (now - task.created_at).to_std().unwrap_or_default();
        self.metrics.task_ended(task.kind.name(), status, took);
        if status == TaskStatus::Succeeded {
            tracing::info!(task = task.id, kind = task.kind.name(), instance = %id, "task succeeded");
        }
        Ok(())
    }
}

/// What the operator should look at when a task of `kind` could not be undone.
fn operator_hint(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::BackupInstance => {
            "free space and permissions of the data dir and the backup store; the instance kept serving and is running again"
        }
        TaskKind::RestoreBackup => {
            "the master's data folder (the old data may still be aside) and redis.log of both nodes; if the old data could not be put back the instance is isolated until StartupInstance"
        }
        TaskKind::NewInstance => {
            "leftover redis-server processes and the instance folder; the deal was refunded"
        }
        TaskKind::StartInstance | TaskKind::CloseInstance => {
            "redis.log of both nodes; the instance is isolated"
        }
        TaskKind::ChangeShards => {
            "CLUSTER NODES of every master (every slot served, none left migrating or importing) and redis.log of the shards' masters; no key is deleted by a move"
        }
        _ => "redis.log of both nodes and whether the metadata store takes writes (free space of the data dir)",
    }
}

trait AfterUnlock {
    fn status_after_unlock(&self) -> InstanceStatus;
}

impl AfterUnlock for Instance {
    /// A busy instance goes back to running when its task ends without changing its state.
    fn status_after_unlock(&self) -> InstanceStatus {
        match self.status {
            InstanceStatus::Busy => InstanceStatus::Running,
            other => other,
        }
    }
}

fn payload_params(task: &Task) -> Result<std::collections::BTreeMap<String, String>> {
    task.payload
        .get("params")
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .ok_or_else(|| Error::internal(format!("task {} payload lacks params", task.id)))
}

pub(crate) fn payload_i64(task: &Task, key: &str) -> Result<i64> {
    task.payload
        .get(key)
        .and_then(|v| v.as_i64())
        .ok_or_else(|| Error::internal(format!("task {} payload lacks {key}", task.id)))
}

fn payload_str(task: &Task, key: &str) -> Result<String> {
    task.payload
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::internal(format!("task {} payload lacks {key}", task.id)))
}
