//! The history of per-node figures crsd keeps itself, so that its API and console can show
//! monitoring without a Prometheus beside it.
//!
//! Every `sample_every` (60 s by default) the sampler asks every node of every running
//! instance one `INFO` (all the sections it needs in one round trip, through the node
//! runtime), turns what redis counts since its start into deltas and rates against the same
//! node's previous answer, kept in memory, and records the round in one transaction. A
//! node's first answer (after crsd started, or after the node restarted: a new `run_id`) has
//! redis's own instantaneous rates and deltas of 0.
//!
//! It must stay cheap and never stall: nodes are asked [`CONCURRENCY`] at a time, each within
//! [`PER_NODE_TIMEOUT`]; a node that does not answer (stopped, hung, just killed) is left out
//! of the round and logged at debug. Samples older than `retention` (24 h by default) are
//! pruned after every round, in chunks of [`PRUNE_CHUNK`] rows, each its own short write
//! transaction, so the table holds at most about retention / interval rows per node (1,440 a
//! node for the defaults) and catching up after a long stop never holds the write lock long.
//!
//! Every ten minutes or so (`monitor::SNAPSHOT_EVERY`) a round also keeps each node's command
//! counters, for the monitoring actions' spans (see `monitor.rs`); they share the retention.
//!
//! Times are the service's clock (whole seconds); the rates' denominators are the real time
//! between two answers, so a clock moved by tests or by the operator never distorts a rate.

use crate::Service;
use chrono::{DateTime, TimeZone, Utc};
use crsd_core::model::{InstanceStatus, NodeRole, NodeSample};
use crsd_core::Result;
use crsd_engine::{NodeSpec, NodeStats};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Nodes asked at once: enough that 1,000 nodes take a small part of the interval, few
/// enough that a round never floods the host with connections.
pub const CONCURRENCY: usize = 32;
/// How long one node has to connect, log in and answer before the round leaves it out.
pub const PER_NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// Rows forgotten per pruning transaction.
const PRUNE_CHUNK: i64 = 10_000;

/// How often nodes are sampled and how long samples are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorSettings {
    pub sample_every: Duration,
    /// At least `sample_every` (a shorter one is raised to it).
    pub retention: Duration,
}

impl Default for MonitorSettings {
    fn default() -> MonitorSettings {
        MonitorSettings {
            sample_every: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleRound {
    /// Nodes that answered and were recorded.
    pub sampled: usize,
    /// Nodes asked that did not answer in time.
    pub skipped: usize,
    /// Samples forgotten for their age.
    pub pruned: u64,
}

/// A node's previous answer, for the next round's deltas.
#[derive(Debug, Clone)]
pub(crate) struct LastAnswer {
    stats: NodeStats,
    at: Instant,
}

/// What the sampler remembers between rounds: each node's last answer, by node id.
pub(crate) type LastAnswers = std::sync::Mutex<HashMap<String, LastAnswer>>;

impl Service {
    /// Samples every node each `monitor.sample_every` until `shutdown` turns true; the first
    /// round comes one interval after the start.
    pub async fn run_sampler(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = self.cfg.monitor.sample_every;
        let mut timer = self.metrics.loop_timer("sampler", every);
        // A fixed cadence: a round's own time does not push the next one back.
        let mut next = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            next = (next + every).max(tokio::time::Instant::now());
            let started = timer.pass_starts();
            match self.sample_once().await {
                Ok(r) => tracing::debug!(
                    sampled = r.sampled,
                    skipped = r.skipped,
                    pruned = r.pruned,
                    "sampled the nodes"
                ),
                Err(e) => tracing::error!(error = ?e, "sampling the nodes failed"),
            }
            timer.pass_ended(started);
        }
    }

    /// One round now: every node of every running instance asked once, the answers recorded
    /// in one transaction, then samples older than the retention pruned.
    pub async fn sample_once(&self) -> Result<SampleRound> {
        let now = self.now();
        let at = Utc
            .timestamp_opt(now.timestamp(), 0)
            .single()
            .unwrap_or(now);
        let live = self.store.live_instances().await?;
        // By index into `live`: the stream's items own what they hold.
        let wanted: Vec<(usize, NodeSpec)> = live
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.status, InstanceStatus::Running | InstanceStatus::Busy))
            .flat_map(|(n, i)| self.node_specs(i).into_iter().map(move |s| (n, s)))
            .collect();
        let asked = wanted.len();

        let answers: Vec<(usize, NodeSpec, NodeStats, Instant)> =
            futures_util::stream::iter(wanted)
                .map(|(n, spec)| self.ask(n, spec))
                .buffer_unordered(CONCURRENCY)
                .filter_map(|a| async move { a })
                .collect()
                .await;

        // The master's end of the stream in this round, per instance, for its replicas' lag:
        // the node the database names master, if it answered as one.
        let master_offsets: HashMap<usize, i64> = answers
            .iter()
            .filter(|(n, spec, stats, _)| {
                stats.is_master && live[*n].master().is_some_and(|m| m.id == spec.name)
            })
            .map(|(n, _, stats, _)| (*n, stats.repl_offset))
            .collect();

        let mut samples = Vec::with_capacity(answers.len());
        {
            let mut last = self.last_answers.lock().unwrap_or_else(|e| e.into_inner());
            for (n, spec, stats, answered) in &answers {
                let inst = &live[*n];
                let lag = if stats.is_master {
                    None
                } else {
                    master_offsets
                        .get(n)
                        .map(|m| (m - stats.repl_offset).max(0))
                };
                let previous = last.get(&spec.name);
                samples.push(sample(
                    &spec.name, &inst.id, at, stats, *answered, previous, lag,
                ));
                last.insert(
                    spec.name.clone(),
                    LastAnswer {
                        stats: stats.clone(),
                        at: *answered,
                    },
                );
            }
            // Nodes that are gone (deleted instances, removed replicas) are forgotten; one that
            // did not answer keeps its last answer for the next round.
            let exist: HashSet<&str> = live
                .iter()
                .flat_map(|i| i.nodes.iter().map(|n| n.id.as_str()))
                .collect();
            last.retain(|node, _| exist.contains(node.as_str()));
        }

        if !samples.is_empty() {
            let mut tx = self.store.write().await?;
            tx.insert_node_samples(&samples).await?;
            tx.commit().await?;
        }
        let pruned = self.prune_samples(now).await?;
        // Every tenth round or so, each node's command counters too (see `monitor.rs`).
        if self.command_snapshot_due(now) {
            if let Err(e) = self.snapshot_commands_once().await {
                tracing::warn!(error = ?e, "keeping command counters failed");
            }
        }
        Ok(SampleRound {
            sampled: samples.len(),
            skipped: asked - samples.len(),
            pruned,
        })
    }

    /// One node's answer, or `None` (logged) if it gave none in time.
    async fn ask(&self, n: usize, spec: NodeSpec) -> Option<(usize, NodeSpec, NodeStats, Instant)> {
        match tokio::time::timeout(PER_NODE_TIMEOUT, self.runtime.stats(&spec)).await {
            Ok(Ok(stats)) => Some((n, spec, stats, Instant::now())),
            Ok(Err(e)) => {
                tracing::debug!(node = %spec.name, error = %e, "node not sampled");
                None
            }
            Err(_) => {
                tracing::debug!(node = %spec.name, "node not sampled: no answer in time");
                None
            }
        }
    }

    /// Forgets the samples older than the retention at `now`; returns how many.
    async fn prune_samples(&self, now: DateTime<Utc>) -> Result<u64> {
        let retention = self
            .cfg
            .monitor
            .retention
            .max(self.cfg.monitor.sample_every);
        let keep = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let Some(cutoff) = now.checked_sub_signed(keep) else {
            return Ok(0);
        };
        let mut pruned = 0;
        loop {
            let mut tx = self.store.write().await?;
            let n = tx.prune_node_samples(cutoff, PRUNE_CHUNK).await?;
            tx.commit().await?;
            pruned += n;
            if n < PRUNE_CHUNK as u64 {
                return Ok(pruned);
            }
        }
    }

    /// The recorded samples of instance `instance_id`'s nodes taken from `from` to `to`
    /// (inclusive), oldest first and, within a round, by node id. The caller checks that the
    /// account owns the instance; a deleted instance's samples stay readable until they age
    /// out.
    pub async fn node_samples(
        &self,
        instance_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<NodeSample>> {
        Ok(self.store.node_samples(instance_id, from, to).await?)
    }
}

/// A node's sample from its answer `stats` (received at `answered`) and its previous one.
fn sample(
    node_id: &str,
    instance_id: &str,
    at: DateTime<Utc>,
    stats: &NodeStats,
    answered: Instant,
    previous: Option<&LastAnswer>,
    repl_lag_bytes: Option<i64>,
) -> NodeSample {
    let mut s = NodeSample {
        node_id: node_id.to_string(),
        instance_id: instance_id.to_string(),
        at,
        role: if stats.is_master {
            NodeRole::Master
        } else {
            NodeRole::Replica
        },
        span_ms: 0,
        used_memory: clamp(stats.used_memory),
        ops_per_sec: stats.instantaneous_ops_per_sec,
        connections: clamp(stats.connected_clients),
        keyspace_hits: 0,
        keyspace_misses: 0,
        net_in_bps: stats.instantaneous_input_kbps * 1024.0,
        net_out_bps: stats.instantaneous_output_kbps * 1024.0,
        keys: clamp(stats.keys),
        expired_keys: 0,
        evicted_keys: 0,
        repl_lag_bytes,
        cpu_secs: 0.0,
    };
    // Deltas only against an answer of the same process, some time ago.
    let Some(prev) = previous.filter(|p| p.stats.run_id == stats.run_id) else {
        return s;
    };
    let span = answered.saturating_duration_since(prev.at);
    let secs = span.as_secs_f64();
    if span.as_millis() == 0 {
        return s;
    }
    let p = &prev.stats;
    // A counter that went back (CONFIG RESETSTAT) counts 0 for the span.
    let delta = |now: u64, before: u64| clamp(now.saturating_sub(before));
    s.span_ms = span.as_millis().min(i64::MAX as u128) as i64;
    s.ops_per_sec = delta(stats.commands, p.commands) as f64 / secs;
    s.net_in_bps = delta(stats.net_input_bytes, p.net_input_bytes) as f64 / secs;
    s.net_out_bps = delta(stats.net_output_bytes, p.net_output_bytes) as f64 / secs;
    s.keyspace_hits = delta(stats.keyspace_hits, p.keyspace_hits);
    s.keyspace_misses = delta(stats.keyspace_misses, p.keyspace_misses);
    s.expired_keys = delta(stats.expired_keys, p.expired_keys);
    s.evicted_keys = delta(stats.evicted_keys, p.evicted_keys);
    s.cpu_secs = (stats.cpu_secs - p.cpu_secs).max(0.0);
    s
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(commands: u64, cpu: f64) -> NodeStats {
        NodeStats {
            run_id: "r1".into(),
            is_master: true,
            commands,
            instantaneous_ops_per_sec: 5.0,
            instantaneous_input_kbps: 1.0,
            keyspace_hits: commands / 2,
            cpu_secs: cpu,
            ..NodeStats::default()
        }
    }

    #[test]
    fn first_answer_has_redis_rates_and_no_deltas_then_deltas_over_real_time() {
        let t = Instant::now();
        let at = Utc::now();
        let first = sample("crs-1-0", "crs-1", at, &stats(100, 1.0), t, None, None);
        assert_eq!(first.span_ms, 0);
        assert_eq!(first.ops_per_sec, 5.0);
        assert_eq!(first.net_in_bps, 1024.0);
        assert_eq!((first.keyspace_hits, first.cpu_secs), (0, 0.0));

        let prev = LastAnswer {
            stats: stats(100, 1.0),
            at: t,
        };
        let later = t + Duration::from_secs(10);
        let next = sample(
            "crs-1-0",
            "crs-1",
            at,
            &stats(300, 1.5),
            later,
            Some(&prev),
            None,
        );
        assert_eq!(next.span_ms, 10_000);
        assert_eq!(next.ops_per_sec, 20.0);
        assert_eq!(next.keyspace_hits, 100);
        assert_eq!(next.cpu_secs, 0.5);
        assert_eq!(next.cpu_percent(), Some(5.0));

        // A restarted process (new run id): a first answer again.
        let mut restarted = stats(3, 0.1);
        restarted.run_id = "r2".into();
        let again = sample("crs-1-0", "crs-1", at, &restarted, later, Some(&prev), None);
        assert_eq!((again.span_ms, again.keyspace_hits), (0, 0));
    }
}
