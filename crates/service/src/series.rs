//! Instance series: the node history ([`crate::history`]) turned into one figure per
//! instance per period, for monitoring APIs and the console's charts.
//!
//! Why here and not in a dialect: which nodes count, how a round of samples becomes one value
//! and how rounds fold into a period are rules, the same whatever API asks.
//!
//! - **Which nodes**: an instance's value in a sampling round is taken over the nodes that
//!   reported the master role in that round: their sum (memory, keys, connections, commands,
//!   traffic, hits, misses, expired and evicted keys), the mean of their CPU use, and for the
//!   hit ratio the hits over the lookups of them all. A standard instance has one master, so
//!   its value is its master's; a cluster's is the sum over its shards' masters. Replicas hold
//!   the same keys and replay the same writes, so counting them would count data twice.
//! - **Periods**: rounds fold into buckets of `period` seconds (aligned on the epoch; a
//!   bucket is named by its start): gauges (memory, keys, connections) take the highest value
//!   in the bucket, rates (commands, traffic, CPU) the mean, counts (hits, misses, expired,
//!   evicted) the sum, and the hit ratio is hits over lookups of the whole bucket. A bucket
//!   without samples has no point (a chart shows the gap).
//! - **Bounds**: at most [`MAX_INSTANCES`] instances and [`MAX_POINTS`] buckets a request, and
//!   only the periods of [`PERIODS`], as Tencent Cloud Monitor's GetMonitorData does; only the
//!   caller's own instances (another account's is not found).

use crate::Service;
use chrono::{DateTime, Utc};
use crsd_core::field::Field;
use crsd_core::model::{NodeRole, NodeSample};
use crsd_core::{Error, Result};
use std::collections::BTreeMap;

/// The bucket lengths, in seconds, a series may be asked in.
pub const PERIODS: &[i64] = &[5, 60, 300, 3600, 86400];
/// Instances one request may name.
pub const MAX_INSTANCES: usize = 10;
/// Buckets one request may span.
pub const MAX_POINTS: i64 = 1440;

/// A figure of an instance over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceMetric {
    /// Memory used, MB.
    MemUsedMb,
    /// Memory used over the instance's memory size, %.
    MemUtil,
    /// Keys held.
    Keys,
    /// Client connections.
    Connections,
    /// Commands per second.
    Commands,
    /// Network traffic in and out, Mb/s.
    InFlowMbps,
    OutFlowMbps,
    /// Key lookups that found their key, and that did not, per period.
    CmdHits,
    CmdMiss,
    /// Hits over lookups, %.
    HitRatio,
    /// Keys removed by their TTL, and by the memory policy, per period.
    Expired,
    Evicted,
    /// CPU use of one core, % (the mean over masters).
    CpuUtil,
}

/// What a series is asked for.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub metric: InstanceMetric,
    /// Seconds a point covers, one of [`PERIODS`].
    pub period: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One instance's points: bucket starts (Unix seconds), oldest first, and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub instance_id: String,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

impl Service {
    /// `q.metric` of each instance of `ids` (the caller's own, each named once), in buckets of
    /// `q.period` from `q.from` to `q.to`, in the order asked.
    pub async fn instance_series(
        &self,
        app_id: i64,
        ids: &[String],
        q: &SeriesQuery,
    ) -> Result<Vec<Series>> {
        check_query(ids, q)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let inst = self.owned_instance(app_id, id).await?;
            let samples = self.node_samples(id, q.from, q.to).await?;
            let (timestamps, values) = fold(&samples, q.metric, q.period, inst.mem_mb)
                .into_iter()
                .unzip();
            out.push(Series {
                instance_id: id.clone(),
                timestamps,
                values,
            });
        }
        Ok(out)
    }
}

/// The bounds of a request, before anything is read.
fn check_query(ids: &[String], q: &SeriesQuery) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::MissingField(Field::InstanceIds));
    }
    if ids.len() > MAX_INSTANCES {
        return Err(Error::invalid_field(
            Field::InstanceIds,
            format!("at most {MAX_INSTANCES} instances a request"),
        ));
    }
    for (n, id) in ids.iter().enumerate() {
        if ids[..n].contains(id) {
            return Err(Error::invalid_field(
                Field::InstanceIds,
                format!("{id} is named twice"),
            ));
        }
    }
    if !PERIODS.contains(&q.period) {
        return Err(Error::invalid_field(
            Field::Period,
            format!("{} is not one of {PERIODS:?}", q.period),
        ));
    }
    if q.to < q.from {
        return Err(Error::invalid_field(
            Field::EndTime,
            "must not be before the start",
        ));
    }
    let span = q.to.timestamp() - q.from.timestamp();
    if span / q.period >= MAX_POINTS {
        return Err(Error::invalid_field(
            Field::Period,
            format!(
                "{span} s in periods of {} s is more than {MAX_POINTS} points: ask for a shorter \
                 time or a longer period",
                q.period
            ),
        ));
    }
    Ok(())
}

/// One sampling round of an instance's masters, summed.
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    used_memory: f64,
    keys: f64,
    connections: f64,
    ops: f64,
    net_in: f64,
    net_out: f64,
    hits: f64,
    misses: f64,
    expired: f64,
    evicted: f64,
    cpu_sum: f64,
    cpu_nodes: u32,
}

impl Round {
    fn add(&mut self, s: &NodeSample) {
        self.used_memory += s.used_memory as f64;
        self.keys += s.keys as f64;
        self.connections += s.connections as f64;
        self.ops += s.ops_per_sec;
        self.net_in += s.net_in_bps;
        self.net_out += s.net_out_bps;
        self.hits += s.keyspace_hits as f64;
        self.misses += s.keyspace_misses as f64;
        self.expired += s.expired_keys as f64;
        self.evicted += s.evicted_keys as f64;
        if let Some(cpu) = s.cpu_percent() {
            self.cpu_sum += cpu;
            self.cpu_nodes += 1;
        }
    }
}

/// The points of `metric` from an instance's samples (ordered by time), bucket by bucket.
fn fold(
    samples: &[NodeSample],
    metric: InstanceMetric,
    period: i64,
    mem_mb: i64,
) -> Vec<(i64, f64)> {
    // Rounds by time, then buckets of rounds.
    let mut rounds: BTreeMap<i64, Round> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.role == NodeRole::Master) {
        rounds.entry(s.at.timestamp()).or_default().add(s);
    }
    let mut buckets: BTreeMap<i64, Vec<Round>> = BTreeMap::new();
    for (at, round) in rounds {
        buckets
            .entry(at.div_euclid(period) * period)
            .or_default()
            .push(round);
    }
    const MB: f64 = 1024.0 * 1024.0;
    const MBIT: f64 = 1_000_000.0 / 8.0;
    buckets
        .into_iter()
        .filter_map(|(start, rounds)| {
            let max = |f: fn(&Round) -> f64| rounds.iter().map(f).fold(f64::MIN, f64::max);
            let mean =
                |f: fn(&Round) -> f64| rounds.iter().map(f).sum::<f64>() / rounds.len() as f64;
            let sum = |f: fn(&Round) -> f64| rounds.iter().map(f).sum::<f64>();
            let value = match metric {
                InstanceMetric::MemUsedMb => max(|r| r.used_memory) / MB,
                InstanceMetric::MemUtil if mem_mb > 0 => {
                    max(|r| r.used_memory) / MB * 100.0 / mem_mb as f64
                }
                InstanceMetric::MemUtil => return None,
                InstanceMetric::Keys => max(|r| r.keys),
                InstanceMetric::Connections => max(|r| r.connections),
                InstanceMetric::Commands => mean(|r| r.ops),
                InstanceMetric::InFlowMbps => mean(|r| r.net_in) / MBIT,
                InstanceMetric::OutFlowMbps => mean(|r| r.net_out) / MBIT,
                InstanceMetric::CmdHits => sum(|r| r.hits),
                InstanceMetric::CmdMiss => sum(|r| r.misses),
                InstanceMetric::HitRatio => {
                    let (hits, lookups) = (sum(|r| r.hits), sum(|r| r.hits + r.misses));
                    if lookups == 0.0 {
                        return None;
                    }
                    hits * 100.0 / lookups
                }
                InstanceMetric::Expired => sum(|r| r.expired),
                InstanceMetric::Evicted => sum(|r| r.evicted),
                InstanceMetric::CpuUtil => {
                    let with: Vec<f64> = rounds
                        .iter()
                        .filter(|r| r.cpu_nodes > 0)
                        .map(|r| r.cpu_sum / f64::from(r.cpu_nodes))
                        .collect();
                    if with.is_empty() {
                        return None;
                    }
                    with.iter().sum::<f64>() / with.len() as f64
                }
            };
            Some((start, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(node: &str, at: i64, role: NodeRole, mem_mb: i64, hits: i64, misses: i64) -> NodeSample {
        NodeSample {
            node_id: node.into(),
            instance_id: "crs-1".into(),
            at: Utc.timestamp_opt(at, 0).unwrap(),
            role,
            span_ms: 10_000,
            used_memory: mem_mb * 1024 * 1024,
            ops_per_sec: 10.0,
            connections: 3,
            keyspace_hits: hits,
            keyspace_misses: misses,
            net_in_bps: 125_000.0,
            net_out_bps: 0.0,
            keys: 7,
            expired_keys: 1,
            evicted_keys: 0,
            repl_lag_bytes: None,
            cpu_secs: 1.0,
        }
    }

    #[test]
    fn masters_sum_per_round_and_rounds_fold_per_period() {
        use NodeRole::*;
        // Two shards' masters and a replica, two rounds in the first minute, one in the next.
        let samples = vec![
            s("a", 60, Master, 10, 3, 1),
            s("b", 60, Master, 20, 0, 0),
            s("r", 60, Replica, 500, 100, 0),
            s("a", 90, Master, 40, 1, 3),
            s("b", 90, Master, 20, 0, 0),
            s("a", 120, Master, 5, 0, 0),
        ];
        let f = |m| fold(&samples, m, 60, 100);
        // The higher round of the first minute: 40 + 20.
        assert_eq!(f(InstanceMetric::MemUsedMb), vec![(60, 60.0), (120, 5.0)]);
        assert_eq!(f(InstanceMetric::MemUtil), vec![(60, 60.0), (120, 5.0)]);
        // Two masters' 10/s each, the mean of two rounds.
        assert_eq!(f(InstanceMetric::Commands), vec![(60, 20.0), (120, 10.0)]);
        assert_eq!(f(InstanceMetric::Connections), vec![(60, 6.0), (120, 3.0)]);
        // 4 hits of 8 lookups in the first minute (the replica's are not counted); none after.
        assert_eq!(f(InstanceMetric::HitRatio), vec![(60, 50.0)]);
        assert_eq!(f(InstanceMetric::CmdHits), vec![(60, 4.0), (120, 0.0)]);
        assert_eq!(f(InstanceMetric::Expired), vec![(60, 4.0), (120, 1.0)]);
        // 125,000 B/s is 1 Mb/s, per master.
        assert_eq!(f(InstanceMetric::InFlowMbps), vec![(60, 2.0), (120, 1.0)]);
        // 1 s of CPU in 10 s is 10 % for each master.
        assert_eq!(f(InstanceMetric::CpuUtil), vec![(60, 10.0), (120, 10.0)]);
        // One hour folds it all.
        assert_eq!(
            fold(&samples, InstanceMetric::Keys, 3600, 100),
            vec![(0, 14.0)]
        );
    }

    #[test]
    fn bounds_are_checked_before_anything_is_read() {
        let t = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let q = |period, hours| SeriesQuery {
            metric: InstanceMetric::Keys,
            period,
            from: t,
            to: t + chrono::Duration::hours(hours),
        };
        let one = vec!["crs-1".to_string()];
        assert!(check_query(&one, &q(60, 23)).is_ok());
        // 24 h in minutes is 1,440 buckets and one more second of the last.
        assert!(check_query(&one, &q(60, 24)).is_err());
        assert!(check_query(&one, &q(300, 24)).is_ok());
        assert!(check_query(&one, &q(10, 1)).is_err());
        assert!(check_query(&[], &q(60, 1)).is_err());
        let eleven: Vec<String> = (0..11).map(|n| format!("crs-{n}")).collect();
        assert!(check_query(&eleven, &q(60, 1)).is_err());
        assert!(check_query(&eleven[..10], &q(60, 1)).is_ok());
        let twice = vec!["crs-1".to_string(), "crs-1".to_string()];
        assert!(check_query(&twice, &q(60, 1)).is_err());
        let backwards = SeriesQuery {
            to: t - chrono::Duration::seconds(1),
            ..q(60, 1)
        };
        assert!(check_query(&one, &backwards).is_err());
    }
}
