//! One small handler per action of the Capital Online Redis OpenAPI: read the documented
//! request fields, call one service function, shape `Data` with the documented field names
//! and JSON types (arrays stay arrays, `[]` when empty; ints are numbers; `MasterInfo` is a
//! string): the Go SDK fails to parse anything else.

use super::Answer;
use crate::tc3::params::Params3;
use crate::AppState;
use chrono::{DateTime, Utc};
use crsd_core::catalog::{
    Zone, CLUSTER_TYPE_ID, MASTER_REPLICA_TYPE_ID, REDIS_VERSION, RUNNABLE_TYPES,
};
use crsd_core::model::{
    Backup, BackupKind, BackupState, BillingMode, Instance, InstanceStatus, TaskKind,
};
use crsd_core::rules::PasswordPolicy;
use crsd_core::{timefmt, Error, Result};
use crsd_service::{CreateOrder, DescribeQuery, InstanceView};
use serde_json::{json, Value};

/// A `PaasGoodsId` is this plus the memory size in GB (70001 = 1 GB master-replica).
pub const GOODS_BASE: i64 = 70000;
/// A cluster's `PaasGoodsId`: this plus its total memory in GB (80003 = 3 GB over 3 shards).
pub const CLUSTER_GOODS_BASE: i64 = 80000;
/// The documented default `ServicePort`: an instance with an address of its own listens
/// there; where instances share one address it means "any free port of the operator's
/// range".
const DEFAULT_PORT: i64 = 9736;
/// Ports the API reserves (documented as refused).
const RESERVED_PORTS: &[i64] = &[9100, 9121, 9122, 16379];
/// At most this many instances per CreateDBInstance.
const MAX_AMOUNT: i64 = 3;
const SUB_PRODUCT: &str = "Redis 主从版";
const CLUSTER_SUB_PRODUCT: &str = "Redis 集群版";

/// The nine actions of the Redis OpenAPI, all carried out, parsed once from `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
pub enum Action {
    /// The API's spelling.
    DescribeRegins,
    DescribeAvailableDBConfig,
    CreateDBInstance,
    DescribeDBInstances,
    DeleteDBInstance,
    DescribeBackups,
    DownloadBackup,
    CreateBackup,
    DeleteBackup,
}

pub async fn dispatch(state: &AppState, app: i64, action: Action, p: &Params3) -> Result<Answer> {
    let svc = &state.svc;
    let tz = svc.time_zone();
    let time = |t: DateTime<Utc>| timefmt::format(t, tz);
    match action {
        Action::DescribeRegins => {
            let regions: Vec<Value> = svc
                .catalog()
                .zones
                .iter()
                .map(|z| {
                    json!({
                        "CityId": z.id.to_string(),
                        "CityName": z.name,
                        "IsSaling": i64::from(z.sells()),
                        "RegionId": z.site_id(),
                        "RegionName": z.area.clone().unwrap_or_default(),
                        "SiteName": z.name,
                    })
                })
                .collect();
            Ok(query(json!(regions)))
        }
        Action::DescribeAvailableDBConfig => {
            let zone = site(state, p)?;
            // Each architecture the zone sells: master-replica by its memory, the cluster
            // by its total (split evenly over its shards, as CreateDBInstance will).
            let mut architectures = Vec::new();
            for t in zone
                .types
                .iter()
                .filter(|t| RUNNABLE_TYPES.contains(&t.type_id))
            {
                let (name, kind, sub, base) = if t.is_cluster() {
                    ("集群", 2, CLUSTER_SUB_PRODUCT, CLUSTER_GOODS_BASE)
                } else {
                    ("主从", 1, SUB_PRODUCT, GOODS_BASE)
                };
                let sizes: Vec<i64> = if t.is_cluster() {
                    let (lo, hi) = t.total_mem_range();
                    (lo / 1024..=hi / 1024)
                        .filter(|gb| t.check_spec(&t.spec_of_total(gb * 1024, 1)).is_ok())
                        .collect()
                } else {
                    t.sizes_gb().collect()
                };
                let specs: Vec<Value> = sizes
                    .into_iter()
                    .map(|gb| {
                        json!({ "CPU": 0, "Name": format!("{gb}G"), "PaasGoodsId": base + gb, "RAM": gb })
                    })
                    .collect();
                if specs.is_empty() {
                    continue;
                }
                architectures.push(json!({
                    "ArchitectureName": name,
                    "ArchitectureType": kind,
                    "SubProductName": sub,
                    "EnginesType": [],
                    "NetworkLinks": [{
                        "DescDetail": "默认链路：实例监听运营方配置的地址。",
                        "LinkType": "default_link",
                        "Name": "默认链路",
                    }],
                    "ComputeRoles": [{
                        "ComputeName": "通用型",
                        "ComputeType": 0,
                        "Standards": { "AttachDisk": [], "CpuRam": specs },
                    }],
                }));
            }
            let products: Vec<Value> = if architectures.is_empty() {
                Vec::new()
            } else {
                vec![json!({ "Version": REDIS_VERSION, "Architectures": architectures })]
            };
            Ok(query(json!({
                "ProductName": "redis",
                "RegionId": zone.site_id(),
                "Products": products,
            })))
        }
        Action::CreateDBInstance => {
            let zone = site(state, p)?;
            let vdc = p.required_str("VdcId")?;
            let pipe = p.required_str("BasePipeId")?;
            let name = p.required_str("InstanceName")?;
            let goods = p.required_int("PaasGoodsId")?;
            let password = p.required_str("Password")?;
            let amount = p.int_or("Amount", 1)?;
            if !(1..=MAX_AMOUNT).contains(&amount) {
                return Err(Error::invalid(
                    "Amount",
                    format!("{amount} is not 1-{MAX_AMOUNT}"),
                ));
            }
            let port = match p.int("ServicePort")? {
                None | Some(DEFAULT_PORT) => None,
                Some(port) if !(1024..=65535).contains(&port) || RESERVED_PORTS.contains(&port) => {
                    return Err(Error::invalid(
                        "ServicePort",
                        format!("{port} is not 1024-65535 or is one of 9100, 9121, 9122, 16379"),
                    ))
                }
                Some(port) => Some(port as u16),
            };
            // A cluster's goods id names its total memory.
            let (type_id, base) = if goods > CLUSTER_GOODS_BASE {
                (CLUSTER_TYPE_ID, CLUSTER_GOODS_BASE)
            } else {
                (MASTER_REPLICA_TYPE_ID, GOODS_BASE)
            };
            let mem_gb = goods.saturating_sub(base);
            // Refused like any unknown id, before `mem_gb * 1024` could overflow.
            if mem_gb <= 0 || mem_gb > i64::MAX / 1024 {
                return Err(Error::invalid(
                    "PaasGoodsId",
                    format!("{goods} is not a spec of DescribeAvailableDBConfig"),
                ));
            }
            let order = CreateOrder {
                zone_id: zone.id,
                type_id,
                mem_mb: mem_gb * 1024,
                // This dialect has no replica count: one replica; a cluster's RAM is its
                // total.
                replicas: crsd_core::spec::DEFAULT_REPLICAS,
                shards: None,
                mem_is_total: true,
                goods_num: amount,
                period: 0,
                password,
                project_id: 0,
                vpc_id: 0,
                un_vpc_id: vdc,
                subnet_id: 0,
                un_subnet_id: pipe,
                name,
                password_policy: PasswordPolicy::Api3,
                port,
                default_port: DEFAULT_PORT as u16,
                auto_renew: 0,
                // Pay as you go: charged by the hour until deleted.
                billing: BillingMode::Postpaid,
                no_auth: false,
            };
            let deal = svc.create(app, order).await.map_err(|e| match e {
                Error::MemSizeNotInRange { .. } | Error::InvalidMemSize(_) => Error::invalid(
                    "PaasGoodsId",
                    format!("{goods} is not a spec of DescribeAvailableDBConfig"),
                ),
                other => other,
            })?;
            let ids = svc.deal(app, deal).await?.detail.instance_ids().to_vec();
            Ok(Answer {
                data: json!({ "InstancesUuid": ids }),
                task_id: deal.to_string(),
            })
        }
        Action::DescribeDBInstances => {
            let uuid = p.str("InstanceUuid")?.filter(|s| !s.is_empty());
            let name = p.str("InstanceName")?.filter(|s| !s.is_empty());
            let tag = p.str("TagName")?.filter(|s| !s.is_empty());
            // Instances carry no tags, so a tag filter matches none.
            if tag.is_some() {
                return Ok(query(json!([])));
            }
            let q = DescribeQuery {
                redis_id: uuid,
                redis_name: name,
                address: p.str("IP")?,
                ..Default::default()
            };
            let views = svc.describe_all(app, q).await?;
            let mut list = Vec::new();
            for v in views {
                let i = &v.instance;
                let (status, status_str) = status(&v);
                list.push(instance(state, i, status, status_str, &time));
            }
            Ok(query(json!(list)))
        }
        Action::DeleteDBInstance => {
            let task = svc.delete(app, &p.required_str("InstanceUuid")?).await?;
            Ok(started(task))
        }
        Action::DescribeBackups => {
            let id = p.required_str("InstanceUuid")?;
            let backups = svc.backup_list_all(app, &id).await?;
            let list: Vec<Value> = backups.iter().map(|b| backup(b, &time)).collect();
            Ok(query(json!(list)))
        }
        Action::DownloadBackup => {
            let id = p.required_str("InstanceUuid")?;
            let backup_id = p.required_str("BackupId")?;
            let b = svc.backup_for_download(app, &id, &backup_id).await?;
            // A cluster's backup: `ShardId` names the shard's file (the first when absent).
            let shard = p.str("ShardId")?.filter(|s| !s.is_empty());
            let files = b.files();
            let file = match &shard {
                None => files.first(),
                Some(want) => files
                    .iter()
                    .find(|f| f.shard.map(|s| s.to_string()).as_deref() == Some(want.as_str())),
            }
            .ok_or_else(|| Error::invalid("ShardId", "the backup has no file of that shard"))?;
            let (extranet, intranet) = state.downloads.urls(&file.file_id, svc.now());
            let mut data = backup(&b, &time);
            data["ShardId"] = json!(file.shard.map(|s| s.to_string()).unwrap_or_default());
            data["BackupDownloadUrl"] = json!(extranet);
            data["BackupIntranetDownloadUrl"] = json!(intranet);
            Ok(query(data))
        }
        Action::CreateBackup => {
            let id = p.required_str("InstanceUuid")?;
            if let Some(kind) = p.str("BackupType")?.filter(|s| !s.is_empty()) {
                if kind != "full-backup" {
                    return Err(Error::invalid(
                        "BackupType",
                        format!("{kind} is not full-backup, the only type"),
                    ));
                }
            }
            let desc = p.str("Desc")?.unwrap_or_default();
            let task = svc.manual_backup(app, &id, &desc).await?;
            Ok(started(task))
        }
        Action::DeleteBackup => {
            let id = p.required_str("InstanceUuid")?;
            let backup_id = p.required_str("BackupId")?;
            svc.delete_backup(app, &id, &backup_id).await?;
            // Done before the answer: there is no task to wait for.
            Ok(Answer {
                data: json!({}),
                task_id: String::new(),
            })
        }
    }
}

/// A query's answer: `Data`, no task.
fn query(data: Value) -> Answer {
    Answer {
        data,
        task_id: String::new(),
    }
}

/// An asynchronous write's answer: `Data` `{}` and the task that carries it out.
fn started(task: i64) -> Answer {
    Answer {
        data: json!({}),
        task_id: task.to_string(),
    }
}

/// The zone `RegionId` names.
fn site<'a>(state: &'a AppState, p: &Params3) -> Result<&'a Zone> {
    let id = p.required_str("RegionId")?;
    state
        .svc
        .catalog()
        .zone_by_site(&id)
        .ok_or_else(|| Error::invalid("RegionId", format!("{id} is not a site of DescribeRegins")))
}

/// `Status` and `StatusStr` of an instance; a busy one says what it is busy with.
fn status(v: &InstanceView) -> (&'static str, &'static str) {
    match v.instance.status {
        InstanceStatus::Initializing => ("CREATING", "创建中"),
        InstanceStatus::Running => ("RUNNING", "运行中"),
        InstanceStatus::Isolated => ("STOPPED", "已停止"),
        InstanceStatus::Deleted => ("DELETED", "已删除"),
        InstanceStatus::Busy => match v.busy_with {
            Some(TaskKind::DeleteInstance) => ("DELETING", "删除中"),
            Some(TaskKind::RestoreBackup) => ("RESTORING", "恢复中"),
            Some(TaskKind::CloseInstance) => ("STOPPING", "停止中"),
            Some(TaskKind::StartInstance) => ("STARTING", "启动中"),
            _ => ("CHANGING", "变更中"),
        },
    }
}

fn instance(
    state: &AppState,
    i: &Instance,
    status: &str,
    status_str: &str,
    time: &dyn Fn(DateTime<Utc>) -> String,
) -> Value {
    let zone = state.svc.catalog().zone(i.zone_id);
    let zone_name = zone.map(|z| z.name.clone()).unwrap_or_default();
    let area = zone.and_then(|z| z.area.clone()).unwrap_or_default();
    json!({
        "InstanceUuid": i.id,
        "InstanceName": i.name,
        "RegionId": zone.map(Zone::site_id).unwrap_or_default(),
        "DisplayName": if area.is_empty() { zone_name.clone() } else { format!("{area}-{zone_name}") },
        "VdcId": i.un_vpc_id,
        "VdcName": zone_name,
        "AppName": "",
        "IP": i.vip,
        "Port": i.port(),
        "Ram": crsd_core::spec::Spec::of(i).total_mem_mb(),
        "Cpu": 0,
        "Status": status,
        "StatusStr": status_str,
        "Version": REDIS_VERSION,
        "SubProductName": if i.is_cluster() { CLUSTER_SUB_PRODUCT } else { SUB_PRODUCT },
        "SubProductKey": if i.is_cluster() { "redis-cluster" } else { "redis-replication" },
        "LinkType": "default_link",
        "LinkTypeStr": "默认链路",
        "CreatedTime": time(i.created_at),
        "ResourceId": i.id,
        "ProjectName": "",
        "Tags": [],
        "MasterInfo": "",
        "RoGroups": null,
        "RelationService": null,
        "CloneServices": null,
    })
}

/// A backup's documented fields. `Status`: `finished` (usable), `restoring` (a restore is
/// using it: it cannot be deleted meanwhile), `expired` (past the retention, file gone).
fn backup(b: &Backup, time: &dyn Fn(DateTime<Utc>) -> String) -> Value {
    let status = match b.state {
        BackupState::Normal if b.lock_task.is_some() => "restoring",
        BackupState::Normal | BackupState::Exported => "finished",
        BackupState::Exporting => "exporting",
        BackupState::Expired => "expired",
    };
    json!({
        "BackupId": b.id,
        "BackupMode": match b.kind {
            BackupKind::Manual => "manual",
            BackupKind::System => "automatic",
        },
        "BackupSize": b.size,
        "BackupType": "full-backup",
        "Desc": b.remark,
        "StartTime": time(b.started_at),
        "EndTime": time(b.finished_at),
        "InstanceId": b.instance_id,
        "Status": status,
    })
}
