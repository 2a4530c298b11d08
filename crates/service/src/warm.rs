//! The warm pool: nodes started before anyone buys them.
//!
//! A create that starts its nodes waits for two process starts, and a cluster's masters then
//! for Redis Cluster's own delay: a fresh master serves no slot until two seconds after it
//! started (`CLUSTER_WRITABLE_DELAY`). Clouds keep capacity warm; crsd keeps
//! `warm_nodes` standard and `warm_cluster_nodes` cluster-enabled redis-servers running,
//! empty, each with secrets of its own and a password nobody knows on `default`.
//!
//! * A purchase takes the nodes an instance needs from the pool in its own transaction (all
//!   of them or none; the oldest first): they become the instance's nodes with their ids,
//!   ports and folders (`<root>/warm/<id>`, see `Node::folder`), and keep the pool's
//!   secret (`Node::warm_secret`) until the create's task has given them the instance's
//!   users (`NodeRuntime::claim`); then the secret is dropped.
//! * Without enough warm nodes, or with an address pool (nodes on addresses of their own
//!   at the port the client asked for), a create starts its nodes as before.
//! * The supervisor tops the pool up after each pass's instance work, replaces a warm node
//!   that died and stops the ones a smaller setting no longer wants. It acts on a node only
//!   once the database says no create can take it (`WarmState`). Warm nodes are detached
//!   processes like every node: a crsd restart finds them running.

use crsd_core::ids;
use crsd_core::model::{WarmNode, WarmState, WARM_FOLDER};
use crsd_engine::{Liveness, NodeSpec, Role};

use crate::{Result, Service, ADMIN_USER, REPL_USER};

/// `maxmemory` of a node while it is warm: it holds nothing until a create takes it, which
/// sets the instance's.
const WARM_MAXMEMORY_MB: u64 = 16;

/// The user of a warm node's `default` password: a secret derived from its own, so nobody
/// can write into a node before its instance's owner gets it.
const WARM_DEFAULT_USER: &str = "default";

impl Service {
    /// How many warm nodes of the kind the pool keeps (none with an address pool: those
    /// instances' nodes listen at addresses and ports chosen at purchase).
    pub(crate) fn warm_wanted(&self, cluster: bool) -> usize {
        if !self.cfg.address_pool.is_empty() {
            return 0;
        }
        if cluster {
            self.cfg.warm_cluster_nodes
        } else {
            self.cfg.warm_nodes
        }
    }

    /// What a warm node is while it waits: an empty master with its own secrets.
    pub fn warm_spec(&self, w: &WarmNode) -> NodeSpec {
        let default_secret = crsd_engine::internal_secret(&w.admin_secret, WARM_DEFAULT_USER);
        NodeSpec {
            name: w.id.clone(),
            instance: WARM_FOLDER.to_string(),
            role: Role::Master,
            host: String::new(),
            port: w.port,
            maxmemory_mb: WARM_MAXMEMORY_MB,
            default_password_sha256: crsd_engine::acl_sha256_hex(&default_secret),
            admin_user: ADMIN_USER.to_string(),
            admin_secret: w.admin_secret.clone(),
            repl_user: REPL_USER.to_string(),
            repl_secret: w.repl_secret.clone(),
            master: None,
            params: Vec::new(),
            cluster: w.cluster.then_some(crsd_engine::ClusterSettings {
                node_timeout_ms: self.cfg.cluster_node_timeout_ms,
            }),
        }
    }

    /// Whether the pool holds every warm node the settings want, each ready and running.
    pub async fn warm_pool_full(&self) -> Result<bool> {
        let warm = self.store.warm_nodes().await?;
        for cluster in [false, true] {
            let ready = ready_of(&warm, cluster);
            if ready.len() < self.warm_wanted(cluster) {
                return Ok(false);
            }
            if ready.iter().any(|w| {
                !matches!(
                    self.runtime.liveness(&self.warm_spec(w)),
                    Liveness::Alive(_)
                )
            }) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One pass of the pool's keeper (the supervisor's, one at a time): what an earlier pass
    /// left half done is removed, dead and surplus warm nodes are removed, missing ones
    /// started.
    ///
    /// A create takes only ready nodes, and the keeper changes a node only after moving it
    /// out of ready in the database (`set_warm_state`, which fails once a create took it):
    /// the two never act on one node at once.
    pub async fn tend_warm_pool(&self) -> Result<()> {
        let warm = self.store.warm_nodes().await?;
        // A node left starting or dropping by a crash of crsd: its start may not have
        // finished, its removal surely not.
        for w in warm.iter().filter(|w| w.state != WarmState::Ready) {
            self.remove_warm_node(w).await?;
        }
        for cluster in [false, true] {
            let wanted = self.warm_wanted(cluster);
            let mut kept = 0;
            // The oldest are kept: they have waited out the cluster's delay longest.
            for (i, w) in ready_of(&warm, cluster).into_iter().enumerate() {
                let surplus = i >= wanted;
                let dead = matches!(self.runtime.liveness(&self.warm_spec(w)), Liveness::Dead);
                if !surplus && !dead {
                    kept += 1;
                    continue;
                }
                if dead && !surplus {
                    tracing::warn!(node = %w.id, "warm node not running; replacing it");
                }
                self.drop_warm_node(w).await?;
            }
            for _ in kept..wanted {
                let Some(w) = self.add_warm_node(cluster).await? else {
                    break;
                };
                self.start_warm(&w).await?;
            }
        }
        Ok(())
    }

    /// Reserves a port and records a new warm node, starting; `None` when no port is free.
    async fn add_warm_node(&self, cluster: bool) -> Result<Option<WarmNode>> {
        let mut tx = self.store.write().await?;
        let used = crate::purchase::taken_ports(&mut tx).await?;
        let port = if cluster {
            self.free_cluster_ports(used).next()
        } else {
            self.free_ports(used).next()
        };
        let Some(port) = port else {
            // The instances hold the range: creates start their own nodes. Every pass would
            // say so; `crsd_warm_nodes` shows the pool short.
            tracing::debug!(cluster, "no free port for a warm node");
            return Ok(None);
        };
        let w = WarmNode {
            id: ids::new_warm_node_id(),
            cluster,
            port,
            admin_secret: ids::new_secret(),
            repl_secret: ids::new_secret(),
            created_at: self.now(),
            state: WarmState::Starting,
        };
        tx.insert_warm_node(&w).await?;
        tx.commit().await?;
        Ok(Some(w))
    }

    /// Starts a recorded warm node and makes it ready; one that cannot start is removed.
    async fn start_warm(&self, w: &WarmNode) -> Result<()> {
        match self.runtime.start(&self.warm_spec(w)).await {
            Ok(h) => {
                let mut tx = self.store.write().await?;
                tx.set_warm_state(&w.id, WarmState::Starting, WarmState::Ready)
                    .await?;
                tx.commit().await?;
                tracing::info!(node = %w.id, port = w.port, cluster = w.cluster, pid = h.pid, "warm node ready");
                Ok(())
            }
            Err(e) => {
                tracing::error!(node = %w.id, port = w.port, error = %e, "cannot start a warm node; removing it");
                self.remove_warm_node(w).await
            }
        }
    }

    /// Takes a ready warm node out of the pool and removes it; nothing when a create took it
    /// first (it is no longer the pool's).
    async fn drop_warm_node(&self, w: &WarmNode) -> Result<()> {
        let mut tx = self.store.write().await?;
        let dropping = tx
            .set_warm_state(&w.id, WarmState::Ready, WarmState::Dropping)
            .await?;
        tx.commit().await?;
        if dropping {
            self.remove_warm_node(w).await?;
        }
        Ok(())
    }

    /// Stops a warm node that no create can take any more, removes its folder, then its
    /// record (a crash in between leaves the record, and the next pass removes it again).
    async fn remove_warm_node(&self, w: &WarmNode) -> Result<()> {
        self.runtime
            .destroy(&self.warm_spec(w))
            .await
            .map_err(crate::steps::engine_err)?;
        let mut tx = self.store.write().await?;
        tx.delete_warm_node(&w.id).await?;
        tx.commit().await?;
        tracing::info!(node = %w.id, "warm node removed");
        Ok(())
    }
}

/// The ready warm nodes of the kind (`cluster`), the oldest first (as the store lists them).
fn ready_of(warm: &[WarmNode], cluster: bool) -> Vec<&WarmNode> {
    warm.iter()
        .filter(|w| w.cluster == cluster && w.state == WarmState::Ready)
        .collect()
}
