//! crsd-service: one function per use case, the task runner that carries out what they
//! record, and the background loops (supervisor, usage poller, expiry, backup schedule and
//! retention, the history of node figures, the command snapshots of the monitoring actions).
//!
//! A use case validates its input, checks that the caller owns what it names, and writes the
//! state change together with the durable task that carries it out, in one transaction. The
//! runner then executes the task's idempotent steps against the engine. Dialects call these
//! functions and render their results; they hold no business rules. This crate never speaks
//! HTTP and never formats a response.

mod accounts;
mod addresses;
mod backups;
mod cluster;
mod disk;
mod ha;
mod history;
mod instances;
mod loops;
pub mod metrics;
mod monitor;
mod node_metrics;
mod observe;
mod page;
mod purchase;
mod replicas;
mod reshard;
mod runner;
mod series;
mod steps;
mod warm;

pub use node_metrics::DiscoveryGroup;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use crsd_backupstore::BackupStore;
use crsd_core::catalog::Catalog;
use crsd_core::clock::SharedClock;
use crsd_core::model::{Instance, InstanceStatus};
use crsd_core::model::{Node, NodeRole};
use crsd_core::{Error, Field, Result};
use crsd_engine::{NodeRuntime, NodeSpec, Role};
use crsd_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

pub use accounts::{AccountCredentials, NewAccount, AUTH_CACHE_TTL};

/// What account creation hands back (printed once).
pub mod accounts_created {
    pub use crate::accounts::Created;
}
pub use backups::{
    AutoBackupConfig, BackupDownload, BackupPage, BackupQuery, BackupSettings, OperatorBackup,
};
pub use disk::DiskReserve;
pub use ha::HaSettings;
pub use history::{MonitorSettings, SampleRound};
pub use instances::{DescribeQuery, InstanceView};
pub use metrics::Metrics;
pub use monitor::parse_day as monitor_day;
pub use monitor::{
    BigKey, CommandUse, HotKey, HotKeys, KeyReport, SourceUse, Span, Workload, LADDER_MS,
    SIZE_LADDER_KB,
};
pub use observe::{NodeInfo, NodeState, SlowCommand, SlowLogQuery};
pub use purchase::{CreateOrder, DEFAULT_POOL_PORT};
pub use runner::TaskQuery;
pub use runner::UndoRetry;
pub use series::{InstanceMetric, Series, SeriesQuery, MAX_INSTANCES, MAX_POINTS, PERIODS};

/// The ACL user crsd itself uses on every instance.
pub const ADMIN_USER: &str = "crsd";
/// The ACL user replicas use to follow their master.
pub const REPL_USER: &str = "crsd-repl";

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// crsd's data folder (the database, the replay journal; instance folders are the node
    /// runtime's business). Its disk's free space is watched.
    pub data_dir: PathBuf,
    /// The address instances listen on, and the only one.
    pub instance_bind: String,
    /// The address DescribeRedis shows as `wanIp` (defaults to the bind address).
    pub instance_host: String,
    /// `instances.address_pool`: with addresses here, every new instance gets one of its own
    /// (held by its master, no proxy) and each node another; empty: instances share
    /// `instance_host` and are served by the proxy on ports of the range.
    pub address_pool: Vec<std::net::IpAddr>,
    /// Ports crsd hands to instances, inclusive.
    pub port_min: u16,
    pub port_max: u16,
    /// Whether password-less instances may be created (`NoAuth`).
    pub allow_no_auth: bool,
    pub catalog: Catalog,
    pub time_zone: Tz,
    /// How often the supervisor checks every process.
    pub supervise_every: Duration,
    /// How often deadlines are checked.
    pub expiry_every: Duration,
    /// How many tasks run at once.
    pub task_concurrency: usize,
    pub backups: BackupSettings,
    /// Free space kept on the data and backup disks (backups and restores are refused first).
    pub disk: DiskReserve,
    /// How a failed task's undo is retried.
    pub undo_retry: UndoRetry,
    /// Failover by Redis Sentinel and stable addresses by HAProxy (see `ha.rs`); `None`: no
    /// failover, instances' addresses unserved (tools that only read the database).
    pub ha: Option<HaSettings>,
    /// The host's redis exporter for per-node metrics (see `node_metrics.rs`); `None`: no
    /// per-node metrics.
    pub exporter: Option<crsd_engine::ExporterConfig>,
    /// crsd's own history of per-node figures (see `history.rs`).
    pub monitor: MonitorSettings,
    /// `cluster-node-timeout` of cluster instances' nodes (Redis Cluster's failover).
    pub cluster_node_timeout_ms: u64,
    /// Standard and cluster-enabled nodes the warm pool keeps running for creates to take
    /// (see `warm.rs`).
    pub warm_nodes: usize,
    pub warm_cluster_nodes: usize,
}

pub struct Service {
    store: Store,
    /// Where nodes run: the service drives them only through this seam.
    runtime: Arc<dyn NodeRuntime>,
    /// Where backup files live.
    backup_store: Arc<dyn BackupStore>,
    clock: SharedClock,
    cfg: ServiceConfig,
    /// Wakes the runner when a task is recorded.
    wake: Arc<Notify>,
    /// Last `used_memory` seen per instance (bytes), refreshed by the usage poller.
    usage: RwLock<HashMap<String, u64>>,
    /// SecretId -> its account, trusted for `accounts::AUTH_CACHE_TTL`.
    auth_cache: RwLock<HashMap<String, accounts::CachedCredentials>>,
    /// Node name -> pid of the redis-servers the supervisor has brought to this version's
    /// ceiling and ACL rules (`Engine::conform`), so each process is checked once.
    conformed: std::sync::Mutex<HashMap<String, u32>>,
    /// Tasks whose latest state the store refused to record (see the runner).
    unsaved: std::sync::Mutex<HashMap<i64, crsd_core::model::Task>>,
    /// One lock per instance, held by a task that starts, stops or destroys its nodes and by
    /// the supervisor while it restarts them, so that neither acts on a stale view of the
    /// other's work (see `loops.rs`).
    process_guards: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Instances whose master could not write its AOF at the last look (see the usage poller).
    aof_failing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Sentinel and the proxy, when configured.
    ha: Option<ha::Ha>,
    /// What crsd counts of itself (see `metrics`).
    metrics: metrics::Metrics,
    /// The redis exporter, when configured.
    exporter: Option<crsd_engine::Exporter>,
    /// Each node's last answer to the history sampler (see `history.rs`).
    last_answers: history::LastAnswers,
    /// Command snapshots' cadence and big-key reports (see `monitor.rs`).
    monitor_state: monitor::MonitorState,
}

impl Service {
    pub fn new(
        store: Store,
        runtime: Arc<dyn NodeRuntime>,
        backup_store: Arc<dyn BackupStore>,
        clock: SharedClock,
        cfg: ServiceConfig,
    ) -> Arc<Service> {
        let ha = cfg.ha.as_ref().map(ha::Ha::new);
        let exporter = cfg.exporter.clone().map(crsd_engine::Exporter::new);
        Arc::new(Service {
            ha,
            exporter,
            store,
            runtime,
            backup_store,
            clock,
            cfg,
            wake: Arc::new(Notify::new()),
            usage: RwLock::new(HashMap::new()),
            auth_cache: RwLock::new(HashMap::new()),
            conformed: std::sync::Mutex::new(HashMap::new()),
            unsaved: std::sync::Mutex::new(HashMap::new()),
            aof_failing: std::sync::Mutex::default(),
            process_guards: std::sync::Mutex::default(),
            metrics: metrics::Metrics::new(),
            last_answers: history::LastAnswers::default(),
            monitor_state: monitor::MonitorState::default(),
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// The zones of the region a request names (see [`Catalog::zones_in_region`]).
    pub fn zones_in_region(&self, region: Option<&str>) -> Result<Option<Vec<i64>>> {
        self.catalog().zones_in_region(region)
    }

    /// The zone a purchase sent to `region` buys in: `zone` when given (it must be in that
    /// region), else the region's first.
    pub fn zone_for(&self, zone: Option<i64>, region: Option<&str>) -> Result<i64> {
        let in_region = self.zones_in_region(region)?;
        match (zone, in_region) {
            (Some(z), Some(ids)) if !ids.contains(&z) => Err(Error::invalid(
                "ZoneId",
                format!("zone {z} is not in region {}", region.unwrap_or_default()),
            )),
            (Some(z), _) => Ok(z),
            (None, Some(ids)) => Ok(ids[0]),
            (None, None) => self
                .catalog()
                .zones
                .first()
                .map(|z| z.id)
                .ok_or_else(|| Error::invalid("ZoneId", "no zone is configured")),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.cfg.catalog
    }

    pub fn time_zone(&self) -> Tz {
        self.cfg.time_zone
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn runtime(&self) -> &Arc<dyn NodeRuntime> {
        &self.runtime
    }

    /// The address `node` listens on: its own, or the host's shared one.
    pub fn node_host(&self, node: &Node) -> String {
        self.host_or_shared(&node.host)
    }

    /// A node's own address, or the host's shared one when it has none (`host` empty).
    pub(crate) fn host_or_shared(&self, host: &str) -> String {
        if host.is_empty() {
            self.cfg.instance_bind.clone()
        } else {
            host.to_string()
        }
    }

    /// What `node` of `inst` must be, as the database says: its role, its port, the master
    /// a replica follows, the instance's memory, users and parameters.
    pub fn node_spec(&self, inst: &Instance, node: &Node) -> NodeSpec {
        // A cluster's nodes follow whom the cluster says (see the engine's `cluster.rs`).
        let cluster = inst.is_cluster();
        let master = match node.role {
            _ if cluster => None,
            NodeRole::Master => None,
            NodeRole::Replica => inst.master().map(|m| (self.node_host(m), m.port)),
        };
        NodeSpec {
            name: node.id.clone(),
            host: node.host.clone(),
            instance: node.folder_of(&inst.id).to_string(),
            role: match node.role {
                NodeRole::Master => Role::Master,
                NodeRole::Replica => Role::Replica,
            },
            port: node.port,
            maxmemory_mb: inst.mem_mb as u64,
            default_password_sha256: inst.password_acl.clone(),
            admin_user: ADMIN_USER.to_string(),
            admin_secret: inst.admin_secret.clone(),
            repl_user: REPL_USER.to_string(),
            repl_secret: inst.repl_secret.clone(),
            master,
            params: inst
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cluster: cluster.then_some(crsd_engine::ClusterSettings {
                node_timeout_ms: self.cfg.cluster_node_timeout_ms,
            }),
        }
    }

    /// The specs of every node of `inst`, the master first.
    pub fn node_specs(&self, inst: &Instance) -> Vec<NodeSpec> {
        let mut nodes: Vec<&Node> = inst.nodes.iter().collect();
        nodes.sort_by_key(|n| (n.role != NodeRole::Master, n.seq));
        nodes.into_iter().map(|n| self.node_spec(inst, n)).collect()
    }

    /// The spec of the node the database names master.
    pub fn master_spec(&self, inst: &Instance) -> Result<NodeSpec> {
        inst.master()
            .map(|m| self.node_spec(inst, m))
            .ok_or_else(|| Error::internal(format!("instance {} has no master node", inst.id)))
    }

    /// The specs of the replicas, in the order they were added.
    pub fn replica_specs(&self, inst: &Instance) -> Vec<NodeSpec> {
        inst.replicas().map(|n| self.node_spec(inst, n)).collect()
    }

    /// A `YYYY-MM-DD HH:MM:SS` filter bound in the operator's time zone; None when absent.
    pub(crate) fn parse_time(
        &self,
        field: Field,
        v: &Option<String>,
    ) -> Result<Option<DateTime<Utc>>> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => crsd_core::timefmt::parse(s, self.time_zone())
                .map(Some)
                .ok_or_else(|| Error::invalid_field(field, "expected YYYY-MM-DD HH:MM:SS")),
        }
    }

    /// An end bound, inclusive at the second the lists print: something started at
    /// 12:00:00.5 shows 12:00:00 and is within `endTime=... 12:00:00`.
    pub(crate) fn parse_end_time(
        &self,
        field: Field,
        v: &Option<String>,
    ) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .parse_time(field, v)?
            .map(|e| e + chrono::Duration::seconds(1) - chrono::Duration::milliseconds(1)))
    }

    /// The caller's instance `id`; another account's instance does not exist for the caller.
    async fn owned_instance(&self, app_id: i64, id: &str) -> Result<Instance> {
        if id.is_empty() {
            return Err(Error::MissingField(Field::InstanceId));
        }
        match self.store.instance(id).await? {
            Some(i) if i.app_id == app_id && i.status != InstanceStatus::Deleted => Ok(i),
            _ => Err(Error::InstanceNotFound(id.to_string())),
        }
    }
}
