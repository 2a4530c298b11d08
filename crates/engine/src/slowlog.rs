//! Reading a node's slow log (`SLOWLOG GET`), for the APIs that show it to the user.

use redis::Value;

use crate::{Engine, EngineError, NodeSpec};

/// One `SLOWLOG GET` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowlogEntry {
    pub id: i64,
    /// When the command ran, unix seconds.
    pub at_unix: i64,
    /// How long it ran, microseconds.
    pub micros: i64,
    /// The command and its arguments (redis shortens long ones).
    pub args: Vec<String>,
    /// `ip:port` of the client.
    pub client: String,
}

impl Engine {
    /// The newest `count` slow-log entries of the node, newest first.
    pub async fn slowlog(
        &self,
        spec: &NodeSpec,
        count: usize,
    ) -> Result<Vec<SlowlogEntry>, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let raw: Value = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(count)
            .query_async(&mut con)
            .await?;
        let Value::Array(items) = raw else {
            return Err(EngineError::Protocol(format!(
                "SLOWLOG GET answered {raw:?}"
            )));
        };
        items.iter().map(entry).collect()
    }
}

fn entry(v: &Value) -> Result<SlowlogEntry, EngineError> {
    let bad = || EngineError::Protocol(format!("unexpected SLOWLOG entry {v:?}"));
    let Value::Array(fields) = v else {
        return Err(bad());
    };
    let int = |i: usize| match fields.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        _ => Err(bad()),
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let args = match fields.get(3) {
        Some(Value::Array(a)) => a.iter().filter_map(text).collect(),
        _ => return Err(bad()),
    };
    Ok(SlowlogEntry {
        id: int(0)?,
        at_unix: int(1)?,
        micros: int(2)?,
        args,
        client: fields.get(4).and_then(text).unwrap_or_default(),
    })
}
