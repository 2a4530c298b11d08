//! What an instance's owner may look at inside it: the slow log and the nodes.

use crate::Service;
use chrono::{DateTime, TimeZone, Utc};
use crsd_core::model::NodeRole;
use crsd_core::model::TaskKind;
use crsd_core::params::{self, ParamDef};
use crsd_core::{Error, Field, Result};
use crsd_engine::SlowlogEntry;

/// The most slow-log entries read from a node (redis keeps 128 by default).
const SLOWLOG_READ: usize = 1024;

/// DescribeSlowLog, parsed.
#[derive(Debug, Clone, Default)]
pub struct SlowLogQuery {
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    /// Only entries that took at least this long, milliseconds.
    pub min_ms: i64,
    /// The replica's log instead of the master's.
    pub replica: bool,
    pub limit: i64,
    pub offset: i64,
}

/// One slow command.
#[derive(Debug, Clone)]
pub struct SlowCommand {
    pub at: DateTime<Utc>,
    pub entry: SlowlogEntry,
    /// `master` or `replica`.
    pub node: &'static str,
}

/// A node of an instance, for DescribeInstanceNodeInfo and DescribeInstanceZoneInfo.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub role: NodeRole,
    pub zone_id: i64,
    /// The node's replica group (a standard instance has one group per node): its sequence
    /// number, stable for the node's life.
    pub group_id: i64,
    /// The shard the node serves.
    pub shard: i64,
}

/// A node as DescribeInstanceZoneInfo shows it: what the database says and what the node
/// answers now.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: NodeInfo,
    /// Whether the node answered (`INFO`) just now.
    pub online: bool,
    /// Keys it holds (0 when it did not answer).
    pub keys: u64,
    /// The hash slots the node serves, as `first-last` ranges joined by `,` (a standard
    /// instance's master: all of them; a cluster's: its shard's, as the cluster says now;
    /// a cluster replica: none).
    pub slots: String,
    /// Master now, as the node says (a cluster's or Sentinel's failover may be ahead of the
    /// database); the database's role when it did not answer.
    pub master_now: bool,
    /// `used_memory` in bytes (0 when it did not answer).
    pub used_memory: u64,
    /// `run_id` of its process (empty when it did not answer).
    pub run_id: String,
}

impl Service {
    /// The instance's slow commands, newest first, filtered and paged.
    pub async fn slow_log(
        &self,
        app_id: i64,
        id: &str,
        q: SlowLogQuery,
    ) -> Result<(i64, Vec<SlowCommand>)> {
        if q.limit < 0 || q.offset < 0 || q.min_ms < 0 {
            return Err(Error::invalid(
                "Limit",
                "Limit, Offset and MinQueryTime must not be negative",
            ));
        }
        let inst = self.owned_instance(app_id, id).await?;
        let begin = self.parse_time(Field::BeginTime, &q.begin_time)?;
        let end = self.parse_end_time(Field::EndTime, &q.end_time)?;
        let (spec, node) = match inst.replicas().next() {
            Some(replica) if q.replica => (self.node_spec(&inst, replica), "replica"),
            _ => (self.master_spec(&inst)?, "master"),
        };
        let entries = self
            .runtime
            .slowlog(&spec, SLOWLOG_READ)
            .await
            .map_err(crate::steps::engine_err)?;
        let hits: Vec<SlowCommand> = entries
            .into_iter()
            .filter_map(|e| {
                let at = Utc.timestamp_opt(e.at_unix, 0).single()?;
                Some(SlowCommand { at, entry: e, node })
            })
            .filter(|c| c.entry.micros >= q.min_ms * 1000)
            .filter(|c| begin.is_none_or(|b| c.at >= b))
            .filter(|c| end.is_none_or(|e| c.at <= e))
            .collect();
        Ok(crate::page::cut(hits, q.offset, q.limit))
    }

    /// Every parameter users may set, with the instance's current value.
    pub async fn instance_params(
        &self,
        app_id: i64,
        id: &str,
    ) -> Result<Vec<(&'static ParamDef, String)>> {
        let inst = self.owned_instance(app_id, id).await?;
        Ok(params::PARAMS
            .iter()
            .map(|d| (d, params::current(&inst.params, d.name).unwrap_or_default()))
            .collect())
    }

    /// ModifyInstanceParams: checks every pair against the allow-list, then a modifyParams
    /// task applies the changed ones live and keeps them (redis.conf and the instance
    /// record). `(false, None)` when nothing changes.
    pub async fn modify_params(
        &self,
        app_id: i64,
        id: &str,
        pairs: &[(String, String)],
    ) -> Result<(bool, Option<i64>)> {
        if pairs.is_empty() {
            return Err(Error::MissingParameter("InstanceParams".into()));
        }
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        let mut changes = serde_json::Map::new();
        for (name, value) in pairs {
            params::check(name, value)?;
            let current = params::current(&inst.params, name);
            if current.as_deref() != Some(value.as_str()) {
                changes.insert(name.clone(), serde_json::Value::from(value.clone()));
            }
        }
        if changes.is_empty() {
            return Ok((false, None));
        }
        crate::instances::check_idle(&inst)?;
        let task = self
            .start_task(
                tx,
                &mut inst,
                TaskKind::ModifyParams,
                serde_json::json!({ "params": changes }),
            )
            .await?;
        Ok((true, Some(task)))
    }

    /// The instance's redis-server nodes: its master, then its replicas.
    pub async fn nodes(&self, app_id: i64, id: &str) -> Result<Vec<NodeInfo>> {
        let inst = self.owned_instance(app_id, id).await?;
        let mut nodes: Vec<NodeInfo> = inst
            .nodes
            .iter()
            .map(|n| NodeInfo {
                node_id: n.id.clone(),
                role: n.role,
                zone_id: inst.zone_id,
                group_id: n.seq,
                shard: n.shard,
            })
            .collect();
        nodes.sort_by_key(|n| (n.role != NodeRole::Master, n.group_id));
        Ok(nodes)
    }
}

impl Service {
    /// Every node of the instance with its state now: the master first, then the replicas.
    /// Nodes are asked at once, each bounded, so a hung node costs one timeout, not one each.
    pub async fn node_states(&self, app_id: i64, id: &str) -> Result<Vec<NodeState>> {
        let nodes = self.nodes(app_id, id).await?;
        let inst = self.owned_instance(app_id, id).await?;
        let asks: Vec<_> = nodes
            .iter()
            .map(|n| {
                let spec = inst
                    .nodes
                    .iter()
                    .find(|m| m.id == n.node_id)
                    .map(|m| self.node_spec(&inst, m));
                let runtime = self.runtime.clone();
                tokio::spawn(async move {
                    let spec = spec?;
                    tokio::time::timeout(NODE_ASK_TIMEOUT, runtime.stats(&spec))
                        .await
                        .ok()?
                        .ok()
                })
            })
            .collect();
        // A cluster's slots are the cluster's to say: asked of its first node that answers.
        let mut view = None;
        if inst.is_cluster() {
            for spec in self.node_specs(&inst) {
                let ask = tokio::time::timeout(NODE_ASK_TIMEOUT, self.runtime.cluster_view(&spec));
                if let Ok(Ok(v)) = ask.await {
                    view = Some(v);
                    break;
                }
            }
        }
        let mut states = Vec::with_capacity(nodes.len());
        for (node, ask) in nodes.into_iter().zip(asks) {
            let stats = ask.await.ok().flatten();
            let master_now = stats
                .as_ref()
                .map_or(node.role == NodeRole::Master, |s| s.is_master);
            let slots = match &view {
                Some(v) => inst
                    .nodes
                    .iter()
                    .find(|m| m.id == node.node_id)
                    .and_then(|m| v.at(&self.node_host(m), m.port))
                    .map(|n| n.slots_text())
                    .unwrap_or_default(),
                None if inst.is_cluster() => String::new(),
                None => format!("0-{}", HASH_SLOTS - 1),
            };
            states.push(NodeState {
                slots,
                online: stats.is_some(),
                keys: stats.as_ref().map(|s| s.keys).unwrap_or(0),
                used_memory: stats.as_ref().map(|s| s.used_memory).unwrap_or(0),
                run_id: stats.map(|s| s.run_id).unwrap_or_default(),
                master_now,
                node,
            });
        }
        Ok(states)
    }
}

/// Redis' hash slots; a standard instance's one shard serves them all.
const HASH_SLOTS: u32 = 16384;

/// How long DescribeInstanceZoneInfo waits for one node.
const NODE_ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
