//! crsd's own metrics, for Prometheus: API requests, tasks, background loops, instances,
//! backup bytes and the process itself.
//!
//! Why here: everything that has something to count reaches the service (the runner and the
//! loops live in this crate, the API crate holds a `Service`, the daemon serves the text), and
//! this crate speaks no HTTP, so the registry is plain data with functions to record into it.
//! Each `Service` has a registry of its own rather than the process-wide default one: several
//! crsds in one process (the tests) count apart.
//!
//! Recording is an atomic add. What the store already knows (instances by status, backup
//! bytes) is read when Prometheus scrapes, one query each, so nothing has to keep it in step.
//! Labels are bounded by construction: dialects, action names and codes come from fixed
//! tables (see the API crate's `metrics`), task kinds and states from their enums, loops are
//! named in code.

use crate::Service;
use crsd_core::model::{InstanceStatus, TaskStatus};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::time::{Duration, Instant};

/// The Content-Type of [`Service::render_metrics`]' text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// API latencies: 1 ms to 10 s.
const API_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Task durations, from recorded to ended: a password change takes a second, a backup of a
/// large instance an hour.
const TASK_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The statuses an instance that is not deleted can have, as the `status` label names them.
const LIVE_STATUSES: &[(InstanceStatus, &str)] = &[
    (InstanceStatus::Initializing, "initializing"),
    (InstanceStatus::Busy, "busy"),
    (InstanceStatus::Running, "running"),
    (InstanceStatus::Isolated, "isolated"),
];

pub struct Metrics {
    registry: Registry,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    tasks: IntCounterVec,
    task_duration: HistogramVec,
    loop_lag: GaugeVec,
    loop_pass: GaugeVec,
    instances: IntGaugeVec,
    warm_nodes: IntGaugeVec,
    backup_bytes: IntGauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "crsd_api_requests_total",
                "API requests answered, by dialect, action (`unknown` when the request named \
                 none the dialect knows) and the dialect's result code",
            ),
            &["dialect", "action", "code"],
        )
        .expect("valid metric");
        let api_duration = HistogramVec::new(
            HistogramOpts::new(
                "crsd_api_request_duration_seconds",
                "Time from a request's arrival to its answer, by dialect",
            )
            .buckets(API_BUCKETS.to_vec()),
            &["dialect"],
        )
        .expect("valid metric");
        let tasks = IntCounterVec::new(
            Opts::new(
                "crsd_tasks_total",
                "Tasks that ended, by kind and how they ended (succeeded, failed: undone, \
                 error)",
            ),
            &["kind", "state"],
        )
        .expect("valid metric");
        let task_duration = HistogramVec::new(
            HistogramOpts::new(
                "crsd_task_duration_seconds",
                "Time from a task's record to its end, by kind",
            )
            .buckets(TASK_BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("valid metric");
        let loop_lag = GaugeVec::new(
            Opts::new(
                "crsd_loop_lag_seconds",
                "How late the latest pass of a background loop started against its schedule \
                 (the previous pass's start plus the loop's period): the previous pass's own \
                 duration plus any delay in waking up",
            ),
            &["loop"],
        )
        .expect("valid metric");
        let loop_pass = GaugeVec::new(
            Opts::new(
                "crsd_loop_pass_duration_seconds",
                "How long the latest finished pass of a background loop took",
            ),
            &["loop"],
        )
        .expect("valid metric");
        let instances = IntGaugeVec::new(
            Opts::new(
                "crsd_instances",
                "Instances that are not deleted, by status",
            ),
            &["status"],
        )
        .expect("valid metric");
        let warm_nodes = IntGaugeVec::new(
            Opts::new(
                "crsd_warm_nodes",
                "Nodes of the warm pool waiting for a create, by kind (standard, cluster)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let backup_bytes = IntGauge::new(
            "crsd_backup_store_bytes",
            "Bytes of the backup files the backup store holds (expired backups' files are gone), \
             as the metadata store records them",
        )
        .expect("valid metric");
        for c in [
            Box::new(api_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(api_duration.clone()),
            Box::new(tasks.clone()),
            Box::new(task_duration.clone()),
            Box::new(loop_lag.clone()),
            Box::new(loop_pass.clone()),
            Box::new(instances.clone()),
            Box::new(warm_nodes.clone()),
            Box::new(backup_bytes.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are distinct");
        }
        Metrics {
            registry,
            api_requests,
            api_duration,
            tasks,
            task_duration,
            loop_lag,
            loop_pass,
            instances,
            warm_nodes,
            backup_bytes,
        }
    }

    /// One API request answered. `action` and `code` must come from the dialect's fixed tables.
    pub fn api_request(&self, dialect: &str, action: &str, code: &str, took: Duration) {
        self.api_requests
            .with_label_values(&[dialect, action, code])
            .inc();
        self.api_duration
            .with_label_values(&[dialect])
            .observe(took.as_secs_f64());
    }

    /// A task ended with `status` after `took`.
    pub(crate) fn task_ended(&self, kind: &str, status: TaskStatus, took: Duration) {
        let state = match status {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Error => "error",
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
        };
        self.tasks.with_label_values(&[kind, state]).inc();
        self.task_duration
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    /// The clock of a loop named `name` that sleeps `period` between passes.
    pub(crate) fn loop_timer(&self, name: &'static str, period: Duration) -> LoopTimer<'_> {
        LoopTimer {
            metrics: self,
            name,
            period,
            last_start: None,
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Times the passes of one background loop (see [`Metrics::loop_timer`]).
pub(crate) struct LoopTimer<'a> {
    metrics: &'a Metrics,
    name: &'static str,
    period: Duration,
    last_start: Option<Instant>,
}

impl LoopTimer<'_> {
    /// A pass starts: records how late it is against the previous start plus the period
    /// (the first pass is on time).
    pub(crate) fn pass_starts(&mut self) -> Instant {
        let now = Instant::now();
        let lag = self.last_start.map_or(Duration::ZERO, |prev| {
            now.saturating_duration_since(prev + self.period)
        });
        self.metrics
            .loop_lag
            .with_label_values(&[self.name])
            .set(lag.as_secs_f64());
        self.last_start = Some(now);
        now
    }

    /// The pass that started at `started` is done.
    pub(crate) fn pass_ended(&self, started: Instant) {
        self.metrics
            .loop_pass
            .with_label_values(&[self.name])
            .set(started.elapsed().as_secs_f64());
    }
}

impl Service {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric in Prometheus text format, the store's gauges read now. When the store
    /// cannot answer, those keep their last values (the log says why).
    pub async fn render_metrics(&self) -> String {
        match self.store.instances_by_status().await {
            Ok(counts) => {
                for (status, label) in LIVE_STATUSES {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status)
                        .map_or(0, |(_, n)| *n);
                    self.metrics.instances.with_label_values(&[label]).set(n);
                }
            }
            Err(e) => tracing::warn!(error = ?e, "cannot count instances for the metrics"),
        }
        match self.store.warm_nodes().await {
            Ok(warm) => {
                for (cluster, kind) in [(false, "standard"), (true, "cluster")] {
                    let n = warm.iter().filter(|w| w.cluster == cluster).count();
                    self.metrics
                        .warm_nodes
                        .with_label_values(&[kind])
                        .set(n as i64);
                }
            }
            Err(e) => tracing::warn!(error = ?e, "cannot count warm nodes for the metrics"),
        }
        match self.store.backup_bytes().await {
            Ok(bytes) => self.metrics.backup_bytes.set(bytes),
            Err(e) => tracing::warn!(error = ?e, "cannot sum backup sizes for the metrics"),
        }
        self.metrics.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_rendered_under_their_labels() {
        let m = Metrics::new();
        m.api_request("v2", "DescribeRedis", "0", Duration::from_millis(3));
        m.task_ended("newInstance", TaskStatus::Failed, Duration::from_secs(2));
        let mut timer = m.loop_timer("supervisor", Duration::ZERO);
        let started = timer.pass_starts();
        timer.pass_ended(started);
        timer.pass_starts();
        let text = m.encode();
        for line in [
            r#"crsd_api_requests_total{action="DescribeRedis",code="0",dialect="v2"} 1"#,
            r#"crsd_api_request_duration_seconds_count{dialect="v2"} 1"#,
            r#"crsd_tasks_total{kind="newInstance",state="failed"} 1"#,
            r#"crsd_task_duration_seconds_bucket{kind="newInstance",le="2.5"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert!(text.contains(r#"crsd_loop_lag_seconds{loop="supervisor"}"#));
        assert!(text.contains(r#"crsd_loop_pass_duration_seconds{loop="supervisor"}"#));
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
