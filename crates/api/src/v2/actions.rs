//! One small handler per v2 action: read the documented parameters, call one service
//! function, shape the documented response. Field names and types follow each action's
//! output table in the seed.

use crate::params::Params;
use crate::AppState;
use chrono::{DateTime, Utc};
use crsd_core::model::{BillingMode, Deal, GoodsDetail, TaskKind};
use crsd_core::rules::PasswordPolicy;
use crsd_core::{timefmt, Error, Result};
use crsd_service::{BackupQuery, CreateOrder, DescribeQuery, TaskQuery};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// The top-level fields an action answers besides `code`, `message` and `codeDesc`, each
/// rendered to JSON text when it is added. Listings add typed rows that serialize straight to
/// text: building them as `Value` maps first cost DescribeRedis more than everything else in
/// the request.
#[derive(Debug, Default)]
pub struct Data(Vec<(&'static str, Box<RawValue>)>);

impl Data {
    pub fn new() -> Data {
        Data::default()
    }

    pub fn with(mut self, name: &'static str, value: &impl Serialize) -> Result<Data> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| Error::internal(format!("rendering {name}: {e}")))?;
        self.0.push((name, raw));
        Ok(self)
    }

    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &RawValue)> {
        self.0.iter().map(|(k, v)| (*k, v.as_ref()))
    }
}

/// Every action this dialect answers (the seed's, plus the ModifyRedisPassword spelling),
/// parsed once from the `Action` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
pub enum Action {
    DescribeRedisZones,
    DescribeRedisProduct,
    InquiryRedisPrice,
    CreateRedis,
    RenewRedis,
    UpgradeRedisInquiryPrice,
    UpgradeRedis,
    DescribeRedisDealDetail,
    DescribeRedis,
    SetRedisAutoRenew,
    ModifyRedisName,
    /// The seed's spelling, and the corrected one.
    #[strum(to_string = "ModifyRedisPassword", serialize = "ModfiyRedisPassword")]
    ModifyRedisPassword,
    ResetRedisPassword,
    ClearRedis,
    ModifyRedisProject,
    DescribeTaskInfo,
    GetRedisTaskList,
    ManualBackupInstance,
    GetBackupDownloadUrl,
    GetRedisBackupList,
    RestoreInstance,
    ExportRedisBackup,
}

pub async fn dispatch(state: &AppState, app: i64, action: Action, p: &Params) -> Result<Data> {
    let svc = &state.svc;
    match action {
        Action::DescribeRedisZones => zones(state),
        Action::DescribeRedisProduct => products(state, p),
        Action::InquiryRedisPrice => {
            let price = svc.inquiry_price(
                p.required_int("zoneId")?,
                p.required_int("typeId")?,
                p.required_int("memSize")?,
                p.required_int("goodsNum")?,
                p.required_int("period")?,
            )?;
            data(json!({ "price": price }))
        }
        Action::CreateRedis => {
            let order = CreateOrder {
                zone_id: p.required_int("zoneId")?,
                type_id: p.required_int("typeId")?,
                mem_mb: p.required_int("memSize")?,
                // This dialect has no replica count: one replica; memSize is the total of a
                // cluster's shards.
                replicas: crsd_core::spec::DEFAULT_REPLICAS,
                shards: None,
                mem_is_total: true,
                goods_num: p.required_int("goodsNum")?,
                period: p.required_int("period")?,
                password: p.get("password").unwrap_or_default().to_string(),
                project_id: p.int_or("projectId", 0)?,
                vpc_id: p.int_or("vpcId", 0)?,
                un_vpc_id: p.str("unVpcId").unwrap_or_default(),
                subnet_id: p.int_or("subnetId", 0)?,
                un_subnet_id: p.str("unSubnetId").unwrap_or_default(),
                name: p.str("redisName").unwrap_or_default(),
                password_policy: PasswordPolicy::V2,
                port: None,
                // No port parameter in this dialect: Redis's own.
                default_port: crsd_service::DEFAULT_POOL_PORT,
                auto_renew: 0,
                billing: BillingMode::Prepaid,
                no_auth: false,
            };
            let deal = svc.create(app, order).await?;
            data(json!({ "dealId": deal.to_string() }))
        }
        Action::RenewRedis => {
            let deal = svc
                .renew(
                    app,
                    &p.required_str("redisId")?,
                    p.required_int("period")?,
                    false,
                )
                .await?;
            data(json!({ "dealId": deal.to_string() }))
        }
        Action::UpgradeRedisInquiryPrice => {
            let price = svc
                .upgrade_price(app, &p.required_str("redisId")?, p.required_int("memSize")?)
                .await?;
            data(json!({ "price": price }))
        }
        Action::UpgradeRedis => {
            let deal = svc
                .upgrade(app, &p.required_str("redisId")?, p.required_int("memSize")?)
                .await?;
            data(json!({ "dealId": deal.to_string() }))
        }
        Action::DescribeRedisDealDetail => {
            let deals = svc.deals(app, &p.array("dealIds")).await?;
            let tz = svc.time_zone();
            let list: Vec<Value> = deals.iter().map(|d| deal_json(d, tz)).collect();
            Data::new().with("dealDetails", &list)
        }
        Action::DescribeRedis => describe(state, app, p).await,
        Action::SetRedisAutoRenew => {
            let flag = p.required_str("isAutoRenew")?;
            let flag = flag
                .trim()
                .parse::<i64>()
                .map_err(|_| Error::AutoRenewFlag(flag.clone()))?;
            svc.set_auto_renew(app, &p.array("redisIds"), flag).await?;
            Ok(Data::new())
        }
        Action::ModifyRedisName => {
            let id = p.required_str("redisId")?;
            let name = p.get("redisName").unwrap_or_default();
            svc.rename(app, &id, name).await?;
            Ok(Data::new())
        }
        Action::ModifyRedisPassword => {
            let id = p.required_str("redisId")?;
            let old = p.get("oldPassword").unwrap_or_default();
            let new = p.get("password").unwrap_or_default();
            let task = svc
                .modify_password(app, &id, old, new, PasswordPolicy::V2)
                .await?;
            request_id(task)
        }
        Action::ResetRedisPassword => {
            let id = p.required_str("redisId")?;
            let task = svc
                .reset_password(
                    app,
                    &id,
                    Some(p.get("password").unwrap_or_default()),
                    PasswordPolicy::V2,
                )
                .await?;
            request_id(task)
        }
        Action::ClearRedis => {
            let id = p.required_str("redisId")?;
            let task = svc
                .clear(app, &id, p.get("password").unwrap_or_default())
                .await?;
            request_id(task)
        }
        Action::ModifyRedisProject => {
            svc.modify_project(app, &p.array("redisIds"), p.required_int("projectId")?)
                .await?;
            Ok(Data::new())
        }
        Action::DescribeTaskInfo => {
            let task = svc.task_info(app, p.required_int("requestId")?).await?;
            data(json!({ "status": task.status.code() }))
        }
        Action::GetRedisTaskList => task_list(state, app, p).await,
        Action::ManualBackupInstance => {
            let id = p.required_str("redisId")?;
            let task = svc
                .manual_backup(app, &id, p.get("remark").unwrap_or_default())
                .await?;
            request_id(task)
        }
        Action::GetRedisBackupList => backup_list(state, app, p).await,
        Action::GetBackupDownloadUrl => {
            let id = p.required_str("redisId")?;
            let backup_id = p.required_str("backupId")?;
            let backup = svc
                .exported_backup_for_download(app, &id, &backup_id)
                .await?;
            if backup.shards.is_empty() {
                let (extranet, intranet) = state.downloads.urls(&backup.id, svc.now());
                return data(json!({ "intranet": intranet, "extranet": extranet }));
            }
            // A cluster's backup: one link per shard, in shard order.
            let links: Vec<(String, String)> = backup
                .files()
                .iter()
                .map(|f| state.downloads.urls(&f.file_id, svc.now()))
                .collect();
            data(json!({
                "intranet": links.iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
                "extranet": links.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
            }))
        }
        Action::RestoreInstance => {
            let id = p.required_str("redisId")?;
            let backup_id = p.required_str("backupId")?;
            let task = svc
                .restore(app, &id, p.get("password").unwrap_or_default(), &backup_id)
                .await?;
            request_id(task)
        }
        Action::ExportRedisBackup => {
            let id = p.required_str("redisId")?;
            let backup_id = p.required_str("backupId")?;
            let task = svc.export_backup(app, &id, &backup_id).await?;
            request_id(task)
        }
    }
}

fn data(v: Value) -> Result<Data> {
    Data::new().with("data", &v)
}

fn request_id(task: i64) -> Result<Data> {
    data(json!({ "requestId": task }))
}

fn time(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    timefmt::format(t, tz)
}

fn zones(state: &AppState) -> Result<Data> {
    let zones: Vec<Value> = state
        .svc
        .catalog()
        .zones
        .iter()
        .map(|z| json!({ z.id.to_string(): z.name }))
        .collect();
    data(json!({ "zones": zones }))
}

fn products(state: &AppState, p: &Params) -> Result<Data> {
    let zone_ids = p.int_array("zoneIds")?;
    let type_id = p.int_or("typeId", 0)?;
    let list = state.svc.products(&zone_ids, type_id)?;
    let out: Vec<Value> = list
        .into_iter()
        .map(|(zone, types)| {
            let types: Map<String, Value> = types
                .into_iter()
                .map(|t| {
                    // memSize is the total (a cluster's shards together).
                    let (min_mem, max_mem) = t.total_mem_range();
                    (
                        t.type_id.to_string(),
                        json!({
                            "type": t.type_id,
                            "typeName": t.type_name,
                            "minMemSize": min_mem,
                            "maxMemSize": max_mem,
                            "minBuyNum": t.min_buy_num,
                            "maxBuyNum": t.max_buy_num,
                        }),
                    )
                })
                .collect();
            json!({ "zoneId": zone.id, "name": zone.name, "types": types })
        })
        .collect();
    data(Value::Array(out))
}

fn deal_json(d: &Deal, tz: chrono_tz::Tz) -> Value {
    let goods = match &d.detail {
        GoodsDetail::Create {
            mem_mb,
            months,
            instance_ids,
        } => {
            json!({ "memSize": mem_mb, "timeSpan": months, "timeUnit": "m", "redisIds": instance_ids })
        }
        GoodsDetail::Renew {
            cur_deadline,
            mem_mb,
            months,
            instance_ids,
        } => json!({
            "curDeadline": time(*cur_deadline, tz),
            "memSize": mem_mb,
            "timeSpan": months,
            "timeUnit": "m",
            "redisIds": instance_ids,
        }),
        GoodsDetail::Upgrade {
            old_mem_mb,
            new_mem_mb,
            instance_ids,
        } => {
            json!({ "oldMemSize": old_mem_mb, "newMemsize": new_mem_mb, "redisIds": instance_ids })
        }
        // Bought through API 3.0 (v2 has no replica count); shaped like an upgrade's.
        GoodsDetail::ChangeReplicas {
            mem_mb,
            old_replicas,
            new_replicas,
            instance_ids,
        } => json!({
            "memSize": mem_mb,
            "oldReplicasNum": old_replicas,
            "newReplicasNum": new_replicas,
            "redisIds": instance_ids,
        }),
        GoodsDetail::ChangeShards {
            mem_mb,
            old_shards,
            new_shards,
            instance_ids,
        } => json!({
            "memSize": mem_mb,
            "oldRedisShardNum": old_shards,
            "newRedisShardNum": new_shards,
            "redisIds": instance_ids,
        }),
    };
    json!({
        "dealId": d.id.to_string(),
        "dealName": d.name,
        "zoneId": d.zone_id,
        "goodsNum": d.goods_num,
        "creator": d.creator,
        "creatTime": time(d.created_at, tz),
        "overdueTime": time(d.overdue_at, tz),
        "endTime": d.end_at.map(|t| time(t, tz)).unwrap_or_default(),
        "status": d.status,
        "description": crsd_core::model::deal_status::description(d.status),
        "price": d.price,
        "goodsDetail": goods,
    })
}

async fn describe(state: &AppState, app: i64, p: &Params) -> Result<Data> {
    let q = DescribeQuery {
        limit: p.required_int("limit")?,
        offset: p.int_or("offset", 0)?,
        redis_id: p.str("redisId"),
        redis_name: p.str("redisName"),
        order_by: p.str("orderBy"),
        order_type: p.int("orderType")?,
        vpc_ids: p.int_array("vpcIds")?,
        un_vpc_ids: p.array("unVpcIds"),
        subnet_ids: p.int_array("subnetIds")?,
        un_subnet_ids: p.array("unSubnetIds"),
        project_ids: p.int_array("projectIds")?,
        ..Default::default()
    };
    let (total, views) = state.svc.describe(app, q).await?;
    let tz = state.svc.time_zone();
    let set: Vec<RedisRow> = views
        .iter()
        .map(|v| {
            let i = &v.instance;
            let created = time(i.created_at, tz);
            RedisRow {
                redis_name: &i.name,
                redis_id: &i.id,
                app_id: i.app_id,
                appid: i.app_id,
                project_id: i.project_id,
                region_id: i.region_id,
                zone_id: i.zone_id,
                vpc_id: i.vpc_id,
                un_vpc_id: &i.un_vpc_id,
                subnet_id: i.subnet_id,
                un_subnet_id: &i.un_subnet_id,
                status: i.status.code(),
                status_desc: i.status.description(),
                wan_ip: &i.vip,
                port: i.port(),
                createtime: created.clone(),
                create_time: created,
                size: crsd_core::spec::Spec::of(i).total_mem_mb(),
                size_used: v.size_used_mb,
                type_id: i.type_id,
                type_id_desc: &v.type_name,
                auto_renew_flag: i.auto_renew,
                // v2 has no postpaid billing; a postpaid instance (made through another
                // dialect) shows the zero time API 3.0 shows.
                deadline_time: match i.billing {
                    BillingMode::Prepaid => time(i.deadline, tz),
                    BillingMode::Postpaid => crsd_core::timefmt::NO_TIME.to_string(),
                },
            }
        })
        .collect();
    Data::new()
        .with("totalCount", &total)?
        .with("data", &RedisSet { redis_set: set })
}

/// `data` of DescribeRedis.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RedisSet<'a> {
    redis_set: Vec<RedisRow<'a>>,
}

/// One entry of `data.redisSet`, with the seed's field names (both spellings it uses for the
/// app id and the creation time).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RedisRow<'a> {
    redis_name: &'a str,
    redis_id: &'a str,
    app_id: i64,
    appid: i64,
    project_id: i64,
    region_id: i64,
    zone_id: i64,
    vpc_id: i64,
    un_vpc_id: &'a str,
    subnet_id: i64,
    un_subnet_id: &'a str,
    status: i64,
    status_desc: &'a str,
    wan_ip: &'a str,
    port: u16,
    createtime: String,
    create_time: String,
    size: i64,
    size_used: i64,
    type_id: i64,
    type_id_desc: &'a str,
    auto_renew_flag: i64,
    deadline_time: String,
}

async fn backup_list(state: &AppState, app: i64, p: &Params) -> Result<Data> {
    let q = BackupQuery {
        redis_id: p.required_str("redisId")?,
        limit: p.required_int("limit")?,
        offset: p.int_or("offset", 0)?,
        begin_time: p.str("beginTime"),
        end_time: p.str("endTime"),
        statuses: Vec::new(),
    };
    let page = state.svc.backup_list(app, q).await?;
    let (total, list) = (page.total, page.backups);
    let tz = state.svc.time_zone();
    let set: Vec<Value> = list
        .iter()
        .map(|b| {
            json!({
                "startTime": time(b.started_at, tz),
                "backupId": b.id,
                "backupType": b.kind.name(),
                "status": b.status_code(),
                "remark": b.remark,
                "locked": b.locked(),
            })
        })
        .collect();
    Data::new()
        .with("totalCount", &total)?
        .with("data", &json!({ "redisBackupSet": set }))
}

async fn task_list(state: &AppState, app: i64, p: &Params) -> Result<Data> {
    let q = TaskQuery {
        limit: p.required_int("limit")?,
        offset: p.int_or("offset", 0)?,
        redis_id: p.str("redisId"),
        redis_name: p.str("redisName"),
        begin_time: p.str("beginTime"),
        end_time: p.str("endTime"),
        statuses: p.int_array("taskStatus")?,
        kinds: p
            .array("taskType")
            .iter()
            .map(|t| {
                TaskKind::from_type(t)
                    .ok_or_else(|| Error::invalid("taskType", format!("unknown task type {t}")))
            })
            .collect::<Result<_>>()?,
    };
    let (total, list) = state.svc.task_list(app, q).await?;
    let tz = state.svc.time_zone();
    let set: Vec<Value> = list
        .into_iter()
        .map(|v| {
            json!({
                "startTime": time(v.task.created_at, tz),
                "taskName": v.task.kind.name(),
                "redisName": v.instance_name,
                "redisId": v.task.instance_id.clone().unwrap_or_default(),
                "projectId": v.project_id,
                "status": v.task.status.code(),
                "progress": i64::from(v.task.status.is_finished()),
            })
        })
        .collect();
    Data::new()
        .with("totalCount", &total)?
        .with("data", &json!({ "redisTaskSet": set }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_password_spellings_are_one_action() {
        for name in ["ModfiyRedisPassword", "ModifyRedisPassword"] {
            assert_eq!(name.parse(), Ok(Action::ModifyRedisPassword));
        }
        // One name for the metrics, the corrected spelling.
        let canonical: &str = Action::ModifyRedisPassword.into();
        assert_eq!(canonical, "ModifyRedisPassword");
        let plain: &str = Action::DescribeRedis.into();
        assert_eq!(plain, "DescribeRedis");
        assert!("DescribeFooBar".parse::<Action>().is_err());
        assert!("describeredis".parse::<Action>().is_err());
    }
}
