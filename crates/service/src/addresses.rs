//! Where an instance's address leads after a failover: its own address, or the proxy.
//!
//! # An address of its own (`instances.address_pool`): no proxy hop
//!
//! Such an instance's nodes listen on addresses of their own at the instance's port, and the
//! instance's address (`vip`) is held by its current master alone (see the engine's
//! `address.rs`: `CONFIG SET bind`, live). Who moves it after a failover:
//! * crsd, as soon as Sentinel has promoted a replica (the supervisor pass, and the
//!   placement right after a planned switch);
//! * Sentinel itself while crsd is down: every sentinel runs crsd's `address-hook` as the
//!   instance's `client-reconfig-script` at `+switch-master`, which does the same placement
//!   from the database, read-only.
//!
//! The placement is one rule, safe to run from several places at once: when the node the
//! database (or Sentinel) names master answers `ROLE` master, it takes the address. The
//! kernel allows one listener per address and port, so that fails only while another node
//! still holds it: then every other node lets the address go (its connections there are
//! closed) and the master takes it. A node that
//! holds the address and cannot be told to let it go (hung) is killed: it is not the master,
//! Sentinel has demoted it, and the supervisor starts it again as a replica. Nothing happens
//! while the named master is not master (yet): a placement never takes the address from a
//! master to give it to a replica.
//!
//! # Behind the proxy
//!
//! HAProxy leads a new connection to the first node its checks see answering `role:master`
//! (`balance first`, the database's master listed first). A master that froze (a hung
//! process, a stalled disk) and thaws after Sentinel promoted another node still answers
//! master until Sentinel demotes it, a second or more: a check sees it UP, and the writes
//! of every new connection sent to it were lost at its demotion (measured: 9-13 writes per
//! thaw, `failover.rs`). So at a promotion the same two parties (crsd's follower, Sentinel's
//! script) fence the instance at the proxy: the promoted node UP, every other node in
//! maintenance; the supervisor takes a node out of maintenance once it is a replica.

use crate::Service;
use crsd_core::model::{Instance, Node};
use crsd_core::Result;
use crsd_engine::{EngineError, Liveness};
use std::time::{Duration, Instant};

/// How long Sentinel's script (and crsd's follower) waits for the promoted node to answer
/// master and take the address.
const HOOK_PATIENCE: Duration = Duration::from_secs(5);

impl Service {
    /// Makes `master` (a node of `inst` that answers ROLE master) the one node holding the
    /// instance's address. Returns whether it holds it now; false when `master` is not master
    /// (yet) or not reachable, and nothing changed.
    pub async fn place_address(&self, inst: &Instance, master: &Node) -> Result<bool> {
        if !inst.has_own_address() || inst.vip.is_empty() {
            return Ok(false);
        }
        let master_spec = self.node_spec(inst, master);
        // The kernel lets one process listen on an address and port: once the master holds
        // the address, no other node does, so the usual pass costs one connection.
        match self.runtime.hold_address(&master_spec, &inst.vip).await {
            Ok(_) => return Ok(true),
            Err(EngineError::WrongRole { .. } | EngineError::NotRunning) => return Ok(false),
            // Held by another node, or the master did not answer: look closer.
            Err(_) => {}
        }
        let mine = match self.runtime.lineage(&master_spec).await {
            Ok(l) if l.master => l,
            _ => return Ok(false),
        };
        let mut unanswering = Vec::new();
        for node in inst.nodes.iter().filter(|n| n.id != master.id) {
            let spec = self.node_spec(inst, node);
            match self.runtime.lineage(&spec).await {
                // A master promoted from this one: it is the master, this one is about to
                // be demoted (the placement asked for is stale).
                Ok(theirs) if theirs.master && theirs.promoted_from(&mine) => return Ok(false),
                Ok(_) | Err(EngineError::NotRunning) => {}
                Err(e) => {
                    // Hung (its connect timed out): asking it to let go would time out too.
                    tracing::warn!(node = %node.id, error = %e, "a node does not answer");
                    unanswering.push(spec);
                    continue;
                }
            }
            if let Err(e) = self.runtime.release_address(&spec, &inst.vip).await {
                tracing::warn!(node = %node.id, error = %e, "cannot take the instance's address off a node");
                unanswering.push(spec);
            }
        }
        match self.runtime.hold_address(&master_spec, &inst.vip).await {
            Ok(_) => Ok(true),
            Err(EngineError::WrongRole { .. } | EngineError::NotRunning) => Ok(false),
            Err(e) if !unanswering.is_empty() => {
                // A node that does not answer may still hold it (hung): fence it for good.
                for spec in &unanswering {
                    if matches!(self.runtime.liveness(spec), Liveness::Alive(_)) {
                        tracing::warn!(node = %spec.name, error = %e,
                            "a node that is not master may hold the instance's address and does not answer; killing it");
                        let _ = self.runtime.kill(spec);
                    }
                }
                match self.runtime.hold_address(&master_spec, &inst.vip).await {
                    Ok(_) => Ok(true),
                    Err(e) => Err(crate::steps::engine_err(e)),
                }
            }
            Err(e) => {
                // Another placement (the supervisor, Sentinel's script, a task) gave it to
                // another node in between: the caller tries again, and the rule above settles
                // it on the newer master.
                tracing::warn!(instance = %inst.id, node = %master.id, error = %e,
                    "the instance's address was taken again before its master could hold it");
                Ok(false)
            }
        }
    }

    /// [`Service::place_address`] again and again until it holds or `deadline`: a placement
    /// meets others (the supervisor's, Sentinel's script, a task's) and a promotion on its
    /// way. The last error, if any, when the time is up.
    pub(crate) async fn place_address_until(
        &self,
        inst: &Instance,
        node: &Node,
        deadline: Instant,
    ) -> Result<bool> {
        loop {
            match self.place_address(inst, node).await {
                Ok(true) => return Ok(true),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Ok(false) | Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Service::place_address`] on the master the database names.
    pub(crate) async fn place_recorded_address(&self, inst: &Instance) -> Result<bool> {
        match inst.master() {
            Some(m) => self.place_address(inst, m).await,
            None => Ok(false),
        }
    }

    /// What Sentinel's `client-reconfig-script` calls (`crsd address-hook`), crsd up or down:
    /// the node at `host:port` (Sentinel's new master of instance `id`) takes the address.
    pub async fn address_hook(&self, id: &str, host: &str, port: u16) -> Result<bool> {
        let Some(inst) = self.store.instance(id).await? else {
            return Ok(false);
        };
        let Some(node) = inst
            .nodes
            .iter()
            .find(|n| n.port == port && self.node_host(n) == host)
        else {
            return Ok(false);
        };
        // The promotion may still be on its way to the node: a moment's patience.
        let deadline = Instant::now() + HOOK_PATIENCE;
        if inst.has_own_address() {
            return self.place_address_until(&inst, node, deadline).await;
        }
        loop {
            if self.fence_at_proxy(&inst, node).await? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Behind the proxy, once `master` answers master: the proxy leads new connections to it
    /// alone, every other node of the instance in maintenance (one that froze and thawed
    /// still says master until Sentinel demotes it, and would get them). The supervisor
    /// takes a node out of maintenance once it is a replica ([`Service::unfence_replicas`]).
    /// False while `master` is not master (yet).
    pub(crate) async fn fence_at_proxy(&self, inst: &Instance, master: &Node) -> Result<bool> {
        let Some(ha) = self.ha() else {
            return Ok(false);
        };
        let spec = self.node_spec(inst, master);
        if !self.runtime.is_master_now(&spec).await.unwrap_or(false) {
            return Ok(false);
        }
        let others: Vec<String> = inst
            .nodes
            .iter()
            .filter(|n| n.id != master.id)
            .map(|n| n.id.clone())
            .collect();
        ha.proxy
            .fence(&inst.id, &master.id, &others)
            .await
            .map_err(crate::steps::engine_err)?;
        tracing::info!(instance = %inst.id, node = %master.id,
            "the proxy leads new connections to the promoted node alone");
        Ok(true)
    }

    /// Takes out of maintenance each node fenced at a failover ([`Service::fence_at_proxy`])
    /// that is a replica now, so the proxy's checks judge it again (a later switch to it
    /// needs it out). Instances a task holds are left to the task (a planned switch fences on
    /// its own).
    pub(crate) async fn unfence_replicas(&self, instances: &[Instance]) {
        let Some(ha) = self.ha() else {
            return;
        };
        let fenced = match ha.proxy.maintained().await {
            Ok(f) if f.is_empty() => return,
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the proxy's server states");
                return;
            }
        };
        for inst in instances.iter().filter(|i| i.lock_task.is_none()) {
            for node in &inst.nodes {
                if !fenced.contains(&(inst.id.clone(), node.id.clone())) {
                    continue;
                }
                let spec = self.node_spec(inst, node);
                if !matches!(self.runtime.replica_state(&spec).await, Ok(Some(_))) {
                    continue;
                }
                match ha.proxy.unfence(&inst.id, &node.id).await {
                    Ok(()) => tracing::info!(instance = %inst.id, node = %node.id,
                        "a fenced node is a replica now; the proxy checks it again"),
                    Err(e) => tracing::warn!(instance = %inst.id, node = %node.id, error = %e,
                        "cannot take a node out of maintenance"),
                }
            }
        }
    }
}

impl Service {
    /// While crsd runs: as soon as a sentinel announces the promotion of a replica, the
    /// instance's address follows it (crsd's supervisor would only see the failover at
    /// `+switch-master`, about 0.8 s later, and Sentinel's script runs only then).
    pub async fn run_address_follower(
        self: std::sync::Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(sentinels) = self.sentinels().cloned() else {
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let follow = tokio::spawn(async move { sentinels.follow_promotions(tx).await });
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                p = rx.recv() => {
                    let Some(p) = p else { break };
                    let svc = self.clone();
                    tokio::spawn(async move {
                        match svc.address_hook(&p.name, &p.host, p.port).await {
                            Ok(true) => tracing::info!(instance = %p.name, node = %format!("{}:{}", p.host, p.port),
                                "the instance's address follows the replica Sentinel promoted"),
                            Ok(false) => {}
                            Err(e) => tracing::warn!(instance = %p.name, error = ?e,
                                "cannot move the instance's address to the promoted replica"),
                        }
                    });
                }
            }
        }
        follow.abort();
    }
}
