//! Taking over a node of the warm pool.
//!
//! A warm node is an ordinary node started before anyone bought it: empty, as a master, with
//! crsd's users under secrets of its own and a small memory limit. A create that takes it
//! gives it, in place and without a restart, what its instance's spec says: the instance's
//! secrets for every user (crsd's, replication's, Sentinel's, the proxy check's, the
//! exporter's and the customer's `default`), its `maxmemory` and ceiling, and for a replica
//! its master. So the create waits for no process start (and a cluster's masters have long
//! waited out Redis Cluster's two seconds before a fresh master may serve).
//!
//! The users change in one `MULTI`/`EXEC`: a crash leaves the node with the pool's secrets or
//! with the instance's, never half of each, and a second [`Engine::claim`] (a resumed task)
//! finds out which by logging in. Nothing is written to redis.conf: its marker line names
//! the pool's spec, so whatever restarts the node renders the instance's own config from its
//! spec (see `config.rs`).

use redis::aio::MultiplexedConnection;

use crate::admin;
use crate::config;
use crate::layout::NodePaths;
use crate::process;
use crate::{acl_sha256_hex, Engine, EngineError, NodeHandle, NodeSpec, Role};

impl Engine {
    /// Makes the running warm node `spec.name`, started with `warm_secret` as crsd's secret,
    /// the node `spec` describes, and returns its process. A node that no longer runs (it
    /// died in the pool) is started from `spec` as any other; one that runs but answers
    /// neither secret is not trusted with a customer's data: it is stopped and started anew.
    ///
    /// One connection, as the pool's user: it stays logged in after its password changes.
    /// Nothing is written to redis.conf: its marker line names the pool's spec, so the
    /// node's next start renders the instance's config from `spec` anyway.
    pub async fn claim(
        &self,
        spec: &NodeSpec,
        warm_secret: &str,
    ) -> Result<NodeHandle, EngineError> {
        let paths = self.node_paths(spec)?;
        let Some(pid) = process::find_running(self.config(), &paths) else {
            return self.start(spec).await;
        };
        let warm = NodeSpec {
            admin_secret: warm_secret.to_string(),
            ..spec.clone()
        };
        let mut con = match admin::admin_connection(self.config(), &warm).await {
            Ok(con) => con,
            Err(_) => return self.claimed_before(spec, &warm, &paths, pid).await,
        };
        let probe = admin::probe_on(&mut con).await?;
        if !probe.is(pid, &warm, &paths) {
            return self.claimed_before(spec, &warm, &paths, pid).await;
        }
        // The instance's ceiling before its maxmemory: the warm one is the smallest.
        self.conform_ceiling(spec, pid);
        take_over(&mut con, spec).await?;
        tracing::info!(node = %spec.name, pid, "warm node taken: its instance's users, memory and role");
        Ok(probe.handle())
    }

    /// `claim` of a node that does not answer the pool's secret: taken over already (a task
    /// resumed after a crash; the users change at once, see the module docs), or a process
    /// that answers neither secret, which is replaced by a fresh start.
    async fn claimed_before(
        &self,
        spec: &NodeSpec,
        warm: &NodeSpec,
        paths: &NodePaths,
        pid: u32,
    ) -> Result<NodeHandle, EngineError> {
        if let Ok(mut con) = admin::admin_connection(self.config(), spec).await {
            let probe = admin::probe_on(&mut con).await?;
            if probe.is(pid, spec, paths) {
                self.conform_running(spec, pid).await;
                follow_master(&mut con, spec).await?;
                return Ok(probe.handle());
            }
        }
        tracing::warn!(node = %spec.name, pid, "a warm node answers neither its own secret nor its instance's; starting it anew");
        self.stop(warm).await?;
        self.start(spec).await
    }
}

/// On a warm node's connection: in one `MULTI`, the instance's `maxmemory`, a replica's
/// replication login and promotion bar, and every user's secret; then a standard replica
/// follows its master.
async fn take_over(con: &mut MultiplexedConnection, spec: &NodeSpec) -> Result<(), EngineError> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(config::maxmemory_arg(spec.maxmemory_mb)?);
    if spec.cluster.is_some() || spec.role == Role::Replica {
        pipe.cmd("CONFIG")
            .arg("SET")
            .arg("masteruser")
            .arg(&spec.repl_user)
            .arg("masterauth")
            .arg(&spec.repl_secret);
    }
    if spec.cluster.is_none() && spec.role == Role::Replica {
        // As a rendered replica: never promoted before crsd has seen it in sync.
        pipe.cmd("CONFIG")
            .arg("SET")
            .arg("replica-priority")
            .arg("0");
    }
    pipe.cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("on")
        .arg("resetpass")
        .arg(config::default_user_pass(&spec.default_password_sha256)?);
    let mut users = vec![
        (spec.admin_user.clone(), spec.admin_secret.clone()),
        (spec.repl_user.clone(), spec.repl_secret.clone()),
    ];
    for (user, _) in config::internal_users() {
        users.push((
            user.to_string(),
            crate::internal_secret(&spec.admin_secret, user),
        ));
    }
    for (user, secret) in users {
        pipe.cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("resetpass")
            .arg(format!("#{}", acl_sha256_hex(&secret)));
    }
    pipe.query_async::<()>(con).await?;
    follow_master(con, spec).await
}

/// A standard replica follows its spec's master (`REPLICAOF`, unless it does already);
/// nothing for masters and cluster nodes (the cluster says whom they follow).
async fn follow_master(
    con: &mut MultiplexedConnection,
    spec: &NodeSpec,
) -> Result<(), EngineError> {
    let (Role::Replica, Some((host, port)), None) = (spec.role, &spec.master, &spec.cluster) else {
        return Ok(());
    };
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(con).await?;
    let text = |v: Option<&redis::Value>| {
        v.and_then(|v| redis::from_redis_value::<String>(v).ok())
            .unwrap_or_default()
    };
    let following = text(role.first()) == "slave"
        && text(role.get(1)) == *host
        && matches!(role.get(2), Some(redis::Value::Int(p)) if *p == i64::from(*port));
    if !following {
        redis::cmd("REPLICAOF")
            .arg(host)
            .arg(*port)
            .query_async::<()>(con)
            .await?;
    }
    Ok(())
}
