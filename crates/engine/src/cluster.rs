//! Redis Cluster: forming a cluster of running nodes, and reading what it says of itself.
//!
//! Redis Cluster decides on its own who is master of a shard and when to fail over; crsd only
//! forms the cluster once (the same steps `redis-cli --cluster create` takes, without its
//! one-second sleeps) and reads its view. Forming is idempotent, so a task resumed after a
//! crash simply forms again:
//! * each master of an empty node takes its config epoch and its share of the 16384 slots
//!   (`CLUSTER SET-CONFIG-EPOCH`, `CLUSTER ADDSLOTSRANGE`), unless it holds slots already;
//! * the first master meets every other node (`CLUSTER MEET`); gossip spreads the rest;
//! * each replica follows its shard's master (`CLUSTER REPLICATE`, retried while it does not
//!   know that master yet), unless it does already;
//! * then every node must say `cluster_state:ok` and know every node, and every replica must
//!   have synced.
//!
//! Measured by hand on 2 cores (3 shards × 1 replica, `cluster-node-timeout` 1000): no method
//! reaches `cluster_state:ok` sooner than 2 s after the masters' spawn, as a master waits that
//! long before it declares the cluster ok.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::admin;
use crate::config::connect_host;
use crate::{Engine, EngineError, NodeSpec};

/// The key space of a Redis Cluster, in slots.
pub const SLOTS: u16 = 16384;

/// How often forming polls the cluster's view: gossip takes a few of these.
const POLL: Duration = Duration::from_millis(20);

/// A shard to form: its master and the replicas that follow it.
#[derive(Clone, Debug)]
pub struct ClusterShard {
    pub master: NodeSpec,
    pub replicas: Vec<NodeSpec>,
}

/// One node as `CLUSTER NODES` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNodeView {
    /// The node id (40 hex characters), kept in the node's `nodes.conf`.
    pub id: String,
    pub host: String,
    pub port: u16,
    /// `master` in its flags.
    pub master: bool,
    /// The master it follows (a replica).
    pub master_id: Option<String>,
    /// `fail` (or `fail?`, a suspicion) in its flags.
    pub failing: bool,
    /// Its link is `connected` (as seen by the node asked).
    pub connected: bool,
    /// The slot ranges it serves, inclusive.
    pub slots: Vec<(u16, u16)>,
    /// Slots it is migrating or importing (listed on the `myself` line only).
    pub open_slots: Vec<u16>,
}

impl ClusterNodeView {
    /// Its slot ranges as `first-last` joined by `,` (empty when it serves none).
    pub fn slots_text(&self) -> String {
        self.slots
            .iter()
            .map(|(lo, hi)| format!("{lo}-{hi}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many slots it serves.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(lo, hi)| u32::from(hi - lo) + 1)
            .sum()
    }
}

/// What one node says of its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The node asked (its `myself` line).
    pub myself: String,
    /// `cluster_state:ok`.
    pub ok: bool,
    pub nodes: Vec<ClusterNodeView>,
}

impl ClusterView {
    pub fn node(&self, id: &str) -> Option<&ClusterNodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node at `host:port`.
    pub fn at(&self, host: &str, port: u16) -> Option<&ClusterNodeView> {
        self.nodes.iter().find(|n| n.host == host && n.port == port)
    }
}

/// The slots shard `i` of `n` serves when they are spread evenly, as `redis-cli --cluster
/// create` spreads them (ranges rounded from 16384/n steps: 0-5460, 5461-10922,
/// 10923-16383 for three), so tools and people see the split they know.
pub fn even_slots(i: usize, n: usize) -> (u16, u16) {
    let n = n.max(1);
    let i = i.min(n - 1);
    let per = f64::from(SLOTS) / n as f64;
    let last_of = |k: usize| -> u16 {
        if k == n - 1 {
            SLOTS - 1
        } else {
            (k as f64 * per + per - 1.0).round() as u16
        }
    };
    let first = if i == 0 { 0 } else { last_of(i - 1) + 1 };
    (first, last_of(i))
}

impl Engine {
    /// Forms a cluster of running nodes: the slots spread evenly over the shards' masters in
    /// the order given, every replica following its master. Idempotent (see the module's
    /// doc). Returns once every node says `cluster_state:ok`, knows every node, and every
    /// replica has synced; [`EngineError::Protocol`] with what is missing after `timeout`.
    pub async fn form_cluster(
        &self,
        shards: &[ClusterShard],
        timeout: Duration,
    ) -> Result<(), EngineError> {
        self.form(shards, true, timeout).await
    }

    /// Brings new nodes into a formed cluster without giving them slots: the steps of
    /// [`Engine::form_cluster`] but for the claims, so a new shard's master joins empty (its
    /// slots are moved to it afterwards, see `reshard.rs`) and its replicas follow it.
    pub async fn join_cluster(
        &self,
        shards: &[ClusterShard],
        timeout: Duration,
    ) -> Result<(), EngineError> {
        self.form(shards, false, timeout).await
    }

    /// Forming, with (`claim`) or without each master's even share of the slots.
    async fn form(
        &self,
        shards: &[ClusterShard],
        claim: bool,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let deadline = Instant::now() + timeout;
        let n = shards.len();
        let Some(first) = shards.first() else {
            return Ok(());
        };
        // Every node, shard by shard, masters first (a plain list: no closure may live
        // across the awaits below).
        let mut all: Vec<&NodeSpec> = Vec::new();
        for shard in shards {
            all.push(&shard.master);
            all.extend(shard.replicas.iter());
        }
        // Formed before (a resumed task, an instance started again): roles may have changed
        // since by the cluster's own failovers, which are the cluster's to keep.
        if let Ok(mut con) = self.admin_connection(&first.master).await {
            if let Ok(view) = view_of(&mut con).await {
                let covered: u32 = view.nodes.iter().map(|n| n.slot_count()).sum();
                if view.nodes.len() >= all.len() && covered == u32::from(SLOTS) {
                    let mut waits = Vec::new();
                    for &spec in &all {
                        waits.push(self.wait_cluster_ok(spec, all.len(), deadline));
                    }
                    futures_util::future::try_join_all(waits).await?;
                    return Ok(());
                }
            }
        }
        // Masters: epoch and slots, all at once.
        let claims: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(i, shard)| self.claim_slots(&shard.master, claim.then_some((i, n))))
            .collect();
        let master_ids = futures_util::future::try_join_all(claims).await?;
        // The first master meets everyone it does not know yet (a MEET of a known node
        // starts a handshake all the same, a stranger in the views until it resolves).
        let mut con = self.admin_connection(&first.master).await?;
        let known = view_of(&mut con).await?;
        for spec in &all[1..] {
            let host = connect_host(self.config(), spec)?;
            if known.at(&host, spec.port).is_some() {
                continue;
            }
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg(&host)
                .arg(spec.port)
                .query_async::<()>(&mut con)
                .await?;
        }
        // Replicas follow their masters once they know them.
        let mut follows = Vec::new();
        for (shard, master_id) in shards.iter().zip(&master_ids) {
            for r in &shard.replicas {
                follows.push(self.replicate(r, master_id, deadline));
            }
        }
        futures_util::future::try_join_all(follows).await?;
        let mut waits = Vec::new();
        for &spec in &all {
            waits.push(self.wait_cluster_ok(spec, all.len(), deadline));
        }
        futures_util::future::try_join_all(waits).await?;
        for shard in shards {
            for r in &shard.replicas {
                let left = deadline.saturating_duration_since(Instant::now());
                self.wait_replica_linked(r, left).await?;
            }
        }
        Ok(())
    }

    /// Shard `i` of `n`'s master (`share`): its config epoch and its slots, unless it serves
    /// slots already; without a share, nothing. Returns its node id.
    async fn claim_slots(
        &self,
        master: &NodeSpec,
        share: Option<(usize, usize)>,
    ) -> Result<String, EngineError> {
        let mut con = self.admin_connection(master).await?;
        let view = view_of(&mut con).await?;
        let me = view
            .node(&view.myself)
            .ok_or_else(|| EngineError::Protocol("CLUSTER NODES lists no myself".into()))?;
        if let Some((i, n)) = share.filter(|_| me.slots.is_empty()) {
            // Refused once the node knows others or has an epoch: then it has one.
            let _ = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query_async::<()>(&mut con)
                .await;
            let (lo, hi) = even_slots(i, n);
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(lo)
                .arg(hi)
                .query_async::<()>(&mut con)
                .await?;
        }
        Ok(view.myself)
    }

    /// `CLUSTER REPLICATE master_id` on `spec`, retried while the node does not know that
    /// master yet; nothing when it follows it already.
    async fn replicate(
        &self,
        spec: &NodeSpec,
        master_id: &str,
        deadline: Instant,
    ) -> Result<(), EngineError> {
        let mut con = self.admin_connection(spec).await?;
        loop {
            let view = view_of(&mut con).await?;
            if view
                .node(&view.myself)
                .is_some_and(|me| me.master_id.as_deref() == Some(master_id))
            {
                return Ok(());
            }
            match redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(master_id)
                .query_async::<()>(&mut con)
                .await
            {
                Ok(()) => return Ok(()),
                // "Unknown node": the meeting has not reached it yet.
                Err(e) if Instant::now() < deadline => {
                    tracing::trace!(node = %spec.name, error = %e, "not following its master yet");
                }
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Until `spec` says `cluster_state:ok` and knows `nodes` nodes.
    async fn wait_cluster_ok(
        &self,
        spec: &NodeSpec,
        nodes: usize,
        deadline: Instant,
    ) -> Result<(), EngineError> {
        let mut con = self.admin_connection(spec).await?;
        loop {
            let info = cluster_info(&mut con).await?;
            let ok = info.get("cluster_state").map(String::as_str) == Some("ok");
            let known: usize = admin::field(&info, "cluster_known_nodes").unwrap_or(0);
            if ok && known >= nodes {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Protocol(format!(
                    "{}: cluster_state {:?} with {known} of {nodes} nodes known",
                    spec.name,
                    info.get("cluster_state")
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Makes `spec` forget the cluster node `node_id` (`CLUSTER FORGET`), removed for good:
    /// every remaining node must forget it within a minute, or gossip brings it back. A node
    /// that does not know it (any more) is fine.
    pub async fn cluster_forget(&self, spec: &NodeSpec, node_id: &str) -> Result<(), EngineError> {
        let mut con = self.admin_connection(spec).await?;
        match redis::cmd("CLUSTER")
            .arg("FORGET")
            .arg(node_id)
            .query_async::<()>(&mut con)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("Unknown node") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What the node says of its cluster (`CLUSTER NODES`, `CLUSTER INFO`).
    pub async fn cluster_view(&self, spec: &NodeSpec) -> Result<ClusterView, EngineError> {
        let mut con = admin::quick_connection(self.config(), spec).await?;
        view_of(&mut con).await
    }
}

async fn cluster_info(
    con: &mut MultiplexedConnection,
) -> Result<HashMap<String, String>, EngineError> {
    let text: String = redis::cmd("CLUSTER").arg("INFO").query_async(con).await?;
    Ok(admin::parse_info(&text))
}

pub(crate) async fn view_of(con: &mut MultiplexedConnection) -> Result<ClusterView, EngineError> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(con).await?;
    let info = cluster_info(con).await?;
    let mut view = parse_nodes(&text)?;
    view.ok = info.get("cluster_state").map(String::as_str) == Some("ok");
    Ok(view)
}

/// Reads `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent>
/// <pong-recv> <config-epoch> <link-state> <slot>...`.
pub(crate) fn parse_nodes(text: &str) -> Result<ClusterView, EngineError> {
    let bad = |line: &str| EngineError::Protocol(format!("CLUSTER NODES line {line:?}"));
    let mut view = ClusterView {
        myself: String::new(),
        ok: false,
        nodes: Vec::new(),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return Err(bad(line));
        }
        let addr = f[1].split(['@', ',']).next().unwrap_or_default();
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad(line))?;
        let flags: Vec<&str> = f[2].split(',').collect();
        // A handshake under way: a random id for an address, gone once it resolves.
        if flags.contains(&"handshake") {
            continue;
        }
        if flags.contains(&"myself") {
            view.myself = f[0].to_string();
        }
        let mut slots = Vec::new();
        let mut open_slots = Vec::new();
        for s in &f[8..] {
            // `[slot->-node]` / `[slot-<-node]`: a migration under way, not an owned slot.
            if let Some(open) = s.strip_prefix('[') {
                let slot = open.split('-').next().unwrap_or_default();
                open_slots.push(slot.parse().map_err(|_| bad(line))?);
                continue;
            }
            let (lo, hi) = match s.split_once('-') {
                Some((lo, hi)) => (lo, hi),
                None => (*s, *s),
            };
            let lo: u16 = lo.parse().map_err(|_| bad(line))?;
            let hi: u16 = hi.parse().map_err(|_| bad(line))?;
            slots.push((lo, hi));
        }
        view.nodes.push(ClusterNodeView {
            id: f[0].to_string(),
            host: host.to_string(),
            port: port.parse().unwrap_or(0),
            master: flags.contains(&"master"),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            failing: flags.iter().any(|fl| *fl == "fail" || *fl == "fail?"),
            connected: f[7] == "connected",
            slots,
            open_slots,
        });
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_evenly_and_cover_the_key_space() {
        for n in [1usize, 3, 5, 8, 12, 16, 24, 32] {
            let mut next = 0u32;
            for i in 0..n {
                let (lo, hi) = even_slots(i, n);
                assert_eq!(u32::from(lo), next, "{n} shards");
                next = u32::from(hi) + 1;
                let size = u32::from(hi - lo) + 1;
                assert!(size == 16384 / n as u32 || size == 16384 / n as u32 + 1);
            }
            assert_eq!(next, 16384);
        }
        assert_eq!(even_slots(0, 3), (0, 5460));
        assert_eq!(even_slots(1, 3), (5461, 10922));
        assert_eq!(even_slots(2, 3), (10923, 16383));
    }

    #[test]
    fn reads_cluster_nodes() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host1 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [93->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 1426238316232 0 5 disconnected 10923 10925-16383
";
        let v = parse_nodes(text).expect("parse");
        assert_eq!(v.myself, "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca");
        assert_eq!(v.nodes.len(), 4);
        let replica = &v.nodes[0];
        assert!(!replica.master);
        assert_eq!(
            replica.master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!((replica.host.as_str(), replica.port), ("127.0.0.1", 30004));
        let me = v.node(&v.myself).expect("myself");
        assert_eq!(me.slots, vec![(0, 5460)]);
        assert_eq!(me.slot_count(), 5461);
        assert_eq!(me.open_slots, vec![93]);
        let failed = v.at("127.0.0.1", 30005).expect("failed node");
        assert!(failed.failing && !failed.connected);
        assert_eq!(failed.slots, vec![(10923, 10923), (10925, 16383)]);
        assert!(parse_nodes("garbage line").is_err());
    }
}
