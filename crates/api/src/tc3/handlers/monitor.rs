//! API 3.0 handlers of the monitoring actions: DescribeInstanceMonitorTopNCmd,
//! DescribeInstanceMonitorTopNCmdTook, DescribeInstanceMonitorTookDist,
//! DescribeInstanceMonitorSIP, DescribeInstanceMonitorBigKey,
//! DescribeInstanceMonitorBigKeySizeDist, DescribeInstanceMonitorBigKeyTypeDist and
//! DescribeInstanceMonitorHotKey. Each answers the model's `Data` list; what is counted and
//! how is the service's `monitor` module.

use super::{fields, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::{Error, Result};
use crsd_service::{HotKeys, Span, LADDER_MS, SIZE_LADDER_KB};
use serde_json::{json, Value};

/// `SpanType`, required.
fn span(p: &Params3) -> Result<Span> {
    Span::from_code(p.required_int("SpanType")?)
}

fn data(list: Vec<Value>) -> Fields {
    fields([("Data", json!(list))])
}

/// DescribeInstanceMonitorTopNCmd: the most called commands over the span.
pub(super) async fn top_n_cmd(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let span = span(p)?;
    let w = state
        .svc
        .workload(app, &p.required_str("InstanceId")?, span)
        .await?;
    Ok(data(
        w.top_by_calls()
            .iter()
            .map(|c| json!({ "Cmd": c.name, "Count": c.calls }))
            .collect(),
    ))
}

/// DescribeInstanceMonitorTopNCmdTook: the commands that took the most time over the span
/// (`Took` in whole milliseconds).
pub(super) async fn top_n_cmd_took(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let span = span(p)?;
    let w = state
        .svc
        .workload(app, &p.required_str("InstanceId")?, span)
        .await?;
    Ok(data(
        w.top_by_time()
            .iter()
            .map(|c| json!({ "Cmd": c.name, "Took": c.usec / 1000 }))
            .collect(),
    ))
}

/// DescribeInstanceMonitorTookDist: calls per rung of the model's latency ladder over the
/// span. `Date` is required by the model and checked; the span says what is counted.
pub(super) async fn took_dist(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let span = span(p)?;
    crsd_service::monitor_day(&p.required_str("Date")?)?;
    let w = state
        .svc
        .workload(app, &p.required_str("InstanceId")?, span)
        .await?;
    let at = w.at.timestamp();
    Ok(data(
        LADDER_MS
            .iter()
            .zip(w.ladder)
            .map(|(ladder, size)| json!({ "Ladder": ladder, "Size": size, "Updatetime": at }))
            .collect(),
    ))
}

/// DescribeInstanceMonitorSIP: customer connections by source address.
pub(super) async fn sip(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let list = state
        .svc
        .client_sources(app, &p.required_str("InstanceId")?)
        .await?;
    Ok(data(
        list.iter()
            .map(|s| json!({ "Ip": s.ip, "Conn": s.connections, "Cmd": s.commands }))
            .collect(),
    ))
}

/// DescribeInstanceMonitorBigKey: the biggest keys; `ReqType` 1: strings only, 2: all.
pub(super) async fn big_key(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let strings_only = match p.required_int("ReqType")? {
        1 => true,
        2 => false,
        other => return Err(Error::invalid("ReqType", format!("{other} is not 1 or 2"))),
    };
    let report = key_report(state, app, p).await?;
    Ok(data(report.map_or_else(Vec::new, |r| {
        let at = r.at.timestamp();
        r.biggest(strings_only)
            .iter()
            .map(|k| {
                json!({ "DB": k.db, "Key": k.key, "Type": k.kind, "Size": k.bytes,
                    "Updatetime": at })
            })
            .collect()
    })))
}

/// DescribeInstanceMonitorBigKeySizeDist: keys per rung of the size ladder (KB; -1: above
/// the last rung).
pub(super) async fn big_key_size_dist(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let report = key_report(state, app, p).await?;
    Ok(data(report.map_or_else(Vec::new, |r| {
        let at = r.at.timestamp();
        SIZE_LADDER_KB
            .iter()
            .zip(r.sizes)
            .map(|(ladder, size)| json!({ "Ladder": ladder, "Size": size, "Updatetime": at }))
            .collect()
    })))
}

/// DescribeInstanceMonitorBigKeyTypeDist: keys and bytes per type.
pub(super) async fn big_key_type_dist(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let report = key_report(state, app, p).await?;
    Ok(data(report.map_or_else(Vec::new, |r| {
        let at = r.at.timestamp();
        r.by_type
            .iter()
            .map(|(kind, (count, bytes))| {
                json!({ "Type": kind, "Count": count, "Size": bytes, "Updatetime": at })
            })
            .collect()
    })))
}

/// DescribeInstanceMonitorHotKey: the most used keys; empty when redis does not track use
/// (the model has no field to say why).
pub(super) async fn hot_key(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let span = span(p)?;
    let id = p.required_str("InstanceId")?;
    let list = match state.svc.hot_keys(app, &id, span).await? {
        HotKeys::Tracked(keys) => keys
            .iter()
            .map(|k| json!({ "Key": k.key, "Type": k.kind, "Count": k.accesses }))
            .collect(),
        HotKeys::NotTracked { policy } => {
            tracing::debug!(instance = %id, %policy, "no hot keys: not an LFU maxmemory-policy");
            Vec::new()
        }
    };
    Ok(data(list))
}

/// The big-key report an action asks for (`InstanceId`, `Date`), if there is one yet.
async fn key_report(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Option<std::sync::Arc<crsd_service::KeyReport>>> {
    state
        .svc
        .key_report(
            app,
            &p.required_str("InstanceId")?,
            &p.required_str("Date")?,
        )
        .await
}
