//! High availability: Redis Sentinel decides, HAProxy routes, crsd follows.
//!
//! Every running instance with a replica is watched by crsd's set of Sentinel processes
//! (`crsd_engine::SentinelSet`): they detect a dead master and promote a replica on their
//! own, with crsd up or down. Every instance has a stable address, a frontend of the host's
//! one HAProxy (`crsd_engine::Proxy`) whose backend holds the instance's nodes and whose
//! health check lets through only the node that answers `role:master`: clients keep their
//! address through a failover, and it keeps working while crsd is down. Both are separate
//! processes that outlive crsd, like the redis-servers.
//!
//! crsd's part is to keep them told and to follow them, never to decide a failover:
//! * `publish_addresses` renders every live instance's frontend (on delete, replica changes,
//!   at start, and after creates) and reloads HAProxy without dropping other connections,
//!   with `spare_frontends` spare frontends on ports reserved in the store (`spare_ports`);
//! * a create takes its address from those spares: the purchase gives the instance a spare's
//!   port, and `serve_address` hands the spare the instance's nodes at run time
//!   (`Proxy::take_spare`), with no reload on the create's path; the supervisor's next pass
//!   publishes (the instance's own section, a new spare). Without a spare (all taken within
//!   one pass) the create publishes itself, as before;
//! * `watch` / `unwatch` register an instance with every sentinel once its nodes run and
//!   remove it before a task stops its nodes on purpose (isolation, restore, deletion), so
//!   a planned stop is never taken for a failure;
//! * `follow_failovers`, on every supervisor pass, reads which node the sentinels name master
//!   (the view of the highest config epoch) and records it: the database then names the new
//!   master, the supervisor starts a dead old master again as a replica of it, and the switch
//!   is listed as a task (`switchMaster`);
//! * the supervisor never starts a dead master as master while one of its replicas lives
//!   (Sentinel promotes one); only when no replica lives, or Sentinel has not promoted one
//!   within `failover_grace`, does the master come back in place.

use crate::Service;
use crsd_core::model::{Instance, InstanceStatus, NodeRole, TaskKind, TaskStatus};
use crsd_core::Result;
use crsd_engine::{
    internal_secret, Frontend, MasterView, Monitored, Proxy, ProxyConfig, SentinelConfig,
    SentinelSet, Server, CHECK_USER, SENTINEL_USER,
};
use crsd_store::NewTask;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the operator configures: the Sentinel set and the proxy.
#[derive(Debug, Clone)]
pub struct HaSettings {
    pub sentinel: SentinelConfig,
    pub proxy: ProxyConfig,
    /// How long a dead master whose replicas live waits for Sentinel's promotion before the
    /// supervisor starts it again in place (Sentinel could not promote: no replica in sync).
    pub failover_grace: Duration,
    /// Sentinel's `client-reconfig-script` (runs `crsd address-hook`, see `addresses.rs`):
    /// an address of its own moves to the new master, a proxy fences the old one; `None`:
    /// crsd alone does both, while it runs.
    pub reconfig_script: Option<std::path::PathBuf>,
}

/// The running parts (built from [`HaSettings`] when the service is made; nothing starts
/// before `Service::start_ha`).
pub(crate) struct Ha {
    sentinels: SentinelSet,
    pub(crate) proxy: Proxy,
    failover_grace: Duration,
    /// Sentinel's pause between two failovers of one master: twice its failover timeout.
    failover_pause: Duration,
    /// Serialises renders of the proxy's config (each renders every frontend from the store).
    publishing: tokio::sync::Mutex<()>,
    /// How many spare frontends the proxy keeps ready for new instances.
    spare_frontends: usize,
    /// Since when the supervisor has seen each instance's master dead with a replica alive.
    dead_masters: std::sync::Mutex<HashMap<String, Instant>>,
    /// The replica priority each replica process was last given (node -> (pid, priority)).
    priorities: std::sync::Mutex<HashMap<String, (u32, u32)>>,
    /// One `keep_promotable` per instance at a time: the supervisor's and a create's
    /// background one decided from the same old record, and a failed check set 0 over the
    /// 100 the other had just set (no failover: the replica was left unpromotable).
    promotable_checks: std::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

/// The replica priority of a replica in sync (Sentinel's default); one that is not gets 0 and
/// is never promoted.
const PROMOTABLE: u32 = 100;

impl Ha {
    pub(crate) fn new(settings: &HaSettings) -> Ha {
        Ha {
            sentinels: SentinelSet::new(settings.sentinel.clone()),
            proxy: Proxy::new(settings.proxy.clone()),
            failover_grace: settings.failover_grace,
            failover_pause: Duration::from_millis(2 * settings.sentinel.failover_timeout_ms),
            publishing: tokio::sync::Mutex::new(()),
            spare_frontends: settings.proxy.spare_frontends,
            dead_masters: std::sync::Mutex::default(),
            priorities: std::sync::Mutex::default(),
            promotable_checks: std::sync::Mutex::default(),
        }
    }
}

/// What the supervisor may do with a dead master.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DeadMaster {
    /// Start it again as master (no replica lives, or Sentinel gave no answer in time).
    Restart,
    /// Leave it down: Sentinel is to promote a replica.
    AwaitFailover,
}

/// How long a planned switch holds writes on the old master at most (they wait, they are
/// not refused); the switch itself took 0.19-0.24 s by hand.
const SWITCH_PAUSE: Duration = Duration::from_secs(10);
/// How long a planned switch asks Sentinel again while it sees no replica to promote.
const NO_REPLICA_PATIENCE: Duration = Duration::from_secs(3);
/// How long the promoted replica may take to apply what the old master had.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a task waits for the proxy to lead an address to its master (a reload under
/// load, behind other creates' reloads, took seconds on 2 busy cores).
const ADDRESS_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a switch or a drill waits for Sentinel to name the new master.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replica about to become promotable may take to receive a write of its master
/// (a few ms): the supervisor's patience (on a loaded host 20 ms kept a replica unpromotable
/// pass after pass), and a task's, which must not stretch a create by a held-back stream (the
/// supervisor's next pass sees it).
pub(crate) const STREAM_CHECK: Duration = Duration::from_millis(200);
pub(crate) const STREAM_CHECK_IN_TASK: Duration = Duration::from_millis(20);
/// Right after a replica's first sync, in the background: the stream starts by its next
/// acknowledgement, within a second.
pub(crate) const STREAM_CHECK_AFTER_SYNC: Duration = Duration::from_millis(1500);

impl Service {
    /// API 3.0 ChangeReplicaToMaster: a planned switch of the master to the replica of
    /// replica group `group` (its node's sequence number, as DescribeInstanceZoneInfo lists
    /// it), or to a replica Sentinel chooses. A `changeReplicaToMaster` task; no acknowledged
    /// write is lost (see `switch_master`).
    pub async fn change_replica_to_master(
        &self,
        app_id: i64,
        id: &str,
        group: Option<i64>,
    ) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        crate::instances::check_idle(&inst)?;
        crate::backups::not_yet_for_cluster(&inst, "a planned switch of a cluster's master")?;
        let target = match group {
            None => None,
            Some(g) => match inst.nodes.iter().find(|n| n.seq == g) {
                Some(n) if n.role == NodeRole::Replica => Some(n.id.clone()),
                Some(_) => {
                    return Err(crsd_core::Error::invalid_field(
                        crsd_core::Field::ReplicaGroup,
                        format!("{g} is the master's group; name a replica's"),
                    ))
                }
                None => {
                    return Err(crsd_core::Error::invalid_field(
                        crsd_core::Field::ReplicaGroup,
                        format!("the instance has no replica group {g}"),
                    ))
                }
            },
        };
        if inst.replica_count() == 0 || self.ha().is_none() {
            return Err(crsd_core::Error::invalid_field(
                crsd_core::Field::ReplicaGroup,
                "the instance has no replica to promote",
            ));
        }
        self.start_task(
            tx,
            &mut inst,
            TaskKind::ChangeReplicaToMaster,
            serde_json::json!({ "node": target }),
        )
        .await
    }

    /// API 3.0 KillMasterGroup: a failure drill. The master is killed as a crash would kill
    /// it; Sentinel fails over. `password` is checked as for ClearInstance.
    pub async fn kill_master_group(
        &self,
        app_id: i64,
        id: &str,
        password: &str,
        shard_ids: &[i64],
    ) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        crate::instances::check_idle(&inst)?;
        crate::instances::check_instance_password(&inst, password)?;
        if inst.is_cluster() {
            let shards = self.check_drill_shards(&inst, shard_ids)?;
            return self
                .start_task(
                    tx,
                    &mut inst,
                    TaskKind::KillMasterGroup,
                    serde_json::json!({ "shards": shards }),
                )
                .await;
        }
        if inst.replica_count() == 0 || self.ha().is_none() {
            return Err(crsd_core::Error::invalid_field(
                crsd_core::Field::InstanceId,
                "the instance has no replica to fail over to",
            ));
        }
        let master = inst.master().map(|m| m.id.clone());
        self.start_task(
            tx,
            &mut inst,
            TaskKind::KillMasterGroup,
            serde_json::json!({ "master": master }),
        )
        .await
    }

    /// The steps of a `changeReplicaToMaster` task: the zero-loss recipe measured by hand.
    /// Writes pause on the old master; the chosen replica catches up with it; the other
    /// replicas are made unfit for Sentinel's choice (priority 0) for the moment; Sentinel
    /// fails over; the proxy is told at once (new master up, old one in maintenance, its
    /// sessions shut); the old master follows the new one while its writers still wait;
    /// writes resume. Returns once the database names the new master.
    pub(crate) async fn switch_master(
        &self,
        task: &crsd_core::model::Task,
        inst: &Instance,
    ) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Err(crsd_core::Error::internal("no Sentinel to switch with"));
        };
        let err = crate::steps::engine_err;
        let old = self.master_spec(inst)?;
        let replicas = self.replica_specs(inst);
        let wanted = task
            .payload
            .get("node")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let target = match &wanted {
            Some(node) => replicas.iter().find(|r| &r.name == node),
            None => replicas.first(),
        }
        .cloned()
        .ok_or_else(|| crsd_core::Error::internal("the replica to promote is gone"))?;
        // Already done (a resumed task): the database names the target.
        if inst.master().is_some_and(|m| m.id == target.name) {
            return Ok(());
        }
        // Sentinel must see a replica up (right after a failover it may not yet), and no
        // sentinel may still be finishing a failover of this instance (it refuses a new one
        // with INPROG until it has reconfigured the replicas).
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        while !ha.sentinels.can_fail_over(&inst.id).await.unwrap_or(false)
            || ha
                .sentinels
                .masters()
                .await
                .map(|v| v.get(&inst.id).is_none_or(|m| m.failover_in_progress))
                .unwrap_or(true)
        {
            if Instant::now() >= deadline {
                return Err(crsd_core::Error::internal(
                    "Sentinel sees no replica up to switch to",
                ));
            }
            // A replica that just came back is eligible once seen in sync.
            self.keep_promotable(inst, STREAM_CHECK_IN_TASK).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let others: Vec<_> = replicas.iter().filter(|r| r.name != target.name).collect();
        for r in &others {
            self.runtime.set_replica_priority(r, 0).await.map_err(err)?;
        }
        let result = async {
            self.runtime
                .pause_writes(&old, SWITCH_PAUSE)
                .await
                .map_err(err)?;
            self.runtime
                .wait_caught_up(&old, &target, CATCH_UP_TIMEOUT)
                .await
                .map_err(err)?;
            self.ask_failover(ha, inst).await?;
            let deadline = Instant::now() + SWITCH_TIMEOUT;
            while !self.runtime.is_master_now(&target).await.unwrap_or(false) {
                if Instant::now() >= deadline {
                    return Err(crsd_core::Error::internal(
                        "Sentinel did not promote the replica in time",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(node) = inst.nodes.iter().find(|n| n.id == target.name) {
                // An address of its own moves now (the old master's clients there are cut).
                let deadline = Instant::now() + SWITCH_TIMEOUT;
                if inst.has_own_address() && !self.place_address_until(inst, node, deadline).await?
                {
                    return Err(crsd_core::Error::internal(
                        "the promoted replica does not take the instance's address",
                    ));
                }
            }
            let _ = ha.proxy.set_health(&inst.id, &target.name, true).await;
            let _ = ha.proxy.set_maint(&inst.id, &old.name, true).await;
            let _ = ha.proxy.shutdown_sessions(&inst.id, &old.name).await;
            let follower = crsd_engine::NodeSpec {
                role: crsd_engine::Role::Replica,
                master: Some((self.host_or_shared(&target.host), target.port)),
                ..old.clone()
            };
            self.runtime.follow(&follower).await.map_err(err)?;
            Ok(())
        }
        .await;
        let _ = self.runtime.unpause_writes(&old).await;
        for r in &others {
            let _ = self.runtime.set_replica_priority(r, PROMOTABLE).await;
        }
        if result.is_ok() {
            // A replica now: out of maintenance as DOWN (`state ready` alone would mark it UP
            // until its next checks, and lead new connections to it).
            let _ = ha.proxy.unfence(&inst.id, &old.name).await;
        } else {
            let _ = ha.proxy.set_maint(&inst.id, &old.name, false).await;
        }
        result?;
        self.sweep_old_proxy_sessions().await;
        self.record_switch(&inst.id, &target.name, TaskKind::ChangeReplicaToMaster)
            .await
    }

    /// `SENTINEL FAILOVER` for a planned switch, asked again for a moment while every
    /// sentinel answers `NOGOODSLAVE` (which starts nothing): right after a failover their
    /// view of the replica that just came back lags ours (a fresh-clone CI run refused a switch
    /// 1 s after a drill). Writes stay paused meanwhile, well within [`SWITCH_PAUSE`].
    async fn ask_failover(&self, ha: &Ha, inst: &Instance) -> Result<()> {
        let deadline = Instant::now() + NO_REPLICA_PATIENCE;
        loop {
            match ha.sentinels.failover(&inst.id).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_no_replica_to_promote() && Instant::now() < deadline => {
                    self.keep_promotable(inst, STREAM_CHECK_IN_TASK).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(crate::steps::engine_err(e)),
            }
        }
    }

    /// The steps of a `killMasterGroup` task: SIGKILL to the master, then wait until
    /// Sentinel names another node master and the database follows it.
    pub(crate) async fn drill_master_kill(
        &self,
        task: &crsd_core::model::Task,
        inst: &Instance,
    ) -> Result<()> {
        if inst.is_cluster() {
            return self.drill_shard_kill(task, inst).await;
        }
        let old = self.master_spec(inst)?;
        // A resumed task whose master already changed: the drill is over (never kill the
        // new master).
        if task.payload.get("master").and_then(|v| v.as_str()) != Some(old.name.as_str()) {
            return Ok(());
        }
        // A drill kills only what Sentinel can fail over: it waits until the sentinels see
        // an up replica (after a switch they learn the new master's replicas from its INFO,
        // every 10 s) and Sentinel's pause between two failovers of one master
        // (2 x failover-timeout) has passed since the instance's last switch.
        let Some(ha) = self.ha() else {
            return Err(crsd_core::Error::internal("no Sentinel to fail over with"));
        };
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        loop {
            let guard_over = self
                .last_switch_age(&inst.id)
                .await?
                .is_none_or(|age| age >= ha.failover_pause);
            if guard_over && ha.sentinels.can_fail_over(&inst.id).await.unwrap_or(false) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(crsd_core::Error::internal(
                    "Sentinel could not fail the instance over yet (no replica it sees up)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.runtime.kill(&old).map_err(crate::steps::engine_err)?;
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        loop {
            if let Some(views) = self.sentinel_masters().await {
                if !self.follow_failovers(&views).await?.is_empty() {
                    return Ok(());
                }
            }
            let now = self.store.instance(&inst.id).await?;
            if now
                .as_ref()
                .and_then(|i| i.master())
                .is_some_and(|m| m.id != old.name)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(crsd_core::Error::internal(
                    "Sentinel did not fail the instance over in time",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn ha(&self) -> Option<&Ha> {
        self.ha.as_ref()
    }

    /// The sentinels, for tests and status.
    pub fn sentinels(&self) -> Option<&SentinelSet> {
        self.ha.as_ref().map(|h| &h.sentinels)
    }

    /// The proxy, for tests and status.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.ha.as_ref().map(|h| &h.proxy)
    }

    /// At start, after the first supervisor pass: the sentinels run, every instance's
    /// address is served, every running instance is watched.
    pub async fn start_ha(&self) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Ok(());
        };
        let started = ha
            .sentinels
            .ensure_running()
            .await
            .map_err(crate::steps::engine_err)?;
        if !started.is_empty() {
            tracing::info!(ports = ?started, "Sentinel processes started");
        }
        if self
            .cfg
            .ha
            .as_ref()
            .is_some_and(|h| h.reconfig_script.is_some())
        {
            // Sentinels of an earlier release run `crsd address-hook` only once restarted,
            // and the watches that release registered have no scripts yet.
            match ha.sentinels.allow_reconfig_scripts().await {
                Ok(restarted) if !restarted.is_empty() => {
                    tracing::info!(ports = ?restarted,
                        "sentinels of an earlier release restarted to accept scripts");
                    for inst in self.store.live_instances().await? {
                        if Self::wants_watch(&inst) && !self.task_owns_processes(&inst) {
                            self.watch(&inst).await?;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot restart a sentinel to accept reconfig scripts")
                }
            }
        }
        self.publish_addresses().await?;
        self.reconcile_watches().await?;
        self.apply_watch_settings().await
    }

    /// At start: watches the sentinels keep with other settings than this crsd's get this
    /// crsd's. Sentinel keeps a watch's settings as they were set, and crsd sets them only
    /// when it registers an instance: watches adopted from an earlier release (whose defaults
    /// may differ: `down_after_ms` was 1500, now 500) or made under an earlier config would
    /// keep theirs.
    async fn apply_watch_settings(&self) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Ok(());
        };
        let otherwise = match ha.sentinels.monitored_otherwise().await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "no sentinel answers; cannot check the watches' settings");
                return Ok(());
            }
        };
        if otherwise.is_empty() {
            return Ok(());
        }
        for inst in self.store.live_instances().await? {
            if otherwise.contains(&inst.id)
                && Self::wants_watch(&inst)
                && !self.task_owns_processes(&inst)
            {
                tracing::info!(instance = %inst.id,
                    "sentinels watch the instance with earlier settings; applying this crsd's");
                self.watch(&inst).await?;
            }
        }
        Ok(())
    }

    /// Renders every live instance's frontend and has the proxy serve exactly those (started
    /// if it does not run, reloaded if they changed). Returns once they serve.
    pub(crate) async fn publish_addresses(&self) -> Result<()> {
        self.publish_addresses_but(None).await
    }

    /// [`Service::publish_addresses`] without `closing`'s address: an instance about to be
    /// isolated or deleted stops being served before its nodes stop.
    pub(crate) async fn publish_addresses_but(&self, closing: Option<&str>) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Ok(());
        };
        let _one_at_a_time = ha.publishing.lock().await;
        // Spares first, then the instances: a purchase that moves a spare's port to its
        // instance in between makes the port appear twice (the proxy leaves the spare out),
        // never not at all.
        let spares = self.reserve_spare_ports(ha).await?;
        let frontends: Vec<Frontend> = self
            .store
            .live_instances()
            .await?
            .iter()
            // An isolated instance's address is closed (its nodes are stopped); its port
            // stays its own.
            .filter(|i| {
                i.port != 0
                    && !i.nodes.is_empty()
                    // An address of its own is held by the master: no proxy.
                    && !i.has_own_address()
                    && i.status != InstanceStatus::Isolated
                    && Some(i.id.as_str()) != closing
            })
            .map(|i| self.frontend(i))
            .collect();
        ha.proxy
            .apply_with_spares(&frontends, &spares)
            .await
            .map_err(crate::steps::engine_err)?;
        Ok(())
    }

    /// The spare frontends' ports, topped up from the free ports to `spare_frontends`.
    async fn reserve_spare_ports(&self, ha: &Ha) -> Result<Vec<u16>> {
        // New instances get addresses of their own from the pool: no spare frontend needed.
        let wanted = if self.cfg.address_pool.is_empty() {
            ha.spare_frontends
        } else {
            0
        };
        // Usually none is missing: a read, no write lock (this runs at every publish).
        let spares = self.store.spare_ports().await?;
        if spares.len() >= wanted {
            return Ok(spares);
        }
        let mut tx = self.store.write().await?;
        let mut spares = tx.spare_ports().await?;
        if spares.len() < wanted {
            let used = crate::purchase::taken_ports(&mut tx).await?;
            // Spares take at most a quarter of the free ports: they never starve a purchase
            // of its nodes' ports (a spare's port stays bound by the proxy).
            let free: Vec<u16> = self.free_ports(used).take(4 * wanted).collect();
            let room = (free.len() / 4).min(wanted - spares.len());
            let fresh: Vec<u16> = free.into_iter().take(room).collect();
            for &p in &fresh {
                tx.add_spare_port(p).await?;
            }
            tx.commit().await?;
            spares.extend(fresh);
        }
        Ok(spares)
    }

    /// Makes `inst`'s address serve: on the spare frontend its port was taken from, at run
    /// time (no proxy reload: the supervisor's next pass gives it its own section and a new
    /// spare), else by rendering every address ([`Service::publish_addresses`]).
    ///
    /// The spare marks the master the database names UP at once, even before it listens:
    /// the caller makes sure it is master, i.e. it starts that node as master and, should it
    /// answer otherwise, publishes every address instead (HAProxy's checks then find the
    /// master). No client has the address before the task that serves it ends.
    pub(crate) async fn serve_address(&self, inst: &Instance) -> Result<()> {
        if inst.has_own_address() {
            // No frontend: its master takes the address (`wait_address_ready`).
            return Ok(());
        }
        let (Some(ha), Some(master)) = (self.ha(), inst.master()) else {
            return self.publish_addresses().await;
        };
        match ha.proxy.take_spare(&self.frontend(inst), &master.id).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(instance = %inst.id, error = %e, "cannot take the spare frontend; reloading the proxy instead")
            }
        }
        self.publish_addresses().await
    }

    /// Waits until the proxy leads `inst`'s address to its master: the first server its
    /// check sees up is the master (a node that just started, or came back, is seen within a
    /// fast check interval). A task that makes an instance serve ends only then.
    pub(crate) async fn wait_address_ready(&self, inst: &Instance) -> Result<()> {
        let (Some(ha), Some(master)) = (self.ha(), inst.master()) else {
            return Ok(());
        };
        let deadline = Instant::now() + ADDRESS_READY_TIMEOUT;
        if inst.has_own_address() {
            if self.place_address_until(inst, master, deadline).await? {
                return Ok(());
            }
            return Err(crsd_core::Error::internal(format!(
                "{}'s master {} does not take the instance's address",
                inst.id, master.id
            )));
        }
        loop {
            let up = ha.proxy.servers_up(&inst.id).await;
            if matches!(&up, Ok(up) if up.first() == Some(&master.id)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(crsd_core::Error::internal(format!(
                    "the proxy does not lead {}'s address to its master {} (up: {up:?})",
                    inst.id, master.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn frontend(&self, inst: &Instance) -> Frontend {
        let mut nodes: Vec<_> = inst.nodes.iter().collect();
        // The order never follows the roles, so a failover needs no reload: the check finds
        // the master.
        nodes.sort_by_key(|n| n.seq);
        Frontend {
            name: inst.id.clone(),
            port: inst.port,
            check_user: CHECK_USER.to_string(),
            check_secret: internal_secret(&inst.admin_secret, CHECK_USER),
            servers: nodes
                .into_iter()
                .map(|n| Server {
                    name: n.id.clone(),
                    host: self.cfg.instance_bind.clone(),
                    port: n.port,
                })
                .collect(),
        }
    }

    fn monitored(&self, inst: &Instance) -> Option<Monitored> {
        let master = inst.master()?;
        Some(Monitored {
            name: inst.id.clone(),
            host: self.node_host(master),
            port: master.port,
            auth_user: SENTINEL_USER.to_string(),
            auth_pass: internal_secret(&inst.admin_secret, SENTINEL_USER),
            reconfig_script: self.cfg.ha.as_ref().and_then(|h| h.reconfig_script.clone()),
        })
    }

    /// Whether Sentinel should watch `inst`: it runs and has a replica to promote, and is
    /// not a cluster (which fails itself over).
    fn wants_watch(inst: &Instance) -> bool {
        matches!(inst.status, InstanceStatus::Running | InstanceStatus::Busy)
            && inst.replica_count() > 0
            && !inst.is_cluster()
    }

    /// Registers `inst` with every sentinel (its master as the database names it). A sentinel
    /// that does not answer in time (measured: `SENTINEL MONITOR` timing out on a loaded
    /// machine) does not fail the task that made the instance serve: the instance serves, the
    /// failure is logged, and the supervisor registers it on its next check of the watches
    /// (`reconcile_watches`).
    pub(crate) async fn watch(&self, inst: &Instance) -> Result<()> {
        let (Some(ha), Some(m)) = (self.ha(), self.monitored(inst)) else {
            return Ok(());
        };
        if !Self::wants_watch(inst) {
            return Ok(());
        }
        if let Err(e) = ha.sentinels.monitor(&m).await {
            tracing::warn!(instance = %inst.id, error = %e,
                "cannot register the instance with every sentinel now; the supervisor will");
        }
        Ok(())
    }

    /// Removes `id` from every sentinel: its nodes are about to stop on purpose.
    pub(crate) async fn unwatch(&self, id: &str) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Ok(());
        };
        ha.sentinels
            .remove(id)
            .await
            .map_err(crate::steps::engine_err)
    }

    /// After replicas were removed: the sentinels forget them (they would list them as down).
    pub(crate) async fn forget_removed_nodes(&self, id: &str) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Ok(());
        };
        ha.sentinels
            .reset(id)
            .await
            .map_err(crate::steps::engine_err)
    }

    /// Every sentinel watches exactly the instances that want it (one restarted with an old
    /// config, or down when an instance was created, catches up here).
    pub(crate) async fn reconcile_watches(&self) -> Result<()> {
        let Some(ha) = self.ha() else {
            return Ok(());
        };
        let live = self.store.live_instances().await?;
        let wanted: HashMap<&str, &Instance> = live
            .iter()
            .filter(|i| Self::wants_watch(i) && !self.task_owns_processes(i))
            .map(|i| (i.id.as_str(), i))
            .collect();
        let seen = match ha.sentinels.monitored_by_each().await {
            Ok(seen) => seen,
            Err(e) => {
                tracing::warn!(error = %e, "no sentinel answers; cannot check what they watch");
                return Ok(());
            }
        };
        let mut missing = false;
        for (port, names) in &seen {
            for name in names {
                if !wanted.contains_key(name.as_str()) && !self.is_live_busy(&live, name) {
                    tracing::info!(sentinel = port, instance = %name, "sentinel watches an instance that is gone or stopped; removing it");
                    if let Err(e) = ha.sentinels.remove(name).await {
                        tracing::warn!(instance = %name, error = %e, "cannot remove a watch");
                    }
                }
            }
            missing |= wanted.keys().any(|w| !names.iter().any(|n| n == w));
        }
        if missing {
            for inst in wanted.values() {
                if let Err(e) = self.watch(inst).await {
                    tracing::warn!(instance = %inst.id, error = ?e, "cannot register the instance with Sentinel");
                }
            }
        }
        Ok(())
    }

    fn is_live_busy(&self, live: &[Instance], id: &str) -> bool {
        live.iter()
            .any(|i| i.id == id && self.task_owns_processes(i) && Self::wants_watch(i))
    }

    /// Whether a task that starts or stops `inst`'s processes holds it (it watches and
    /// unwatches on its own).
    fn task_owns_processes(&self, inst: &Instance) -> bool {
        inst.lock_task.is_some() && inst.status != InstanceStatus::Running
    }

    /// The sentinels' view of every watched instance's master, `None` when no sentinel
    /// answers (then crsd keeps to the database).
    pub(crate) async fn sentinel_masters(&self) -> Option<HashMap<String, MasterView>> {
        let ha = self.ha()?;
        match ha.sentinels.masters().await {
            Ok(v) => Some(v),
            Err(e) => {
                // Before the first start, or all killed: the supervisor starts them.
                tracing::debug!(error = %e, "no sentinel answers");
                None
            }
        }
    }

    /// Records every failover Sentinel made: the node it promoted becomes the master in the
    /// database (the old master a replica), and a finished `switchMaster` task says when.
    /// Returns the ids of the instances whose master changed.
    pub(crate) async fn follow_failovers(
        &self,
        views: &HashMap<String, MasterView>,
    ) -> Result<Vec<String>> {
        let mut switched = Vec::new();
        for inst in self.store.live_instances().await? {
            let Some(view) = views.get(&inst.id) else {
                continue;
            };
            let Some(master) = inst.master() else {
                continue;
            };
            let at = |n: &crsd_core::model::Node| {
                n.port == view.port && (n.host.is_empty() || n.host == view.host)
            };
            if at(master) {
                continue;
            }
            let Some(promoted) = inst.nodes.iter().find(|n| at(n)) else {
                tracing::warn!(instance = %inst.id, port = view.port, "Sentinel names a master that is not a node of the instance");
                continue;
            };
            // Recorded once the node itself says so (Sentinel's flags may still say a
            // failover is under way, or that one sentinel has not reached it yet).
            let spec = self.node_spec(&inst, promoted);
            if !self.runtime.is_master_now(&spec).await.unwrap_or(false) {
                continue;
            }
            let (from, to) = (master.id.clone(), promoted.id.clone());
            self.record_switch(&inst.id, &to, TaskKind::SwitchMaster)
                .await?;
            tracing::warn!(instance = %inst.id, from = %from, to = %to,
                "Sentinel failed the instance over; the database follows");
            switched.push(inst.id.clone());
        }
        if !switched.is_empty() {
            self.sweep_old_proxy_sessions().await;
        }
        Ok(switched)
    }

    /// Proxy workers left from earlier reloads run no health checks: their sessions to a node
    /// that is no longer the master are closed, as the current worker closes its own.
    async fn sweep_old_proxy_sessions(&self) {
        if let Some(ha) = self.ha() {
            match ha.proxy.sweep_old_workers().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    sessions = n,
                    "closed old proxy workers' sessions to former masters"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot sweep old proxy workers' sessions"),
            }
        }
    }

    /// Makes `node` the master of `id` in the database, with a finished task of `kind` that
    /// says so (for the task lists), in one transaction.
    pub(crate) async fn record_switch(&self, id: &str, node: &str, kind: TaskKind) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        let Some(mut inst) = tx.instance(id).await? else {
            return Ok(());
        };
        // The promoted node's shard changes masters (a standard instance is one shard).
        let Some(shard) = inst.nodes.iter().find(|n| n.id == node).map(|n| n.shard) else {
            return Ok(());
        };
        for n in inst.nodes.iter_mut().filter(|n| n.shard == shard) {
            n.role = if n.id == node {
                NodeRole::Master
            } else {
                NodeRole::Replica
            };
        }
        tx.update_instance(&inst).await?;
        if kind == TaskKind::SwitchMaster {
            let task_id = tx
                .insert_task(
                    &NewTask {
                        app_id: inst.app_id,
                        kind,
                        instance_id: Some(inst.id.clone()),
                        deal_id: None,
                        payload: serde_json::json!({ "master": node }),
                    },
                    now,
                )
                .await?;
            if let Some(mut t) = tx.task(task_id).await? {
                t.status = TaskStatus::Succeeded;
                t.updated_at = now;
                tx.update_task(&t).await?;
            }
        }
        tx.commit().await?;
        self.forget_dead_master(id);
        Ok(())
    }

    /// A replica of `inst` that says it is the master now (Sentinel promoted it; crsd may
    /// not have seen Sentinel's view yet): recorded as the master, and returned.
    pub(crate) async fn promoted_replica(&self, inst: &Instance) -> Result<Option<String>> {
        if self.ha().is_none() || inst.is_cluster() {
            return Ok(None);
        }
        for replica in inst.replicas() {
            let spec = self.node_spec(inst, replica);
            if self.runtime.is_master_now(&spec).await.unwrap_or(false) {
                self.record_switch(&inst.id, &replica.id, TaskKind::SwitchMaster)
                    .await?;
                tracing::warn!(instance = %inst.id, to = %replica.id,
                    "a replica was promoted while the master was down; the database follows");
                return Ok(Some(replica.id.clone()));
            }
        }
        Ok(None)
    }

    /// How long ago the instance's master last changed (a failover, a planned switch or a
    /// drill), from its tasks; `None` if it never did.
    async fn last_switch_age(&self, id: &str) -> Result<Option<Duration>> {
        let last = self
            .store
            .last_task_end(
                id,
                &[
                    TaskKind::SwitchMaster,
                    TaskKind::ChangeReplicaToMaster,
                    TaskKind::KillMasterGroup,
                ],
            )
            .await?;
        Ok(last.map(|at| (self.now() - at).to_std().unwrap_or_default()))
    }

    /// The supervisor's rule for a dead master of `inst` (see the module docs).
    pub(crate) fn dead_master(&self, inst: &Instance, replica_alive: bool) -> DeadMaster {
        let Some(ha) = self.ha() else {
            return DeadMaster::Restart;
        };
        if !replica_alive || !Self::wants_watch(inst) {
            self.forget_dead_master(&inst.id);
            return DeadMaster::Restart;
        }
        let mut map = ha.dead_masters.lock().unwrap_or_else(|e| e.into_inner());
        let since = *map.entry(inst.id.clone()).or_insert_with(|| {
            tracing::warn!(instance = %inst.id, "the master is down; leaving the failover to Sentinel");
            Instant::now()
        });
        if since.elapsed() >= ha.failover_grace {
            map.remove(&inst.id);
            tracing::warn!(instance = %inst.id, waited = ?ha.failover_grace,
                "Sentinel promoted no replica in time; starting the master again in place");
            DeadMaster::Restart
        } else {
            DeadMaster::AwaitFailover
        }
    }

    /// Whether the dead master `key` (an instance, or a cluster's node) is still left to
    /// `who` to fail over: true within `failover_grace` of the first call that saw it dead.
    pub(crate) fn awaits_failover(&self, key: &str, who: &str) -> bool {
        let Some(ha) = self.ha() else {
            return false;
        };
        let mut map = ha.dead_masters.lock().unwrap_or_else(|e| e.into_inner());
        let since = *map.entry(key.to_string()).or_insert_with(|| {
            tracing::warn!(
                master = key,
                "a master is down; leaving the failover to {who}"
            );
            Instant::now()
        });
        if since.elapsed() >= ha.failover_grace {
            map.remove(key);
            tracing::warn!(master = key, waited = ?ha.failover_grace,
                "no replica was promoted in time; starting the master again in place");
            false
        } else {
            true
        }
    }

    pub(crate) fn forget_dead_master(&self, id: &str) {
        if let Some(ha) = self.ha() {
            ha.dead_masters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
    }

    /// Sentinel may promote only replicas that hold their master's data: a replica process
    /// gets replica priority 100 once it has been seen in sync with its master, and 0 before
    /// that (it just started and has not synced yet) and whenever a full sync is replacing
    /// its data. A replica whose link went down because its master died keeps 100: it is the
    /// one to promote. A replica starts at 0 (its redis.conf); the value is set only when it
    /// changes for that process.
    pub(crate) async fn keep_promotable(&self, inst: &Instance, stream_check: Duration) {
        let Some(check) = self.promotable_check(inst) else {
            return;
        };
        let _one_at_a_time = check.lock().await;
        self.keep_promotable_now(inst, stream_check).await;
    }

    /// [`Service::keep_promotable`] unless another check of `inst` runs (the supervisor's
    /// pass does not wait for a create's: that one decides).
    pub(crate) async fn keep_promotable_unless_busy(
        &self,
        inst: &Instance,
        stream_check: Duration,
    ) {
        let Some(check) = self.promotable_check(inst) else {
            return;
        };
        let Ok(_one_at_a_time) = check.try_lock() else {
            return;
        };
        self.keep_promotable_now(inst, stream_check).await;
    }

    fn promotable_check(&self, inst: &Instance) -> Option<std::sync::Arc<tokio::sync::Mutex<()>>> {
        let ha = self.ha()?;
        // Sentinel's business; a cluster promotes its replicas itself.
        if inst.is_cluster() {
            return None;
        }
        let mut checks = ha
            .promotable_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Some(checks.entry(inst.id.clone()).or_default().clone())
    }

    async fn keep_promotable_now(&self, inst: &Instance, stream_check: Duration) {
        let Some(ha) = self.ha() else {
            return;
        };
        for spec in self.replica_specs(inst) {
            let crsd_engine::Liveness::Alive(pid) = self.runtime.liveness(&spec) else {
                continue;
            };
            let Ok(state) = self.runtime.replica_state(&spec).await else {
                continue;
            };
            let known = ha
                .priorities
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&spec.name)
                .copied()
                .filter(|(p, _)| *p == pid);
            let wanted = match state {
                // A master now (Sentinel promoted it): nothing to keep.
                None => {
                    ha.priorities
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&spec.name);
                    continue;
                }
                // Linked, and (checked once per process, before it may be promoted) its
                // master's writes reach it: after a full sync Redis may hold them back for a
                // second while the link reads up.
                Some((true, false)) if known.is_some_and(|(_, p)| p == PROMOTABLE) => PROMOTABLE,
                Some((true, false)) => {
                    if self
                        .runtime
                        .replica_streams(&spec, stream_check)
                        .await
                        .unwrap_or(false)
                    {
                        PROMOTABLE
                    } else {
                        known.map_or(0, |(_, prio)| prio)
                    }
                }
                Some((_, true)) => 0,
                Some((false, false)) => known.map_or(0, |(_, prio)| prio),
            };
            if known == Some((pid, wanted)) {
                continue;
            }
            match self.runtime.set_replica_priority(&spec, wanted).await {
                Ok(()) => {
                    ha.priorities
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(spec.name.clone(), (pid, wanted));
                    if wanted == 0 && known.is_some_and(|(_, p)| p == PROMOTABLE) {
                        tracing::warn!(node = %spec.name, "replica in a full sync; Sentinel may not promote it until it has synced");
                    }
                }
                Err(e) => {
                    tracing::debug!(node = %spec.name, error = %e, "cannot set the replica's priority")
                }
            }
        }
    }

    /// Keeps the host daemons running: a dead sentinel or proxy is started again.
    pub(crate) async fn supervise_ha(&self) {
        let Some(ha) = self.ha() else {
            return;
        };
        match ha.sentinels.ensure_running().await {
            Ok(started) if !started.is_empty() => {
                tracing::warn!(ports = ?started, "Sentinel processes were down; started them")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot start the Sentinel processes"),
        }
        match ha.proxy.ensure_running().await {
            Ok(true) => tracing::warn!("the proxy was down; started it"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot start the proxy"),
        }
        // Spares taken by creates since the last reload: their instances get their own
        // sections and new spares are made, off the creates' path.
        if ha.proxy.taken_spares().await > 0 {
            if let Err(e) = self.publish_addresses().await {
                tracing::warn!(error = ?e, "cannot replenish the proxy's spare frontends");
            }
        }
    }
}
