//! API 3.0 handlers that look inside a running instance: DescribeSlowLog,
//! DescribeInstanceNodeInfo and DescribeInstanceZoneInfo.

use super::{fields, time_in, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::model::NodeRole;
use crsd_core::{Error, Result};
use crsd_service::SlowLogQuery;
use serde_json::{json, Value};

/// DescribeSlowLog.
pub(super) async fn describe_slow_log(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let time = time_in(svc.time_zone());
    let id = p.required_str("InstanceId")?;
    let role = p.str("Role")?.unwrap_or_else(|| "master".into());
    let replica = match role.as_str() {
        "" | "master" => false,
        "slave" | "replica" => true,
        other => {
            return Err(Error::invalid(
                "Role",
                format!("{other} is not master or slave"),
            ))
        }
    };
    let q = SlowLogQuery {
        begin_time: p.str("BeginTime")?,
        end_time: p.str("EndTime")?,
        min_ms: p.int_or("MinQueryTime", 0)?,
        replica,
        limit: p.int_or("Limit", 20)?,
        offset: p.int_or("Offset", 0)?,
    };
    let (total, list) = svc.slow_log(app, &id, q).await?;
    let details: Vec<Value> = list
        .iter()
        .map(|c| {
            json!({
                "Duration": c.entry.micros / 1000,
                "Client": c.entry.client.split(':').next().unwrap_or_default(),
                "Command": c.entry.args.first().cloned().unwrap_or_default(),
                "CommandLine": c.entry.args.join(" "),
                "ExecuteTime": time(c.at),
                "Node": c.node,
            })
        })
        .collect();
    Ok(fields([
        ("TotalCount", json!(total)),
        ("InstanceSlowlogDetail", json!(details)),
        ("InstanceSlowLogDetail", json!(details)),
    ]))
}

/// DescribeInstanceNodeInfo.
pub(super) async fn describe_instance_node_info(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let nodes = svc.nodes(app, &p.required_str("InstanceId")?).await?;
    let redis: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "NodeId": n.node_id,
                "NodeRole": match n.role { NodeRole::Master => "master", NodeRole::Replica => "slave" },
                "ClusterId": n.shard,
                "ZoneId": n.zone_id,
            })
        })
        .collect();
    Ok(fields([
        ("ProxyCount", json!(0)),
        ("Proxy", json!([])),
        ("RedisCount", json!(redis.len())),
        ("Redis", json!(redis)),
        ("TendisCount", json!(0)),
        ("Tendis", json!([])),
    ]))
}

/// DescribeInstanceShards: every node of every shard as it answers now (a standard
/// instance is one shard); `FilterSlave` leaves the replicas out.
pub(super) async fn describe_instance_shards(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let filter_slave = super::flag(p, "FilterSlave")?;
    let states = svc.node_states(app, &p.required_str("InstanceId")?).await?;
    let shards: Vec<Value> = states
        .iter()
        .filter(|s| s.master_now || !filter_slave)
        .map(|s| {
            json!({
                "ShardName": format!("shard-{}", s.node.shard),
                "ShardId": s.node.shard.to_string(),
                "Role": if s.master_now { 0 } else { 1 },
                "Keys": s.keys,
                "Slots": s.slots,
                "Storage": s.used_memory / (1024 * 1024),
                "StorageSlope": 0.0,
                "Runid": s.run_id,
                "RunId": s.run_id,
                "Connected": i64::from(s.online),
            })
        })
        .collect();
    Ok(fields([
        ("TotalCount", json!(shards.len())),
        ("InstanceShards", json!(shards)),
    ]))
}

/// DescribeInstanceZoneInfo: one replica group per node of a standard instance (the master's
/// group has no name), each with its node as it answers now.
pub(super) async fn describe_instance_zone_info(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let states = svc.node_states(app, &p.required_str("InstanceId")?).await?;
    let groups: Vec<Value> = states
        .iter()
        .map(|s| {
            let role = match s.node.role {
                NodeRole::Master => "master",
                NodeRole::Replica => "replica",
            };
            json!({
                "GroupId": s.node.group_id,
                "GroupName": match s.node.role {
                    NodeRole::Master => String::new(),
                    NodeRole::Replica => format!("replica-{}", s.node.group_id),
                },
                "ZoneId": s.node.zone_id.to_string(),
                "Role": role,
                "RedisNodes": [{
                    "Keys": s.keys,
                    "Slot": s.slots,
                    "NodeId": s.node.node_id,
                    "Status": if s.online { "online" } else { "offline" },
                    "Role": role,
                }],
            })
        })
        .collect();
    Ok(fields([
        ("TotalCount", json!(groups.len())),
        ("ReplicaGroups", json!(groups)),
    ]))
}
