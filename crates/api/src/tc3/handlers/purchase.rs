//! API 3.0 handlers of what is sold and bought: DescribeProductInfo, the price inquiries,
//! CreateInstances, RenewInstance, UpgradeInstance and DescribeInstanceDealDetail.

use super::{fields, no_auth, time_in, Fields, API3_CLUSTER_7_0, API3_STANDARD_7_0};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::catalog::{Zone, CLUSTER_TYPE_ID, MASTER_REPLICA_TYPE_ID};
use crsd_core::model::BillingMode;
use crsd_core::rules::{self, PasswordPolicy};
use crsd_core::spec::SpecRequest;
use crsd_core::spec::DEFAULT_REPLICAS;
use crsd_core::{Error, Result};
use crsd_service::CreateOrder;
use serde_json::{json, Map, Value};

/// DescribeProductInfo.
pub(super) async fn describe_product_info(
    state: &AppState,
    _app: i64,
    _p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let mut zones = Vec::new();
    for z in &svc.catalog().zones {
        let products: Vec<Value> = z
            .types
            .iter()
            .filter(|t| crsd_core::catalog::RUNNABLE_TYPES.contains(&t.type_id))
            .map(|t| {
                let (api_type, name) = if t.is_cluster() {
                    (API3_CLUSTER_7_0, "Redis 集群版")
                } else {
                    (API3_STANDARD_7_0, "Redis 主从版")
                };
                json!({
                    "Type": api_type,
                    "TypeName": name,
                    "MinBuyNum": t.min_buy_num,
                    "MaxBuyNum": t.max_buy_num,
                    "Saleout": false,
                    "Engine": "Redis",
                    "Version": "Redis-7.0",
                    "TotalSize": total_sizes_gb(t),
                    "ShardSize": sizes_gb(t),
                    "ReplicaNum": t.replica_counts().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "ShardNum": t.shard_counts().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "PayMode": "1",
                    "EnableRepicaReadOnly": false,
                    "EnableReplicaReadOnly": false,
                })
            })
            .collect();
        zones.push((
            z,
            json!({
                "ZoneId": z.zone_code(),
                "ZoneName": z.name,
                "IsSaleout": products.is_empty(),
                "IsDefault": false,
                "NetWorkType": ["basenet"],
                "ProductSet": products,
                "OldZoneId": z.id,
            }),
        ));
    }
    // Zones grouped by region, in the catalog's order; a region's names are its first zone's.
    let mut regions: Vec<(&Zone, Vec<Value>)> = Vec::new();
    for (zone, listed) in zones {
        match regions
            .iter_mut()
            .find(|(first, _)| first.region_code() == zone.region_code())
        {
            Some((_, list)) => list.push(listed),
            None => regions.push((zone, vec![listed])),
        }
    }
    let set: Vec<Value> = regions
        .into_iter()
        .map(|(z, zones)| {
            json!({
                "RegionId": z.region_code(),
                "RegionName": z.region_name.clone().unwrap_or_default(),
                "RegionShortName": z.region_short_name.clone().unwrap_or_default(),
                "Area": z.region_area.clone().unwrap_or_default(),
                "ZoneSet": zones,
            })
        })
        .collect();
    Ok(fields([("RegionSet", json!(set))]))
}

/// InquiryPriceCreateInstance.
pub(super) async fn inquiry_price_create_instance(
    state: &AppState,
    _app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let (zone, type_id, billing) = zone_and_type(state, p)?;
    let (mem, num) = (p.required_int("MemSize")?, p.required_int("GoodsNum")?);
    // Postpaid: the price of one hour; Period is not asked for.
    let period = match billing {
        BillingMode::Prepaid => p.required_int("Period")?,
        BillingMode::Postpaid => 0,
    };
    let spec = svc.order_spec(
        zone,
        type_id,
        mem,
        p.int("RedisShardNum")?,
        p.int("RedisReplicasNum")?.unwrap_or(DEFAULT_REPLICAS),
    )?;
    let price = svc.creation_price(zone, type_id, spec, num, billing, period)?;
    Ok(price_fields(price))
}

/// CreateInstances.
pub(super) async fn create_instances(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let (zone_id, type_id, billing) = zone_and_type(state, p)?;
    let port = rules::check_api3_vport(p.int("VPort")?)?;
    let order = CreateOrder {
        zone_id,
        type_id,
        mem_mb: p.required_int("MemSize")?,
        replicas: p.int("RedisReplicasNum")?.unwrap_or(DEFAULT_REPLICAS),
        shards: p.int("RedisShardNum")?,
        mem_is_total: false,
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
        port,
        default_port: rules::API3_DEFAULT_VPORT as u16,
        auto_renew: p.int_or("AutoRenew", 0)?,
        billing,
        no_auth: no_auth(p)?,
    };
    let deal = svc.create(app, order).await?;
    let recorded = svc.deal(app, deal).await?;
    let ids: Vec<String> = recorded.detail.instance_ids().to_vec();
    Ok(fields([
        ("DealId", json!(deal.to_string())),
        ("DealName", json!(recorded.name)),
        ("InstanceIds", json!(ids)),
    ]))
}

/// InquiryPriceRenewInstance.
pub(super) async fn inquiry_price_renew_instance(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let price = svc
        .renew_price(
            app,
            &p.required_str("InstanceId")?,
            p.required_int("Period")?,
        )
        .await?;
    Ok(price_fields(price))
}

/// InquiryPriceUpgradeInstance.
pub(super) async fn inquiry_price_upgrade_instance(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let price = svc
        .change_price(app, &p.required_str("InstanceId")?, spec_request(p)?)
        .await?;
    Ok(price_fields(price))
}

/// RenewInstance.
pub(super) async fn renew_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
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

/// UpgradeInstance.
pub(super) async fn upgrade_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let deal = svc.change_spec(app, &id, spec_request(p)?).await?;
    let recorded = svc.deal(app, deal).await?;
    Ok(fields([
        ("DealId", json!(deal.to_string())),
        ("DealName", json!(recorded.name)),
    ]))
}

/// DescribeInstanceDealDetail.
pub(super) async fn describe_instance_deal_detail(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let time = time_in(svc.time_zone());
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

/// The zone (ZoneId, else the first of the catalog), the catalog type of a 3.0 TypeId and
/// the BillingMode (0 postpaid, 1 prepaid) of a purchase.
pub(super) fn zone_and_type(state: &AppState, p: &Params3) -> Result<(i64, i64, BillingMode)> {
    let type_id = match p.required_int("TypeId")? {
        API3_STANDARD_7_0 => MASTER_REPLICA_TYPE_ID,
        API3_CLUSTER_7_0 => CLUSTER_TYPE_ID,
        other => {
            return Err(Error::invalid(
                "TypeId",
                format!(
                    "{other} is not offered: this service runs Redis 7.0, TypeId 17 (standard) or 18 (cluster)"
                ),
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
    let zone = state.svc.zone_for(p.int("ZoneId")?, p.region())?;
    Ok((zone, type_id, billing))
}

/// UpgradeInstance's and InquiryPriceUpgradeInstance's `MemSize` (required by the model),
/// `RedisShardNum` and `RedisReplicasNum`: the service decides the one change they make.
pub(super) fn spec_request(p: &Params3) -> Result<SpecRequest> {
    Ok(SpecRequest {
        mem_mb: Some(p.required_int("MemSize")?),
        shards: p.int("RedisShardNum")?,
        replicas: p.int("RedisReplicasNum")?,
    })
}

/// Total sizes a product sells, in GB: a shard's sizes times the shard counts.
fn total_sizes_gb(t: &crsd_core::catalog::ProductType) -> Vec<String> {
    let mut totals: Vec<i64> = t
        .shard_counts()
        .iter()
        .flat_map(|n| t.sizes_gb().map(move |g| g * n))
        .collect();
    totals.sort_unstable();
    totals.dedup();
    totals.into_iter().map(|g| g.to_string()).collect()
}

/// Sizes a product sells, in GB (1 GB steps), as ProductConf lists them.
pub(super) fn sizes_gb(t: &crsd_core::catalog::ProductType) -> Vec<String> {
    t.sizes_gb().map(|g| g.to_string()).collect()
}

/// InquiryPrice* answers: cents, which the model calls `pent`.
pub(super) fn price_fields(cents: i64) -> Map<String, Value> {
    fields([
        ("Price", json!(cents as f64)),
        ("HighPrecisionPrice", json!(cents as f64)),
        ("OriginalPrice", json!(cents as f64)),
        ("HighPrecisionOriginalPrice", json!(cents as f64)),
        ("Currency", json!("CNY")),
        ("AmountUnit", json!("pent")),
    ])
}
