//! What a node tells of its workload, for the monitoring actions: its command counters and
//! latency histograms, its customers' connections, and bounded walks over its keys (their
//! sizes and types, their LFU access frequencies).
//!
//! Counters are read as redis keeps them, cumulative since the process started; spans are
//! the caller's business (it keeps earlier readings). Latencies come from `LATENCY
//! HISTOGRAM`, not from the percentiles of `INFO latencystats`: a histogram's cumulative
//! counts can be subtracted from an earlier reading and summed over commands, percentiles
//! cannot.
//!
//! A key walk (`SCAN` in batches, each batch's `TYPE` / `MEMORY USAGE` / `OBJECT FREQ` in one
//! pipeline) is bounded in keys and in time and pauses between batches, so that a walk over a
//! large node costs it a few commands at a time, never one long stall; a walk cut by its
//! bounds says so (`complete` false) and covers the keys it saw.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::{admin, Engine, EngineError, NodeSpec, CHECK_USER, EXPORTER_USER, SENTINEL_USER};

/// How long a node has to answer one of these reads (a walk's batch included).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One command's counters since the process started (`INFO commandstats` and `LATENCY
/// HISTOGRAM`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandCounter {
    /// The command as redis names it (`set`, `client|list`).
    pub name: String,
    pub calls: u64,
    /// Time spent running it, microseconds.
    pub usec: u64,
    /// `(bucket, calls)`, buckets ascending: `calls` ran within `bucket` microseconds (a power
    /// of two; redis leaves empty buckets out, so a count holds up to the next bucket listed).
    pub histogram: Vec<(u64, u64)>,
}

/// A node's command counters, with the process they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandCounters {
    /// `run_id`: another one means the counters began again.
    pub run_id: String,
    pub commands: Vec<CommandCounter>,
}

impl CommandCounter {
    /// Calls that ran within `usec` microseconds, from the histogram: the count of the
    /// largest bucket not above `usec` (0 when none is).
    pub fn calls_within(&self, usec: u64) -> u64 {
        self.histogram
            .iter()
            .take_while(|(bucket, _)| *bucket <= usec)
            .last()
            .map_or(0, |(_, calls)| *calls)
    }
}

/// One customer connection of a node (`CLIENT LIST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConn {
    /// The source address, without its port.
    pub ip: String,
    /// Commands it sent, where redis counts them (`tot-cmds`, redis 7.2 and later).
    pub commands: Option<u64>,
}

/// How far a key walk may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWalk {
    /// Keys looked at, at most.
    pub max_keys: u64,
    /// `SCAN ... COUNT`: keys a batch asks for.
    pub batch: u64,
    /// Rest between two batches.
    pub pause: Duration,
    /// The walk ends here whatever it has seen.
    pub max_time: Duration,
}

/// One key and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySize {
    pub db: i64,
    pub key: Vec<u8>,
    /// `TYPE`: string, list, set, zset, hash, stream.
    pub kind: String,
    /// `MEMORY USAGE`, bytes.
    pub bytes: u64,
}

/// What a size walk saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySizes {
    /// The biggest keys of each type, biggest first, at most `keep` a type.
    pub biggest: BTreeMap<String, Vec<KeySize>>,
    /// Per type: keys and their bytes.
    pub by_type: BTreeMap<String, (u64, u64)>,
    /// Every key's size, in the order seen.
    pub sizes: Vec<u64>,
    /// Whether every key was seen (false: the walk's bounds cut it).
    pub complete: bool,
}

/// One key and its LFU access frequency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFreq {
    pub db: i64,
    pub key: Vec<u8>,
    pub kind: String,
    /// `OBJECT FREQ`: redis' logarithmic, decaying access counter (0-255).
    pub freq: u64,
}

impl Engine {
    /// The node's command counters: `INFO server commandstats` and `LATENCY HISTOGRAM`.
    pub async fn command_counters(&self, spec: &NodeSpec) -> Result<CommandCounters, EngineError> {
        let mut con = admin::connect(self.config(), spec, RESPONSE_TIMEOUT).await?;
        let text: String = redis::cmd("INFO")
            .arg("server")
            .arg("commandstats")
            .query_async(&mut con)
            .await?;
        let histograms: Value = redis::cmd("LATENCY")
            .arg("HISTOGRAM")
            .query_async(&mut con)
            .await?;
        let mut commands = parse_commandstats(&text);
        let histograms = parse_histograms(&histograms)?;
        for c in &mut commands {
            if let Some(h) = histograms.get(&c.name) {
                c.histogram = h.clone();
            }
        }
        Ok(CommandCounters {
            run_id: admin::field(&admin::parse_info(&text), "run_id")?,
            commands,
        })
    }

    /// The node's customer connections (`CLIENT LIST`): crsd's own users' connections
    /// (itself, replication, Sentinel, the proxy's check, the exporter) and the replication
    /// links are left out.
    pub async fn customer_clients(&self, spec: &NodeSpec) -> Result<Vec<ClientConn>, EngineError> {
        let mut con = admin::connect(self.config(), spec, RESPONSE_TIMEOUT).await?;
        let text: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut con)
            .await?;
        let internal = [
            spec.admin_user.as_str(),
            spec.repl_user.as_str(),
            SENTINEL_USER,
            CHECK_USER,
            EXPORTER_USER,
        ];
        Ok(parse_client_list(&text, &internal))
    }

    /// Walks the node's keys within `walk`, sizing each (`TYPE`, `MEMORY USAGE`); keeps the
    /// `keep` biggest of each type.
    pub async fn key_sizes(
        &self,
        spec: &NodeSpec,
        walk: KeyWalk,
        keep: usize,
    ) -> Result<KeySizes, EngineError> {
        let mut con = admin::connect(self.config(), spec, RESPONSE_TIMEOUT).await?;
        let mut walker = Walker::new(&mut con, walk).await?;
        let mut out = KeySizes::default();
        while let Some((db, keys)) = walker.next(&mut con).await? {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("TYPE").arg(k);
                pipe.cmd("MEMORY").arg("USAGE").arg(k);
            }
            let replies: Vec<Value> = pipe.query_async(&mut con).await?;
            for (key, pair) in keys.into_iter().zip(replies.chunks(2)) {
                let (Some(kind), Some(Value::Int(bytes))) =
                    (pair.first().and_then(text), pair.get(1))
                else {
                    continue; // gone since the SCAN
                };
                let bytes = (*bytes).max(0) as u64;
                let slot = out.by_type.entry(kind.clone()).or_default();
                slot.0 += 1;
                slot.1 += bytes;
                out.sizes.push(bytes);
                let list = out.biggest.entry(kind.clone()).or_default();
                if list.len() < keep || list.last().is_some_and(|l| l.bytes < bytes) {
                    let at = list.partition_point(|k| k.bytes >= bytes);
                    list.insert(
                        at,
                        KeySize {
                            db,
                            key,
                            kind,
                            bytes,
                        },
                    );
                    list.truncate(keep);
                }
            }
        }
        out.complete = walker.complete;
        Ok(out)
    }

    /// Samples the node's keys within `walk` with their LFU frequency (`OBJECT FREQ`, which
    /// redis only answers under an LFU `maxmemory-policy`); keeps the `keep` most frequent,
    /// most frequent first.
    pub async fn key_frequencies(
        &self,
        spec: &NodeSpec,
        walk: KeyWalk,
        keep: usize,
    ) -> Result<Vec<KeyFreq>, EngineError> {
        let mut con = admin::connect(self.config(), spec, RESPONSE_TIMEOUT).await?;
        let mut walker = Walker::new(&mut con, walk).await?;
        let mut out: Vec<KeyFreq> = Vec::new();
        while let Some((db, keys)) = walker.next(&mut con).await? {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("TYPE").arg(k);
                pipe.cmd("OBJECT").arg("FREQ").arg(k);
            }
            // OBJECT FREQ of a key gone since the SCAN is an error, which fails the pipeline:
            // that batch is then asked key by key.
            let replies: Vec<Value> = match pipe.query_async(&mut con).await {
                Ok(r) => r,
                Err(e) if e.kind() == redis::ErrorKind::ResponseError => {
                    one_by_one(&mut con, &keys).await?
                }
                Err(e) => return Err(e.into()),
            };
            for (key, pair) in keys.into_iter().zip(replies.chunks(2)) {
                let (Some(kind), Some(Value::Int(freq))) =
                    (pair.first().and_then(text), pair.get(1))
                else {
                    continue;
                };
                let freq = (*freq).max(0) as u64;
                if out.len() < keep || out.last().is_some_and(|l| l.freq < freq) {
                    let at = out.partition_point(|k| k.freq >= freq);
                    out.insert(
                        at,
                        KeyFreq {
                            db,
                            key,
                            kind,
                            freq,
                        },
                    );
                    out.truncate(keep);
                }
            }
        }
        Ok(out)
    }
}

/// `TYPE` and `OBJECT FREQ` of each key, one at a time; a key that is gone answers nothing.
async fn one_by_one(
    con: &mut MultiplexedConnection,
    keys: &[Vec<u8>],
) -> Result<Vec<Value>, EngineError> {
    let mut out = Vec::with_capacity(keys.len() * 2);
    for k in keys {
        let kind: Value = redis::cmd("TYPE").arg(k).query_async(con).await?;
        let freq = match redis::cmd("OBJECT")
            .arg("FREQ")
            .arg(k)
            .query_async::<Value>(con)
            .await
        {
            Ok(v) => v,
            Err(e) if e.kind() == redis::ErrorKind::ResponseError => Value::Nil,
            Err(e) => return Err(e.into()),
        };
        out.push(kind);
        out.push(freq);
    }
    Ok(out)
}

/// SCAN over every database that holds keys, in batches, within a [`KeyWalk`].
struct Walker {
    walk: KeyWalk,
    dbs: Vec<i64>,
    /// Index into `dbs` of the database being walked.
    at: usize,
    /// The SCAN cursor in it; `None`: not selected yet.
    cursor: Option<u64>,
    seen: u64,
    started: Instant,
    /// Set once every database was walked to its end.
    complete: bool,
}

impl Walker {
    async fn new(con: &mut MultiplexedConnection, walk: KeyWalk) -> Result<Walker, EngineError> {
        let text: String = redis::cmd("INFO").arg("keyspace").query_async(con).await?;
        Ok(Walker {
            walk,
            dbs: keyspace_dbs(&text),
            at: 0,
            cursor: None,
            seen: 0,
            started: Instant::now(),
            complete: false,
        })
    }

    /// The next batch of keys with their database; `None` at the end or at the bounds.
    async fn next(
        &mut self,
        con: &mut MultiplexedConnection,
    ) -> Result<Option<(i64, Vec<Vec<u8>>)>, EngineError> {
        loop {
            let Some(&db) = self.dbs.get(self.at) else {
                self.complete = true;
                return Ok(None);
            };
            if self.seen >= self.walk.max_keys || self.started.elapsed() >= self.walk.max_time {
                return Ok(None);
            }
            let cursor = match self.cursor {
                Some(c) => {
                    tokio::time::sleep(self.walk.pause).await;
                    c
                }
                None => {
                    redis::cmd("SELECT").arg(db).query_async::<()>(con).await?;
                    0
                }
            };
            let (next, mut keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(self.walk.batch.max(1))
                .query_async(con)
                .await?;
            if next == 0 {
                self.at += 1;
                self.cursor = None;
            } else {
                self.cursor = Some(next);
            }
            let room = self.walk.max_keys - self.seen;
            keys.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            self.seen += keys.len() as u64;
            if !keys.is_empty() {
                return Ok(Some((db, keys)));
            }
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) if s != "none" => Some(s.clone()),
        _ => None,
    }
}

/// The databases `INFO keyspace` lists (`db3:keys=...`), ascending.
fn keyspace_dbs(info: &str) -> Vec<i64> {
    let mut dbs: Vec<i64> = info
        .lines()
        .filter_map(|l| l.strip_prefix("db"))
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    dbs.sort_unstable();
    dbs
}

/// `cmdstat_<name>:calls=N,usec=N,...` lines.
fn parse_commandstats(info: &str) -> Vec<CommandCounter> {
    info.lines()
        .filter_map(|l| l.trim().strip_prefix("cmdstat_"))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, fields)| {
            let kv: HashMap<&str, &str> = fields
                .split(',')
                .filter_map(|f| f.split_once('='))
                .collect();
            let num = |k: &str| kv.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            CommandCounter {
                name: name.to_string(),
                calls: num("calls"),
                usec: num("usec"),
                histogram: Vec::new(),
            }
        })
        .collect()
}

/// `LATENCY HISTOGRAM`'s reply: per command, `calls` and `histogram_usec` (bucket, calls)
/// pairs; a flat list under RESP2, maps under RESP3.
fn parse_histograms(v: &Value) -> Result<HashMap<String, Vec<(u64, u64)>>, EngineError> {
    let bad = || EngineError::Protocol(format!("unexpected LATENCY HISTOGRAM reply {v:?}"));
    let pairs = |v: &Value| -> Option<Vec<(Value, Value)>> {
        match v {
            Value::Array(items) if items.len() % 2 == 0 => Some(
                items
                    .chunks(2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect(),
            ),
            Value::Map(m) => Some(m.clone()),
            _ => None,
        }
    };
    let int = |v: &Value| match v {
        Value::Int(n) => Some((*n).max(0) as u64),
        _ => None,
    };
    let mut out = HashMap::new();
    for (name, body) in pairs(v).ok_or_else(bad)? {
        let name = text(&name).ok_or_else(bad)?;
        let fields = pairs(&body).ok_or_else(bad)?;
        let Some((_, hist)) = fields
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some("histogram_usec"))
        else {
            continue;
        };
        let mut buckets: Vec<(u64, u64)> = pairs(hist)
            .ok_or_else(bad)?
            .iter()
            .filter_map(|(b, n)| Some((int(b)?, int(n)?)))
            .collect();
        buckets.sort_unstable();
        out.insert(name, buckets);
    }
    Ok(out)
}

/// `CLIENT LIST` lines of customers: not of `internal` users, not replication links (flags
/// `M` on a replica, `S` on a master), not over a unix socket.
fn parse_client_list(text: &str, internal: &[&str]) -> Vec<ClientConn> {
    text.lines()
        .filter_map(|line| {
            let kv: HashMap<&str, &str> =
                line.split(' ').filter_map(|f| f.split_once('=')).collect();
            let user = kv.get("user").copied().unwrap_or_default();
            let flags = kv.get("flags").copied().unwrap_or_default();
            if internal.contains(&user) || flags.contains('M') || flags.contains('S') {
                return None;
            }
            let addr = kv.get("addr")?;
            let (ip, _port) = addr.rsplit_once(':')?;
            if ip.starts_with('/') {
                return None;
            }
            Some(ClientConn {
                ip: ip.trim_start_matches('[').trim_end_matches(']').to_string(),
                commands: kv.get("tot-cmds").and_then(|n| n.parse().ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_and_histograms_are_read() {
        let info = "# Server\r\nrun_id:r1\r\n\r\n# Commandstats\r\n\
            cmdstat_set:calls=20,usec=88,usec_per_call=4.40,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_client|list:calls=1,usec=25,usec_per_call=25.00\r\n";
        let c = parse_commandstats(info);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].name.as_str(), c[0].calls, c[0].usec), ("set", 20, 88));
        assert_eq!(c[1].name, "client|list");
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            bulk("set"),
            Value::Array(vec![
                bulk("calls"),
                Value::Int(20),
                bulk("histogram_usec"),
                Value::Array(vec![
                    Value::Int(8),
                    Value::Int(20),
                    Value::Int(4),
                    Value::Int(13),
                ]),
            ]),
        ]);
        let h = parse_histograms(&reply).unwrap();
        let set = CommandCounter {
            histogram: h["set"].clone(),
            ..c[0].clone()
        };
        assert_eq!(set.histogram, vec![(4, 13), (8, 20)]);
        assert_eq!(set.calls_within(2), 0);
        assert_eq!(set.calls_within(4), 13);
        assert_eq!(set.calls_within(7), 13);
        assert_eq!(set.calls_within(1 << 20), 20);
        assert!(parse_histograms(&Value::Int(3)).is_err());
    }

    #[test]
    fn internal_users_and_links_are_not_customers() {
        let text = "id=3 addr=10.0.0.7:5100 laddr=x fd=8 name= flags=N db=0 cmd=get user=default\n\
            id=4 addr=127.0.0.1:5101 flags=N cmd=info user=crsd\n\
            id=5 addr=127.0.0.1:5102 flags=S cmd=replconf user=crsd-repl\n\
            id=6 addr=127.0.0.1:5103 flags=N cmd=ping user=crsd-check\n\
            id=7 addr=[::1]:5104 flags=N cmd=get user=default tot-cmds=9\n\
            id=8 addr=/tmp/r.sock:0 flags=U cmd=get user=default\n\
            id=9 addr=127.0.0.1:6379 flags=M cmd=set user=(superuser)\n";
        let c = parse_client_list(text, &["crsd", "crsd-repl", "crsd-check"]);
        assert_eq!(
            c,
            vec![
                ClientConn {
                    ip: "10.0.0.7".into(),
                    commands: None
                },
                ClientConn {
                    ip: "::1".into(),
                    commands: Some(9)
                },
            ]
        );
    }

    #[test]
    fn keyspace_lists_databases() {
        let info = "# Keyspace\r\ndb3:keys=2,expires=0\r\ndb0:keys=5,expires=1\r\n";
        assert_eq!(keyspace_dbs(info), vec![0, 3]);
    }
}
