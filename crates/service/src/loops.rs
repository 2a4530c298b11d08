//! Background loops: the supervisor (brings dead redis-server processes back at the same
//! address, and on start re-adopts what runs), the usage poller (sizeUsed, and whether each
//! master can write its AOF: the operator is told when one cannot), and expiry
//! (renew or isolate at the deadline).
//!
//! The supervisor reconciles desired against observed state: desired is "every node of a
//! running instance is alive, in its cgroup, with this version's ACL rules"; it takes no hints
//! about what changed and is idempotent. It leaves alone instances whose task starts or stops
//! processes (that task owns them). A node it could not observe (crsd short of file
//! descriptors, /proc unreadable) is left alone: only a node seen dead is started again. A
//! node that runs is conformed once per process (a crsd upgrade applies new rules without
//! restarting anyone); a dead one is checked for a kill by its memory ceiling before it is
//! started again, and such kills are counted per instance.

use crate::Service;
use crsd_core::model::{BillingMode, Instance, InstanceStatus, TaskKind};
use crsd_core::Result;
use crsd_engine::Liveness;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long the supervisor waits for one running node's check (`Engine::conform`).
const CONFORM_TIMEOUT: Duration = Duration::from_secs(2);

/// The period an automatic renewal buys.
const AUTO_RENEW_MONTHS: i64 = 1;

impl Service {
    /// Supervises processes and polls usage until `shutdown` turns true.
    pub async fn run_supervisor(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = 0u64;
        let mut timer = self
            .metrics
            .loop_timer("supervisor", self.cfg.supervise_every);
        loop {
            let started = timer.pass_starts();
            if let Err(e) = self.supervise_once().await {
                tracing::error!(error = ?e, "supervisor pass failed");
            }
            self.supervise_ha().await;
            if let Err(e) = self.tend_warm_pool().await {
                tracing::error!(error = ?e, "cannot tend the warm pool");
            }
            // The exporter follows the nodes (a restart only when they changed), and comes
            // back after a kill. A failure is logged every 30 passes, not every pass.
            if let Err(e) = self.publish_exporter_targets().await {
                if tick.is_multiple_of(30) {
                    tracing::warn!(error = ?e, "cannot bring the redis exporter to the nodes");
                }
            }
            if tick.is_multiple_of(5) {
                self.poll_usage().await;
                if let Err(e) = self.reconcile_watches().await {
                    tracing::error!(error = ?e, "cannot check what the sentinels watch");
                }
            }
            tick += 1;
            timer.pass_ended(started);
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.supervise_every) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// The lock over the processes of instance `id` (see `Service::process_guards`).
    pub(crate) fn process_guard(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .process_guards
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// For a task that starts, stops or destroys its instance's nodes: the instance's process
    /// lock, held until the task (or its undo attempt) ends. Other tasks hold nothing.
    pub(crate) async fn hold_processes(
        &self,
        task: &crsd_core::model::Task,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let id = task.instance_id.as_deref()?;
        if !owns_processes(task.kind) {
            return None;
        }
        Some(self.process_guard(id).lock_owned().await)
    }

    /// Checks every node that should run; restarts the dead ones. Returns how many it restarted.
    ///
    /// The database is the desired state: which nodes exist and which one is the master. A
    /// dead node is started with the role the database gives it (a replica follows the
    /// current master), never as a master unless it is the master; a running node is brought
    /// to this version's rules and to its role once per process (`conform_once`).
    pub async fn supervise_once(&self) -> Result<usize> {
        let mut restarted = 0;
        // Failovers Sentinel made are recorded first: from then on the database names the
        // new master, and nothing below acts on the old one as a master.
        if let Some(views) = self.sentinel_masters().await {
            self.follow_failovers(&views).await?;
        }
        let live = self.store.live_instances().await?;
        self.unfence_replicas(&live).await;
        for inst in live {
            if !self.should_run(&inst).await? {
                continue;
            }
            let mut any_dead = false;
            for spec in self.node_specs(&inst) {
                match self.runtime.liveness(&spec) {
                    Liveness::Alive(pid) => self.conform_once(&spec, pid).await,
                    Liveness::Unknown(why) => {
                        // crsd's own trouble (e.g. out of file descriptors) says nothing
                        // about the node: never restart what could not be observed.
                        tracing::warn!(node = %spec.name, reason = %why,
                            "cannot tell whether redis-server runs; leaving it alone this pass");
                    }
                    Liveness::Dead => any_dead = true,
                }
            }
            if inst.is_cluster() && inst.lock_task.is_none() {
                // The cluster's failovers are recorded first, so a dead old master is not
                // taken for the master below.
                if let Err(e) = self.follow_cluster(&inst).await {
                    tracing::warn!(instance = %inst.id, error = ?e, "cannot record the cluster's failover");
                }
            }
            if any_dead {
                restarted += self.restart_dead_nodes(&inst.id).await?;
            }
            self.keep_promotable_unless_busy(&inst, crate::ha::STREAM_CHECK)
                .await;
            if inst.has_own_address() {
                if let Err(e) = self.place_recorded_address(&inst).await {
                    tracing::warn!(instance = %inst.id, error = ?e, "cannot place the instance's address on its master");
                }
            }
        }
        Ok(restarted)
    }

    /// Starts the dead nodes of instance `id` again, as the database says they are now. The
    /// pass's list may be stale by then (a task may have removed a node or stopped the
    /// instance since): under the instance's process lock (skipped while a task holds it) the
    /// instance is read again, so a node a task destroyed is never brought back.
    async fn restart_dead_nodes(&self, id: &str) -> Result<usize> {
        let guard = self.process_guard(id);
        let Ok(_held) = guard.try_lock() else {
            return Ok(0);
        };
        let Some(inst) = self.store.instance(id).await? else {
            return Ok(0);
        };
        if !self.should_run(&inst).await? {
            return Ok(0);
        }
        let mut restarted = 0;
        // A dead master whose replica says it is the master now: that one is recorded first,
        // so the old master comes back as its replica.
        let master_dead = inst
            .master()
            .map(|m| self.node_spec(&inst, m))
            .is_some_and(|m| matches!(self.runtime.liveness(&m), Liveness::Dead));
        let inst = if master_dead && self.promoted_replica(&inst).await?.is_some() {
            match self.store.instance(id).await? {
                Some(i) => i,
                None => return Ok(0),
            }
        } else {
            inst
        };
        let specs = self.node_specs(&inst);
        let replica_alive = specs.iter().any(|s| {
            s.role == crsd_engine::Role::Replica
                && matches!(self.runtime.liveness(s), Liveness::Alive(_))
        });
        for spec in specs {
            if !matches!(self.runtime.liveness(&spec), Liveness::Dead) {
                continue;
            }
            if inst.is_cluster() && spec.role == crsd_engine::Role::Master {
                let node = inst.nodes.iter().find(|n| n.id == spec.name);
                if let Some(node) = node {
                    if self.cluster_dead_master_waits(&inst, node).await {
                        // The cluster promotes a replica; the node then comes back as its
                        // replica.
                        continue;
                    }
                }
            } else if spec.role == crsd_engine::Role::Master
                && self.dead_master(&inst, replica_alive) == crate::ha::DeadMaster::AwaitFailover
            {
                // Sentinel promotes a replica; the next passes record it and start this node
                // again as a replica of the new master.
                continue;
            }
            let kills = self.record_oom_kills(&inst.id, &spec).await;
            if kills > 0 {
                tracing::warn!(node = %spec.name, port = spec.port, kills,
                        limit_mb = self.runtime.ceiling_mb(&spec),
                        "redis-server was killed by its memory ceiling (maxmemory plus headroom); starting it");
            } else {
                tracing::warn!(node = %spec.name, port = spec.port, role = ?spec.role,
                        "redis-server is not running; starting it");
            }
            match self.runtime.start(&spec).await {
                Ok(h) => {
                    restarted += 1;
                    self.conformed_now(&spec.name, h.pid);
                    tracing::info!(node = %spec.name, pid = h.pid, "redis-server is back");
                }
                Err(e) => {
                    tracing::error!(node = %spec.name, error = ?e, "cannot restart redis-server")
                }
            }
        }
        Ok(restarted)
    }

    /// Carries every node over from the previous release's folder layout, while it runs.
    /// Called once at start, before tasks and the supervisor touch any node.
    pub async fn migrate_layout(&self) -> Result<usize> {
        let mut moved = 0;
        for inst in self.store.live_instances().await? {
            for spec in self.node_specs(&inst) {
                match self.runtime.migrate_legacy(&spec) {
                    Ok(true) => moved += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(node = %spec.name, error = %e, "cannot move the node's folder to this release's layout")
                    }
                }
            }
        }
        if moved > 0 {
            tracing::info!(nodes = moved, "node folders moved to this release's layout");
        }
        Ok(moved)
    }

    /// Gives every instance of the previous release (no stable address yet) its address:
    /// the port its clients use, its master's, becomes the instance's, and the master moves
    /// to a new port of its own, live, with its replicas following it there (the proxy then
    /// takes the address). The database is written first; a crash before the node moved is
    /// finished at the next start (a master that does not answer at its port is moved from
    /// the instance's). Called once at start, after the first supervisor pass.
    pub async fn adopt_addresses(&self) -> Result<usize> {
        let mut adopted = 0;
        for inst in self.store.live_instances().await? {
            if inst.nodes.is_empty() {
                continue;
            }
            let inst = if inst.port == 0 {
                let mut tx = self.store.write().await?;
                let used = crate::purchase::taken_ports(&mut tx).await?;
                let Some(mut fresh) = tx.instance(&inst.id).await? else {
                    continue;
                };
                let new_port = self
                    .free_ports(used)
                    .next()
                    .ok_or(crsd_core::Error::NoFreePort)?;
                let Some(master) = fresh
                    .nodes
                    .iter_mut()
                    .find(|n| n.role == crsd_core::model::NodeRole::Master)
                else {
                    continue;
                };
                fresh.port = master.port;
                master.port = new_port;
                tx.update_instance(&fresh).await?;
                tx.commit().await?;
                adopted += 1;
                fresh
            } else {
                inst
            };
            if !self.should_run(&inst).await? {
                continue;
            }
            let master = self.master_spec(&inst)?;
            match self.runtime.move_port(&master, inst.port).await {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    tracing::error!(instance = %inst.id, error = %e, "cannot move the master to its own port");
                    continue;
                }
            }
            for replica in self.replica_specs(&inst) {
                if let Err(e) = self.runtime.follow(&replica).await {
                    tracing::error!(node = %replica.name, error = %e, "cannot point the replica at its master's new port");
                }
            }
            tracing::info!(instance = %inst.id, address = inst.port, master_port = master.port,
                "instance of the previous release now has its stable address");
        }
        Ok(adopted)
    }

    /// Brings a running node to this version's ceiling and ACL rules, once per process.
    async fn conform_once(&self, spec: &crsd_engine::NodeSpec, pid: u32) {
        let known = self.conformed_pid(&spec.name);
        if known == Some(pid) {
            return;
        }
        // Bounded: a node busy with a long script answers nothing until redis' busy reply
        // threshold, and the supervisor must go on checking the other nodes; the next pass
        // tries again.
        // Under Sentinel the roles of running nodes are Sentinel's: crsd never points a
        // running node elsewhere on its own (its record may be a pass behind a failover).
        // A cluster's nodes follow whom the cluster says.
        let follow = self.ha().is_none() && spec.cluster.is_none();
        let check = async {
            let pid = self.runtime.conform(spec).await?;
            if pid.is_some() && follow {
                // Its role as the database says (a replica follows the current master).
                self.runtime.follow(spec).await?;
            }
            Ok::<_, crsd_engine::EngineError>(pid)
        };
        match tokio::time::timeout(CONFORM_TIMEOUT, check).await {
            Ok(Ok(Some(pid))) => {
                // A process this crsd did not start (its previous run, a previous release,
                // a node started while crsd was down): adopted as it runs.
                if known.is_none() {
                    tracing::info!(node = %spec.name, instance = %spec.instance, pid, "running redis-server adopted");
                }
                self.conformed_now(&spec.name, pid)
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(node = %spec.name, error = ?e, "cannot check the running redis-server")
            }
            Err(_) => {
                tracing::warn!(node = %spec.name, "the running redis-server did not answer its check in time; retrying on the next pass")
            }
        }
    }

    /// Forgets a node that no longer exists.
    pub(crate) fn forget_conformed(&self, node: &str) {
        let mut map = self.conformed.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(node);
    }

    fn conformed_pid(&self, node: &str) -> Option<u32> {
        let map = self.conformed.lock().unwrap_or_else(|e| e.into_inner());
        map.get(node).copied()
    }

    /// Records that `pid` runs as this version starts nodes (a start renders the current rules
    /// and places the process in its cgroup), so the supervisor does not check it again.
    pub(crate) fn conformed_now(&self, node: &str, pid: u32) {
        let mut map = self.conformed.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(node.to_string(), pid);
    }

    /// Kills by the node's memory ceiling not counted yet, added to its instance's count.
    async fn record_oom_kills(&self, instance_id: &str, spec: &crsd_engine::NodeSpec) -> u64 {
        let kills = match self.runtime.take_oom_kills(spec) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(node = %spec.name, error = ?e, "cannot read the node's memory ceiling kills");
                return 0;
            }
        };
        if kills == 0 {
            return 0;
        }
        let write = async {
            let mut tx = self.store.write().await?;
            tx.add_oom_kills(instance_id, kills as i64).await?;
            tx.commit().await
        };
        if let Err(e) = write.await {
            tracing::error!(node = %spec.name, kills, error = ?e, "cannot record kills by the memory ceiling");
        }
        kills
    }

    async fn should_run(&self, inst: &Instance) -> Result<bool> {
        match inst.status {
            InstanceStatus::Running => Ok(true),
            InstanceStatus::Busy => {
                let Some(task_id) = inst.lock_task else {
                    return Ok(true);
                };
                let owner = self.store.task(task_id).await?;
                Ok(!owner.is_some_and(|t| owns_processes(t.kind)))
            }
            _ => Ok(false),
        }
    }

    async fn poll_usage(&self) {
        let Ok(list) = self.store.live_instances().await else {
            return;
        };
        for inst in list
            .into_iter()
            .filter(|i| i.status == InstanceStatus::Running)
        {
            // A kill by the ceiling while the node runs on hit one of its forks (a BGSAVE,
            // an AOF rewrite, a replica's full sync), which then failed.
            for spec in self.node_specs(&inst) {
                if matches!(self.runtime.liveness(&spec), Liveness::Alive(_)) {
                    let kills = self.record_oom_kills(&inst.id, &spec).await;
                    if kills > 0 {
                        tracing::warn!(node = %spec.name, kills, limit_mb = self.runtime.ceiling_mb(&spec),
                            "a fork of redis-server was killed by the node's memory ceiling");
                    }
                }
            }
            // Every shard's master: a cluster's data is the sum of its shards'.
            let mut used = None;
            let mut writable = true;
            for spec in self.master_specs(&inst).await {
                let fut = self.runtime.usage(&spec);
                if let Ok(Ok(u)) = tokio::time::timeout(Duration::from_secs(2), fut).await {
                    *used.get_or_insert(0) += u.used_memory;
                    writable &= u.aof_writable;
                }
            }
            if let Some(bytes) = used {
                self.usage
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(inst.id.clone(), bytes);
                self.note_aof(&inst.id, writable);
            }
        }
    }

    /// Tells the operator, once per change, that an instance's master cannot write its AOF
    /// (its redis refuses every write, deletions included, until there is room on the data
    /// disk) and when it can again.
    fn note_aof(&self, id: &str, writable: bool) {
        let mut failing = self.aof_failing.lock().unwrap_or_else(|e| e.into_inner());
        if !writable && failing.insert(id.to_string()) {
            tracing::error!(
                instance = id,
                data_dir = %self.cfg.data_dir.display(),
                "the instance cannot write its AOF (is the data disk full?): redis refuses every \
                 write of it, deletions included, until there is room; free space on the data disk"
            );
        } else if writable && failing.remove(id) {
            tracing::info!(instance = id, "the instance writes its AOF again");
        }
    }

    /// Refreshes sizeUsed of one instance now (tests and the API use it after writes).
    pub async fn refresh_usage(&self, id: &str) -> Result<()> {
        if let Some(inst) = self.store.instance(id).await? {
            let mut used = None;
            for spec in self.master_specs(&inst).await {
                if let Ok(bytes) = self.runtime.used_memory_bytes(&spec).await {
                    *used.get_or_insert(0) += bytes;
                }
            }
            if let Some(bytes) = used {
                self.usage
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_string(), bytes);
            }
        }
        Ok(())
    }

    /// Renews or isolates every instance past its deadline until `shutdown` turns true.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut timer = self.metrics.loop_timer("expiry", self.cfg.expiry_every);
        loop {
            let started = timer.pass_starts();
            if let Err(e) = self.expire_once().await {
                tracing::error!(error = ?e, "expiry pass failed");
            }
            timer.pass_ended(started);
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.expiry_every) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One expiry pass: an instance past its deadline with auto-renew (flag 1) and enough
    /// balance is renewed for a month (a deal is recorded); a postpaid one is charged for
    /// every hour begun since (the next hour included) when the balance pays it; any other is
    /// isolated (processes stopped, data kept). Returns (renewed or charged, isolated).
    pub async fn expire_once(&self) -> Result<(usize, usize)> {
        let now = self.now();
        let (mut renewed, mut isolated) = (0, 0);
        for inst in self.store.live_instances().await? {
            if inst.status != InstanceStatus::Running
                || inst.lock_task.is_some()
                || inst.deadline > now
            {
                continue;
            }
            let mut tx = self.store.write().await?;
            // Re-read inside the transaction: a user call may have changed it.
            let Some(mut inst) = tx.instance(&inst.id).await? else {
                continue;
            };
            if inst.status != InstanceStatus::Running
                || inst.lock_task.is_some()
                || inst.deadline > now
            {
                continue;
            }
            let account = tx.account(inst.app_id).await?;
            let paid = match (inst.billing, account) {
                // Hours from the end of the last one charged through the one now running.
                (BillingMode::Postpaid, Some(acct)) => {
                    let hours = (now - inst.deadline).num_hours() + 1;
                    let price =
                        self.catalog().hour_price(&crsd_core::spec::Spec::of(&inst)) * hours;
                    let paid = acct.balance >= price;
                    if paid {
                        tx.set_balance(acct.app_id, acct.balance - price).await?;
                        inst.deadline += chrono::Duration::hours(hours);
                    }
                    paid
                }
                (BillingMode::Prepaid, Some(acct)) => {
                    let price = self.catalog().buy_price(
                        &crsd_core::spec::Spec::of(&inst),
                        AUTO_RENEW_MONTHS,
                        1,
                    );
                    let paid = inst.auto_renew == 1 && acct.balance >= price;
                    if paid {
                        tx.set_balance(acct.app_id, acct.balance - price).await?;
                        self.record_renewal(
                            &mut tx,
                            &mut inst,
                            &acct.uin,
                            AUTO_RENEW_MONTHS,
                            price,
                            now,
                        )
                        .await?;
                    }
                    paid
                }
                (_, None) => false,
            };
            if paid {
                tx.update_instance(&inst).await?;
                renewed += 1;
            } else {
                self.lock_with_task(
                    &mut tx,
                    &mut inst,
                    TaskKind::CloseInstance,
                    serde_json::json!({}),
                )
                .await?;
                isolated += 1;
            }
            tx.commit().await?;
        }
        if isolated > 0 {
            self.wake.notify_one();
        }
        Ok((renewed, isolated))
    }
}

/// Task kinds that start, stop or destroy their instance's nodes: while one runs, the
/// supervisor leaves the instance's processes to it.
fn owns_processes(kind: TaskKind) -> bool {
    matches!(
        kind,
        TaskKind::NewInstance
            | TaskKind::StartInstance
            | TaskKind::CloseInstance
            | TaskKind::DeleteInstance
            | TaskKind::RestoreBackup
            | TaskKind::ChangeReplicas
            | TaskKind::ChangeShards
    )
}
