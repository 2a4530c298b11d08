//! Cloud Monitor's GetMonitorData (service `monitor`, 2018-07-24), the one action of that API
//! crsd answers, so that charts (crsd's console, or a tool written for Tencent Cloud) can be
//! drawn from the history crsd keeps. Namespace `QCE/REDIS_MEM`, dimension `instanceid`, the
//! metric names of Tencent's Redis memory edition; how the nodes' samples become an
//! instance's points is the service's rule (`crsd_service::series`).

use super::{fields, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use chrono::{DateTime, SecondsFormat, Utc};
use crsd_core::{timefmt, Error, Field, Result};
use crsd_service::{InstanceMetric, SeriesQuery};
use serde_json::{json, Value};

/// The namespace of Tencent's Redis memory edition metrics.
const NAMESPACE: &str = "QCE/REDIS_MEM";
/// The dimension naming an instance.
const DIMENSION: &str = "instanceid";
/// The period when none is asked, as Cloud Monitor documents.
const DEFAULT_PERIOD: i64 = 300;
/// How far back a request without StartTime reaches.
const DEFAULT_SPAN_SECS: i64 = 3600;

/// The metric names answered, as Tencent names them in `QCE/REDIS_MEM`.
const METRICS: &[(&str, InstanceMetric)] = &[
    ("MemUsed", InstanceMetric::MemUsedMb),
    ("MemUtil", InstanceMetric::MemUtil),
    ("Keys", InstanceMetric::Keys),
    ("Connections", InstanceMetric::Connections),
    ("Commands", InstanceMetric::Commands),
    ("InFlow", InstanceMetric::InFlowMbps),
    ("OutFlow", InstanceMetric::OutFlowMbps),
    ("CmdHits", InstanceMetric::CmdHits),
    ("CmdMiss", InstanceMetric::CmdMiss),
    ("CmdHitsRatio", InstanceMetric::HitRatio),
    ("Expired", InstanceMetric::Expired),
    ("Evicted", InstanceMetric::Evicted),
    ("CpuUtil", InstanceMetric::CpuUtil),
];

/// GetMonitorData.
pub(super) async fn get_monitor_data(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let tz = svc.time_zone();
    let namespace = p.required_str("Namespace")?;
    if !namespace.eq_ignore_ascii_case(NAMESPACE) {
        return Err(Error::invalid(
            "Namespace",
            format!("{namespace} is not {NAMESPACE}"),
        ));
    }
    let asked = p.required_str("MetricName")?;
    let (name, metric) = METRICS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&asked))
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
            Error::invalid(
                "MetricName",
                format!("{asked} is not one of {}", names.join(", ")),
            )
        })?;
    let ids = instance_ids(p)?;
    let period = p.int_or("Period", DEFAULT_PERIOD)?;
    let time = |name: &str| -> Result<Option<DateTime<Utc>>> {
        match p.str(name)?.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| timefmt::parse(s, tz))
                .map(Some)
                .ok_or_else(|| {
                    Error::invalid(
                        name,
                        "expected a time like 2018-09-22T19:51:23+08:00 or 2018-09-22 19:51:23",
                    )
                }),
        }
    };
    let to = time("EndTime")?.unwrap_or_else(|| svc.now());
    let from =
        time("StartTime")?.unwrap_or_else(|| to - chrono::Duration::seconds(DEFAULT_SPAN_SECS));
    let q = SeriesQuery {
        metric,
        period,
        from,
        to,
    };
    let series = svc
        .instance_series(app, &ids, &q)
        .await
        .map_err(|e| e.named(param))?;
    let points: Vec<Value> = series
        .iter()
        .map(|s| {
            let values: Vec<f64> = s
                .values
                .iter()
                .map(|v| (v * 100.0).round() / 100.0)
                .collect();
            json!({
                "Dimensions": [{ "Name": DIMENSION, "Value": s.instance_id }],
                "Timestamps": s.timestamps,
                "Values": values,
            })
        })
        .collect();
    let print = |t: DateTime<Utc>| {
        t.with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    };
    Ok(fields([
        ("Period", json!(period)),
        ("MetricName", json!(name)),
        ("DataPoints", json!(points)),
        ("StartTime", json!(print(from))),
        ("EndTime", json!(print(to))),
        ("Msg", json!("")),
    ]))
}

/// `Instances.N.Dimensions.M.{Name,Value}`: the `instanceid` of each instance, in order.
fn instance_ids(p: &Params3) -> Result<Vec<String>> {
    let bad = |why: &str| Error::invalid("Instances", why.to_string());
    let list = match p.get("Instances") {
        None => return Err(Error::MissingParameter("Instances".into())),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("must be a list")),
    };
    let mut ids = Vec::with_capacity(list.len());
    for item in list {
        let dims = item
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("each instance needs a Dimensions list"))?;
        let id = dims
            .iter()
            .find(|d| {
                d.get("Name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(DIMENSION))
            })
            .and_then(|d| d.get("Value").and_then(Value::as_str))
            .ok_or_else(|| bad("each instance needs the dimension instanceid"))?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// This action's names for the fields the service names.
fn param(field: Field) -> &'static str {
    match field {
        Field::InstanceId | Field::InstanceIds => "Instances",
        Field::BeginTime => "StartTime",
        Field::EndTime => "EndTime",
        Field::Period => "Period",
        _ => "Instances",
    }
}
