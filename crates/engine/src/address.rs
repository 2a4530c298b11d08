//! An instance's own address on its current master, with no proxy in between.
//!
//! With an address pool every node listens on an address of its own, and all nodes of an
//! instance at the same port; the instance's address (a further address of the pool, at that
//! port) is added to the listening addresses of whichever node is master right now, live:
//! Redis 7 re-binds on `CONFIG SET bind` (measured here: ~7 ms), and connections already open
//! stay. Clients connect straight to the master's redis-server, so the address costs nothing.
//!
//! Two nodes never hold it at once: the kernel refuses a second listener on the same address
//! and port (redis-server sets no `SO_REUSEPORT`), so [`Engine::hold_address`] fails while
//! another node still holds it, and the caller fences that one first with
//! [`Engine::release_address`], which also closes the connections it accepted there (a client
//! left on a demoted master would only get `READONLY`). Only a node that answers `ROLE`
//! master may take it. The address is never written to a node's redis.conf (the engine pins
//! the `bind` line at every start): a node that restarts does not hold it until it is told to
//! as master again.

use std::net::IpAddr;

use crate::{Engine, EngineError, NodeSpec};

impl Engine {
    /// Adds `address` to the addresses the node listens on, at its port, if it is master now.
    /// True if it was added, false if the node held it already. Fails with
    /// [`EngineError::WrongRole`] on a replica, and with the node's own error when another
    /// process holds the address at that port.
    pub async fn hold_address(&self, spec: &NodeSpec, address: &str) -> Result<bool, EngineError> {
        let address = parse_address(address)?;
        let mut con = self.admin_connection(spec).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await?;
        let role = match role.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        if role != "master" {
            return Err(EngineError::WrongRole {
                expected: crate::Role::Master,
                actual: role,
            });
        }
        let held = bound(&mut con).await?;
        if held.contains(&address) {
            return Ok(false);
        }
        let own = crate::config::node_bind(self.config(), spec)?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("bind")
            .arg(format!("{own} {address}"))
            .query_async::<()>(&mut con)
            .await?;
        tracing::info!(node = %spec.name, %address, port = spec.port, "node holds its instance's address");
        Ok(true)
    }

    /// Makes the node listen on its own address alone and closes the connections it accepted
    /// at `address`. True if it held the address. A node that does not run holds nothing.
    pub async fn release_address(
        &self,
        spec: &NodeSpec,
        address: &str,
    ) -> Result<bool, EngineError> {
        let address = parse_address(address)?;
        let mut con = match self.admin_connection(spec).await {
            Ok(c) => c,
            Err(EngineError::NotRunning) => return Ok(false),
            Err(e) => return Err(e),
        };
        let held = bound(&mut con).await?;
        if !held.contains(&address) {
            return Ok(false);
        }
        let own = crate::config::node_bind(self.config(), spec)?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("bind")
            .arg(own.to_string())
            .query_async::<()>(&mut con)
            .await?;
        let closed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("LADDR")
            .arg(format!("{address}:{}", spec.port))
            .query_async(&mut con)
            .await
            .unwrap_or(0);
        tracing::info!(node = %spec.name, %address, closed, "node no longer holds its instance's address");
        Ok(true)
    }

    /// Where the node stands in its instance's line of masters (`INFO replication`). A node
    /// that does not answer within a short time fails (the caller treats it as hung).
    pub async fn lineage(&self, spec: &NodeSpec) -> Result<Lineage, EngineError> {
        let mut con = crate::admin::quick_connection(self.config(), spec).await?;
        let info = crate::admin::info(&mut con, "replication").await?;
        Ok(Lineage {
            master: info.get("role").map(String::as_str) == Some("master"),
            replid: info.get("master_replid").cloned().unwrap_or_default(),
            replid2: info.get("master_replid2").cloned().unwrap_or_default(),
        })
    }

    /// The addresses the node listens on now (`CONFIG GET bind`).
    pub async fn held_addresses(&self, spec: &NodeSpec) -> Result<Vec<IpAddr>, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        bound(&mut con).await
    }
}

/// A node's replication history, enough to tell which of two masters is the newer one.
///
/// Both nodes of an instance answer master for a moment in every switch: the promoted replica
/// at once, the old master until Sentinel turns it into a replica (a planned switch pauses
/// its writes meanwhile; a master cut off keeps running). A replica that is promoted keeps
/// the history it shared with its master as `master_replid2` and starts a new `master_replid`,
/// so the newer master is the one whose `master_replid2` is the other's `master_replid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The node answers as a master now.
    pub master: bool,
    pub replid: String,
    pub replid2: String,
}

impl Lineage {
    /// Whether this node was promoted from (a replica of) `other`: it is the newer master.
    pub fn promoted_from(&self, other: &Lineage) -> bool {
        !other.replid.is_empty() && self.replid2 == other.replid
    }
}

fn parse_address(address: &str) -> Result<IpAddr, EngineError> {
    let ip: IpAddr = address
        .trim()
        .parse()
        .map_err(|_| EngineError::Config(format!("{address:?} is not one IP address")))?;
    if ip.is_unspecified() {
        return Err(EngineError::Config(format!(
            "an instance's address must be one address, got {ip}"
        )));
    }
    Ok(ip)
}

async fn bound(con: &mut redis::aio::MultiplexedConnection) -> Result<Vec<IpAddr>, EngineError> {
    let kv: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("bind")
        .query_async(con)
        .await?;
    Ok(kv
        .get(1)
        .map(|v| {
            v.split_whitespace()
                .filter_map(|a| a.trim_start_matches('-').parse().ok())
                .collect()
        })
        .unwrap_or_default())
}
