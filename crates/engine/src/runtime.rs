//! The seam between the service and whatever runs nodes.
//!
//! The service decides which nodes an instance has and what each must be (a [`NodeSpec`]:
//! names, role, port, memory, users, parameters); a [`NodeRuntime`] makes it so. The service
//! never builds a folder path, touches a node's files or probes a port: those belong to the
//! runtime, which owns where and how nodes run. Today's one implementation is [`Engine`],
//! local redis-server processes under `<root>/<instance>/<node>`; a runtime that runs nodes
//! on other hosts implements the same trait.
//!
//! Files cross the seam as paths the runtime hands out or takes over: a snapshot is a file
//! the caller moves away, a restore reads a file the caller keeps until the call returns.
//! Redis admin calls (CONFIG, ACL, INFO, WAIT, REPLICAOF) reach a node by its address and
//! crsd's own ACL user, wherever the node runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    ClientConn, ClusterShard, ClusterView, CommandCounters, Engine, EngineError, KeyFreq, KeySizes,
    KeyWalk, Lineage, Liveness, NodeHandle, NodeSpec, NodeStats, NodeUsage, SlotMoves, SlotOwner,
    SlowlogEntry,
};

/// What the service needs from a place that runs nodes.
#[async_trait]
pub trait NodeRuntime: Send + Sync {
    // ---- processes ----

    /// Starts the node, or adopts its process if it already runs (then nothing restarts).
    async fn start(&self, spec: &NodeSpec) -> Result<NodeHandle, EngineError>;
    /// Takes over a running node of the warm pool, started with `warm_secret` as crsd's
    /// secret, as the node `spec` describes, without a restart (see [`Engine::claim`]).
    async fn claim(&self, spec: &NodeSpec, warm_secret: &str) -> Result<NodeHandle, EngineError>;
    /// Stops the node's process; its data stays.
    async fn stop(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// Stops the node and removes everything it had.
    async fn destroy(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// Removes what is left of an instance once its nodes are destroyed.
    fn remove_instance(&self, instance: &str) -> Result<(), EngineError>;
    /// Alive, dead, or unknown (the runtime could not look: never a reason to restart).
    fn liveness(&self, spec: &NodeSpec) -> Liveness;
    /// Brings a running node to this version's rules (ceiling, ACL) in place.
    async fn conform(&self, spec: &NodeSpec) -> Result<Option<u32>, EngineError>;
    /// Kills by the node's memory ceiling not reported before.
    fn take_oom_kills(&self, spec: &NodeSpec) -> Result<u64, EngineError>;
    /// The node's memory ceiling in MB, when it has one.
    fn ceiling_mb(&self, spec: &NodeSpec) -> Option<u64>;
    /// Whether a new node could listen on `port` (nothing else holds it).
    fn port_free(&self, port: u16) -> bool;
    /// Whether something could listen on `host:port`: the address is the host's and nothing
    /// holds that port on it.
    fn address_free(&self, host: &str, port: u16) -> bool;
    /// Carries a node over from the previous release's layout while it runs (see
    /// [`Engine::migrate_legacy_folder`]); `spec.role` is the role it had then.
    fn migrate_legacy(&self, spec: &NodeSpec) -> Result<bool, EngineError>;

    // ---- admin calls, by address ----

    async fn set_maxmemory(&self, spec: &NodeSpec, mb: u64) -> Result<(), EngineError>;
    async fn set_default_password(
        &self,
        spec: &NodeSpec,
        sha256_hex: &str,
    ) -> Result<(), EngineError>;
    async fn set_params(
        &self,
        spec: &NodeSpec,
        params: &[(String, String)],
    ) -> Result<(), EngineError>;
    async fn get_param(&self, spec: &NodeSpec, name: &str) -> Result<String, EngineError>;
    async fn flush_all(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    async fn used_memory_bytes(&self, spec: &NodeSpec) -> Result<u64, EngineError>;
    async fn usage(&self, spec: &NodeSpec) -> Result<NodeUsage, EngineError>;
    /// One `INFO` with what crsd's monitoring history records (see [`NodeStats`]).
    async fn stats(&self, spec: &NodeSpec) -> Result<NodeStats, EngineError>;
    async fn slowlog(
        &self,
        spec: &NodeSpec,
        count: usize,
    ) -> Result<Vec<SlowlogEntry>, EngineError>;
    /// The node's command counters since its start (see `workload.rs`).
    async fn command_counters(&self, spec: &NodeSpec) -> Result<CommandCounters, EngineError>;
    /// The node's customer connections (crsd's own users and replication links left out).
    async fn customer_clients(&self, spec: &NodeSpec) -> Result<Vec<ClientConn>, EngineError>;
    /// A bounded walk over the node's keys with their sizes; the `keep` biggest of each type.
    async fn key_sizes(
        &self,
        spec: &NodeSpec,
        walk: KeyWalk,
        keep: usize,
    ) -> Result<KeySizes, EngineError>;
    /// A bounded sample of the node's keys with their LFU frequency; the `keep` most frequent.
    async fn key_frequencies(
        &self,
        spec: &NodeSpec,
        walk: KeyWalk,
        keep: usize,
    ) -> Result<Vec<KeyFreq>, EngineError>;
    /// Makes a running node follow `spec.master` (REPLICAOF), as its spec says.
    async fn follow(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// Moves a running node that still listens on `from` to `spec.port`, live (see
    /// [`Engine::move_port`]); true if it moved.
    async fn move_port(&self, spec: &NodeSpec, from: u16) -> Result<bool, EngineError>;

    // ---- an instance's own address (see `address.rs`) ----

    /// Adds the instance's `address` to a master's listening addresses; true if added.
    async fn hold_address(&self, spec: &NodeSpec, address: &str) -> Result<bool, EngineError>;
    /// Takes `address` off the node and closes its connections there; true if it held it.
    async fn release_address(&self, spec: &NodeSpec, address: &str) -> Result<bool, EngineError>;
    /// The node's role and replication ids: which of two masters is the newer one.
    async fn lineage(&self, spec: &NodeSpec) -> Result<Lineage, EngineError>;

    // ---- planned switches and drills (see `switch.rs`) ----

    async fn pause_writes(&self, spec: &NodeSpec, pause: Duration) -> Result<(), EngineError>;
    async fn unpause_writes(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// Waits until `replica` has applied everything `master` had at the call.
    async fn wait_caught_up(
        &self,
        master: &NodeSpec,
        replica: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError>;
    async fn set_replica_priority(&self, spec: &NodeSpec, priority: u32)
        -> Result<(), EngineError>;
    async fn is_master_now(&self, spec: &NodeSpec) -> Result<bool, EngineError>;
    /// A replica's link: `Some((link up, full sync in progress))`, `None` for a master now.
    async fn replica_state(&self, spec: &NodeSpec) -> Result<Option<(bool, bool)>, EngineError>;
    /// SIGKILL, as a crash would; true if the node ran.
    fn kill(&self, spec: &NodeSpec) -> Result<bool, EngineError>;
    /// Whether a replica receives its master's writes now (one made on the master reaches it
    /// within `within`).
    async fn replica_streams(&self, spec: &NodeSpec, within: Duration)
        -> Result<bool, EngineError>;
    /// Waits until a replica is in sync with its master.
    async fn wait_replica_synced(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError>;
    /// On a master: every write acknowledged before the call is on `replicas` replicas.
    async fn replication_barrier(
        &self,
        master: &NodeSpec,
        replicas: usize,
        timeout: Duration,
    ) -> Result<(), EngineError>;

    // ---- files ----

    /// A point-in-time RDB of the node; the caller takes the file away.
    async fn snapshot(&self, spec: &NodeSpec, timeout: Duration) -> Result<PathBuf, EngineError>;
    /// Whether `path` is an RDB file the node's redis-server can load.
    async fn check_rdb(&self, path: &Path) -> Result<(), EngineError>;
    /// Stages `rdb` as the node's next data, its own data kept aside.
    fn stage_restore(&self, spec: &NodeSpec, rdb: &Path) -> Result<(), EngineError>;
    /// With the node stopped: the staged data becomes the node's.
    fn swap_in_restore(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// With the node stopped: the data kept aside comes back.
    fn roll_back_restore(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// Drops what a finished restore kept aside.
    fn finish_restore(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// With the node stopped: its data is dropped (a replica then syncs from its master).
    fn discard_data(&self, spec: &NodeSpec) -> Result<(), EngineError>;
    /// Starts a node whose restore was swapped in on the restored RDB itself, keeping the
    /// RDB's replication id and offset (see [`Engine::start_restored`]).
    async fn start_restored(
        &self,
        spec: &NodeSpec,
        load_timeout: Duration,
    ) -> Result<NodeHandle, EngineError>;
    /// Waits for a replica's link to its master without reconnecting it (a reconnect would
    /// cost the partial resync a restored start makes possible).
    async fn wait_replica_linked(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError>;
    /// After a restored start: the AOF on and written, writes allowed again.
    async fn settle_restored(&self, spec: &NodeSpec, timeout: Duration) -> Result<(), EngineError>;

    // ---- Redis Cluster (see `cluster.rs`) ----

    /// Forms a cluster of running nodes (idempotent): slots spread evenly over the masters,
    /// replicas following them; returns once every node says the cluster is ok.
    async fn form_cluster(
        &self,
        shards: &[ClusterShard],
        timeout: Duration,
    ) -> Result<(), EngineError>;
    /// What a cluster node says of its cluster.
    async fn cluster_view(&self, spec: &NodeSpec) -> Result<ClusterView, EngineError>;
    /// Makes a cluster node forget a node removed for good.
    async fn cluster_forget(&self, spec: &NodeSpec, node_id: &str) -> Result<(), EngineError>;
    /// Brings new nodes into a formed cluster without slots (idempotent): new masters join
    /// empty, replicas follow their masters; returns once every node says the cluster is ok.
    async fn join_cluster(
        &self,
        shards: &[ClusterShard],
        timeout: Duration,
    ) -> Result<(), EngineError>;
    /// Moves slots live until each owner serves its range alone (see `reshard.rs`).
    async fn move_slots(
        &self,
        owners: &[SlotOwner],
        others: &[NodeSpec],
        timeout: Duration,
    ) -> Result<SlotMoves, EngineError>;
}

#[async_trait]
impl NodeRuntime for Engine {
    async fn start(&self, spec: &NodeSpec) -> Result<NodeHandle, EngineError> {
        Engine::start(self, spec).await
    }
    async fn claim(&self, spec: &NodeSpec, warm_secret: &str) -> Result<NodeHandle, EngineError> {
        Engine::claim(self, spec, warm_secret).await
    }
    async fn stop(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::stop(self, spec).await
    }
    async fn destroy(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::destroy(self, spec).await
    }
    fn remove_instance(&self, instance: &str) -> Result<(), EngineError> {
        self.remove_instance_folder(instance)
    }
    fn liveness(&self, spec: &NodeSpec) -> Liveness {
        Engine::liveness(self, spec)
    }
    async fn conform(&self, spec: &NodeSpec) -> Result<Option<u32>, EngineError> {
        Engine::conform(self, spec).await
    }
    fn take_oom_kills(&self, spec: &NodeSpec) -> Result<u64, EngineError> {
        Engine::take_oom_kills(self, spec)
    }
    fn ceiling_mb(&self, spec: &NodeSpec) -> Option<u64> {
        self.ceiling_status(spec)
            .map(|s| s.limit_bytes / (1024 * 1024))
    }
    fn port_free(&self, port: u16) -> bool {
        std::net::TcpListener::bind((self.config().bind.as_str(), port)).is_ok()
    }
    fn address_free(&self, host: &str, port: u16) -> bool {
        std::net::TcpListener::bind((host, port)).is_ok()
    }
    fn migrate_legacy(&self, spec: &NodeSpec) -> Result<bool, EngineError> {
        self.migrate_legacy_folder(spec)
    }
    async fn set_maxmemory(&self, spec: &NodeSpec, mb: u64) -> Result<(), EngineError> {
        Engine::set_maxmemory(self, spec, mb).await
    }
    async fn set_default_password(
        &self,
        spec: &NodeSpec,
        sha256_hex: &str,
    ) -> Result<(), EngineError> {
        Engine::set_default_password(self, spec, sha256_hex).await
    }
    async fn set_params(
        &self,
        spec: &NodeSpec,
        params: &[(String, String)],
    ) -> Result<(), EngineError> {
        Engine::set_params(self, spec, params).await
    }
    async fn get_param(&self, spec: &NodeSpec, name: &str) -> Result<String, EngineError> {
        Engine::get_param(self, spec, name).await
    }
    async fn flush_all(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::flush_all(self, spec).await
    }
    async fn used_memory_bytes(&self, spec: &NodeSpec) -> Result<u64, EngineError> {
        Engine::used_memory_bytes(self, spec).await
    }
    async fn usage(&self, spec: &NodeSpec) -> Result<NodeUsage, EngineError> {
        Engine::usage(self, spec).await
    }
    async fn stats(&self, spec: &NodeSpec) -> Result<NodeStats, EngineError> {
        Engine::stats(self, spec).await
    }
    async fn slowlog(
        &self,
        spec: &NodeSpec,
        count: usize,
    ) -> Result<Vec<SlowlogEntry>, EngineError> {
        Engine::slowlog(self, spec, count).await
    }
    async fn command_counters(&self, spec: &NodeSpec) -> Result<CommandCounters, EngineError> {
        Engine::command_counters(self, spec).await
    }
    async fn customer_clients(&self, spec: &NodeSpec) -> Result<Vec<ClientConn>, EngineError> {
        Engine::customer_clients(self, spec).await
    }
    async fn key_sizes(
        &self,
        spec: &NodeSpec,
        walk: KeyWalk,
        keep: usize,
    ) -> Result<KeySizes, EngineError> {
        Engine::key_sizes(self, spec, walk, keep).await
    }
    async fn key_frequencies(
        &self,
        spec: &NodeSpec,
        walk: KeyWalk,
        keep: usize,
    ) -> Result<Vec<KeyFreq>, EngineError> {
        Engine::key_frequencies(self, spec, walk, keep).await
    }
    async fn follow(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::follow(self, spec).await
    }
    async fn move_port(&self, spec: &NodeSpec, from: u16) -> Result<bool, EngineError> {
        Engine::move_port(self, spec, from).await
    }
    async fn hold_address(&self, spec: &NodeSpec, address: &str) -> Result<bool, EngineError> {
        Engine::hold_address(self, spec, address).await
    }
    async fn release_address(&self, spec: &NodeSpec, address: &str) -> Result<bool, EngineError> {
        Engine::release_address(self, spec, address).await
    }
    async fn lineage(&self, spec: &NodeSpec) -> Result<Lineage, EngineError> {
        Engine::lineage(self, spec).await
    }
    async fn pause_writes(&self, spec: &NodeSpec, pause: Duration) -> Result<(), EngineError> {
        Engine::pause_writes(self, spec, pause).await
    }
    async fn unpause_writes(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::unpause_writes(self, spec).await
    }
    async fn wait_caught_up(
        &self,
        master: &NodeSpec,
        replica: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        Engine::wait_caught_up(self, master, replica, timeout).await
    }
    async fn set_replica_priority(
        &self,
        spec: &NodeSpec,
        priority: u32,
    ) -> Result<(), EngineError> {
        Engine::set_replica_priority(self, spec, priority).await
    }
    async fn is_master_now(&self, spec: &NodeSpec) -> Result<bool, EngineError> {
        Engine::is_master_now(self, spec).await
    }
    async fn replica_state(&self, spec: &NodeSpec) -> Result<Option<(bool, bool)>, EngineError> {
        Engine::replica_state(self, spec).await
    }
    fn kill(&self, spec: &NodeSpec) -> Result<bool, EngineError> {
        Engine::kill(self, spec)
    }
    async fn replica_streams(
        &self,
        spec: &NodeSpec,
        within: Duration,
    ) -> Result<bool, EngineError> {
        Engine::replica_streams(self, spec, within).await
    }
    async fn wait_replica_synced(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        Engine::wait_replica_synced(self, spec, timeout).await
    }
    async fn replication_barrier(
        &self,
        master: &NodeSpec,
        replicas: usize,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        Engine::replication_barrier(self, master, replicas, timeout).await
    }
    async fn snapshot(&self, spec: &NodeSpec, timeout: Duration) -> Result<PathBuf, EngineError> {
        Engine::snapshot(self, spec, timeout).await
    }
    async fn check_rdb(&self, path: &Path) -> Result<(), EngineError> {
        Engine::check_rdb(self, path).await
    }
    fn stage_restore(&self, spec: &NodeSpec, rdb: &Path) -> Result<(), EngineError> {
        Engine::stage_restore(self, spec, rdb)
    }
    fn swap_in_restore(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::swap_in_restore(self, spec)
    }
    fn roll_back_restore(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::roll_back_restore(self, spec)
    }
    fn finish_restore(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::finish_restore(self, spec)
    }
    fn discard_data(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        Engine::discard_data(self, spec)
    }
    async fn start_restored(
        &self,
        spec: &NodeSpec,
        load_timeout: Duration,
    ) -> Result<NodeHandle, EngineError> {
        Engine::start_restored(self, spec, load_timeout).await
    }
    async fn wait_replica_linked(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        Engine::wait_replica_linked(self, spec, timeout).await
    }
    async fn settle_restored(&self, spec: &NodeSpec, timeout: Duration) -> Result<(), EngineError> {
        Engine::settle_restored(self, spec, timeout).await
    }
    async fn form_cluster(
        &self,
        shards: &[ClusterShard],
        timeout: Duration,
    ) -> Result<(), EngineError> {
        Engine::form_cluster(self, shards, timeout).await
    }
    async fn cluster_view(&self, spec: &NodeSpec) -> Result<ClusterView, EngineError> {
        Engine::cluster_view(self, spec).await
    }
    async fn cluster_forget(&self, spec: &NodeSpec, node_id: &str) -> Result<(), EngineError> {
        Engine::cluster_forget(self, spec, node_id).await
    }
    async fn join_cluster(
        &self,
        shards: &[ClusterShard],
        timeout: Duration,
    ) -> Result<(), EngineError> {
        Engine::join_cluster(self, shards, timeout).await
    }
    async fn move_slots(
        &self,
        owners: &[SlotOwner],
        others: &[NodeSpec],
        timeout: Duration,
    ) -> Result<SlotMoves, EngineError> {
        Engine::move_slots(self, owners, others, timeout).await
    }
}
