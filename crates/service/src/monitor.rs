//! What an instance's owner may learn of its workload: which commands ran and how long they
//! took, where its connections come from, its biggest keys and its hottest ones.
//!
//! # Commands over a span
//! Redis counts commands (`INFO commandstats`) and their latencies (`LATENCY HISTOGRAM`)
//! since its process started. The history of node figures (`history.rs`) does not keep them
//! (a row per command per node each minute is too much), so every [`SNAPSHOT_EVERY`] the
//! sampler also records each node's counters ([`CommandSnapshot`], pruned with the history's
//! retention), and a span's counts are the masters' live counters minus the newest snapshot
//! of the same process taken by the span's start (half an interval of slack, so the
//! shortest span always has one). When there is none that old (crsd started keeping them
//! later, the process restarted since, or its counters were reset), the answer is the
//! whole lifetime of the process: more than the span, never less. Only masters count: they
//! serve the clients (a replica's counters would count every write twice). crsd's own
//! commands (`INFO`, `PING` of the health checks) are in redis' counters like any other.
//!
//! Latencies are read as histograms, not as `INFO latencystats` percentiles: counts in
//! buckets can be subtracted from a snapshot and summed over commands, percentiles cannot.
//! Redis' buckets are powers of two microseconds; each bound of the model's ladder
//! (1, 5, 10, 50, 200 ms) is taken at the nearest one ([`LADDER_BUCKETS_USEC`]).
//!
//! # Big keys: a bounded walk on a replica, run in the background
//! Sizing keys takes `SCAN`, `TYPE` and `MEMORY USAGE` of every key: on a large instance,
//! far longer than an HTTP request may take, and work the master's clients should not wait
//! behind. So the walk runs on a replica of each shard (the master only when the shard has
//! none), in batches of [`BIG_KEY_WALK`]`.batch` keys with a pause between batches, bounded
//! in keys and in time (a node with more keys is sized as far as the walk got), as a
//! background job of crsd ([`WALKS_AT_ONCE`] at most over every instance): a request starts one when the instance's last report is older
//! than [`REPORT_FRESH`], waits for it at most [`REPORT_WAIT`], and otherwise answers the
//! previous report of that day (or nothing yet). Reports are kept in memory only, one per
//! instance: they are cheap to make again, and the model asks by day (`Date`): a day
//! other than the last report's answers nothing.
//!
//! # Hot keys: LFU counters, only under an LFU policy
//! Redis only tracks how often keys are used under an LFU `maxmemory-policy`; then the
//! masters' keys are sampled (a short bounded walk: this one must run where the reads
//! happen) with `OBJECT FREQ`, and each counter is turned back into the accesses that make
//! it (redis' logarithmic counter, `lfu-log-factor`). The counter decays by itself
//! (`lfu-decay-time`), so it is recent use whatever `SpanType` asks. Under another policy
//! the answer is empty: the model has no field to say why, so [`HotKeys::NotTracked`] names
//! the policy for the log.

use crate::Service;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use crsd_core::model::{CommandCount, CommandSnapshot, Instance, InstanceStatus};
use crsd_core::{Error, Result};
use crsd_engine::{CommandCounters, KeyWalk, NodeSpec};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each node's command counters are kept.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(600);
/// The model's latency ladder, milliseconds (-1: above the last bound).
pub const LADDER_MS: [i64; 6] = [1, 5, 10, 50, 200, -1];
/// Its bounds as redis' histogram buckets: the power of two microseconds nearest each.
pub const LADDER_BUCKETS_USEC: [u64; 5] = [1 << 10, 1 << 12, 1 << 13, 1 << 16, 1 << 18];
/// The big-key size ladder, KB (upper bounds; -1: above 10 MB).
pub const SIZE_LADDER_KB: [i64; 6] = [1, 10, 100, 1024, 10240, -1];
/// Commands a TopN answer lists at most.
pub const TOP_COMMANDS: usize = 20;
/// Keys a big-key answer lists at most (and kept per type by a walk).
pub const BIG_KEYS: usize = 100;
/// Keys a hot-key answer lists at most.
pub const HOT_KEYS: usize = 20;

/// The big-key walk of one node: 200 keys a batch, 10 ms apart, at most 200,000 keys or a
/// minute (about a thousand batches).
pub const BIG_KEY_WALK: KeyWalk = KeyWalk {
    max_keys: 200_000,
    batch: 200,
    pause: Duration::from_millis(10),
    max_time: Duration::from_secs(60),
};
/// The hot-key sample of one master, within the request: 100 keys a batch, 2 ms apart, at
/// most 10,000 keys or 1.5 s.
pub const HOT_KEY_WALK: KeyWalk = KeyWalk {
    max_keys: 10_000,
    batch: 100,
    pause: Duration::from_millis(2),
    max_time: Duration::from_millis(1500),
};
/// A report younger than this is answered as is.
pub const REPORT_FRESH: Duration = Duration::from_secs(600);
/// How long a request waits for a walk it started or found running.
pub const REPORT_WAIT: Duration = Duration::from_secs(3);
/// How long one node has to answer a counters or clients read.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// Redis' LFU counter of a new key (`LFU_INIT_VAL`): a key at or under it was not used since.
const LFU_INIT: u64 = 5;
/// Nodes whose counters are read at once by a snapshot round.
const CONCURRENCY: usize = 32;
/// Big-key walks running at once over every instance: more requests wait their turn.
const WALKS_AT_ONCE: usize = 4;
/// Snapshots forgotten per pruning transaction.
const PRUNE_CHUNK: i64 = 10_000;

/// The model's `SpanType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// 1, "real time": the last snapshot interval.
    Now,
    /// 2: the last 30 minutes.
    HalfHour,
    /// 3: the last 6 hours.
    SixHours,
    /// 4: the last 24 hours.
    Day,
}

impl Span {
    /// `SpanType` 1-4.
    pub fn from_code(code: i64) -> Result<Span> {
        match code {
            1 => Ok(Span::Now),
            2 => Ok(Span::HalfHour),
            3 => Ok(Span::SixHours),
            4 => Ok(Span::Day),
            other => Err(Error::invalid(
                "SpanType",
                format!("{other} is not 1, 2, 3 or 4"),
            )),
        }
    }

    fn length(self) -> chrono::Duration {
        match self {
            Span::Now => chrono::Duration::seconds(SNAPSHOT_EVERY.as_secs() as i64),
            Span::HalfHour => chrono::Duration::minutes(30),
            Span::SixHours => chrono::Duration::hours(6),
            Span::Day => chrono::Duration::hours(24),
        }
    }
}

/// One command's use over a span, summed over the masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandUse {
    pub name: String,
    pub calls: u64,
    /// Time spent running it, microseconds.
    pub usec: u64,
}

/// The instance's commands over a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Commands that ran in the span.
    pub commands: Vec<CommandUse>,
    /// Calls per rung of [`LADDER_MS`].
    pub ladder: [u64; 6],
    /// Where the counts begin: the snapshot subtracted, or `None` when some master's counts
    /// are its whole lifetime (no snapshot old enough).
    pub since: Option<DateTime<Utc>>,
    /// When the counters were read.
    pub at: DateTime<Utc>,
}

impl Workload {
    /// The most called commands, most first.
    pub fn top_by_calls(&self) -> Vec<&CommandUse> {
        let mut list: Vec<&CommandUse> = self.commands.iter().collect();
        list.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.name.cmp(&b.name)));
        list.truncate(TOP_COMMANDS);
        list
    }

    /// The commands that took the most time, most first.
    pub fn top_by_time(&self) -> Vec<&CommandUse> {
        let mut list: Vec<&CommandUse> = self.commands.iter().collect();
        list.sort_by(|a, b| b.usec.cmp(&a.usec).then(a.name.cmp(&b.name)));
        list.truncate(TOP_COMMANDS);
        list
    }
}

/// Connections from one source address, over every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUse {
    pub ip: String,
    pub connections: u64,
    /// Commands they sent, where redis counts them per connection (7.2 and later); else 0.
    pub commands: u64,
}

/// One big key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigKey {
    pub db: i64,
    /// The key's name (bytes that are not UTF-8 shown as U+FFFD).
    pub key: String,
    pub kind: String,
    pub bytes: u64,
}

/// What a big-key walk found over the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// When the walk started, and its day in the operator's time zone.
    pub at: DateTime<Utc>,
    pub day: NaiveDate,
    /// The biggest keys of each type, biggest first.
    pub biggest: BTreeMap<String, Vec<BigKey>>,
    /// Per type: keys and bytes.
    pub by_type: BTreeMap<String, (u64, u64)>,
    /// Keys per rung of [`SIZE_LADDER_KB`].
    pub sizes: [u64; 6],
    /// Whether every node was walked to its end.
    pub complete: bool,
}

impl KeyReport {
    /// The biggest keys, biggest first: of every type, or strings only.
    pub fn biggest(&self, strings_only: bool) -> Vec<&BigKey> {
        let mut list: Vec<&BigKey> = self
            .biggest
            .iter()
            .filter(|(kind, _)| !strings_only || kind.as_str() == "string")
            .flat_map(|(_, keys)| keys)
            .collect();
        list.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.key.cmp(&b.key)));
        list.truncate(BIG_KEYS);
        list
    }
}

/// A hot key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey {
    pub key: String,
    pub kind: String,
    /// Accesses its LFU counter stands for (an estimate: redis' counter is logarithmic).
    pub accesses: u64,
}

/// What the hot-key look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotKeys {
    /// Keys used since they were written, most used first.
    Tracked(Vec<HotKey>),
    /// Redis does not track use under this `maxmemory-policy`.
    NotTracked { policy: String },
}

/// The monitoring state kept in memory: when counters were last kept, and each instance's
/// big-key report.
pub(crate) struct MonitorState {
    last_snapshot: Mutex<Option<DateTime<Utc>>>,
    reports: Arc<Mutex<HashMap<String, ReportSlot>>>,
    /// Bounds the walks running at once ([`WALKS_AT_ONCE`]).
    walks: Arc<tokio::sync::Semaphore>,
}

impl Default for MonitorState {
    fn default() -> MonitorState {
        MonitorState {
            last_snapshot: Mutex::default(),
            reports: Arc::default(),
            walks: Arc::new(tokio::sync::Semaphore::new(WALKS_AT_ONCE)),
        }
    }
}

#[derive(Default)]
struct ReportSlot {
    done: Option<Arc<KeyReport>>,
    /// Turns true when the running walk ended (dropped if it failed).
    running: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Service {
    /// The caller's instance `id` while its nodes serve (running, or running a task): an
    /// isolated one has no process to ask.
    async fn serving_instance(&self, app_id: i64, id: &str) -> Result<Instance> {
        let inst = self.owned_instance(app_id, id).await?;
        match inst.status {
            InstanceStatus::Running | InstanceStatus::Busy => Ok(inst),
            other => Err(Error::InstanceStatusAbnormal {
                id: inst.id.clone(),
                status: other.description().into(),
            }),
        }
    }

    /// The instance's commands over `span`.
    pub async fn workload(&self, app_id: i64, id: &str, span: Span) -> Result<Workload> {
        let inst = self.serving_instance(app_id, id).await?;
        let now = self.now();
        let start =
            now - span.length() + chrono::Duration::seconds(SNAPSHOT_EVERY.as_secs() as i64 / 2);
        let mut by_name: BTreeMap<String, CommandCount> = BTreeMap::new();
        let mut since = Some(DateTime::<Utc>::MIN_UTC);
        for spec in self.master_specs(&inst).await {
            let live = match tokio::time::timeout(
                NODE_TIMEOUT,
                self.runtime.command_counters(&spec),
            )
            .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(crate::steps::engine_err(e)),
                Err(_) => {
                    return Err(Error::internal(format!(
                        "node {} did not answer INFO commandstats in time",
                        spec.name
                    )))
                }
            };
            let live_counts = counts(&live);
            // None old enough, or of another process, or reset since: the whole lifetime of
            // the process is counted (and `since` says so).
            let base = self
                .store
                .command_snapshot_before(&spec.name, start)
                .await?
                .filter(|s| s.run_id == live.run_id)
                .filter(|s| went_up(&s.commands, &live_counts));
            since = match (&base, since) {
                (Some(b), Some(s)) => Some(s.max(b.at)),
                _ => None,
            };
            for (name, c) in live_counts {
                let before = base.as_ref().and_then(|b| b.commands.get(&name));
                let sum = by_name.entry(name).or_default();
                let minus = |now: u64, pick: &dyn Fn(&CommandCount) -> u64| {
                    now.saturating_sub(before.map_or(0, pick))
                };
                sum.calls += minus(c.calls, &|b| b.calls);
                sum.usec += minus(c.usec, &|b| b.usec);
                sum.within.resize(LADDER_BUCKETS_USEC.len(), 0);
                for (i, w) in c.within.iter().enumerate() {
                    sum.within[i] += minus(*w, &|b| b.within.get(i).copied().unwrap_or(0));
                }
            }
        }
        let mut ladder = [0u64; 6];
        let mut commands = Vec::new();
        for (name, c) in by_name {
            if c.calls == 0 {
                continue;
            }
            let mut below = 0;
            for (rung, within) in c.within.iter().enumerate() {
                let within = (*within).min(c.calls);
                ladder[rung] += within.saturating_sub(below);
                below = below.max(within);
            }
            ladder[5] += c.calls.saturating_sub(below);
            commands.push(CommandUse {
                name,
                calls: c.calls,
                usec: c.usec,
            });
        }
        Ok(Workload {
            commands,
            ladder,
            since: since.filter(|s| *s > DateTime::<Utc>::MIN_UTC),
            at: now,
        })
    }

    /// Whether command counters are due to be kept (see [`SNAPSHOT_EVERY`]).
    pub(crate) fn command_snapshot_due(&self, now: DateTime<Utc>) -> bool {
        let last = self
            .monitor_state
            .last_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let every = chrono::Duration::seconds(SNAPSHOT_EVERY.as_secs() as i64);
        last.is_none_or(|l| now - l >= every)
    }

    /// Keeps the command counters of every node of every running instance now, then forgets
    /// those older than the history's retention; returns how many nodes were kept.
    pub async fn snapshot_commands_once(&self) -> Result<usize> {
        let now = self.now();
        let at = Utc
            .timestamp_opt(now.timestamp(), 0)
            .single()
            .unwrap_or(now);
        *self
            .monitor_state
            .last_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(now);
        let live = self.store.live_instances().await?;
        let wanted: Vec<(String, NodeSpec)> = live
            .iter()
            .filter(|i| matches!(i.status, InstanceStatus::Running | InstanceStatus::Busy))
            .flat_map(|i| {
                self.node_specs(i)
                    .into_iter()
                    .map(move |s| (i.id.clone(), s))
            })
            .collect();
        let snaps: Vec<CommandSnapshot> = futures_util::stream::iter(wanted)
            .map(|(instance_id, spec)| async move {
                let read =
                    tokio::time::timeout(NODE_TIMEOUT, self.runtime.command_counters(&spec)).await;
                match read {
                    Ok(Ok(c)) => Some(CommandSnapshot {
                        node_id: spec.name,
                        instance_id,
                        at,
                        commands: counts(&c),
                        run_id: c.run_id,
                    }),
                    _ => {
                        tracing::debug!(node = %spec.name, "command counters not kept: no answer");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|s| async move { s })
            .collect()
            .await;
        if !snaps.is_empty() {
            let mut tx = self.store.write().await?;
            tx.insert_command_snapshots(&snaps).await?;
            tx.commit().await?;
        }
        let retention = self
            .cfg
            .monitor
            .retention
            .max(self.cfg.monitor.sample_every);
        let keep = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        if let Some(cutoff) = now.checked_sub_signed(keep) {
            loop {
                let mut tx = self.store.write().await?;
                let n = tx.prune_command_snapshots(cutoff, PRUNE_CHUNK).await?;
                tx.commit().await?;
                if n < PRUNE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(snaps.len())
    }

    /// The instance's customer connections by source address, over every node that answers,
    /// most connections first.
    pub async fn client_sources(&self, app_id: i64, id: &str) -> Result<Vec<SourceUse>> {
        let inst = self.serving_instance(app_id, id).await?;
        let mut by_ip: BTreeMap<String, SourceUse> = BTreeMap::new();
        for spec in self.node_specs(&inst) {
            let read = tokio::time::timeout(NODE_TIMEOUT, self.runtime.customer_clients(&spec));
            let Ok(Ok(clients)) = read.await else {
                tracing::debug!(node = %spec.name, "CLIENT LIST not read");
                continue;
            };
            for c in clients {
                let s = by_ip.entry(c.ip.clone()).or_insert_with(|| SourceUse {
                    ip: c.ip,
                    connections: 0,
                    commands: 0,
                });
                s.connections += 1;
                s.commands += c.commands.unwrap_or(0);
            }
        }
        let mut list: Vec<SourceUse> = by_ip.into_values().collect();
        list.sort_by(|a, b| b.connections.cmp(&a.connections).then(a.ip.cmp(&b.ip)));
        Ok(list)
    }

    /// The instance's big-key report for `date` (`YYYYMMDD` or `YYYY-MM-DD`, the operator's
    /// time zone): today's starts a walk when the last is not fresh (see the module's doc);
    /// `None` when there is none for that day (yet).
    pub async fn key_report(
        &self,
        app_id: i64,
        id: &str,
        date: &str,
    ) -> Result<Option<Arc<KeyReport>>> {
        let inst = self.serving_instance(app_id, id).await?;
        let day = parse_day(date)?;
        let now = self.now();
        let today = now.with_timezone(&self.time_zone()).date_naive();
        let of_day = |slot: &ReportSlot| slot.done.clone().filter(|r| r.day == day);
        let reports = self.monitor_state.reports.clone();
        let mut running = {
            let mut all = reports.lock().unwrap_or_else(|e| e.into_inner());
            // Reports of deleted instances and of earlier days go.
            all.retain(|_, s| {
                s.running.is_some() || s.done.as_ref().is_some_and(|r| r.day == today)
            });
            let slot = all.entry(inst.id.clone()).or_default();
            let fresh = chrono::Duration::seconds(REPORT_FRESH.as_secs() as i64);
            if day != today || slot.done.as_ref().is_some_and(|r| now - r.at < fresh) {
                return Ok(of_day(slot));
            }
            match &slot.running {
                Some(rx) => rx.clone(),
                None => {
                    let rx = self.start_key_walk(&inst, now, today);
                    slot.running = Some(rx.clone());
                    rx
                }
            }
        };
        let _ = tokio::time::timeout(REPORT_WAIT, running.wait_for(|done| *done)).await;
        let all = reports.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.get(&inst.id).and_then(of_day))
    }

    /// Starts the big-key walk of `inst` in the background; its receiver turns true when the
    /// report is in.
    fn start_key_walk(
        &self,
        inst: &Instance,
        at: DateTime<Utc>,
        day: NaiveDate,
    ) -> tokio::sync::watch::Receiver<bool> {
        // A replica of each shard; the master where a shard has none.
        let specs: Vec<NodeSpec> = inst
            .masters()
            .map(|m| {
                let node = inst
                    .replicas()
                    .filter(|r| r.shard == m.shard)
                    .min_by_key(|r| r.seq)
                    .unwrap_or(m);
                self.node_spec(inst, node)
            })
            .collect();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let runtime = self.runtime.clone();
        let reports = self.monitor_state.reports.clone();
        let id = inst.id.clone();
        let walks = self.monitor_state.walks.clone();
        tokio::spawn(async move {
            // Never closed; a walk that waits its turn is still one walk.
            let _turn = walks.acquire_owned().await;
            let mut report = KeyReport {
                at,
                day,
                biggest: BTreeMap::new(),
                by_type: BTreeMap::new(),
                sizes: [0; 6],
                complete: true,
            };
            let mut failed = None;
            for spec in &specs {
                let bound = BIG_KEY_WALK.max_time + NODE_TIMEOUT * 2;
                let walk = runtime.key_sizes(spec, BIG_KEY_WALK, BIG_KEYS);
                match tokio::time::timeout(bound, walk).await {
                    Ok(Ok(sizes)) => merge(&mut report, sizes),
                    Ok(Err(e)) => failed = Some(format!("{}: {e}", spec.name)),
                    Err(_) => failed = Some(format!("{}: no end in {bound:?}", spec.name)),
                }
            }
            let mut all = reports.lock().unwrap_or_else(|e| e.into_inner());
            let slot = all.entry(id.clone()).or_default();
            slot.running = None;
            match failed {
                Some(why) => tracing::warn!(instance = %id, error = %why, "big-key walk failed"),
                None => {
                    slot.done = Some(Arc::new(report));
                    let _ = tx.send(true);
                }
            }
        });
        rx
    }

    /// The instance's hot keys (see the module's doc); `span` is redis' own decay.
    pub async fn hot_keys(&self, app_id: i64, id: &str, _span: Span) -> Result<HotKeys> {
        let inst = self.serving_instance(app_id, id).await?;
        let mut keys: Vec<HotKey> = Vec::new();
        for spec in self.master_specs(&inst).await {
            let policy = self
                .runtime
                .get_param(&spec, "maxmemory-policy")
                .await
                .map_err(crate::steps::engine_err)?;
            if !policy.contains("lfu") {
                return Ok(HotKeys::NotTracked { policy });
            }
            let factor: u64 = self
                .runtime
                .get_param(&spec, "lfu-log-factor")
                .await
                .map_err(crate::steps::engine_err)?
                .parse()
                .unwrap_or(10);
            let bound = HOT_KEY_WALK.max_time + NODE_TIMEOUT;
            let sample = self.runtime.key_frequencies(&spec, HOT_KEY_WALK, HOT_KEYS);
            let found = match tokio::time::timeout(bound, sample).await {
                Ok(r) => r.map_err(crate::steps::engine_err)?,
                Err(_) => {
                    return Err(Error::internal(format!(
                        "node {} did not end its hot-key sample in time",
                        spec.name
                    )))
                }
            };
            keys.extend(
                found
                    .into_iter()
                    .filter(|k| k.freq > LFU_INIT)
                    .map(|k| HotKey {
                        key: String::from_utf8_lossy(&k.key).into_owned(),
                        kind: k.kind,
                        accesses: accesses(k.freq, factor),
                    }),
            );
        }
        keys.sort_by(|a, b| b.accesses.cmp(&a.accesses).then(a.key.cmp(&b.key)));
        keys.truncate(HOT_KEYS);
        Ok(HotKeys::Tracked(keys))
    }
}

/// A node's counters as kept: the histogram folded into the ladder's bounds.
fn counts(c: &CommandCounters) -> BTreeMap<String, CommandCount> {
    c.commands
        .iter()
        .map(|cmd| {
            let within = LADDER_BUCKETS_USEC
                .iter()
                .map(|b| cmd.calls_within(*b))
                .collect();
            (
                cmd.name.clone(),
                CommandCount {
                    calls: cmd.calls,
                    usec: cmd.usec,
                    within,
                },
            )
        })
        .collect()
}

/// Whether no counter of `before` is above `now` (one that went back was reset).
fn went_up(before: &BTreeMap<String, CommandCount>, now: &BTreeMap<String, CommandCount>) -> bool {
    before.iter().all(|(name, b)| {
        now.get(name)
            .is_some_and(|n| n.calls >= b.calls && n.usec >= b.usec)
    })
}

/// One node's walk added to the instance's report.
fn merge(report: &mut KeyReport, sizes: crsd_engine::KeySizes) {
    report.complete &= sizes.complete;
    for (kind, (count, bytes)) in sizes.by_type {
        let t = report.by_type.entry(kind).or_default();
        t.0 += count;
        t.1 += bytes;
    }
    for bytes in sizes.sizes {
        report.sizes[size_rung(bytes)] += 1;
    }
    for (kind, keys) in sizes.biggest {
        let list = report.biggest.entry(kind).or_default();
        list.extend(keys.into_iter().map(|k| BigKey {
            db: k.db,
            key: String::from_utf8_lossy(&k.key).into_owned(),
            kind: k.kind,
            bytes: k.bytes,
        }));
        list.sort_by_key(|k| std::cmp::Reverse(k.bytes));
        list.truncate(BIG_KEYS);
    }
}

/// The rung of [`SIZE_LADDER_KB`] a size of `bytes` falls in.
fn size_rung(bytes: u64) -> usize {
    SIZE_LADDER_KB
        .iter()
        .position(|kb| *kb > 0 && bytes <= *kb as u64 * 1024)
        .unwrap_or(SIZE_LADDER_KB.len() - 1)
}

/// The accesses an LFU counter stands for: from its initial value, each step from `c` to
/// `c + 1` takes about `(c - LFU_INIT) * factor + 1` accesses (redis' `LFULogIncr`).
fn accesses(freq: u64, factor: u64) -> u64 {
    (LFU_INIT..freq).map(|c| (c - LFU_INIT) * factor + 1).sum()
}

/// `YYYYMMDD` (the model's example) or `YYYY-MM-DD`.
pub fn parse_day(date: &str) -> Result<NaiveDate> {
    let date = date.trim();
    NaiveDate::parse_from_str(date, "%Y%m%d")
        .or_else(|_| NaiveDate::parse_from_str(date, "%Y-%m-%d"))
        .map_err(|_| Error::invalid("Date", format!("{date:?} is not a date like 20190219")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_dates_are_checked() {
        assert_eq!(Span::from_code(1).unwrap(), Span::Now);
        assert_eq!(Span::from_code(4).unwrap(), Span::Day);
        for bad in [0, 5, -1] {
            assert!(Span::from_code(bad).is_err());
        }
        assert_eq!(
            parse_day("20190219").unwrap(),
            NaiveDate::from_ymd_opt(2019, 2, 19).unwrap()
        );
        assert!(parse_day("2019-02-19").is_ok());
        assert!(parse_day("yesterday").is_err());
    }

    #[test]
    fn sizes_fall_in_rungs_and_counters_become_accesses() {
        assert_eq!(size_rung(10), 0);
        assert_eq!(size_rung(1024), 0);
        assert_eq!(size_rung(1025), 1);
        assert_eq!(size_rung(1024 * 1024 + 1), 4);
        assert_eq!(size_rung(20 * 1024 * 1024), 5);
        assert_eq!(accesses(5, 10), 0);
        assert_eq!(accesses(6, 10), 1);
        assert_eq!(accesses(8, 10), 1 + 11 + 21);
    }
}
