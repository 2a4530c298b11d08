//! Domain types: what the store keeps and the service hands to dialects.
//! Times are UTC; dialects format them in the configured zone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub app_id: i64,
    pub uin: String,
    pub name: String,
    pub secret_id: String,
    /// Kept because HMAC verification needs it; the database file is readable by crsd alone.
    pub secret_key: String,
    /// Cents.
    pub balance: i64,
}

/// Instance status as the v2 API numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// 0: created, processes not yet running.
    Initializing,
    /// 1: a task is changing the instance.
    Busy,
    /// 2: serving.
    Running,
    /// -2: expired and not renewed: processes stopped, data kept.
    Isolated,
    /// Removed (processes gone, ports free). Never listed.
    Deleted,
}

impl InstanceStatus {
    pub fn code(self) -> i64 {
        match self {
            InstanceStatus::Initializing => 0,
            InstanceStatus::Busy => 1,
            InstanceStatus::Running => 2,
            InstanceStatus::Isolated => -2,
            InstanceStatus::Deleted => -3,
        }
    }

    pub fn from_code(code: i64) -> Option<InstanceStatus> {
        Some(match code {
            0 => InstanceStatus::Initializing,
            1 => InstanceStatus::Busy,
            2 => InstanceStatus::Running,
            -2 => InstanceStatus::Isolated,
            -3 => InstanceStatus::Deleted,
            _ => return None,
        })
    }

    /// The seed's `statusDesc` texts.
    /// The status in one English word, for operators (`crsd instance list`).
    pub fn word(self) -> &'static str {
        match self {
            InstanceStatus::Initializing => "initializing",
            InstanceStatus::Busy => "busy",
            InstanceStatus::Running => "running",
            InstanceStatus::Isolated => "isolated",
            InstanceStatus::Deleted => "deleted",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            InstanceStatus::Initializing => "待初始化",
            InstanceStatus::Busy => "实例在流程中",
            InstanceStatus::Running => "实例运行中",
            InstanceStatus::Isolated => "实例已隔离",
            InstanceStatus::Deleted => "实例已删除",
        }
    }
}

/// How an instance is paid for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BillingMode {
    /// 0: pay as you go, charged by the hour from the account's balance; no deadline for the
    /// user; isolated when the balance cannot pay the next hour.
    Postpaid,
    /// 1: a period paid in advance, renewed or isolated at its deadline.
    #[default]
    Prepaid,
}

impl BillingMode {
    /// API 3.0 `BillingMode`.
    pub fn code(self) -> i64 {
        match self {
            BillingMode::Postpaid => 0,
            BillingMode::Prepaid => 1,
        }
    }

    pub fn from_code(code: i64) -> Option<BillingMode> {
        match code {
            0 => Some(BillingMode::Postpaid),
            1 => Some(BillingMode::Prepaid),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub app_id: i64,
    pub name: String,
    pub project_id: i64,
    pub zone_id: i64,
    pub region_id: i64,
    /// 1 cluster, 2 master-replica.
    pub type_id: i64,
    pub mem_mb: i64,
    pub status: InstanceStatus,
    /// The address clients connect to (the configured bind address).
    pub vip: String,
    /// The instance's stable address port: a proxy frontend that always leads to the current
    /// master, whichever node that is (0: an instance of the previous release not adopted yet,
    /// see migration 0010). Node ports are internal.
    pub port: u16,
    /// The redis-servers the instance is made of: one master and its replicas for a standard
    /// instance (one shard). The database is the truth about which node is the master.
    pub nodes: Vec<Node>,
    /// The sequence number the next node gets (see [`Instance::next_node_seq`]).
    pub node_seq: i64,
    pub vpc_id: i64,
    pub un_vpc_id: String,
    pub subnet_id: i64,
    pub un_subnet_id: String,
    pub created_at: DateTime<Utc>,
    /// Prepaid: the end of the paid period. Postpaid: the end of the last hour charged (the
    /// expiry pass charges the next hours when it passes).
    pub deadline: DateTime<Utc>,
    /// 0 notify, 1 auto-renew, 2 neither.
    pub auto_renew: i64,
    pub billing: BillingMode,
    /// Salted hash of the user's password (see `secret`).
    pub password_hash: String,
    /// SHA-256 hex of the user's password, the form redis ACL takes (`#<hex>`), needed to
    /// re-render a node's config; never the plaintext.
    pub password_acl: String,
    /// Secrets of crsd's own ACL users on this instance.
    pub admin_secret: String,
    pub repl_secret: String,
    /// The task that holds the instance, if any.
    pub lock_task: Option<i64>,
    /// Redis parameters the user set (see `params`), by name.
    pub params: std::collections::BTreeMap<String, String>,
    /// Kills by the memory ceiling (a node or one of its forks went past `maxmemory` plus
    /// the headroom, e.g. with a large Lua table). Written only by `add_oom_kills`.
    pub oom_kills: i64,
}

impl Instance {
    /// The node the database names master (a standard instance has exactly one; for a
    /// cluster, shard 0's, the first of [`Instance::masters`]).
    pub fn master(&self) -> Option<&Node> {
        self.masters().next()
    }

    /// Whether the instance is of the cluster edition: a Redis Cluster of shards, which
    /// fails itself over (no Sentinel).
    pub fn is_cluster(&self) -> bool {
        self.type_id == crate::catalog::CLUSTER_TYPE_ID
    }

    /// The master of each shard as the database records it, by shard.
    pub fn masters(&self) -> impl Iterator<Item = &Node> {
        let mut masters: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Master)
            .collect();
        masters.sort_by_key(|n| (n.shard, n.seq));
        masters.into_iter()
    }

    /// The shards the nodes serve, lowest first (one, 0, for a standard instance).
    pub fn shard_ids(&self) -> Vec<i64> {
        let mut shards: Vec<i64> = self.nodes.iter().map(|n| n.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// The nodes of shard `shard`, its master first.
    pub fn shard_nodes(&self, shard: i64) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self.nodes.iter().filter(|n| n.shard == shard).collect();
        nodes.sort_by_key(|n| (n.role != NodeRole::Master, n.seq));
        nodes
    }

    /// The port clients connect to: the stable address (see [`Instance::port`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The replicas, in the order they were added.
    pub fn replicas(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == NodeRole::Replica)
    }

    /// How many replicas follow the master.
    pub fn replica_count(&self) -> usize {
        self.replicas().count()
    }

    /// The sequence number the next node of this instance gets: never one a node had, also
    /// after that node was removed.
    pub fn next_node_seq(&self) -> i64 {
        self.nodes
            .iter()
            .map(|n| n.seq + 1)
            .max()
            .unwrap_or(0)
            .max(self.node_seq)
    }

    /// Adds a node with the next sequence number and counts it.
    pub fn add_node(&mut self, role: NodeRole, port: u16) -> &Node {
        self.add_node_at(role, String::new(), port)
    }

    /// [`Instance::add_node`] on an address of its own.
    pub fn add_node_at(&mut self, role: NodeRole, host: String, port: u16) -> &Node {
        let seq = self.next_node_seq();
        self.node_seq = seq + 1;
        self.nodes
            .push(Node::new(&self.id, seq, role, port).at(host));
        self.nodes.last().expect("just pushed")
    }

    /// Whether the instance has an address of its own (`vip`, from the operator's address
    /// pool) that its master holds, with no proxy; its nodes then have their own addresses.
    pub fn has_own_address(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(|n| !n.host.is_empty())
    }

    /// False for a password-less instance (API 3.0 `NoAuth`, when the operator allows it):
    /// its default user is `nopass`, and calls that check the password accept any.
    pub fn has_password(&self) -> bool {
        !self.password_hash.is_empty()
    }
}

/// The role the database wants a node to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeRole {
    Master,
    Replica,
}

impl NodeRole {
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Master => "master",
            NodeRole::Replica => "replica",
        }
    }

    pub fn from_name(name: &str) -> Option<NodeRole> {
        match name {
            "master" => Some(NodeRole::Master),
            "replica" => Some(NodeRole::Replica),
            _ => None,
        }
    }
}

/// One redis-server of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Stable for the node's life: `<instance id>-<seq>`, or the id a node of the warm pool
    /// was born with (`node-<hex>`). The node's folder and cgroup are named by it.
    pub id: String,
    /// Counts up per instance from 0 and is never reused; the replica group id of the node.
    pub seq: i64,
    /// The shard the node serves (0: a standard instance has one shard).
    pub shard: i64,
    /// Desired role: the supervisor makes the running process match it.
    pub role: NodeRole,
    /// The node's own address from the operator's address pool; empty: the host's shared
    /// address (then the instance is served through the proxy).
    pub host: String,
    /// The node listens at this port (with an address pool: the instance's port).
    pub port: u16,
    /// The folder its own folder sits in, under the runtime's root; empty: the instance's
    /// (`<instance id>`). A node taken from the warm pool keeps the pool's ([`WARM_FOLDER`]):
    /// its process was started there, and a running process's paths cannot move.
    pub folder: String,
    /// The internal secret a node taken from the warm pool still runs with until the create
    /// that took it has given it the instance's users; empty once it has them (or for a node
    /// started for its instance).
    pub warm_secret: String,
}

/// A redis-server of the warm pool: started empty, before any purchase, with secrets of its
/// own, as a master; a create takes it as one of its instance's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmNode {
    /// `node-<hex>`: the id it keeps as an instance's node.
    pub id: String,
    /// Started with `cluster-enabled yes`, for cluster instances.
    pub cluster: bool,
    pub port: u16,
    pub admin_secret: String,
    pub repl_secret: String,
    pub created_at: DateTime<Utc>,
    pub state: WarmState,
}

/// Where a warm node is in its life; creates take only [`WarmState::Ready`] ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmState {
    /// Recorded (its port reserved) while its process starts.
    Starting,
    Ready,
    /// Being stopped and removed.
    Dropping,
}

impl WarmState {
    pub fn name(self) -> &'static str {
        match self {
            WarmState::Starting => "starting",
            WarmState::Ready => "ready",
            WarmState::Dropping => "dropping",
        }
    }

    pub fn from_name(name: &str) -> Option<WarmState> {
        match name {
            "starting" => Some(WarmState::Starting),
            "ready" => Some(WarmState::Ready),
            "dropping" => Some(WarmState::Dropping),
            _ => None,
        }
    }
}

/// The folder the warm pool's nodes live in (see [`Node::folder`]); no instance id looks
/// like it.
pub const WARM_FOLDER: &str = "warm";

impl Node {
    pub fn new(instance_id: &str, seq: i64, role: NodeRole, port: u16) -> Node {
        Node {
            id: format!("{instance_id}-{seq}"),
            seq,
            shard: 0,
            role,
            host: String::new(),
            port,
            folder: String::new(),
            warm_secret: String::new(),
        }
    }

    /// The folder its own folder sits in (see [`Node::folder`]).
    pub fn folder_of<'a>(&'a self, instance_id: &'a str) -> &'a str {
        if self.folder.is_empty() {
            instance_id
        } else {
            &self.folder
        }
    }

    /// The node on its own address (see [`Node::host`]).
    pub fn at(mut self, host: impl Into<String>) -> Node {
        self.host = host.into();
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DealKind {
    Create,
    Renew,
    Upgrade,
}

/// Deal status codes and their descriptions, as DescribeRedisDealDetail documents them.
pub mod deal_status {
    pub const UNPAID: i64 = 1;
    pub const PAID: i64 = 2;
    pub const DELIVERING: i64 = 3;
    pub const DELIVERED: i64 = 4;
    pub const DELIVERY_FAILED: i64 = 5;
    pub const REFUNDED: i64 = 6;

    pub fn description(status: i64) -> &'static str {
        match status {
            1 => "未支付",
            2 => "已支付，未发货",
            3 => "发货中",
            4 => "发货成功",
            5 => "发货失败",
            6 => "已退款",
            7 => "已关闭订单",
            8 => "订单过期",
            9 => "订单已失效",
            10 => "产品已失效",
            11 => "代付拒绝",
            12 => "支付中",
            _ => "未知",
        }
    }
}

/// What a deal bought; each kind has its own documented `goodsDetail` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum GoodsDetail {
    Create {
        mem_mb: i64,
        months: i64,
        instance_ids: Vec<String>,
    },
    Renew {
        cur_deadline: DateTime<Utc>,
        mem_mb: i64,
        months: i64,
        instance_ids: Vec<String>,
    },
    Upgrade {
        old_mem_mb: i64,
        new_mem_mb: i64,
        instance_ids: Vec<String>,
    },
    /// Replicas added or removed (API 3.0 UpgradeInstance `RedisReplicasNum`).
    ChangeReplicas {
        mem_mb: i64,
        old_replicas: i64,
        new_replicas: i64,
        instance_ids: Vec<String>,
    },
    /// Shards added or removed (API 3.0 UpgradeInstance `RedisShardNum` of a cluster).
    ChangeShards {
        mem_mb: i64,
        old_shards: i64,
        new_shards: i64,
        instance_ids: Vec<String>,
    },
}

impl GoodsDetail {
    /// The instances a deal is about.
    pub fn instance_ids(&self) -> &[String] {
        match self {
            GoodsDetail::Create { instance_ids, .. }
            | GoodsDetail::Renew { instance_ids, .. }
            | GoodsDetail::Upgrade { instance_ids, .. }
            | GoodsDetail::ChangeReplicas { instance_ids, .. }
            | GoodsDetail::ChangeShards { instance_ids, .. } => instance_ids,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    pub id: i64,
    pub app_id: i64,
    /// The long deal id shown to support ("dealName").
    pub name: String,
    pub zone_id: i64,
    pub goods_num: i64,
    pub creator: String,
    pub status: i64,
    /// Cents.
    pub price: i64,
    pub detail: GoodsDetail,
    pub created_at: DateTime<Utc>,
    pub overdue_at: DateTime<Utc>,
    pub end_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    NewInstance,
    ResizeInstance,
    CloseInstance,
    CleanInstance,
    StartInstance,
    DeleteInstance,
    SetPassword,
    ImportRdb,
    ExportBackup,
    RestoreBackup,
    RestoreStream,
    BackupInstance,
    ModifyParams,
    /// Adds or removes replicas (payload `{"replicas": n, "price": cents}`).
    ChangeReplicas,
    /// Adds or removes a cluster's shards, moving slots live (payload `{"shards": n,
    /// "from": n, "price": cents}`).
    ChangeShards,
    /// Sentinel failed the instance over on its own; recorded when crsd saw it (payload
    /// `{"master": node id}`), finished at once.
    SwitchMaster,
    /// A planned switch of the master to a replica (API 3.0 ChangeReplicaToMaster).
    ChangeReplicaToMaster,
    /// A failure drill: the master is killed as a crash would (API 3.0 KillMasterGroup).
    KillMasterGroup,
}

impl TaskKind {
    pub const ALL: [TaskKind; 18] = [
        TaskKind::NewInstance,
        TaskKind::ResizeInstance,
        TaskKind::CloseInstance,
        TaskKind::CleanInstance,
        TaskKind::StartInstance,
        TaskKind::DeleteInstance,
        TaskKind::SetPassword,
        TaskKind::ImportRdb,
        TaskKind::ExportBackup,
        TaskKind::RestoreBackup,
        TaskKind::RestoreStream,
        TaskKind::BackupInstance,
        TaskKind::ModifyParams,
        TaskKind::ChangeReplicas,
        TaskKind::ChangeShards,
        TaskKind::SwitchMaster,
        TaskKind::ChangeReplicaToMaster,
        TaskKind::KillMasterGroup,
    ];

    /// The `taskName` GetRedisTaskList documents.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::NewInstance => "newInstance",
            TaskKind::ResizeInstance => "resizeInstance",
            TaskKind::CloseInstance => "closeInstance",
            TaskKind::CleanInstance => "cleanInstance",
            TaskKind::StartInstance => "startInstance",
            TaskKind::DeleteInstance => "deleteInstance",
            TaskKind::SetPassword => "setPassword",
            TaskKind::ImportRdb => "importRdb",
            TaskKind::ExportBackup => "exportBackup",
            TaskKind::RestoreBackup => "restoreBackup",
            TaskKind::RestoreStream => "restoreStream",
            TaskKind::BackupInstance => "backupInstance",
            TaskKind::ModifyParams => "modifyParams",
            TaskKind::ChangeReplicas => "changeReplicas",
            TaskKind::ChangeShards => "changeShards",
            TaskKind::SwitchMaster => "switchMaster",
            TaskKind::ChangeReplicaToMaster => "changeReplicaToMaster",
            TaskKind::KillMasterGroup => "killMasterGroup",
        }
    }

    pub fn from_name(name: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The `taskType.n` filter values: `task_` + name (`task_restoreBackup`, ...).
    pub fn from_type(t: &str) -> Option<TaskKind> {
        t.strip_prefix("task_").and_then(TaskKind::from_name)
    }
}

/// Task status as DescribeTaskInfo / GetRedisTaskList number it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    /// 0
    Pending,
    /// 1
    Running,
    /// 2
    Succeeded,
    /// 3: ended in a defined failure; what it changed was undone.
    Failed,
    /// -1: ended by an unexpected error.
    Error,
}

impl TaskStatus {
    pub fn code(self) -> i64 {
        match self {
            TaskStatus::Pending => 0,
            TaskStatus::Running => 1,
            TaskStatus::Succeeded => 2,
            TaskStatus::Failed => 3,
            TaskStatus::Error => -1,
        }
    }

    /// The status in one English word, for operators (`crsd task list`).
    pub fn word(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Error => "error",
        }
    }

    pub fn from_code(code: i64) -> Option<TaskStatus> {
        Some(match code {
            0 => TaskStatus::Pending,
            1 => TaskStatus::Running,
            2 => TaskStatus::Succeeded,
            3 => TaskStatus::Failed,
            -1 => TaskStatus::Error,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Error
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i64,
    pub app_id: i64,
    pub kind: TaskKind,
    pub instance_id: Option<String>,
    pub deal_id: Option<i64>,
    pub status: TaskStatus,
    /// The last step that completed; steps are idempotent, a resumed task starts after it.
    pub step: i64,
    pub payload: serde_json::Value,
    /// What the tenant sees of a failure: a summary, never a server path or internal error.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set once the task failed: the status it ends with when its undo succeeds (the steps
    /// no longer run; a resumed task goes on undoing).
    pub undo: Option<TaskStatus>,
    /// Undo attempts that failed so far.
    pub undo_attempts: i64,
    /// The runner leaves the task alone until then (the backoff between undo attempts).
    pub retry_at: Option<DateTime<Utc>>,
    /// The operator's account of a failure (internal errors, paths); never sent to a tenant.
    pub detail: Option<String>,
}

/// A task row joined with what GetRedisTaskList shows of its instance.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub task: Task,
    pub instance_name: String,
    pub project_id: i64,
}

/// Who asked for a backup: the `backupType` GetRedisBackupList shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackupKind {
    /// ManualBackupInstance.
    Manual,
    /// The daily automatic backup.
    System,
}

impl BackupKind {
    pub fn name(self) -> &'static str {
        match self {
            BackupKind::Manual => "manualBackupInstance",
            BackupKind::System => "systemBackupInstance",
        }
    }

    pub fn from_name(name: &str) -> Option<BackupKind> {
        match name {
            "manualBackupInstance" => Some(BackupKind::Manual),
            "systemBackupInstance" => Some(BackupKind::System),
            _ => None,
        }
    }
}

/// Where a backup is in its life. A backup gets a record only once its file is whole in the
/// backup store (the backup task writes the record and finishes in one transaction), so
/// there is no "being taken" state and a listed backup is always a complete file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackupState {
    /// Usable: restorable and downloadable.
    Normal,
    /// Older than the retention: the file is gone, the record stays listed as expired.
    Expired,
    /// Being exported (cluster instances).
    Exporting,
    /// Exported (cluster instances): downloadable.
    Exported,
}

impl BackupState {
    pub fn code(self) -> i64 {
        match self {
            BackupState::Normal => 2,
            BackupState::Expired => -1,
            BackupState::Exporting => 3,
            BackupState::Exported => 4,
        }
    }

    /// The state in one English word, for operators (`crsd backup list`).
    pub fn word(self) -> &'static str {
        match self {
            BackupState::Normal => "normal",
            BackupState::Expired => "expired",
            BackupState::Exporting => "exporting",
            BackupState::Exported => "exported",
        }
    }

    pub fn from_code(code: i64) -> Option<BackupState> {
        Some(match code {
            2 => BackupState::Normal,
            -1 => BackupState::Expired,
            3 => BackupState::Exporting,
            4 => BackupState::Exported,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// A UUID.
    pub id: String,
    pub app_id: i64,
    pub instance_id: String,
    pub kind: BackupKind,
    pub remark: String,
    pub state: BackupState,
    /// The task that uses the backup (a restore), if any: the backup shows as locked.
    pub lock_task: Option<i64>,
    /// Bytes of the RDB file.
    pub size: u64,
    /// Lowercase hex SHA-256 of the RDB file, checked before every restore.
    pub sha256: String,
    /// When the backup task began: `startTime`, and what the time filters compare.
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// A cluster's backup: one RDB per shard (`size` is then their sum and `sha256` empty);
    /// empty for a standard instance's one file.
    pub shards: Vec<BackupShard>,
}

/// One stored file of a backup (see [`Backup::files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// The shard it holds; `None` for a standard instance's backup.
    pub shard: Option<i64>,
    /// Its name in the backup store and in download links.
    pub file_id: String,
    pub size: u64,
    pub sha256: String,
}

/// One shard's RDB of a cluster's backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupShard {
    pub shard: i64,
    /// The slots the shard served when the backup was taken (`first-last`, `,`-joined): a
    /// restore puts the file back only where the same slots are served.
    pub slots: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the file, checked before every restore.
    pub sha256: String,
}

impl Backup {
    /// The name of the stored file of `shard` (`None`: a standard backup's one file), also
    /// what a download link names: `<backup id>-s<shard>`.
    pub fn file_id(&self, shard: Option<i64>) -> String {
        match shard {
            Some(s) => format!("{}-s{s}", self.id),
            None => self.id.clone(),
        }
    }

    /// The backup's files: a cluster's one per shard, a standard instance's one.
    pub fn files(&self) -> Vec<BackupFile> {
        if self.shards.is_empty() {
            return vec![BackupFile {
                shard: None,
                file_id: self.id.clone(),
                size: self.size,
                sha256: self.sha256.clone(),
            }];
        }
        self.shards
            .iter()
            .map(|s| BackupFile {
                shard: Some(s.shard),
                file_id: self.file_id(Some(s.shard)),
                size: s.size,
                sha256: s.sha256.clone(),
            })
            .collect()
    }

    /// A file id's backup id and shard ([`Backup::file_id`] read back).
    pub fn parse_file_id(file_id: &str) -> (&str, Option<i64>) {
        if let Some((id, shard)) = file_id.rsplit_once("-s") {
            if let Ok(n) = shard.parse::<i64>() {
                if !shard.starts_with('+') && !shard.starts_with('-') {
                    return (id, Some(n));
                }
            }
        }
        (file_id, None)
    }

    /// The `status` GetRedisBackupList documents: 1 locked by another task, 2 normal,
    /// -1 expired, 3 being exported, 4 exported.
    pub fn status_code(&self) -> i64 {
        if self.lock_task.is_some() && self.state == BackupState::Normal {
            1
        } else {
            self.state.code()
        }
    }

    /// The `locked` flag: 1 while a task holds the backup.
    pub fn locked(&self) -> i64 {
        i64::from(self.lock_task.is_some())
    }
}

/// One node's figures for one sampling interval, in the history crsd keeps itself (see the
/// service's `history` module), so monitoring needs nothing beside crsd.
///
/// Gauges are as the node reported them. What redis only ever counts up (commands, hits and
/// misses, expired and evicted keys, network bytes, CPU time) is kept as what it grew by since
/// the node's previous sample, over `span_ms` of real time; in a node's first sample (after
/// crsd started or the node restarted) those deltas are 0, `span_ms` is 0, and the rates are
/// redis's own instantaneous ones.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    pub node_id: String,
    pub instance_id: String,
    /// When it was taken, by the service's clock, in whole seconds.
    pub at: DateTime<Utc>,
    /// The role the node reported (which may differ from the one the database wants).
    pub role: NodeRole,
    /// Real time the deltas cover, in milliseconds (0 in a node's first sample).
    pub span_ms: i64,
    /// `used_memory`, bytes.
    pub used_memory: i64,
    /// Commands processed per second over the span.
    pub ops_per_sec: f64,
    /// `connected_clients`.
    pub connections: i64,
    /// Key lookups that found their key, over the span.
    pub keyspace_hits: i64,
    /// Key lookups that did not, over the span.
    pub keyspace_misses: i64,
    /// Network bytes per second received and sent over the span.
    pub net_in_bps: f64,
    pub net_out_bps: f64,
    /// Keys in all databases.
    pub keys: i64,
    /// Keys removed by their TTL over the span.
    pub expired_keys: i64,
    /// Keys removed by the memory policy over the span.
    pub evicted_keys: i64,
    /// For a replica: how many bytes of its master's replication stream it has not applied
    /// (the master's offset in the same round minus its own); `None` for a master, or when
    /// the master did not answer.
    pub repl_lag_bytes: Option<i64>,
    /// CPU seconds (system and user) the redis-server process used over the span; its forks
    /// (BGSAVE, AOF rewrite) are not counted.
    pub cpu_secs: f64,
}

/// A node's command counters as they stood at `at` (redis counts them since the process
/// started), kept so that what happened over a span is the live counters minus an earlier
/// snapshot of the same process (see the service's `monitor` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSnapshot {
    pub node_id: String,
    pub instance_id: String,
    /// When it was taken, by the service's clock, in whole seconds.
    pub at: DateTime<Utc>,
    /// The process the counters belong to (`run_id`).
    pub run_id: String,
    /// By command name (`set`, `client|list`).
    pub commands: std::collections::BTreeMap<String, CommandCount>,
}

/// One command's counters in a [`CommandSnapshot`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCount {
    pub calls: u64,
    /// Time spent running it, microseconds.
    pub usec: u64,
    /// Calls that ran within each bound of the monitoring latency ladder, cumulative (see
    /// the service's `monitor` module).
    pub within: Vec<u64>,
}

impl NodeSample {
    /// Hits over lookups in the span; `None` without lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        let lookups = self.keyspace_hits + self.keyspace_misses;
        (lookups > 0).then(|| self.keyspace_hits as f64 / lookups as f64)
    }

    /// CPU use over the span, in percent of one core; `None` in a first sample.
    pub fn cpu_percent(&self) -> Option<f64> {
        (self.span_ms > 0).then(|| self.cpu_secs * 100_000.0 / self.span_ms as f64)
    }
}
