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
//! finds out which by logging in. `CONFIG REWRITE` then keeps the change across a restart;
//! the config's marker line still names the pool's spec, so the next start renders the
//! instance's own config anyway (see `config.rs`).

use crate::admin;
use crate::config;
use crate::process;
use crate::{acl_sha256_hex, Engine, EngineError, NodeHandle, NodeSpec, Role};

impl Engine {
    /// Makes the running warm node `spec.name`, started with `warm_secret` as crsd's secret,
    /// the node `spec` describes, and returns its process. A node that no longer runs (it
    /// died in the pool) is started from `spec` as any other; one that runs but answers
    /// neither secret is not trusted with a customer's data: it is stopped and started anew.
    pub async fn claim(
        &self,
        spec: &NodeSpec,
        warm_secret: &str,
    ) -> Result<NodeHandle, EngineError> {
        let paths = self.node_paths(spec)?;
        let Some(pid) = process::find_running(self.config(), &paths) else {
            return self.start(spec).await;
        };
        // Already the instance's (a resumed task): as any running node.
        if let Ok(p) = admin::probe(self.config(), spec).await {
            if p.is(pid, spec, &paths) {
                // The crash may have come before the config file was rewritten.
                let mut con = self.admin_connection(spec).await?;
                crate::engine::config_rewrite(&mut con).await?;
                self.conform_running(spec, pid).await;
                self.follow_master(spec).await?;
                return Ok(p.handle());
            }
        }
        let warm = NodeSpec {
            admin_secret: warm_secret.to_string(),
            ..spec.clone()
        };
        match admin::probe(self.config(), &warm).await {
            Ok(p) if p.is(pid, &warm, &paths) => {}
            _ => {
                tracing::warn!(node = %spec.name, pid, "a warm node answers neither its own secret nor its instance's; starting it anew");
                self.stop(&warm).await?;
                return self.start(spec).await;
            }
        }
        // The instance's ceiling before its maxmemory: the warm one is the smallest.
        self.conform_ceiling(spec, pid);
        let mut con = self.admin_connection(&warm).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(config::maxmemory_arg(spec.maxmemory_mb)?);
        let replicates = spec.cluster.is_some() || spec.role == Role::Replica;
        if replicates {
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
        let default_pass = config::default_user_pass(&spec.default_password_sha256)?;
        pipe.cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("on")
            .arg("resetpass")
            .arg(default_pass);
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
        pipe.query_async::<()>(&mut con).await?;
        drop(con);
        let mut con = self.admin_connection(spec).await?;
        crate::engine::config_rewrite(&mut con).await?;
        tracing::info!(node = %spec.name, pid, "warm node taken: its instance's users and memory");
        self.follow_master(spec).await?;
        let handle = admin::probe(self.config(), spec).await?;
        if !handle.is(pid, spec, &paths) {
            return Err(EngineError::Protocol(format!(
                "{}: another process answers after the take-over",
                spec.name
            )));
        }
        Ok(handle.handle())
    }

    /// A standard replica follows its spec's master (`REPLICAOF`, kept by `CONFIG REWRITE`);
    /// nothing for masters and cluster nodes (the cluster says whom they follow).
    async fn follow_master(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let (Role::Replica, Some((host, port)), None) = (spec.role, &spec.master, &spec.cluster)
        else {
            return Ok(());
        };
        let mut con = self.admin_connection(spec).await?;
        let (role, following): (String, Option<(String, u16)>) = {
            let v: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await?;
            let role = match v.first() {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::SimpleString(s)) => s.clone(),
                _ => String::new(),
            };
            let following = match (v.get(1), v.get(2)) {
                (Some(h), Some(redis::Value::Int(p))) if role == "slave" => {
                    redis::from_redis_value::<String>(h)
                        .ok()
                        .map(|h| (h, *p as u16))
                }
                _ => None,
            };
            (role, following)
        };
        if role == "slave" && following.as_ref() == Some(&(host.clone(), *port)) {
            return Ok(());
        }
        redis::cmd("REPLICAOF")
            .arg(host)
            .arg(*port)
            .query_async::<()>(&mut con)
            .await?;
        crate::engine::config_rewrite(&mut con).await?;
        Ok(())
    }
}
