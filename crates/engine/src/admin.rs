//! Redis commands crsd sends to its nodes, always authenticated as the spec's admin user.
//!
//! Every call opens its own short-lived connection with connect and response timeouts: admin
//! traffic is rare, and a fresh connection never carries state (a half-read reply, a
//! `CLIENT REPLY OFF`) from an earlier failure. Nothing here retries; callers decide.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

use crate::config::connect_host;
use crate::layout::NodePaths;
use crate::{EngineConfig, EngineError, NodeHandle, NodeSpec};

/// Connecting to a local redis-server takes microseconds; a second means it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Admin commands are O(1) or small, except FLUSHALL SYNC and CONFIG REWRITE (fsync):
/// generous, but bounded, so a hung redis-server cannot hang crsd.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// For a node that is expected to answer at once: a local redis-server answers in well under
/// a millisecond, also on a busy host; one that takes this long is hung (stopped, or blocked
/// on a stalled disk).
const QUICK_TIMEOUT: Duration = Duration::from_millis(300);
/// For readiness probes: short, the probe is retried.
const PROBE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) async fn connect(
    config: &EngineConfig,
    spec: &NodeSpec,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, EngineError> {
    connect_within(config, spec, CONNECT_TIMEOUT, response_timeout).await
}

/// A node that must answer at once (a hung one is told apart from a slow one by the caller's
/// patience): [`QUICK_TIMEOUT`] to connect, log in and answer.
pub(crate) async fn quick_connection(
    config: &EngineConfig,
    spec: &NodeSpec,
) -> Result<MultiplexedConnection, EngineError> {
    connect_within(config, spec, QUICK_TIMEOUT, QUICK_TIMEOUT).await
}

async fn connect_within(
    config: &EngineConfig,
    spec: &NodeSpec,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, EngineError> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(connect_host(config, spec)?, spec.port),
        redis: RedisConnectionInfo {
            db: 0,
            username: Some(spec.admin_user.clone()),
            password: Some(spec.admin_secret.clone()),
            ..Default::default()
        },
    };
    let client = redis::Client::open(info)?;
    let conn_config = AsyncConnectionConfig::new()
        .set_connection_timeout(connect_timeout)
        .set_response_timeout(response_timeout);
    match client
        .get_multiplexed_async_connection_with_config(&conn_config)
        .await
    {
        Ok(c) => Ok(c),
        Err(e) if e.is_connection_refusal() => Err(EngineError::NotRunning),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn admin_connection(
    config: &EngineConfig,
    spec: &NodeSpec,
) -> Result<MultiplexedConnection, EngineError> {
    connect(config, spec, RESPONSE_TIMEOUT).await
}

/// What a readiness probe learned about the process answering on the node's port.
#[derive(Debug)]
pub(crate) struct Probe {
    pub pid: u32,
    pub port: u16,
    pub run_id: String,
    pub config_file: String,
}

impl Probe {
    /// Whether the answering server is the process `pid` started for this node.
    pub fn is(&self, pid: u32, spec: &NodeSpec, paths: &NodePaths) -> bool {
        self.pid == pid
            && self.port == spec.port
            && paths.names_conf(std::path::Path::new(&self.config_file))
    }

    pub fn handle(self) -> NodeHandle {
        NodeHandle {
            pid: self.pid,
            run_id: self.run_id,
        }
    }
}

/// PING as admin (PONG only comes once the dataset is loaded: during loading redis answers
/// -LOADING), then INFO server to learn who answered.
pub(crate) async fn probe(config: &EngineConfig, spec: &NodeSpec) -> Result<Probe, EngineError> {
    let mut con = connect(config, spec, PROBE_RESPONSE_TIMEOUT).await?;
    probe_on(&mut con).await
}

/// [`probe`] on an open admin connection.
pub(crate) async fn probe_on(con: &mut MultiplexedConnection) -> Result<Probe, EngineError> {
    let pong: String = redis::cmd("PING").query_async(con).await?;
    if pong != "PONG" {
        return Err(EngineError::Protocol(format!("PING answered {pong:?}")));
    }
    let info = info(con, "server").await?;
    Ok(Probe {
        pid: field(&info, "process_id")?,
        port: field(&info, "tcp_port")?,
        run_id: field(&info, "run_id")?,
        config_file: field(&info, "config_file")?,
    })
}

/// How redis-server answered SHUTDOWN.
#[derive(Debug)]
pub(crate) enum Shutdown {
    /// It is exiting (the connection dropped without a reply, as SHUTDOWN does).
    Accepted,
    /// It refused, e.g. "Errors trying to SHUTDOWN" while it cannot persist yet.
    Refused(String),
}

/// Asks redis-server to shut down; it fsyncs the AOF before it exits.
pub(crate) async fn shutdown(
    config: &EngineConfig,
    spec: &NodeSpec,
) -> Result<Shutdown, EngineError> {
    let mut con = connect(config, spec, RESPONSE_TIMEOUT).await?;
    match redis::cmd("SHUTDOWN").query_async::<()>(&mut con).await {
        Ok(()) => Ok(Shutdown::Accepted),
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
            Ok(Shutdown::Accepted)
        }
        Err(e) => Ok(Shutdown::Refused(e.to_string())),
    }
}

/// `INFO <section>` as key/value pairs.
pub(crate) async fn info(
    con: &mut MultiplexedConnection,
    section: &str,
) -> Result<HashMap<String, String>, EngineError> {
    let text: String = redis::cmd("INFO").arg(section).query_async(con).await?;
    Ok(parse_info(&text))
}

pub(crate) fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn field<T: std::str::FromStr>(
    info: &HashMap<String, String>,
    key: &str,
) -> Result<T, EngineError> {
    let raw = info
        .get(key)
        .ok_or_else(|| EngineError::Protocol(format!("INFO has no {key}")))?;
    raw.parse()
        .map_err(|_| EngineError::Protocol(format!("INFO {key}:{raw} is not readable")))
}

/// A string field of an `ACL GETUSER` reply (a flat list of name, value under RESP2; a map
/// under RESP3).
pub(crate) fn acl_field(reply: &redis::Value, name: &str) -> Option<String> {
    use redis::Value;
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match reply {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv.len() == 2 && text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| text(&kv[1])),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line of INFO replication.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReplicaLine {
    pub state: String,
    pub offset: u64,
}

/// The replicas listed by a master's INFO replication (`connected_slaves` many).
pub(crate) fn replicas(info: &HashMap<String, String>) -> Result<Vec<ReplicaLine>, EngineError> {
    let n: usize = field(info, "connected_slaves")?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // A replica can disconnect between the count and the list; only read what is there.
        let Some(line) = info.get(&format!("slave{i}")) else {
            continue;
        };
        let kv: HashMap<&str, &str> = line.split(',').filter_map(|p| p.split_once('=')).collect();
        let state = kv.get("state").copied().unwrap_or_default().to_string();
        let offset = kv
            .get("offset")
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| EngineError::Protocol(format!("slave{i}:{line} has no offset")))?;
        out.push(ReplicaLine { state, offset });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_replication() {
        let text = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
            slave0:ip=127.0.0.1,port=7001,state=online,offset=1234,lag=0\r\n\
            master_repl_offset:1234\r\n";
        let info = parse_info(text);
        assert_eq!(info.get("role").map(String::as_str), Some("master"));
        assert_eq!(
            field::<u64>(&info, "master_repl_offset").expect("offset"),
            1234
        );
        assert_eq!(
            replicas(&info).expect("replicas"),
            vec![ReplicaLine {
                state: "online".into(),
                offset: 1234
            }]
        );
        assert!(field::<u64>(&info, "nope").is_err());
    }
}
