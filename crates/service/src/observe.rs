//! What an instance's owner may look at inside it: the slow log and the nodes.

use crate::Service;
use chrono::{DateTime, TimeZone, Utc};
use crsd_core::{timefmt, Error, Result};
use crsd_engine::{Role, SlowlogEntry};

/// The most slow-log entries read from a node (redis keeps 128 by default).
const SLOWLOG_READ: usize = 1024;

/// DescribeSlowLog, parsed.
#[derive(Debug, Clone, Default)]
pub struct SlowLogQuery {
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    /// Only entries that took at least this long, milliseconds.
    pub min_ms: i64,
    /// The replica's log instead of the master's.
    pub replica: bool,
    pub limit: i64,
    pub offset: i64,
}

/// One slow command.
#[derive(Debug, Clone)]
pub struct SlowCommand {
    pub at: DateTime<Utc>,
    pub entry: SlowlogEntry,
    /// `master` or `replica`.
    pub node: &'static str,
}

/// A node of an instance, for DescribeInstanceNodeInfo.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub role: Role,
    pub zone_id: i64,
}

impl Service {
    /// The instance's slow commands, newest first, filtered and paged.
    pub async fn slow_log(
        &self,
        app_id: i64,
        id: &str,
        q: SlowLogQuery,
    ) -> Result<(i64, Vec<SlowCommand>)> {
        if q.limit < 0 || q.offset < 0 || q.min_ms < 0 {
            return Err(Error::invalid(
                "Limit",
                "Limit, Offset and MinQueryTime must not be negative",
            ));
        }
        let inst = self.owned_instance(app_id, id).await?;
        let tz = self.time_zone();
        let parse = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => timefmt::parse(s, tz)
                    .map(Some)
                    .ok_or_else(|| Error::invalid(name, "expected YYYY-MM-DD HH:MM:SS")),
            }
        };
        let begin = parse("BeginTime", &q.begin_time)?;
        let end = parse("EndTime", &q.end_time)?;
        let (role, node) = if q.replica {
            (Role::Replica, "replica")
        } else {
            (Role::Master, "master")
        };
        let spec = self.node_spec(&inst, role);
        let entries = self
            .engine
            .slowlog(&spec, SLOWLOG_READ)
            .await
            .map_err(crate::steps::engine_err)?;
        let hits: Vec<SlowCommand> = entries
            .into_iter()
            .filter_map(|e| {
                let at = Utc.timestamp_opt(e.at_unix, 0).single()?;
                Some(SlowCommand { at, entry: e, node })
            })
            .filter(|c| c.entry.micros >= q.min_ms * 1000)
            .filter(|c| begin.is_none_or(|b| c.at >= b))
            .filter(|c| end.is_none_or(|e| c.at <= e))
            .collect();
        let total = hits.len() as i64;
        let page = hits
            .into_iter()
            .skip(q.offset as usize)
            .take(q.limit as usize)
            .collect();
        Ok((total, page))
    }

    /// The instance's redis-server nodes: its master and its replica.
    pub async fn nodes(&self, app_id: i64, id: &str) -> Result<Vec<NodeInfo>> {
        let inst = self.owned_instance(app_id, id).await?;
        Ok([Role::Master, Role::Replica]
            .into_iter()
            .map(|role| NodeInfo {
                node_id: self.node_spec(&inst, role).name,
                role,
                zone_id: inst.zone_id,
            })
            .collect())
    }
}
