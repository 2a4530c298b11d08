//! API 3.0 handlers of an instance's description, name, project, auto-renew flag, password
//! and data: DescribeInstances (every field of the model's `InstanceSet`), ModifyInstance,
//! ModifyInstancePassword, ResetPassword, ClearInstance.

use super::{fields, no_auth, time_in, Fields, API3_CLUSTER_7_0, API3_STANDARD_7_0};
use crate::tc3::params::Params3;
use crate::AppState;
use chrono::{DateTime, Utc};
use crsd_core::catalog::{CLUSTER_TYPE_ID, REDIS_VERSION};
use crsd_core::model::{BillingMode, Instance};
use crsd_core::rules::PasswordPolicy;
use crsd_core::spec::Spec;
use crsd_core::{timefmt, Error, Result};
use crsd_service::DescribeQuery;
use serde_json::{json, Map, Value};

/// DescribeInstances.
pub(super) async fn describe_instances(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let time = time_in(svc.time_zone());
    let q = DescribeQuery {
        limit: p.int_or("Limit", 20)?,
        offset: p.int_or("Offset", 0)?,
        redis_id: p.str("InstanceId")?,
        redis_name: p.str("SearchKey")?.or(p.str("InstanceName")?),
        order_by: p.str("OrderBy")?,
        order_type: p.int("OrderType")?,
        project_ids: p.int_list("ProjectIds")?,
        // The instances of the region the request names, as that region's endpoint lists.
        zone_ids: svc.zones_in_region(p.region())?.unwrap_or_default(),
        ..Default::default()
    };
    let (total, views) = svc.describe(app, q).await?;
    let set: Vec<Value> = views
        .iter()
        .map(|v| {
            let region = svc
                .catalog()
                .zone(v.instance.zone_id)
                .map(|z| z.region_code())
                .unwrap_or_default();
            instance_set(&v.instance, v.size_used_mb, &region, &time)
        })
        .collect();
    Ok(fields([
        ("TotalCount", json!(total)),
        ("InstanceSet", json!(set)),
    ]))
}

/// ModifyInstance.
pub(super) async fn modify_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let op = p.required_str("Operation")?;
    let mut ids = p.str_list("InstanceIds")?;
    if ids.is_empty() {
        ids.extend(p.str("InstanceId")?);
    }
    if ids.is_empty() {
        return Err(Error::MissingParameter("InstanceIds".into()));
    }
    match op.as_str() {
        "rename" => {
            let mut names = p.str_list("InstanceNames")?;
            if names.is_empty() {
                names.extend(p.str("InstanceName")?);
            }
            if names.len() != ids.len() {
                return Err(Error::invalid(
                    "InstanceNames",
                    "must pair with InstanceIds by index",
                ));
            }
            let pairs: Vec<(String, String)> = ids
                .iter()
                .cloned()
                .zip(names.iter().map(|n| n.trim_end().to_string()))
                .collect();
            svc.rename_all(app, &pairs).await?;
        }
        "modifyProject" => {
            svc.modify_project(app, &ids, p.required_int("ProjectId")?)
                .await?;
        }
        "modifyAutoRenew" => {
            let mut flags = p.int_list("AutoRenews")?;
            if flags.is_empty() {
                flags.extend(p.int("AutoRenew")?);
            }
            if flags.len() == 1 && ids.len() > 1 {
                flags = vec![flags[0]; ids.len()];
            }
            if flags.len() != ids.len() {
                return Err(Error::invalid(
                    "AutoRenews",
                    "must pair with InstanceIds by index",
                ));
            }
            let pairs: Vec<(String, i64)> = ids.iter().cloned().zip(flags).collect();
            svc.set_auto_renews(app, &pairs).await?;
        }
        other => {
            return Err(Error::invalid(
                "Operation",
                format!("{other} is not rename, modifyProject or modifyAutoRenew"),
            ))
        }
    }
    Ok(Map::new())
}

/// ModifyInstancePassword.
pub(super) async fn modify_instance_password(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let old = p.str("OldPassword")?.unwrap_or_default();
    let new = p.str("Password")?.unwrap_or_default();
    let task = svc
        .modify_password(app, &id, &old, &new, PasswordPolicy::Api3)
        .await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// ResetPassword.
pub(super) async fn reset_password(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let password = p.str("Password")?.unwrap_or_default();
    let new = (!no_auth(p)?).then_some(password.as_str());
    let task = svc
        .reset_password(app, &id, new, PasswordPolicy::Api3)
        .await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// ClearInstance.
pub(super) async fn clear_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let task = svc
        .clear(app, &id, &p.str("Password")?.unwrap_or_default())
        .await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// ChangeReplicaToMaster: a planned switch to the replica of `GroupId` (a replica group of
/// DescribeInstanceZoneInfo), or to one Sentinel picks. `Emergency` asks for a switch even
/// when the master cannot pause its writes; crsd's switch always pauses them, so it is read
/// and otherwise ignored.
pub(super) async fn change_replica_to_master(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let id = p.required_str("InstanceId")?;
    let group = p.int("GroupId")?;
    let task = state.svc.change_replica_to_master(app, &id, group).await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// KillMasterGroup: a failure drill (the master killed as a crash would). `Password` is
/// checked as for ClearInstance; `ShardIds` names shards of a cluster instance (a standard
/// instance has one).
pub(super) async fn kill_master_group(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let id = p.required_str("InstanceId")?;
    let task = state
        .svc
        .kill_master_group(
            app,
            &id,
            &p.str("Password")?.unwrap_or_default(),
            &p.int_list("ShardIds")?,
        )
        .await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// One `InstanceSet` entry with every field of the model (61), because typed clients (the Go
/// SDK, Terraform's provider) read them all: what crsd knows has its true value; what it has no
/// such thing for (tags, proxies, bandwidth, multi-zone nodes, CDC clusters) the model's empty
/// value (`""`, `0`, `[]`).
pub(super) fn instance_set(
    i: &Instance,
    size_used_mb: i64,
    region: &str,
    time: &dyn Fn(DateTime<Utc>) -> String,
) -> Value {
    let mut v = instance_known(i, size_used_mb, time);
    let no_auth = !i.has_password();
    let extra = json!({
        // An isolated instance stays until CleanUpInstance: no set offline time.
        "OfflineTime": timefmt::NO_TIME,
        "CloseTime": timefmt::NO_TIME,
        "Tags": [],
        "InstanceTags": [],
        "InstanceNode": [],
        // Only multi-zone instances list their nodes here.
        "NodeSet": [],
        "PriceId": 0,
        "SlaveReadWeight": 0,
        "ProjectName": "",
        // redis-server's default maxclients, which crsd does not change.
        "ClientLimit": REDIS_MAXCLIENTS,
        "ClientLimitMin": REDIS_MAXCLIENTS,
        "ClientLimitMax": REDIS_MAXCLIENTS,
        "DtsStatus": 0,
        "NetLimit": 0,
        "PasswordFree": i64::from(no_auth),
        "Vip6": "",
        "IPv6": "",
        "ReadOnly": 0,
        "RemainBandwidthDuration": "",
        "DiskSize": 0,
        "MonitorVersion": "",
        "Region": region,
        "WanAddress": "",
        "PolarisServer": "",
        "RedisClusterId": "",
        "DedicatedClusterId": "",
        // Data on the host's own disk.
        "ProductVersion": "local",
        "CurrentProxyVersion": "",
        "UpgradeProxyVersion": "",
        "UpgradeRedisVersion": "",
        "BackupMode": "NormalLevelBackup",
    });
    if let (Value::Object(known), Value::Object(extra)) = (&mut v, extra) {
        known.extend(extra);
    }
    v
}

/// redis-server's `maxclients` (its default; crsd leaves it).
pub(super) const REDIS_MAXCLIENTS: i64 = 10000;

/// The `InstanceSet` fields that come from the instance.
pub(super) fn instance_known(
    i: &Instance,
    size_used_mb: i64,
    time: &dyn Fn(DateTime<Utc>) -> String,
) -> Value {
    json!({
        "InstanceName": i.name,
        "InstanceId": i.id,
        "Appid": i.app_id,
        "ProjectId": i.project_id,
        "RegionId": i.region_id,
        "ZoneId": i.zone_id,
        "VpcId": i.vpc_id,
        "SubnetId": i.subnet_id,
        "Status": i.status.code(),
        "WanIp": i.vip,
        "Port": i.port(),
        "Createtime": time(i.created_at),
        "Size": Spec::of(i).total_mem_mb() as f64,
        "SizeUsed": size_used_mb as f64,
        "Type": if i.type_id == CLUSTER_TYPE_ID { API3_CLUSTER_7_0 } else { API3_STANDARD_7_0 },
        "AutoRenewFlag": i.auto_renew,
        // A postpaid instance has no deadline; the console shows this zero time.
        "DeadlineTime": match i.billing {
            BillingMode::Prepaid => time(i.deadline),
            BillingMode::Postpaid => timefmt::NO_TIME.to_string(),
        },
        "Engine": "Redis",
        "ProductType": if i.type_id == CLUSTER_TYPE_ID { "cluster" } else { "standalone" },
        "UniqVpcId": i.un_vpc_id,
        "UniqSubnetId": i.un_subnet_id,
        "BillingMode": i.billing.code(),
        "InstanceTitle": i.status.description(),
        "SubStatus": 0,
        "RedisShardSize": i.mem_mb,
        "RedisShardNum": Spec::of(i).shards,
        "RedisReplicasNum": Spec::of(i).replicas,
        "NoAuth": !i.has_password(),
        "CurrentRedisVersion": REDIS_VERSION,
        "DeleteProtectionSwitch": 0,
    })
}
