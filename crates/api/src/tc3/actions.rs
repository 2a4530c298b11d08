//! One small handler per API 3.0 action: read the model's request fields, call one service
//! function, shape the model's response fields (tencentcloud-sdk-python-redis 3.1.189,
//! `tencentcloud/redis/v20180412/models.py`). Where seed 002's sample says `RedisBackupSet`,
//! the model's `BackupSet` is used (the SDKs read that name).

use super::params::Params3;
use crate::AppState;
use chrono::{DateTime, Utc};
use crsd_core::catalog::{CLUSTER_TYPE_ID, MASTER_REPLICA_TYPE_ID, REDIS_VERSION};
use crsd_core::model::{BackupKind, BillingMode, Instance, NodeRole, TaskKind, TaskStatus};
use crsd_core::params::ParamKind;
use crsd_core::rules::{self, PasswordPolicy};
use crsd_core::spec::{Spec, SpecRequest};
use crsd_core::{timefmt, Error, Result};
use crsd_service::{BackupQuery, CreateOrder, DescribeQuery, SlowLogQuery, TaskQuery};
use serde_json::{json, Map, Value};

/// Every action of the redis 2018-04-12 model (RedisClient). This version carries out
/// DescribeInstances, DescribeInstanceBackups, ManualBackupInstance, DescribeBackupUrl,
/// RestoreInstance, DescribeTaskInfo, DescribeTaskList, ClearInstance, ModifyInstance,
/// ModifyInstancePassword (and ModfiyInstancePassword), ResetPassword, RenewInstance,
/// UpgradeInstance, DescribeProductInfo, InquiryPriceCreateInstance, CreateInstances,
/// DestroyPrepaidInstance, DestroyPostpaidInstance, StartupInstance, CleanUpInstance,
/// InquiryPriceRenewInstance, InquiryPriceUpgradeInstance, DescribeInstanceDealDetail, DescribeAutoBackupConfig,
/// ModifyAutoBackupConfig, DescribeSlowLog, DescribeInstanceNodeInfo, DescribeInstanceParams
/// and ModifyInstanceParams (see `dispatch`); the others answer
/// UnsupportedOperation naming themselves, and a name outside the model is InvalidAction.
/// Whether an action of the model only reads, so that a request with a used signature may be
/// answered (see `guard`). The model names such actions Describe* or InquiryPrice*;
/// DescribeBackupUrl is not one: it mints download links.
pub fn reads_only(action: &str) -> bool {
    (action.starts_with("Describe") || action.starts_with("InquiryPrice"))
        && action != "DescribeBackupUrl"
}

pub const MODEL: &[&str] = &[
    "AddReplicationInstance",
    "AllocateWanAddress",
    "ApplyParamsTemplate",
    "AssociateSecurityGroups",
    "ChangeInstanceRole",
    "ChangeMasterInstance",
    "ChangeReplicaToMaster",
    "CleanUpInstance",
    "ClearInstance",
    "CloneInstances",
    "CloseLog",
    "CloseSSL",
    "CreateExportTask",
    "CreateInstanceAccount",
    "CreateInstances",
    "CreateParamTemplate",
    "CreateReplicationGroup",
    "DeleteExportTask",
    "DeleteInstanceAccount",
    "DeleteParamTemplate",
    "DeleteReplicationInstance",
    "DescribeAutoBackupConfig",
    "DescribeBackupDetail",
    "DescribeBackupDownloadRestriction",
    "DescribeBackupEncryptConfig",
    "DescribeBackupUrl",
    "DescribeBandwidthRange",
    "DescribeCommonDBInstances",
    "DescribeDBSecurityGroups",
    "DescribeExportTasks",
    "DescribeGlobalReplicationArea",
    "DescribeInstanceAccount",
    "DescribeInstanceBackups",
    "DescribeInstanceDTSInfo",
    "DescribeInstanceDealDetail",
    "DescribeInstanceEvents",
    "DescribeInstanceLogDelivery",
    "DescribeInstanceMonitorBigKey",
    "DescribeInstanceMonitorBigKeySizeDist",
    "DescribeInstanceMonitorBigKeyTypeDist",
    "DescribeInstanceMonitorHotKey",
    "DescribeInstanceMonitorSIP",
    "DescribeInstanceMonitorTookDist",
    "DescribeInstanceMonitorTopNCmd",
    "DescribeInstanceMonitorTopNCmdTook",
    "DescribeInstanceNodeInfo",
    "DescribeInstanceParamRecords",
    "DescribeInstanceParams",
    "DescribeInstancePasswordPolicy",
    "DescribeInstanceSecurityGroup",
    "DescribeInstanceShards",
    "DescribeInstanceSpecBandwidth",
    "DescribeInstanceSupportFeature",
    "DescribeInstanceZoneInfo",
    "DescribeInstances",
    "DescribeLogInstanceList",
    "DescribeLogs",
    "DescribeMaintenanceWindow",
    "DescribeParamTemplateInfo",
    "DescribeParamTemplates",
    "DescribeProductInfo",
    "DescribeProjectSecurityGroup",
    "DescribeProjectSecurityGroups",
    "DescribeProxySlowLog",
    "DescribeRedisClusterOverview",
    "DescribeRedisClusters",
    "DescribeReplicationGroup",
    "DescribeReplicationGroupInstance",
    "DescribeSSLStatus",
    "DescribeSecondLevelBackupInfo",
    "DescribeSlowLog",
    "DescribeTaskInfo",
    "DescribeTaskList",
    "DescribeTendisSlowLog",
    "DestroyPostpaidInstance",
    "DestroyPrepaidInstance",
    "DisableReplicaReadonly",
    "DisassociateSecurityGroups",
    "EnableReplicaReadonly",
    "InquiryPriceCreateInstance",
    "InquiryPriceRenewInstance",
    "InquiryPriceUpgradeInstance",
    "KillMasterGroup",
    "ManualBackupInstance",
    "ModfiyInstancePassword",
    "ModifyAutoBackupConfig",
    "ModifyBackupDownloadRestriction",
    "ModifyBackupEncrypt",
    "ModifyConnectionConfig",
    "ModifyDBInstanceSecurityGroups",
    "ModifyInstance",
    "ModifyInstanceAccount",
    "ModifyInstanceAvailabilityZones",
    "ModifyInstanceBackupMode",
    "ModifyInstanceChargeType",
    "ModifyInstanceEvent",
    "ModifyInstanceLogDelivery",
    "ModifyInstanceParams",
    "ModifyInstancePassword",
    "ModifyInstancePasswordPolicy",
    "ModifyInstanceReadOnly",
    "ModifyLog",
    "ModifyMaintenanceWindow",
    "ModifyNetworkConfig",
    "ModifyParamTemplate",
    "ModifyReplicationGroup",
    "OpenLog",
    "OpenSSL",
    "ReleaseWanAddress",
    "RemoveReplicationGroup",
    "RemoveReplicationInstance",
    "RenewInstance",
    "ResetPassword",
    "RestoreInstance",
    "StartupInstance",
    "SwitchAccessNewInstance",
    "SwitchInstanceVip",
    "SwitchProxy",
    "UpgradeInstance",
    "UpgradeInstanceProductVersion",
    "UpgradeInstanceVersion",
    "UpgradeProxyVersion",
    "UpgradeSmallVersion",
    "UpgradeVersionToMultiAvailabilityZones",
];

pub async fn dispatch(
    state: &AppState,
    app: i64,
    action: &str,
    p: &Params3,
) -> Result<Map<String, Value>> {
    let svc = &state.svc;
    let tz = svc.time_zone();
    let time = |t: DateTime<Utc>| timefmt::format(t, tz);
    match action {
        "DescribeInstances" => {
            let q = DescribeQuery {
                limit: p.int_or("Limit", 20)?,
                offset: p.int_or("Offset", 0)?,
                redis_id: p.str("InstanceId")?,
                redis_name: p.str("SearchKey")?.or(p.str("InstanceName")?),
                order_by: p.str("OrderBy")?,
                order_type: p.int("OrderType")?,
                project_ids: p.int_list("ProjectIds")?,
                ..Default::default()
            };
            let (total, views) = svc.describe(app, q).await?;
            let set: Vec<Value> = views
                .iter()
                .map(|v| instance_set(&v.instance, v.size_used_mb, &time))
                .collect();
            Ok(fields([
                ("TotalCount", json!(total)),
                ("InstanceSet", json!(set)),
            ]))
        }
        "DescribeInstanceBackups" => {
            let id = p.required_str("InstanceId")?;
            // The model's default filter is [2] (normal backups).
            let mut statuses = p.int_list("Status")?;
            if statuses.is_empty() {
                statuses.push(2);
            }
            let (limit, offset) = (p.int_or("Limit", 20)?, p.int_or("Offset", 0)?);
            if !(0..=100).contains(&limit) || offset < 0 {
                return Err(Error::invalid(
                    "Limit",
                    "Limit is 0-100 and Offset not negative",
                ));
            }
            let q = BackupQuery {
                redis_id: id,
                limit,
                offset,
                begin_time: p.str("BeginTime")?,
                end_time: p.str("EndTime")?,
                statuses,
            };
            let page = svc.backup_list(app, q).await?;
            let (total, list, name) = (page.total, page.backups, page.instance_name);
            let set: Vec<Value> = list
                .iter()
                .map(|b| {
                    json!({
                        "StartTime": time(b.started_at),
                        "BackupId": b.id,
                        "BackupType": match b.kind {
                            BackupKind::Manual => "0",
                            BackupKind::System => "1",
                        },
                        "Status": b.status_code(),
                        "Remark": b.remark,
                        "Locked": b.locked(),
                        "BackupSize": b.size,
                        "FullBackup": 0,
                        "InstanceType": 17,
                        "InstanceId": b.instance_id,
                        "InstanceName": name,
                        "Region": "",
                        "EndTime": time(b.finished_at),
                        "FileType": format!("RDB-Redis {REDIS_VERSION}"),
                        "ExpireTime": time(svc.backup_expires_at(b)),
                        "Encrypted": false,
                    })
                })
                .collect();
            Ok(fields([
                ("TotalCount", json!(total)),
                ("BackupSet", json!(set)),
            ]))
        }
        "ManualBackupInstance" => {
            let id = p.required_str("InstanceId")?;
            let task = svc
                .manual_backup(app, &id, &p.str("Remark")?.unwrap_or_default())
                .await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "DescribeBackupUrl" => {
            let id = p.required_str("InstanceId")?;
            let backup_id = p.required_str("BackupId")?;
            let backup = svc.backup_for_download(app, &id, &backup_id).await?;
            let (extranet, intranet) = state.downloads.urls(&backup.id, svc.now());
            let file = format!("{}.rdb", backup.id);
            Ok(fields([
                ("DownloadUrl", json!([extranet])),
                ("InnerDownloadUrl", json!([intranet])),
                ("Filenames", json!([file])),
                (
                    "BackupInfos",
                    json!([{
                        "FileName": file,
                        "FileSize": backup.size,
                        "DownloadUrl": extranet,
                        "InnerDownloadUrl": intranet,
                    }]),
                ),
            ]))
        }
        "RestoreInstance" => {
            let id = p.required_str("InstanceId")?;
            let backup_id = p.required_str("BackupId")?;
            let task = svc
                .restore(
                    app,
                    &id,
                    &p.str("Password")?.unwrap_or_default(),
                    &backup_id,
                )
                .await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "DescribeTaskInfo" => {
            let task = svc.task_info(app, p.required_int("TaskId")?).await?;
            let status = match task.status {
                TaskStatus::Pending => "preparing",
                TaskStatus::Running => "running",
                TaskStatus::Succeeded => "succeed",
                TaskStatus::Failed => "failed",
                TaskStatus::Error => "error",
            };
            Ok(fields([
                ("Status", json!(status)),
                ("StartTime", json!(time(task.created_at))),
                ("TaskType", json!(task.kind.name())),
                ("InstanceId", json!(task.instance_id.unwrap_or_default())),
                ("TaskMessage", json!(task.error.unwrap_or_default())),
            ]))
        }
        "DescribeTaskList" => {
            let mut statuses = Vec::new();
            for r in p.int_list("Result")? {
                let matching: Vec<i64> = [-1, 0, 1, 2, 3]
                    .into_iter()
                    .filter_map(TaskStatus::from_code)
                    .filter(|s| result_code(*s) == r)
                    .map(TaskStatus::code)
                    .collect();
                if matching.is_empty() {
                    return Err(Error::invalid("Result", format!("{r} is not 0, 1, 2 or 4")));
                }
                statuses.extend(matching);
            }
            let kinds = p
                .str_list("TaskTypes")?
                .iter()
                .map(|code| {
                    kind_of_code(code)
                        .ok_or_else(|| Error::invalid("TaskTypes", format!("unknown type {code}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let q = TaskQuery {
                limit: p.int_or("Limit", 20)?,
                offset: p.int_or("Offset", 0)?,
                redis_id: p.str("InstanceId")?,
                redis_name: p.str("InstanceName")?,
                begin_time: p.str("BeginTime")?,
                end_time: p.str("EndTime")?,
                statuses,
                kinds,
            };
            let (total, list) = svc.task_list(app, q).await?;
            let tasks: Vec<Value> = list
                .iter()
                .map(|v| {
                    let t = &v.task;
                    let result = result_code(t.status);
                    json!({
                        "TaskId": t.id,
                        "StartTime": time(t.created_at),
                        "TaskType": code_of_kind(t.kind),
                        "InstanceName": v.instance_name,
                        "InstanceId": t.instance_id.clone().unwrap_or_default(),
                        "ProjectId": v.project_id,
                        "Progress": if t.status.is_finished() { 1.0 } else { 0.0 },
                        "EndTime": if t.status.is_finished() { time(t.updated_at) } else { String::new() },
                        "Result": result,
                    })
                })
                .collect();
            Ok(fields([
                ("TotalCount", json!(total)),
                ("Tasks", json!(tasks)),
            ]))
        }
        "ClearInstance" => {
            let id = p.required_str("InstanceId")?;
            let task = svc
                .clear(app, &id, &p.str("Password")?.unwrap_or_default())
                .await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "ModifyInstance" => {
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
        "ModifyInstancePassword" | "ModfiyInstancePassword" => {
            let id = p.required_str("InstanceId")?;
            let old = p.str("OldPassword")?.unwrap_or_default();
            let new = p.str("Password")?.unwrap_or_default();
            let task = svc
                .modify_password(app, &id, &old, &new, PasswordPolicy::Api3)
                .await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "ResetPassword" => {
            let id = p.required_str("InstanceId")?;
            let password = p.str("Password")?.unwrap_or_default();
            let new = (!no_auth(p)?).then_some(password.as_str());
            let task = svc
                .reset_password(app, &id, new, PasswordPolicy::Api3)
                .await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "DescribeProductInfo" => {
            let mut zones = Vec::new();
            for z in &svc.catalog().zones {
                let products: Vec<Value> = z
                    .types
                    .iter()
                    .filter(|t| t.type_id == MASTER_REPLICA_TYPE_ID)
                    .map(|t| {
                        json!({
                            "Type": API3_STANDARD_7_0,
                            "TypeName": "Redis 主从版",
                            "MinBuyNum": t.min_buy_num,
                            "MaxBuyNum": t.max_buy_num,
                            "Saleout": false,
                            "Engine": "Redis",
                            "Version": "Redis-7.0",
                            "TotalSize": sizes_gb(t),
                            "ShardSize": sizes_gb(t),
                            "ReplicaNum": t.replica_counts().map(|n| n.to_string()).collect::<Vec<_>>(),
                            "ShardNum": ["1"],
                            "PayMode": "1",
                            "EnableRepicaReadOnly": false,
                            "EnableReplicaReadOnly": false,
                        })
                    })
                    .collect();
                zones.push((
                    z.region_id,
                    json!({
                        "ZoneId": z.id.to_string(),
                        "ZoneName": z.name,
                        "IsSaleout": products.is_empty(),
                        "IsDefault": false,
                        "NetWorkType": ["basenet"],
                        "ProductSet": products,
                        "OldZoneId": z.id,
                    }),
                ));
            }
            let mut regions: Vec<(i64, Vec<Value>)> = Vec::new();
            for (region, zone) in zones {
                match regions.iter_mut().find(|(r, _)| *r == region) {
                    Some((_, list)) => list.push(zone),
                    None => regions.push((region, vec![zone])),
                }
            }
            let set: Vec<Value> = regions
                .into_iter()
                .map(|(region, zones)| {
                    json!({
                        "RegionId": region.to_string(),
                        "RegionName": "",
                        "RegionShortName": "",
                        "Area": "",
                        "ZoneSet": zones,
                    })
                })
                .collect();
            Ok(fields([("RegionSet", json!(set))]))
        }
        "InquiryPriceCreateInstance" => {
            let (zone, type_id, billing) = zone_and_type(state, p)?;
            let replicas =
                rules::check_api3_layout(p.int("RedisShardNum")?, p.int("RedisReplicasNum")?)?;
            let (mem, num) = (p.required_int("MemSize")?, p.required_int("GoodsNum")?);
            // Postpaid: the price of one hour; Period is not asked for.
            let period = match billing {
                BillingMode::Prepaid => p.required_int("Period")?,
                BillingMode::Postpaid => 0,
            };
            let spec = Spec::standard(mem, replicas);
            let price = svc.creation_price(zone, type_id, spec, num, billing, period)?;
            Ok(price_fields(price))
        }
        "CreateInstances" => {
            let (zone_id, type_id, billing) = zone_and_type(state, p)?;
            rules::check_api3_vport(p.int("VPort")?)?;
            let replicas =
                rules::check_api3_layout(p.int("RedisShardNum")?, p.int("RedisReplicasNum")?)?;
            let order = CreateOrder {
                zone_id,
                type_id,
                mem_mb: p.required_int("MemSize")?,
                replicas,
                goods_num: p.required_int("GoodsNum")?,
                period: match billing {
                    BillingMode::Prepaid => p.required_int("Period")?,
                    BillingMode::Postpaid => 0,
                },
                password: p.str("Password")?.unwrap_or_default(),
                project_id: p.int_or("ProjectId", 0)?,
                vpc_id: 0,
                un_vpc_id: p.str("VpcId")?.unwrap_or_default(),
                subnet_id: 0,
                un_subnet_id: p.str("SubnetId")?.unwrap_or_default(),
                name: p.str("InstanceName")?.unwrap_or_default(),
                password_policy: PasswordPolicy::Api3,
                port: None,
                auto_renew: p.int_or("AutoRenew", 0)?,
                billing,
                no_auth: no_auth(p)?,
            };
            // The service names the network ids as v2 does.
            let deal = svc.create(app, order).await.map_err(|e| match e {
                Error::InvalidParameter { name, reason } => {
                    let name = match name.as_str() {
                        "unVpcId" => "VpcId".to_string(),
                        "unSubnetId" => "SubnetId".to_string(),
                        _ => name,
                    };
                    Error::InvalidParameter { name, reason }
                }
                other => other,
            })?;
            let recorded = svc.deal(app, deal).await?;
            let ids: Vec<String> = recorded.detail.instance_ids().to_vec();
            Ok(fields([
                ("DealId", json!(deal.to_string())),
                ("DealName", json!(recorded.name)),
                ("InstanceIds", json!(ids)),
            ]))
        }
        "InquiryPriceRenewInstance" => {
            let price = svc
                .renew_price(
                    app,
                    &p.required_str("InstanceId")?,
                    p.required_int("Period")?,
                )
                .await?;
            Ok(price_fields(price))
        }
        "InquiryPriceUpgradeInstance" => {
            let price = svc
                .change_price(app, &p.required_str("InstanceId")?, spec_request(p)?)
                .await?;
            Ok(price_fields(price))
        }
        "DescribeInstanceDealDetail" => {
            let ids = p.str_list("DealIds")?;
            let deals = svc.deals(app, &ids).await?;
            let details: Vec<Value> = deals
                .iter()
                .map(|d| {
                    json!({
                        "DealId": d.id.to_string(),
                        "DealName": d.name,
                        "ZoneId": d.zone_id,
                        "GoodsNum": d.goods_num,
                        "Creater": d.creator,
                        "CreatTime": time(d.created_at),
                        "OverdueTime": time(d.overdue_at),
                        "EndTime": d.end_at.map(time).unwrap_or_default(),
                        "Status": d.status,
                        "Description": crsd_core::model::deal_status::description(d.status),
                        "Price": d.price as f64,
                        "InstanceIds": d.detail.instance_ids(),
                    })
                })
                .collect();
            Ok(fields([("DealDetails", json!(details))]))
        }
        "DescribeAutoBackupConfig" => {
            let cfg = svc
                .auto_backup_config(app, &p.required_str("InstanceId")?)
                .await?;
            Ok(fields([
                ("AutoBackupType", json!(1)),
                ("WeekDays", json!(cfg.week_day_names())),
                ("TimePeriod", json!(cfg.time_period())),
                ("BackupStorageDays", json!(cfg.storage_days)),
                ("BinlogStorageDays", json!(cfg.storage_days)),
            ]))
        }
        "ModifyAutoBackupConfig" => {
            let id = p.required_str("InstanceId")?;
            if let Some(t) = p.int("AutoBackupType")? {
                if t != 1 {
                    return Err(Error::invalid(
                        "AutoBackupType",
                        "only 1 (timed backup) exists",
                    ));
                }
            }
            let week_days = match p.get("WeekDays") {
                Some(_) => Some(p.str_list("WeekDays")?),
                None => None,
            };
            let cfg = svc
                .set_auto_backup_config(
                    app,
                    &id,
                    week_days,
                    p.str("TimePeriod")?,
                    p.int("BackupStorageDays")?,
                )
                .await?;
            Ok(fields([
                ("AutoBackupType", json!(1)),
                ("WeekDays", json!(cfg.week_day_names())),
                ("TimePeriod", json!(cfg.time_period())),
                ("BackupStorageDays", json!(cfg.storage_days)),
            ]))
        }
        "DescribeSlowLog" => {
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
        "DescribeInstanceNodeInfo" => {
            let nodes = svc.nodes(app, &p.required_str("InstanceId")?).await?;
            let redis: Vec<Value> = nodes
                .iter()
                .map(|n| {
                    json!({
                        "NodeId": n.node_id,
                        "NodeRole": match n.role { NodeRole::Master => "master", NodeRole::Replica => "slave" },
                        "ClusterId": 0,
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
        "DescribeInstanceParams" => {
            let list = svc
                .instance_params(app, &p.required_str("InstanceId")?)
                .await?;
            let (mut enums, mut ints, mut texts) = (Vec::new(), Vec::new(), Vec::new());
            for (def, current) in &list {
                let base = json!({
                    "ParamName": def.name,
                    "NeedRestart": "false",
                    "DefaultValue": def.default,
                    "CurrentValue": current,
                    "Tips": def.tips,
                    "Status": 1,
                });
                let mut v = base.as_object().cloned().unwrap_or_default();
                match def.kind {
                    ParamKind::Enum(values) => {
                        v.insert("ValueType".into(), json!("enum"));
                        v.insert("EnumValue".into(), json!(values));
                        enums.push(Value::Object(v));
                    }
                    ParamKind::Integer { min, max } => {
                        v.insert("ValueType".into(), json!("integer"));
                        v.insert("Min".into(), json!(min.to_string()));
                        v.insert("Max".into(), json!(max.to_string()));
                        v.insert("Unit".into(), json!(""));
                        ints.push(Value::Object(v));
                    }
                    ParamKind::Text { chars } => {
                        v.insert("ValueType".into(), json!("text"));
                        v.insert("TextValue".into(), json!([chars]));
                        texts.push(Value::Object(v));
                    }
                }
            }
            Ok(fields([
                ("TotalCount", json!(list.len())),
                ("InstanceEnumParam", json!(enums)),
                ("InstanceIntegerParam", json!(ints)),
                ("InstanceTextParam", json!(texts)),
                ("InstanceMultiParam", json!([])),
            ]))
        }
        "ModifyInstanceParams" => {
            let id = p.required_str("InstanceId")?;
            let pairs: Vec<(String, String)> = match p.get("InstanceParams") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        let key = item.get("Key").and_then(Value::as_str);
                        let value = item.get("Value").map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                        match (key, value) {
                            (Some(k), Some(v)) => Ok((k.to_string(), v)),
                            _ => Err(Error::invalid("InstanceParams", "each needs Key and Value")),
                        }
                    })
                    .collect::<Result<_>>()?,
                Some(_) => {
                    return Err(Error::invalid(
                        "InstanceParams",
                        "must be a list of objects with Key and Value",
                    ))
                }
                None => return Err(Error::MissingParameter("InstanceParams".into())),
            };
            let (changed, task) = svc.modify_params(app, &id, &pairs).await?;
            Ok(fields([
                ("Changed", json!(changed)),
                ("TaskId", json!(task.unwrap_or(0))),
            ]))
        }
        "DestroyPrepaidInstance" => {
            let id = p.required_str("InstanceId")?;
            let task = svc.isolate(app, &id, BillingMode::Prepaid).await?;
            // No refund deal is recorded: the name carries the isolation task's id.
            Ok(fields([
                ("DealId", json!(task.to_string())),
                ("DealName", json!(task.to_string())),
            ]))
        }
        "DestroyPostpaidInstance" => {
            let id = p.required_str("InstanceId")?;
            let task = svc.isolate(app, &id, BillingMode::Postpaid).await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "StartupInstance" => {
            let task = svc.startup(app, &p.required_str("InstanceId")?).await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "CleanUpInstance" => {
            let task = svc.clean_up(app, &p.required_str("InstanceId")?).await?;
            Ok(fields([("TaskId", json!(task))]))
        }
        "RenewInstance" => {
            let id = p.required_str("InstanceId")?;
            let to_prepaid = match p.str("ModifyPayMode")?.unwrap_or_default().as_str() {
                "" => false,
                m if m.eq_ignore_ascii_case("prepaid") => true,
                other => {
                    return Err(Error::invalid(
                        "ModifyPayMode",
                        format!("{other} is not prepaid"),
                    ))
                }
            };
            let deal = svc
                .renew(app, &id, p.required_int("Period")?, to_prepaid)
                .await?;
            let recorded = svc.deal(app, deal).await?;
            Ok(fields([
                ("DealId", json!(deal.to_string())),
                ("DealName", json!(recorded.name)),
            ]))
        }
        "UpgradeInstance" => {
            let id = p.required_str("InstanceId")?;
            let deal = svc.change_spec(app, &id, spec_request(p)?).await?;
            let recorded = svc.deal(app, deal).await?;
            Ok(fields([
                ("DealId", json!(deal.to_string())),
                ("DealName", json!(recorded.name)),
            ]))
        }
        a if MODEL.contains(&a) => Err(Error::Unsupported(a.to_string())),
        other => Err(Error::UnknownAction(other.to_string())),
    }
}

/// The API 3.0 TypeId crsd sells its master-replica product as: Debian's redis-server is
/// 7.0, so "Redis 7.0 standard" (17); 18 (7.0 cluster) comes with cluster instances.
const API3_STANDARD_7_0: i64 = 17;
const API3_CLUSTER_7_0: i64 = 18;

/// The zone (ZoneId, else the first of the catalog), the catalog type of a 3.0 TypeId and
/// the BillingMode (0 postpaid, 1 prepaid) of a purchase.
fn zone_and_type(state: &AppState, p: &Params3) -> Result<(i64, i64, BillingMode)> {
    let type_id = match p.required_int("TypeId")? {
        API3_STANDARD_7_0 => MASTER_REPLICA_TYPE_ID,
        API3_CLUSTER_7_0 => {
            return Err(Error::invalid(
                "TypeId",
                "18 (Redis 7.0 cluster) is not offered yet; use 17 (Redis 7.0 standard)",
            ))
        }
        other => {
            return Err(Error::invalid(
                "TypeId",
                format!("{other} is not offered: this service runs Redis 7.0, TypeId 17"),
            ))
        }
    };
    let billing = match p.int("BillingMode")? {
        Some(code @ (0 | 1)) => BillingMode::from_code(code).unwrap_or_default(),
        Some(other) => {
            return Err(Error::invalid(
                "BillingMode",
                format!("{other} is not 0 or 1"),
            ))
        }
        None => return Err(Error::MissingParameter("BillingMode".into())),
    };
    let zone = match p.int("ZoneId")? {
        Some(z) => z,
        None => state
            .svc
            .catalog()
            .zones
            .first()
            .map(|z| z.id)
            .ok_or_else(|| Error::invalid("ZoneId", "no zone is configured"))?,
    };
    Ok((zone, type_id, billing))
}

/// UpgradeInstance's and InquiryPriceUpgradeInstance's `MemSize` (required by the model),
/// `RedisShardNum` and `RedisReplicasNum`: the service decides the one change they make.
fn spec_request(p: &Params3) -> Result<SpecRequest> {
    Ok(SpecRequest {
        mem_mb: Some(p.required_int("MemSize")?),
        shards: p.int("RedisShardNum")?,
        replicas: p.int("RedisReplicasNum")?,
    })
}

/// `NoAuth`: true asks for a password-less instance (the service refuses it unless the
/// operator allows them).
fn no_auth(p: &Params3) -> Result<bool> {
    match p.str("NoAuth")?.as_deref() {
        None | Some("false") | Some("0") | Some("") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(Error::invalid(
            "NoAuth",
            format!("{other} is not true or false"),
        )),
    }
}

/// Sizes a product sells, in GB (1 GB steps), as ProductConf lists them.
fn sizes_gb(t: &crsd_core::catalog::ProductType) -> Vec<String> {
    t.sizes_gb().map(|g| g.to_string()).collect()
}

/// InquiryPrice* answers: cents, which the model calls `pent`.
fn price_fields(cents: i64) -> Map<String, Value> {
    fields([
        ("Price", json!(cents as f64)),
        ("HighPrecisionPrice", json!(cents as f64)),
        ("OriginalPrice", json!(cents as f64)),
        ("HighPrecisionOriginalPrice", json!(cents as f64)),
        ("Currency", json!("CNY")),
        ("AmountUnit", json!("pent")),
    ])
}

/// The model's task type codes (DescribeTaskList `TaskTypes`).
const TASK_CODES: &[(TaskKind, &str)] = &[
    (TaskKind::NewInstance, "001"),
    (TaskKind::ResizeInstance, "002"),
    (TaskKind::CloseInstance, "003"),
    (TaskKind::CleanInstance, "004"),
    (TaskKind::StartInstance, "005"),
    (TaskKind::DeleteInstance, "006"),
    (TaskKind::SetPassword, "007"),
    (TaskKind::ExportBackup, "009"),
    (TaskKind::RestoreBackup, "010"),
    (TaskKind::BackupInstance, "012"),
    (TaskKind::ModifyParams, "034"),
    // FLOW_ADDNODES: "加（减）节点".
    (TaskKind::ChangeReplicas, "029"),
];

/// DescribeTaskList's `Result`: 0 waiting, 1 running, 2 succeeded, 4 failed (a task that
/// failed and one that ended in error alike). Its filter is built from this same table.
fn result_code(status: TaskStatus) -> i64 {
    match status {
        TaskStatus::Pending => 0,
        TaskStatus::Running => 1,
        TaskStatus::Succeeded => 2,
        TaskStatus::Failed | TaskStatus::Error => 4,
    }
}

fn code_of_kind(kind: TaskKind) -> &'static str {
    TASK_CODES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| *c)
        .unwrap_or("")
}

fn kind_of_code(code: &str) -> Option<TaskKind> {
    TASK_CODES.iter().find(|(_, c)| *c == code).map(|(k, _)| *k)
}

fn fields<const N: usize>(list: [(&str, Value); N]) -> Map<String, Value> {
    list.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// One `InstanceSet` entry with every field of the model (61), because typed clients (the Go
/// SDK, Terraform's provider) read them all: what crsd knows has its true value; what it has no
/// such thing for (tags, proxies, bandwidth, multi-zone nodes, CDC clusters) the model's empty
/// value (`""`, `0`, `[]`).
fn instance_set(i: &Instance, size_used_mb: i64, time: &dyn Fn(DateTime<Utc>) -> String) -> Value {
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
        "Region": "",
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
const REDIS_MAXCLIENTS: i64 = 10000;

/// The `InstanceSet` fields that come from the instance.
fn instance_known(
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
        "Size": i.mem_mb as f64,
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
