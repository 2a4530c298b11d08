//! The host's HAProxy: every instance's stable address.
//!
//! # One process, one `listen` section per instance
//!
//! A client connects to its instance's port on the proxy; the proxy forwards the connection to
//! the node that is the master right now. Which node that is, HAProxy finds out by itself: the
//! backend of each instance lists all of its nodes, and a health check logs in to each as
//! [`crate::CHECK_USER`] and asks `INFO replication`; only a node answering `role:master` is
//! UP. With `balance first`, connections go to the first UP server in the order the caller
//! listed them (the current master first), so two nodes claiming `role:master` for a moment
//! (a planned switch, a dead master restarted from its own config) still give one answer.
//!
//! The check pipelines `QUIT` after `INFO replication`: a replica's reply does not match, and
//! without `QUIT` HAProxy would wait for `timeout check` before it calls the check failed
//! (measured: the failover took longer by that much). A node marked DOWN has its sessions
//! shut (`on-marked-down shutdown-sessions`): a client left on a demoted master would only
//! get `READONLY` errors.
//!
//! The frontend and backend of an instance are one `listen` section named after the instance;
//! servers are named after the nodes. Every name is `[a-z0-9-]`, checked before anything is
//! rendered, and so are the other values written into the config, which is 0600 in a 0700
//! folder because it holds the check user's secret (nothing else logs it: no traffic log, and
//! the `Debug` of [`Frontend`] hides it).
//!
//! # Changing the config without dropping connections
//!
//! HAProxy cannot add or remove a listener at run time, so a new instance means a new config
//! and a reload. HAProxy runs in master-worker mode: the master re-executes itself, reads the
//! new config, takes the listening sockets over from the current worker through the stats
//! socket (`expose-fd listeners`; the master passes `-x` by itself), and forks a new worker.
//! The listening sockets are the same kernel sockets throughout, so no connection attempt is
//! refused during a reload; the old worker stops accepting but keeps serving the connections
//! it has until they close. One thing breaks that: a new port HAProxy cannot bind. The old
//! worker then pauses its listeners while the master retries (about 2 s) and gives up, and
//! every instance refuses connections meanwhile; so `apply` first binds each new port itself
//! for a moment and refuses a taken one.
//!
//! The master is driven through its CLI (`master.sock`): `reload` there cannot be lost the
//! way a `SIGUSR2` sent while the master is still re-executing is; `show proc` says when the
//! reload ended and whether it failed (the previous worker then keeps serving and the
//! previous config is put back on disk); and `@1 <command>` reaches the newest worker, where
//! the stats socket may still be answered by the old worker for a moment after a reload. A
//! config counts as serving when the newest worker's `show info` reports the config's
//! `description` (a hash of the rest of the file) and every frontend port accepts a
//! connection.
//!
//! # Spare frontends: a new address without a reload
//!
//! A reload costs 50-90 ms (more on a busy host) and a create would wait for it. So the
//! config also holds spare frontends ([`Proxy::apply_with_spares`]): `listen spare-<port>`
//! sections bound to ports the caller reserved for future instances, each with
//! [`ProxyConfig::spare_servers`] server slots (`server-template s 0-<n>`, in maintenance,
//! address `0.0.0.0:0`: no check runs, no connection is accepted for a server). Their check
//! logs in with `tcp-check send-lf` and a proc variable (`proc.crsd_spare_<port>`) as the
//! secret, which is unknown until an instance takes the spare.
//!
//! [`Proxy::take_spare`] gives a spare to a new instance whose address is that port, through
//! the master CLI in two round trips: the variable (`set var`, allowed in experimental mode
//! only), each slot's address (`set server ... addr`), then each slot out of maintenance as
//! `state drain` (UP but given no connection), `health up` for the master and `health down`
//! for the others, `state ready`. Measured on 2.6: `state ready` straight from maintenance
//! marks every slot UP, replicas too; a `health` set while in maintenance is ignored; and the
//! first check after maintenance comes one `inter` later (350-400 ms with 500 ms), so the
//! master is marked UP by the caller's word that it answers `role:master` right now (a new
//! instance that no Sentinel watches yet: nothing can demote it before the proxy's own check
//! confirms it). The worker's `show servers state` must then show each slot at its node and
//! only the master UP, else the slots go back to maintenance and the caller reloads. The
//! config on disk is rewritten with the instance's own section at once (no reload), so a
//! restart after a `kill -9` serves it.
//!
//! The next apply (the caller's, off the create's path) renders the instance's own section
//! on the same port: the listening socket passes to the new worker like any other, and the
//! slots' states are carried over under the instance's names (below). Until then the runtime
//! commands ([`Proxy::set_health`], [`Proxy::servers_up`], ...) take the instance's names
//! and reach the slots; old workers keep serving the spare's connections under the spare's
//! names, which [`Proxy::sweep_old_workers`] maps back (for spares taken since this `Proxy`
//! was made: after a crsd restart, such a session counts as one to a server that is not UP).
//!
//! # Server states across a reload
//!
//! A new worker would start with every server UP and mark a replica DOWN only after its first
//! check; with `balance first` that matters only when the server listed first is not the
//! master, but the caller's order can lag behind a failover. And a server put in maintenance
//! for a planned switch would be ready again. So right before a reload the current worker's
//! `show servers state` is saved in `haproxy.state` (`server-state-file`,
//! `load-server-state-from-file global`) and the new worker starts from it. Only lines whose
//! frontend, server, address and port are the same in the new config are kept: HAProxy would
//! take the port from the file. A fresh start (nothing runs) begins from an empty file: the
//! states of a process that is gone may be stale.
//!
//! # What a reload does not carry
//!
//! The old worker no longer runs health checks, so the connections it still serves lose
//! `on-marked-down shutdown-sessions`: after a failover they stay on the demoted master (and
//! `shutdown sessions server` is refused on its stopped proxies). [`Proxy::shutdown_sessions`]
//! therefore also shuts the matching sessions of old workers one by one, and
//! [`Proxy::sweep_old_workers`] shuts every old worker's session whose server the current
//! worker does not see UP; call it after a failover, or periodically. Old workers live as
//! long as their connections (about 8 MB each); [`ProxyConfig::worker_max_reloads`] bounds
//! their number at the price of dropping those connections.
//!
//! A `kill -9` of the master ends its workers too (they watch the master), with every
//! connection; [`Proxy::ensure_running`] starts it again from the config on disk.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::daemon::{private_dir, write_private, Daemon};
use crate::error::io_err;
use crate::poll::Backoff;
use crate::process::{file_tail, resolve_program, stat_is_zombie_or_gone};
use crate::EngineError;

const CONF_FILE: &str = "haproxy.cfg";
const PID_FILE: &str = "haproxy.pid";
const LOG_FILE: &str = "haproxy.log";
const STATE_FILE: &str = "haproxy.state";
const ADMIN_SOCKET: &str = "admin.sock";
const MASTER_SOCKET: &str = "master.sock";

/// The `description` of a rendered config starts with this; the rest is the config's hash.
const MARKER_PREFIX: &str = "crsd-";
/// How long a start or a reload may take until the new config serves.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// One exchange on the master CLI.
const CLI_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a runtime command keeps trying while the master CLI is away (the master
/// re-executes itself during a reload, twice).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// SIGTERM, then SIGKILL after this.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Check interval while a server changes state (`fastinter`) and while it is DOWN
/// (`downinter`): a new master is UP one check after it is promoted.
const FAST_CHECK_MS: u64 = 100;
/// Where Debian installs haproxy; not in the `PATH` of users other than root.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];
/// HAProxy binds a unix socket as `<path>.<pid>.tmp` first; `sun_path` holds 107 bytes.
const MAX_SOCKET_PATH: usize = 90;
const MAX_NAME_LEN: usize = 64;
/// `srv_op_state` of a running server in `show servers state`.
const SRV_RUNNING: u32 = 2;
/// `srv_admin_state` bits that keep a server from taking connections: forced, inherited,
/// resolver and health-check maintenance, and drain. `CMAINT` (4, "disabled in the
/// config") is not one: a spare's slot keeps it after `state ready`.
const SRV_ADMIN_OFF: u32 = 0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40;
/// `srv_admin_state`'s forced maintenance bit (`set server ... state maint`).
const SRV_ADMIN_FMAINT: u32 = 0x01;
/// `srv_admin_state`'s "disabled in the config" bit.
const SRV_ADMIN_CMAINT: u32 = 0x04;
/// A spare frontend's section is `spare-<port>`, its server slots `s0`, `s1`, ...
const SPARE_PREFIX: &str = "spare-";
const SPARE_SLOT_PREFIX: &str = "s";

/// Settings of the host's proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The `haproxy` executable. A bare name is looked up in `PATH`, then in the sbin folders
    /// (`/usr/sbin`, where Debian installs it, is not in the `PATH` of other users than root).
    pub program: PathBuf,
    /// The proxy's folder (0700): `haproxy.cfg` (0600), `haproxy.pid`, `haproxy.log`,
    /// `haproxy.state` (server states handed to the next worker), `admin.sock` (stats socket,
    /// level admin) and `master.sock` (master CLI). Letters, digits and `/._-+~@=` only.
    pub root: PathBuf,
    /// The one IP address every frontend listens on.
    pub bind: String,
    /// Health check interval of a server whose state is settled (`inter`). A server changing
    /// state or DOWN is checked every 100 ms; 3 failed checks mark it DOWN, 1 good check UP.
    pub check_inter_ms: u64,
    /// How long one check may take (`timeout check`).
    pub timeout_check_ms: u64,
    /// `timeout connect`: to a node, from the proxy.
    pub timeout_connect_ms: u64,
    /// `timeout client` and `timeout server`: an idle connection is closed after this.
    pub timeout_client_s: u64,
    /// Connections the whole proxy accepts at once (global `maxconn`); further ones wait in
    /// the kernel's backlog. Default 8192. HAProxy needs two file descriptors per connection
    /// and refuses to start when its hard limit on open files (inherited from crsd) is too
    /// low for `maxconn`, so the rendered value is lowered to fit that limit, with a warning.
    pub maxconn: u32,
    /// Connections one instance's frontend accepts at once; default 1024.
    pub frontend_maxconn: u32,
    /// `mworker-max-reloads`: an old worker still serving connections after this many
    /// reloads is terminated, and those connections with it. `None` (the default): old
    /// workers live as long as their connections.
    pub worker_max_reloads: Option<u32>,
    /// Spare frontends the caller keeps (see "Spare frontends" in the module docs); the
    /// proxy renders the ports it is given, this is how many the caller asks for. Default 8: a
    /// burst of creates within one supervisor pass (which replenishes them) takes no reload.
    pub spare_frontends: usize,
    /// Server slots of a spare frontend: an instance with more nodes cannot take a spare.
    /// Default 6 (a master and 5 replicas).
    pub spare_servers: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            program: PathBuf::from("haproxy"),
            root: PathBuf::from("haproxy"),
            bind: "127.0.0.1".to_string(),
            check_inter_ms: 500,
            timeout_check_ms: 500,
            timeout_connect_ms: 200,
            timeout_client_s: 3600,
            maxconn: 8192,
            frontend_maxconn: 1024,
            worker_max_reloads: None,
            spare_frontends: 8,
            spare_servers: 6,
        }
    }
}

/// One instance's stable address: a port on [`ProxyConfig::bind`] and the nodes behind it.
#[derive(Clone, PartialEq, Eq)]
pub struct Frontend {
    /// The instance id, e.g. "crs-abcd1234" (`[a-z0-9-]`).
    pub name: String,
    pub port: u16,
    /// The ACL user the health check logs in as ([`crate::CHECK_USER`]).
    pub check_user: String,
    /// Its secret ([`crate::internal_secret`]); written to `haproxy.cfg` only.
    pub check_secret: String,
    /// The nodes, the current master first.
    pub servers: Vec<Server>,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("check_user", &self.check_user)
            .field("check_secret", &"<redacted>")
            .field("servers", &self.servers)
            .finish()
    }
}

/// One node behind a frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// The node id, e.g. "crs-abcd1234-0" (`[a-z0-9-]`).
    pub name: String,
    /// An IP address (HAProxy would resolve a host name once, at start).
    pub host: String,
    pub port: u16,
}

/// The files of the proxy's folder.
#[derive(Clone, Debug)]
struct Files {
    root: PathBuf,
    conf: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    state: PathBuf,
    admin_socket: PathBuf,
    master_socket: PathBuf,
}

impl Files {
    fn new(root: &Path) -> Files {
        Files {
            root: root.to_path_buf(),
            conf: root.join(CONF_FILE),
            pid: root.join(PID_FILE),
            log: root.join(LOG_FILE),
            state: root.join(STATE_FILE),
            admin_socket: root.join(ADMIN_SOCKET),
            master_socket: root.join(MASTER_SOCKET),
        }
    }
}

/// The host's HAProxy (see the module docs).
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    files: Files,
    daemon: Daemon,
    /// One change at a time: a runtime command must not land on a worker that a reload is
    /// about to replace, nor after the server states were saved for the next one. Holds what
    /// the running worker serves.
    lock: tokio::sync::Mutex<Layout>,
}

/// What the running worker serves, as far as this `Proxy` knows (nothing before its first
/// `apply`: a proxy found running at start is applied to at once).
#[derive(Debug, Default)]
struct Layout {
    /// The frontends rendered into the config the running worker was started with.
    frontends: Vec<Frontend>,
    /// The spare frontends' ports of that config.
    spares: Vec<u16>,
    /// Spares the running worker serves for an instance since then, set at run time; the
    /// config on disk already renders them as the instance's own frontends.
    taken: Vec<Frontend>,
    /// (spare section, slot) -> (frontend, server) of every spare taken since this `Proxy`
    /// was made: old workers keep the spare's names for the connections they still serve.
    aliases: HashMap<(String, String), (String, String)>,
}

impl Layout {
    /// The section and server names the running worker knows `frontend`/`server` by.
    fn runtime_names(&self, frontend: &str, server: &str) -> (String, String) {
        if let Some(fe) = self.taken.iter().find(|f| f.name == frontend) {
            if let Some(i) = fe.servers.iter().position(|s| s.name == server) {
                return (spare_section(fe.port), spare_slot(i));
            }
        }
        (frontend.to_string(), server.to_string())
    }

    /// The frontend and server names of a (section, server) of any worker.
    fn real_names(&self, section: &str, server: &str) -> (String, String) {
        self.aliases
            .get(&(section.to_string(), server.to_string()))
            .cloned()
            .unwrap_or_else(|| (section.to_string(), server.to_string()))
    }

    /// What the config on disk renders: every frontend, taken spares as their instances'.
    fn on_disk(&self) -> (Vec<Frontend>, Vec<u16>) {
        let mut frontends = self.frontends.clone();
        frontends.extend(self.taken.iter().cloned());
        let spares = self
            .spares
            .iter()
            .copied()
            .filter(|p| !self.taken.iter().any(|f| f.port == *p))
            .collect();
        (frontends, spares)
    }
}

/// The `listen` section of the spare frontend on `port`.
fn spare_section(port: u16) -> String {
    format!("{SPARE_PREFIX}{port}")
}

/// The name of server slot `i` of a spare frontend (`server-template`).
fn spare_slot(i: usize) -> String {
    format!("{SPARE_SLOT_PREFIX}{i}")
}

/// The proc variable holding the check secret of the spare frontend on `port`.
fn spare_secret_var(port: u16) -> String {
    format!("proc.crsd_spare_{port}")
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Proxy {
        let root = std::path::absolute(&cfg.root).unwrap_or_else(|_| cfg.root.clone());
        let files = Files::new(&root);
        let mut master_cli = files.master_socket.as_os_str().to_os_string();
        master_cli.push(",mode,600");
        let args: Vec<OsString> = vec![
            "-W".into(),
            "-f".into(),
            files.conf.clone().into_os_string(),
            "-S".into(),
            master_cli,
        ];
        let daemon = Daemon::new(
            &haproxy_program(&cfg.program),
            args,
            &root,
            &files.conf,
            &files.pid,
            &files.log,
        );
        Proxy {
            cfg,
            files,
            daemon,
            lock: tokio::sync::Mutex::new(Layout::default()),
        }
    }

    /// Renders the config for exactly these frontends and makes it serve: starts haproxy if
    /// it does not run, reloads it if it runs another config (established connections stay
    /// with the old worker). Returns once every frontend port is served by a worker running
    /// the new config; true if it started or reloaded, false if that config already served.
    ///
    /// Errors: [`EngineError::Config`] for a value that cannot be rendered (nothing changed);
    /// [`EngineError::Io`] of kind `AddrInUse` when a new frontend's port is taken by another
    /// process (nothing changed: handed to haproxy, that reload would pause every listener
    /// while it retried, about 2 s); [`EngineError::Proxy`] when haproxy refused the config
    /// (the previous one keeps serving and is put back on disk) or did not serve it in time.
    pub async fn apply(&self, frontends: &[Frontend]) -> Result<bool, EngineError> {
        self.apply_with_spares(frontends, &[]).await
    }

    /// [`Proxy::apply`] with a spare frontend on each of `spares` (see "Spare frontends" in
    /// the module docs; a port some frontend has is left out). Spares the running worker
    /// serves for an instance ([`Proxy::take_spare`]) are not carried on: the caller lists
    /// those instances among `frontends`.
    pub async fn apply_with_spares(
        &self,
        frontends: &[Frontend],
        spares: &[u16],
    ) -> Result<bool, EngineError> {
        let spares: Vec<u16> = spares
            .iter()
            .copied()
            .filter(|p| !frontends.iter().any(|f| f.port == *p))
            .collect();
        let mut layout = self.lock.lock().await;
        let changed = self.apply_locked(&mut layout, frontends, &spares).await?;
        layout.frontends = frontends.to_vec();
        layout.spares = spares;
        layout.taken.clear();
        Ok(changed)
    }

    async fn apply_locked(
        &self,
        layout: &mut Layout,
        frontends: &[Frontend],
        spares: &[u16],
    ) -> Result<bool, EngineError> {
        let fd_limit = fd_hard_limit();
        let text = render(&self.cfg, &self.files, frontends, spares, fd_limit)?;
        let maxconn = global_maxconn(self.cfg.maxconn, fd_limit, frontends, spares);
        if maxconn < self.cfg.maxconn {
            tracing::warn!(
                configured = self.cfg.maxconn,
                rendered = maxconn,
                fd_limit,
                "the hard limit on open files is too low for the proxy's maxconn; lowered"
            );
        }
        self.prepare_root()?;
        if self.running().is_none() {
            check_free(&text, &HashSet::new())?;
            self.write_conf(&text)?;
            self.start(&text).await?;
            return Ok(true);
        }
        let on_disk = fs::read_to_string(&self.files.conf).ok();
        if on_disk.as_deref() == Some(text.as_str())
            && self.serving_marker().await.as_deref() == marker_of(&text)
        {
            return Ok(false);
        }
        let serving = on_disk.as_deref().map(binds).unwrap_or_default();
        check_free(&text, &serving.into_iter().collect())?;
        self.reload(&text, on_disk, layout).await?;
        Ok(true)
    }

    /// Starts haproxy from the config on disk when it does not run (after a `kill -9`, a
    /// reboot); true if it started it. [`EngineError::Config`] if nothing was ever applied.
    pub async fn ensure_running(&self) -> Result<bool, EngineError> {
        let mut layout = self.lock.lock().await;
        if self.running().is_some() {
            return Ok(false);
        }
        let text = match fs::read_to_string(&self.files.conf) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(EngineError::Config(format!(
                    "no {} to start haproxy from: apply a config first",
                    self.files.conf.display()
                )))
            }
            Err(e) => return Err(io_err(format!("reading {}", self.files.conf.display()))(e)),
        };
        check_root(&self.files)?;
        self.prepare_root()?;
        self.start(&text).await?;
        // The config on disk renders the taken spares as their instances' frontends.
        let (frontends, spares) = layout.on_disk();
        layout.frontends = frontends;
        layout.spares = spares;
        layout.taken.clear();
        Ok(true)
    }

    /// Serves `frontend` on the spare frontend the running worker has on its port, without a
    /// reload (see "Spare frontends" in the module docs): the spare's server slots get the
    /// frontend's servers, `master` (a server the caller has just seen answer `role:master`,
    /// which nothing can demote meanwhile) is marked UP, the others DOWN until their checks
    /// say otherwise; and the config on disk renders the frontend as its own, so a restart
    /// after a `kill -9` serves it. The next [`Proxy::apply_with_spares`] (which must list
    /// it) gives it its own section; meanwhile the runtime commands of this type reach it by
    /// its names.
    ///
    /// Returns false, with nothing changed, when there is no free spare on that port, the
    /// frontend has more servers than a spare's slots, or haproxy does not run: the caller
    /// applies a config instead. True if the frontend already served as given.
    pub async fn take_spare(&self, frontend: &Frontend, master: &str) -> Result<bool, EngineError> {
        let mut layout = self.lock.lock().await;
        if layout.frontends.contains(frontend) || layout.taken.contains(frontend) {
            return Ok(true);
        }
        let Some(master_slot) = frontend.servers.iter().position(|s| s.name == master) else {
            return Err(EngineError::Config(format!(
                "frontend {}: {master} is not one of its servers",
                frontend.name
            )));
        };
        let free = layout.spares.contains(&frontend.port)
            && !layout.taken.iter().any(|f| f.port == frontend.port)
            && !layout.frontends.iter().any(|f| f.name == frontend.name)
            && frontend.servers.len() <= self.cfg.spare_servers;
        if !free || self.running().is_none() {
            return Ok(false);
        }
        // Rendered first: every value is checked before it goes to the CLI.
        let mut next = Layout {
            frontends: layout.frontends.clone(),
            spares: layout.spares.clone(),
            taken: layout.taken.clone(),
            aliases: HashMap::new(),
        };
        next.taken.push(frontend.clone());
        let (frontends, spares) = next.on_disk();
        let text = render(&self.cfg, &self.files, &frontends, &spares, fd_hard_limit())?;

        let section = spare_section(frontend.port);
        // The check's secret and the slots' addresses (the slots are in maintenance: no
        // check, no connection); then each slot out of maintenance: drained first (UP but
        // given no connection), its health set, then ready. `state ready` straight from
        // maintenance would mark even a replica UP, and a health set in maintenance is
        // ignored (both measured); the first check after maintenance comes one `inter`
        // later, so the master is marked UP here. The master CLI allows `set var` in
        // experimental mode only.
        let mut cmds = format!(
            "experimental-mode on;@1 set var {} str({});",
            spare_secret_var(frontend.port),
            frontend.check_secret
        );
        for (i, s) in frontend.servers.iter().enumerate() {
            let ip = parse_ip("server host", &s.host)?;
            let _ = write!(
                cmds,
                "@1 set server {section}/{} addr {ip} port {};",
                spare_slot(i),
                s.port
            );
        }
        for i in 0..frontend.servers.len() {
            let slot = format!("{section}/{}", spare_slot(i));
            let health = if i == master_slot { "up" } else { "down" };
            let _ = write!(
                cmds,
                "@1 set server {slot} state drain;@1 set server {slot} health {health};@1 set server {slot} state ready;"
            );
        }
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        self.cli_retry(&cmds, deadline).await?;
        // What the worker has now: each slot at its server's address, only the master UP.
        let state = self
            .cli_retry(&format!("@1 show servers state {section}"), deadline)
            .await?;
        let slots = parse_servers_state(&state);
        let as_wanted = frontend.servers.iter().enumerate().all(|(i, s)| {
            slots.iter().any(|st| {
                st.server == spare_slot(i)
                    && st.addr.is_some_and(|a| {
                        s.host.parse::<IpAddr>().ok() == Some(a.ip()) && a.port() == s.port
                    })
                    && st.is_up() == (i == master_slot)
            })
        });
        if !as_wanted {
            // Back to maintenance, best effort: the spare must not serve half set.
            let mut back = String::new();
            for i in 0..frontend.servers.len() {
                let _ = write!(
                    back,
                    "@1 set server {section}/{} state maint;",
                    spare_slot(i)
                );
            }
            let _ = self.cli_once(&back).await;
            return Err(EngineError::ProxyCommand {
                command: format!("take spare {section}"),
                reply: state.trim().to_string(),
            });
        }
        self.write_conf(&text)?;
        for (i, s) in frontend.servers.iter().enumerate() {
            layout.aliases.insert(
                (section.clone(), spare_slot(i)),
                (frontend.name.clone(), s.name.clone()),
            );
        }
        layout.taken.push(frontend.clone());
        tracing::info!(frontend = %frontend.name, port = frontend.port, "spare frontend taken");
        Ok(true)
    }

    /// The spare ports of the running worker no instance has taken.
    pub async fn free_spares(&self) -> Vec<u16> {
        let layout = self.lock.lock().await;
        layout
            .spares
            .iter()
            .copied()
            .filter(|p| !layout.taken.iter().any(|f| f.port == *p))
            .collect()
    }

    /// How many spares were taken since the last apply: a reload would give them their own
    /// sections and new spares.
    pub async fn taken_spares(&self) -> usize {
        self.lock.lock().await.taken.len()
    }

    /// How many times the running master has reloaded its config (`show proc`).
    pub async fn reloads(&self) -> Result<u64, EngineError> {
        let _guard = self.lock.lock().await;
        Ok(self
            .show_proc(Instant::now() + COMMAND_TIMEOUT)
            .await?
            .reloads)
    }

    /// The pid of the running haproxy master, if any.
    pub fn running(&self) -> Option<u32> {
        let pid = self.daemon.find()?;
        // Workers are forks of the master and share its command line: report their master.
        // (While the master re-executes itself its command line reads empty for an instant;
        // its name does not change.)
        match parent_pid(pid) {
            Some(parent) if self.daemon.is_ours(parent) || self.is_haproxy(parent) => Some(parent),
            _ => Some(pid),
        }
    }

    /// Whether `pid` is alive and named like our haproxy program (`/proc/<pid>/stat`).
    fn is_haproxy(&self, pid: u32) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let name = self
            .daemon
            .program
            .file_name()
            .map(|n| n.as_encoded_bytes());
        let comm = stat
            .find('(')
            .zip(stat.rfind(')'))
            .map(|(open, close)| &stat.as_bytes()[open + 1..close]);
        // The kernel keeps the first 15 bytes of the name.
        let same = match (name, comm) {
            (Some(name), Some(comm)) => comm == &name[..name.len().min(15)],
            _ => false,
        };
        same && !stat_is_zombie_or_gone(&stat)
    }

    /// `set server <frontend>/<server> health up|down` on the current worker: marks the
    /// server UP or DOWN now, until its checks say otherwise (a planned switch, "Zero-loss
    /// recipe" steps 4 and 7).
    pub async fn set_health(
        &self,
        frontend: &str,
        server: &str,
        up: bool,
    ) -> Result<(), EngineError> {
        server_ref(frontend, server)?;
        let state = if up { "up" } else { "down" };
        let layout = self.lock.lock().await;
        let (fe, srv) = layout.runtime_names(frontend, server);
        self.worker_command_ok(&format!("set server {fe}/{srv} health {state}"))
            .await
    }

    /// `set server <frontend>/<server> state maint|ready` on the current worker. `ready` marks
    /// the server UP at once, even a replica: set its health down first.
    pub async fn set_maint(
        &self,
        frontend: &str,
        server: &str,
        maint: bool,
    ) -> Result<(), EngineError> {
        server_ref(frontend, server)?;
        let state = if maint { "maint" } else { "ready" };
        let layout = self.lock.lock().await;
        let (fe, srv) = layout.runtime_names(frontend, server);
        self.worker_command_ok(&format!("set server {fe}/{srv} state {state}"))
            .await
    }

    /// After a failover: `master` is UP now and takes every new connection, and `others` are
    /// in maintenance, so none of them takes one even if it still says `role:master` (a
    /// master that froze and thawed after Sentinel promoted another node does until Sentinel
    /// demotes it, and `balance first` would lead new connections to it when it is listed
    /// first). One round trip. [`Proxy::maintained`] tells who is fenced.
    pub async fn fence(
        &self,
        frontend: &str,
        master: &str,
        others: &[String],
    ) -> Result<(), EngineError> {
        server_ref(frontend, master)?;
        let layout = self.lock.lock().await;
        let mut cmds = String::new();
        for other in others {
            server_ref(frontend, other)?;
            let (fe, srv) = layout.runtime_names(frontend, other);
            let _ = write!(cmds, "set server {fe}/{srv} state maint;");
        }
        let (fe, srv) = layout.runtime_names(frontend, master);
        let _ = write!(
            cmds,
            "set server {fe}/{srv} state ready;set server {fe}/{srv} health up"
        );
        self.worker_commands_ok(&cmds, &format!("fence {frontend} on {master}"))
            .await
    }

    /// Takes `server` of `frontend` out of maintenance as DOWN: its checks judge it from
    /// now on (a replica stays DOWN). Drained first: `state ready` straight from maintenance
    /// marks a server UP, and a health set in maintenance is ignored (both measured).
    pub async fn unfence(&self, frontend: &str, server: &str) -> Result<(), EngineError> {
        server_ref(frontend, server)?;
        let layout = self.lock.lock().await;
        let (fe, srv) = layout.runtime_names(frontend, server);
        let cmds = format!(
            "set server {fe}/{srv} state drain;set server {fe}/{srv} health down;set server {fe}/{srv} state ready"
        );
        self.worker_commands_ok(&cmds, &format!("unfence {frontend}/{server}"))
            .await
    }

    /// Every (frontend, server) the current worker holds in maintenance.
    pub async fn maintained(&self) -> Result<HashSet<(String, String)>, EngineError> {
        let layout = self.lock.lock().await;
        let reply = self.worker_command("show servers state").await?;
        Ok(parse_servers_state(&reply)
            .into_iter()
            .filter(|s| s.admin_state & SRV_ADMIN_FMAINT != 0)
            .map(|s| layout.real_names(&s.backend, &s.server))
            // Spare slots nobody took are in maintenance by design.
            .filter(|(fe, _)| !fe.starts_with(SPARE_PREFIX))
            .collect())
    }

    /// Closes every connection to `server` of `frontend`: on the current worker
    /// (`shutdown sessions server`) and on old workers still serving connections from before
    /// a reload (session by session).
    pub async fn shutdown_sessions(&self, frontend: &str, server: &str) -> Result<(), EngineError> {
        server_ref(frontend, server)?;
        let layout = self.lock.lock().await;
        let (fe, srv) = layout.runtime_names(frontend, server);
        self.worker_command_ok(&format!("shutdown sessions server {fe}/{srv}"))
            .await?;
        self.shut_old_sessions(&layout, |be, srv| be == frontend && srv == server)
            .await?;
        Ok(())
    }

    /// Shuts every session of an old worker (one replaced by a reload but still serving
    /// connections) whose server the current worker does not see UP: old workers run no
    /// health checks, so nothing else would move their clients off a demoted master.
    /// Returns how many sessions it shut. Cheap when there is no old worker.
    pub async fn sweep_old_workers(&self) -> Result<usize, EngineError> {
        let layout = self.lock.lock().await;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let procs = self.show_proc(deadline).await?;
        if procs.old_workers.is_empty() {
            return Ok(0);
        }
        let reply = self.cli_retry("@1 show servers state", deadline).await?;
        let up: HashSet<(String, String)> = parse_servers_state(&reply)
            .into_iter()
            .filter(ServerState::is_up)
            .map(|s| layout.real_names(&s.backend, &s.server))
            .collect();
        self.shut_old_sessions(&layout, |be, srv| {
            !up.contains(&(be.to_string(), srv.to_string()))
        })
        .await
    }

    /// The servers of `frontend` the current worker sees UP (running and not in
    /// maintenance), in the order of the config.
    pub async fn servers_up(&self, frontend: &str) -> Result<Vec<String>, EngineError> {
        check_name("frontend", frontend)?;
        let layout = self.lock.lock().await;
        let section = match layout.taken.iter().find(|f| f.name == frontend) {
            Some(fe) => spare_section(fe.port),
            None => frontend.to_string(),
        };
        let command = format!("show servers state {section}");
        let reply = self.worker_command(&command).await?;
        if !reply.starts_with("1\n") {
            return Err(EngineError::ProxyCommand {
                command,
                reply: reply.trim().to_string(),
            });
        }
        Ok(parse_servers_state(&reply)
            .into_iter()
            .filter(|s| s.backend == section && s.is_up())
            .map(|s| layout.real_names(&s.backend, &s.server).1)
            .collect())
    }

    /// Stops haproxy (SIGTERM to the master, which ends its workers; SIGKILL after a grace
    /// period). Every connection through it is closed.
    pub async fn stop(&self) -> Result<(), EngineError> {
        let _guard = self.lock.lock().await;
        let Some(pid) = self.running() else {
            return Ok(());
        };
        self.signal_master(pid, libc::SIGTERM).await?;
        let deadline = Instant::now() + STOP_GRACE;
        let mut backoff = Backoff::process();
        while alive(pid) && Instant::now() < deadline {
            backoff.wait().await;
        }
        if alive(pid) {
            self.signal_master(pid, libc::SIGKILL).await?;
        }
        // Workers leave with their master; wait until none is left holding a port.
        let deadline = Instant::now() + STOP_GRACE;
        while let Some(left) = self.daemon.find() {
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "process {left} still runs after SIGTERM and SIGKILL of the master"
                )));
            }
            backoff.wait().await;
        }
        tracing::info!(pid, "haproxy stopped");
        Ok(())
    }

    /// Signals the master `pid` through a pidfd once its command line proves it ours; tries
    /// again for a moment while it is alive but unrecognisable (re-executing itself).
    async fn signal_master(&self, pid: u32, sig: libc::c_int) -> Result<(), EngineError> {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut backoff = Backoff::process();
        while !self.daemon.signal(pid, sig)? && alive(pid) && Instant::now() < deadline {
            backoff.wait().await;
        }
        Ok(())
    }

    fn prepare_root(&self) -> Result<(), EngineError> {
        let root = &self.files.root;
        private_dir(root).map_err(io_err(format!("creating {}", root.display())))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod 0700 {}", root.display())))
    }

    fn write_conf(&self, text: &str) -> Result<(), EngineError> {
        write_private(&self.files.conf, text.as_bytes())
            .map_err(io_err(format!("writing {}", self.files.conf.display())))
    }

    fn write_state(&self, text: &str) -> Result<(), EngineError> {
        write_private(&self.files.state, text.as_bytes())
            .map_err(io_err(format!("writing {}", self.files.state.display())))
    }

    fn failure(&self, what: impl Into<String>) -> EngineError {
        EngineError::Proxy {
            what: what.into(),
            log_tail: file_tail(&self.files.log),
        }
    }

    /// Spawns haproxy on the config `text` (already on disk) and waits until it serves.
    async fn start(&self, text: &str) -> Result<(), EngineError> {
        self.write_state(EMPTY_STATE)?;
        let started = Instant::now();
        let pid = self.daemon.spawn()?;
        if let Err(e) = self
            .wait_serving(text, Some(pid), started + READY_TIMEOUT)
            .await
        {
            // Not serving in time: it would only hold ports. Its workers leave with it.
            let _ = self.daemon.signal(pid, libc::SIGKILL);
            return Err(e);
        }
        tracing::info!(
            pid,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "haproxy started"
        );
        Ok(())
    }

    /// Hands the running haproxy the config `text` and waits until a worker serves it.
    async fn reload(
        &self,
        text: &str,
        previous: Option<String>,
        layout: &Layout,
    ) -> Result<(), EngineError> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        let master = self.running();
        let before = self.show_proc(deadline).await?;
        let dump = self
            .cli_retry("@1 show servers state", deadline)
            .await
            .unwrap_or_default();
        self.write_state(&carry_over(&dump, text, &layout.taken))?;
        self.write_conf(text)?;
        self.send_reload(deadline).await?;
        let mut backoff = Backoff::process();
        loop {
            if let Ok(Some(now)) = self.cli_once("show proc").await.map(|r| parse_proc(&r)) {
                if now.reloads > before.reloads {
                    if now.failed > 0 {
                        if let Some(previous) = previous {
                            self.write_conf(&previous)?;
                        }
                        return Err(self.failure(
                            "haproxy refused the new config; the previous one keeps serving",
                        ));
                    }
                    break;
                }
            }
            if !master.is_some_and(alive) {
                return Err(self.failure("haproxy exited during a reload"));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "the reload did not finish within {READY_TIMEOUT:?}"
                )));
            }
            backoff.wait().await;
        }
        self.wait_serving(text, None, deadline).await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "haproxy reloaded"
        );
        Ok(())
    }

    /// Waits until the newest worker runs the config `text` and every frontend port of it
    /// accepts a connection. `spawned`: the master just started, which must not exit.
    async fn wait_serving(
        &self,
        text: &str,
        spawned: Option<u32>,
        deadline: Instant,
    ) -> Result<(), EngineError> {
        let marker = marker_of(text);
        let mut backoff = Backoff::process();
        loop {
            if let Some(pid) = spawned {
                if !alive(pid) {
                    return Err(self.failure("haproxy exited before it served its config"));
                }
            }
            if marker.is_some() && self.serving_marker().await.as_deref() == marker {
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "no worker served the new config within {READY_TIMEOUT:?}"
                )));
            }
            backoff.wait().await;
        }
        for addr in binds(text) {
            let target = probe_addr(addr);
            loop {
                let attempt = tokio::time::timeout(CLI_TIMEOUT, TcpStream::connect(target)).await;
                if matches!(attempt, Ok(Ok(_))) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(self.failure(format!("{addr} does not accept connections")));
                }
                backoff.wait().await;
            }
        }
        Ok(())
    }

    /// The `description` the newest worker reports (the hash of its config), if it answers.
    async fn serving_marker(&self) -> Option<String> {
        let info = self.cli_once("@1 show info").await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("description:"))
            .map(|d| d.trim().to_string())
    }

    async fn show_proc(&self, deadline: Instant) -> Result<ProcList, EngineError> {
        let reply = self.cli_retry("show proc", deadline).await?;
        parse_proc(&reply).ok_or_else(|| EngineError::ProxyCommand {
            command: "show proc".to_string(),
            reply: reply.trim().to_string(),
        })
    }

    /// `reload` on the master CLI. The master closes the connection (or resets it) as it
    /// re-executes itself; only a failure to deliver the command is an error.
    async fn send_reload(&self, deadline: Instant) -> Result<(), EngineError> {
        let mut backoff = Backoff::process();
        loop {
            match UnixStream::connect(&self.files.master_socket).await {
                Ok(mut s) => {
                    s.write_all(b"reload\n")
                        .await
                        .map_err(io_err("sending reload to the haproxy master"))?;
                    let _ = s.shutdown().await;
                    let mut sink = Vec::new();
                    let _ = tokio::time::timeout(CLI_TIMEOUT, s.read_to_end(&mut sink)).await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(io_err(format!(
                        "connecting to {}",
                        self.files.master_socket.display()
                    ))(e))
                }
                Err(_) => backoff.wait().await,
            }
        }
    }

    /// `command` on the newest worker, through the master CLI.
    async fn worker_command(&self, command: &str) -> Result<String, EngineError> {
        if self.running().is_none() {
            return Err(self.failure("haproxy is not running"));
        }
        let reply = self
            .cli_retry(&format!("@1 {command}"), Instant::now() + COMMAND_TIMEOUT)
            .await;
        if reply.is_err() && self.running().is_none() {
            return Err(self.failure("haproxy is not running"));
        }
        reply
    }

    /// `;`-separated commands that answer nothing when they succeed, each routed to the
    /// newest worker, in one round trip; `what` names them in an error.
    async fn worker_commands_ok(&self, commands: &str, what: &str) -> Result<(), EngineError> {
        let routed = commands
            .split(';')
            .map(|c| format!("@1 {c}"))
            .collect::<Vec<_>>()
            .join(";");
        let reply = self
            .cli_retry(&routed, Instant::now() + COMMAND_TIMEOUT)
            .await?;
        if reply.trim().is_empty() {
            Ok(())
        } else {
            Err(EngineError::ProxyCommand {
                command: what.to_string(),
                reply: reply.trim().to_string(),
            })
        }
    }

    /// A command that answers nothing when it succeeds.
    async fn worker_command_ok(&self, command: &str) -> Result<(), EngineError> {
        let reply = self.worker_command(command).await?;
        if reply.trim().is_empty() {
            Ok(())
        } else {
            Err(EngineError::ProxyCommand {
                command: command.to_string(),
                reply: reply.trim().to_string(),
            })
        }
    }

    /// Shuts the sessions of every old worker whose (frontend, server) `pick` selects.
    async fn shut_old_sessions(
        &self,
        layout: &Layout,
        pick: impl Fn(&str, &str) -> bool,
    ) -> Result<usize, EngineError> {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let procs = self.show_proc(deadline).await?;
        let mut shut = 0;
        for pid in procs.old_workers {
            // An old worker may leave at any moment (its last connection closed): skip it.
            let Ok(sessions) = self.cli_once(&format!("@!{pid} show sess")).await else {
                continue;
            };
            for s in parse_sessions(&sessions) {
                let (backend, server) = layout.real_names(&s.backend, &s.server);
                if !pick(&backend, &server) {
                    continue;
                }
                if let Ok(reply) = self
                    .cli_once(&format!("@!{pid} shutdown session {}", s.id))
                    .await
                {
                    if reply.trim().is_empty() {
                        shut += 1;
                    }
                }
            }
        }
        if shut > 0 {
            tracing::info!(sessions = shut, "shut sessions of old haproxy workers");
        }
        Ok(shut)
    }

    /// One exchange on the master CLI: the command, then its whole answer.
    async fn cli_once(&self, command: &str) -> io::Result<String> {
        let exchange = async {
            let mut s = UnixStream::connect(&self.files.master_socket).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            s.shutdown().await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok(out)
        };
        tokio::time::timeout(CLI_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")))
    }

    /// [`Self::cli_once`], tried again until `deadline` while the master CLI is away.
    async fn cli_retry(&self, command: &str, deadline: Instant) -> Result<String, EngineError> {
        let mut backoff = Backoff::process();
        loop {
            match self.cli_once(command).await {
                Ok(reply) => return Ok(reply),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io_err(format!(
                        "`{command}` on {}",
                        self.files.master_socket.display()
                    ))(e))
                }
                Err(_) => backoff.wait().await,
            }
        }
    }
}

/// Checks that every address `text` listens on and `serving` does not is free, by binding
/// it for a moment. HAProxy would find out too, but a reload that cannot bind a port pauses
/// the listeners of the running worker while it retries (about 2 s, measured), and every
/// connection attempt to every instance is refused meanwhile. A port taken in the instant
/// between this check and the reload still costs that.
fn check_free(text: &str, serving: &HashSet<SocketAddr>) -> Result<(), EngineError> {
    for addr in binds(text) {
        if !serving.contains(&addr) {
            std::net::TcpListener::bind(addr)
                .map_err(io_err(format!("a new frontend cannot listen on {addr}")))?;
        }
    }
    Ok(())
}

/// What a fresh start loads: no server state.
const EMPTY_STATE: &str = "1\n";

/// The configured program, absolute: `PATH` first, then the sbin folders.
fn haproxy_program(configured: &Path) -> PathBuf {
    let resolved = resolve_program(configured);
    if resolved.is_absolute() {
        return resolved;
    }
    SBIN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(configured))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .unwrap_or(resolved)
}

/// Whether `pid` runs (is neither gone nor a zombie), whatever its command line says.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !stat_is_zombie_or_gone(&s))
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces, the fields follow the last ')'.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Where to check that a frontend accepts: loopback for an unspecified bind address.
fn probe_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn check_name(what: &str, name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EngineError::Config(format!(
            "{what} name {name:?} must be 1 to {MAX_NAME_LEN} of [a-z0-9-]"
        )))
    }
}

fn server_ref(frontend: &str, server: &str) -> Result<String, EngineError> {
    check_name("frontend", frontend)?;
    check_name("server", server)?;
    Ok(format!("{frontend}/{server}"))
}

/// A path written into the config or onto haproxy's command line (`-S <path>,mode,600`).
fn config_path(path: &Path) -> Result<&str, EngineError> {
    path.to_str()
        .filter(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+~@=".contains(&b))
        })
        .ok_or_else(|| {
            EngineError::Config(format!(
                "proxy path {} may hold only letters, digits and /._-+~@=",
                path.display()
            ))
        })
}

fn check_root(files: &Files) -> Result<(), EngineError> {
    for path in [
        &files.conf,
        &files.pid,
        &files.state,
        &files.admin_socket,
        &files.master_socket,
    ] {
        config_path(path)?;
    }
    for socket in [&files.admin_socket, &files.master_socket] {
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EngineError::Config(format!(
                "proxy socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                socket.display()
            )));
        }
    }
    Ok(())
}

fn check_token(what: &str, value: &str, extra: &[u8], max: usize) -> Result<(), EngineError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if ok {
        Ok(())
    } else {
        // Never echo the value: it may be a secret.
        Err(EngineError::Config(format!(
            "{what} must be 1 to {max} letters, digits or {}",
            String::from_utf8_lossy(extra)
        )))
    }
}

fn parse_ip(what: &str, value: &str) -> Result<IpAddr, EngineError> {
    value
        .parse()
        .map_err(|_| EngineError::Config(format!("{what} {value:?} is not an IP address")))
}

/// The hard limit on open files haproxy inherits; it raises its soft limit up to it.
fn fd_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_max == libc::RLIM_INFINITY
    {
        return u64::MAX;
    }
    limit.rlim_max
}

/// Descriptors HAProxy needs beside two per connection: its own (CLI, pipes, pollers) and
/// one per listener and per health check (measured: 28, plus about 3 per frontend of two
/// servers); with room to spare.
const FD_RESERVE: u64 = 100;

/// `maxconn`, lowered so that HAProxy's file descriptors fit `fd_limit` (see
/// [`ProxyConfig::maxconn`]).
fn global_maxconn(maxconn: u32, fd_limit: u64, frontends: &[Frontend], spares: &[u16]) -> u32 {
    let sockets: u64 = frontends
        .iter()
        .map(|f| 1 + f.servers.len() as u64)
        .sum::<u64>()
        + spares.len() as u64;
    let fits = fd_limit.saturating_sub(FD_RESERVE + 2 * sockets) / 2;
    u32::try_from(fits.min(u64::from(maxconn)))
        .unwrap_or(maxconn)
        .max(1)
}

/// The config for exactly these frontends (see the module docs), with its marker.
/// `fd_limit`: the hard limit on open files haproxy will run with.
fn render(
    cfg: &ProxyConfig,
    files: &Files,
    frontends: &[Frontend],
    spares: &[u16],
    fd_limit: u64,
) -> Result<String, EngineError> {
    check_root(files)?;
    let bind = parse_ip("proxy bind address", &cfg.bind)?;
    let positive = [
        ("check_inter_ms", cfg.check_inter_ms),
        ("timeout_check_ms", cfg.timeout_check_ms),
        ("timeout_connect_ms", cfg.timeout_connect_ms),
        ("timeout_client_s", cfg.timeout_client_s),
        ("maxconn", u64::from(cfg.maxconn)),
        ("frontend_maxconn", u64::from(cfg.frontend_maxconn)),
    ];
    if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(EngineError::Config(format!(
            "proxy {name} must be at least 1"
        )));
    }
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    for fe in frontends {
        check_name("frontend", &fe.name)?;
        if !names.insert(fe.name.as_str()) {
            return Err(EngineError::Config(format!(
                "frontend {} appears twice",
                fe.name
            )));
        }
        if fe.port == 0 || !ports.insert(fe.port) {
            return Err(EngineError::Config(format!(
                "frontend {}: port {} is 0 or taken by another frontend",
                fe.name, fe.port
            )));
        }
        if fe.name.starts_with(SPARE_PREFIX) {
            return Err(EngineError::Config(format!(
                "frontend {}: names starting with {SPARE_PREFIX} are the spares'",
                fe.name
            )));
        }
        check_token("the check user", &fe.check_user, b"_.-", MAX_NAME_LEN)?;
        check_token("the check secret", &fe.check_secret, b"_.-+/=~", 256)?;
        let mut servers = HashSet::new();
        for s in &fe.servers {
            check_name("server", &s.name)?;
            if !servers.insert(s.name.as_str()) {
                return Err(EngineError::Config(format!(
                    "frontend {}: server {} appears twice",
                    fe.name, s.name
                )));
            }
            parse_ip("server host", &s.host)?;
            if s.port == 0 {
                return Err(EngineError::Config(format!("server {}: port 0", s.name)));
            }
        }
    }

    for &port in spares {
        if port == 0 || !ports.insert(port) {
            return Err(EngineError::Config(format!(
                "spare frontend: port {port} is 0 or taken by another frontend"
            )));
        }
    }

    let mut t = String::new();
    let w = &mut t;
    // `write!` to a String cannot fail.
    let _ = writeln!(w, "# The host's stable addresses, one `listen` per instance. Rendered by crsd: edits are overwritten.");
    let _ = writeln!(w, "global");
    let _ = writeln!(w, "    master-worker");
    let _ = writeln!(w, "    pidfile \"{}\"", config_path(&files.pid)?);
    let _ = writeln!(
        w,
        "    stats socket \"{}\" mode 600 level admin expose-fd listeners",
        config_path(&files.admin_socket)?
    );
    let _ = writeln!(
        w,
        "    server-state-file \"{}\"",
        config_path(&files.state)?
    );
    let maxconn = global_maxconn(cfg.maxconn, fd_limit, frontends, spares);
    let _ = writeln!(w, "    maxconn {maxconn}");
    if let Some(n) = cfg.worker_max_reloads {
        let _ = writeln!(w, "    mworker-max-reloads {n}");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "defaults");
    let _ = writeln!(w, "    mode tcp");
    let _ = writeln!(w, "    maxconn {}", cfg.frontend_maxconn.min(maxconn));
    let _ = writeln!(w, "    timeout connect {}ms", cfg.timeout_connect_ms);
    let _ = writeln!(w, "    timeout client {}s", cfg.timeout_client_s);
    let _ = writeln!(w, "    timeout server {}s", cfg.timeout_client_s);
    let _ = writeln!(w, "    timeout check {}ms", cfg.timeout_check_ms);
    let _ = writeln!(w, "    load-server-state-from-file global");
    let _ = writeln!(
        w,
        "    default-server inter {}ms fastinter {FAST_CHECK_MS}ms downinter {FAST_CHECK_MS}ms fall 3 rise 1 on-marked-down shutdown-sessions",
        cfg.check_inter_ms
    );
    for fe in frontends {
        let _ = writeln!(w);
        let _ = writeln!(w, "listen {}", fe.name);
        let _ = writeln!(w, "    bind {}", SocketAddr::new(bind, fe.port));
        let _ = writeln!(w, "    balance first");
        let _ = writeln!(w, "    option tcp-check");
        let _ = writeln!(w, "    tcp-check connect");
        let _ = writeln!(
            w,
            "    tcp-check send \"AUTH {} {}\\r\\n\"",
            fe.check_user, fe.check_secret
        );
        let _ = writeln!(w, "    tcp-check expect string +OK");
        let _ = writeln!(w, "    tcp-check send \"INFO replication\\r\\nQUIT\\r\\n\"");
        let _ = writeln!(w, "    tcp-check expect string role:master");
        for s in &fe.servers {
            let addr = SocketAddr::new(parse_ip("server host", &s.host)?, s.port);
            let _ = writeln!(w, "    server {} {addr} check", s.name);
        }
    }
    for &port in spares {
        let _ = writeln!(w);
        let _ = writeln!(w, "listen {}", spare_section(port));
        let _ = writeln!(w, "    bind {}", SocketAddr::new(bind, port));
        let _ = writeln!(w, "    balance first");
        let _ = writeln!(w, "    option tcp-check");
        let _ = writeln!(w, "    tcp-check connect");
        let _ = writeln!(
            w,
            "    tcp-check send-lf \"AUTH {} %[var({})]\\r\\n\"",
            crate::CHECK_USER,
            spare_secret_var(port)
        );
        let _ = writeln!(w, "    tcp-check expect string +OK");
        let _ = writeln!(w, "    tcp-check send \"INFO replication\\r\\nQUIT\\r\\n\"");
        let _ = writeln!(w, "    tcp-check expect string role:master");
        let _ = writeln!(
            w,
            "    server-template {SPARE_SLOT_PREFIX} 0-{} 0.0.0.0:0 check disabled",
            cfg.spare_servers.max(1) - 1
        );
    }
    let marker = &hex::encode(Sha256::digest(t.as_bytes()))[..16];
    Ok(t.replacen(
        "\nglobal\n",
        &format!("\nglobal\n    description {MARKER_PREFIX}{marker}\n"),
        1,
    ))
}

/// The marker (`description`) of a rendered config.
fn marker_of(text: &str) -> Option<&str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("description "))
        .find(|d| d.starts_with(MARKER_PREFIX))
}

/// The frontends' listening addresses in a rendered config.
fn binds(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("bind "))
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The (frontend, server, address) of every server in a rendered config.
fn servers_of(text: &str) -> HashSet<(String, String, SocketAddr)> {
    let mut out = HashSet::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("listen ") {
            section = name.trim();
        } else if let Some(rest) = line.trim().strip_prefix("server ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(Ok(addr))) = (parts.next(), parts.next().map(str::parse)) {
                out.insert((section.to_string(), name.to_string(), addr));
            }
        }
    }
    out
}

/// The lines of a `show servers state` dump that the config `text` still has as they were
/// (same frontend, server, address and port): the state file for the next worker. A taken
/// spare's slots (`taken`) are renamed to their frontend's servers first, without the
/// "disabled in the config" bit of the slots.
fn carry_over(dump: &str, text: &str, taken: &[Frontend]) -> String {
    let wanted = servers_of(text);
    let mut out = String::from(EMPTY_STATE);
    for line in dump.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut f: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if f.len() < 19 {
            continue;
        }
        if let Some(fe) = taken.iter().find(|fe| spare_section(fe.port) == f[1]) {
            let slot = (0..fe.servers.len()).find(|i| spare_slot(*i) == f[3]);
            let Some(i) = slot else {
                continue;
            };
            let admin = f[6].parse::<u32>().unwrap_or(0) & !SRV_ADMIN_CMAINT;
            f[1] = fe.name.clone();
            f[3] = fe.servers[i].name.clone();
            f[6] = admin.to_string();
        }
        let line = f.join(" ");
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        let (Ok(ip), Ok(port)) = (f[4].parse::<IpAddr>(), f[18].parse::<u16>()) else {
            continue;
        };
        if wanted.contains(&(
            f[1].to_string(),
            f[3].to_string(),
            SocketAddr::new(ip, port),
        )) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// One server line of `show servers state`.
#[derive(Debug, PartialEq, Eq)]
struct ServerState {
    backend: String,
    server: String,
    op_state: u32,
    admin_state: u32,
    addr: Option<SocketAddr>,
}

impl ServerState {
    fn is_up(&self) -> bool {
        self.op_state == SRV_RUNNING && self.admin_state & SRV_ADMIN_OFF == 0
    }
}

fn parse_servers_state(reply: &str) -> Vec<ServerState> {
    reply
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 7 {
                return None;
            }
            let addr = match (f[4].parse::<IpAddr>(), f.get(18).map(|p| p.parse::<u16>())) {
                (Ok(ip), Some(Ok(port))) => Some(SocketAddr::new(ip, port)),
                _ => None,
            };
            Some(ServerState {
                backend: f[1].to_string(),
                server: f[3].to_string(),
                op_state: f[5].parse().ok()?,
                admin_state: f[6].parse().ok()?,
                addr,
            })
        })
        .collect()
}

/// The master CLI's `show proc`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProcList {
    /// Reloads of the master so far.
    reloads: u64,
    /// Failed reloads since the last one that succeeded.
    failed: u64,
    workers: Vec<u32>,
    /// Workers replaced by a reload, still serving their connections.
    old_workers: Vec<u32>,
}

fn parse_proc(reply: &str) -> Option<ProcList> {
    let mut list = ProcList::default();
    let mut master_seen = false;
    let mut old = false;
    for line in reply.lines() {
        let line = line.trim();
        match line {
            "# workers" => old = false,
            "# old workers" => old = true,
            _ if line.starts_with('#') => {}
            _ => {
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.get(1) {
                    Some(&"master") => {
                        list.reloads = f.get(2)?.parse().ok()?;
                        let failed = f.iter().position(|t| *t == "[failed:")?;
                        list.failed = f.get(failed + 1)?.trim_end_matches(']').parse().ok()?;
                        master_seen = true;
                    }
                    Some(&"worker") => {
                        let pid = f[0].parse().ok()?;
                        if old {
                            list.old_workers.push(pid);
                        } else {
                            list.workers.push(pid);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    master_seen.then_some(list)
}

/// One session of `show sess`: its id and where it goes.
#[derive(Debug, PartialEq, Eq)]
struct Session {
    id: String,
    backend: String,
    server: String,
}

fn parse_sessions(reply: &str) -> Vec<Session> {
    reply
        .lines()
        .filter_map(|l| {
            let (id, rest) = l.split_once(": ")?;
            if !id.starts_with("0x") {
                return None;
            }
            let field = |key: &str| {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key))
                    .map(str::to_string)
            };
            let backend = field("be=")?;
            let server = field("srv=")?;
            // The CLI's own session, or one not connected to a server yet.
            if backend == "<NONE>" || server == "<none>" {
                return None;
            }
            Some(Session {
                id: id.to_string(),
                backend,
                server,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_unlimited(
        cfg: &ProxyConfig,
        files: &Files,
        frontends: &[Frontend],
    ) -> Result<String, EngineError> {
        render(cfg, files, frontends, &[], u64::MAX)
    }

    fn files() -> Files {
        Files::new(Path::new("/var/lib/crsd/haproxy"))
    }

    fn frontend(name: &str, port: u16) -> Frontend {
        Frontend {
            name: name.to_string(),
            port,
            check_user: "crsd-check".to_string(),
            check_secret: "0123abcd".to_string(),
            servers: vec![
                Server {
                    name: format!("{name}-0"),
                    host: "127.0.0.1".to_string(),
                    port: 7001,
                },
                Server {
                    name: format!("{name}-1"),
                    host: "::1".to_string(),
                    port: 7002,
                },
            ],
        }
    }

    #[test]
    fn renders_a_listen_section_per_frontend_with_the_master_check() {
        let text = render_unlimited(
            &ProxyConfig::default(),
            &files(),
            &[frontend("crs-a", 6000), frontend("crs-b", 6001)],
        )
        .expect("render");
        for line in [
            "    master-worker",
            "    stats socket \"/var/lib/crsd/haproxy/admin.sock\" mode 600 level admin expose-fd listeners",
            "    server-state-file \"/var/lib/crsd/haproxy/haproxy.state\"",
            "    load-server-state-from-file global",
            "    default-server inter 500ms fastinter 100ms downinter 100ms fall 3 rise 1 on-marked-down shutdown-sessions",
            "listen crs-a",
            "    bind 127.0.0.1:6000",
            "    balance first",
            "    tcp-check send \"AUTH crsd-check 0123abcd\\r\\n\"",
            "    tcp-check send \"INFO replication\\r\\nQUIT\\r\\n\"",
            "    tcp-check expect string role:master",
            "    server crs-a-0 127.0.0.1:7001 check",
            "    server crs-a-1 [::1]:7002 check",
            "listen crs-b",
            "    bind 127.0.0.1:6001",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("mworker-max-reloads"));
        assert_eq!(
            binds(&text),
            vec![
                "127.0.0.1:6000".parse().unwrap(),
                "127.0.0.1:6001".parse().unwrap()
            ]
        );
        // The marker is a hash of the rest: another config, another marker.
        let marker = marker_of(&text).expect("marker");
        assert!(marker.starts_with(MARKER_PREFIX) && marker.len() == MARKER_PREFIX.len() + 16);
        let other = render_unlimited(
            &ProxyConfig::default(),
            &files(),
            &[frontend("crs-a", 6000)],
        )
        .expect("render");
        assert_ne!(marker_of(&other), Some(marker));
        let again = render_unlimited(
            &ProxyConfig::default(),
            &files(),
            &[frontend("crs-a", 6000), frontend("crs-b", 6001)],
        )
        .expect("render");
        assert_eq!(again, text);
    }

    #[test]
    fn refuses_what_could_break_out_of_its_line() {
        let cfg = ProxyConfig::default();
        let render_one = |fe: Frontend| render_unlimited(&cfg, &files(), &[fe]);
        let mut fe = frontend("crs-a", 6000);
        fe.name = "crs-A".to_string();
        assert!(matches!(render_one(fe), Err(EngineError::Config(_))));
        let mut fe = frontend("crs-a", 6000);
        fe.servers[0].name = "n 1".to_string();
        assert!(matches!(render_one(fe), Err(EngineError::Config(_))));
        let mut fe = frontend("crs-a", 6000);
        fe.check_secret = "x\"\r\nsend".to_string();
        match render_one(fe) {
            Err(EngineError::Config(msg)) => assert!(!msg.contains("send"), "{msg}"),
            other => panic!("{other:?}"),
        }
        let mut fe = frontend("crs-a", 6000);
        fe.servers[0].host = "redis.example".to_string();
        assert!(matches!(render_one(fe), Err(EngineError::Config(_))));
        let mut fe = frontend("crs-a", 6000);
        fe.servers[1].name = fe.servers[0].name.clone();
        assert!(matches!(render_one(fe), Err(EngineError::Config(_))));
        assert!(matches!(
            render_unlimited(
                &cfg,
                &files(),
                &[frontend("crs-a", 6000), frontend("crs-b", 6000)]
            ),
            Err(EngineError::Config(_))
        ));
        assert!(matches!(
            render_unlimited(
                &cfg,
                &files(),
                &[frontend("crs-a", 6000), frontend("crs-a", 6001)]
            ),
            Err(EngineError::Config(_))
        ));
        assert!(matches!(
            render_unlimited(&cfg, &Files::new(Path::new("/srv/my proxy")), &[]),
            Err(EngineError::Config(_))
        ));
        let bad_bind = ProxyConfig {
            bind: "localhost".to_string(),
            ..ProxyConfig::default()
        };
        assert!(matches!(
            render_unlimited(&bad_bind, &files(), &[]),
            Err(EngineError::Config(_))
        ));
        let debug = format!("{:?}", frontend("crs-a", 6000));
        assert!(!debug.contains("0123abcd"), "{debug}");
    }

    #[test]
    fn maxconn_fits_the_open_files_limit() {
        let fes = [frontend("crs-a", 6000)];
        assert_eq!(global_maxconn(8192, u64::MAX, &fes, &[]), 8192);
        assert_eq!(global_maxconn(8192, 20_000, &fes, &[]), 8192);
        // 1024 descriptors: 100 kept aside, 2 per listener and check, 2 per connection.
        assert_eq!(global_maxconn(8192, 1024, &fes, &[]), (1024 - 100 - 6) / 2);
        assert_eq!(global_maxconn(8192, 10, &fes, &[]), 1);
        let text = render(&ProxyConfig::default(), &files(), &fes, &[], 1024).expect("render");
        assert!(text.contains("\n    maxconn 459\n"), "{text}");
        assert!(
            !text.contains("maxconn 1024"),
            "a frontend's cap stays under the global one"
        );
    }

    #[test]
    fn carries_over_only_servers_that_stay_as_they_are() {
        let text = render_unlimited(
            &ProxyConfig::default(),
            &files(),
            &[frontend("crs-a", 6000)],
        )
        .expect("render");
        let header = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";
        let dump = format!(
            "1\n{header}\n\
             2 crs-a 1 crs-a-0 127.0.0.1 2 0 1 1 4 15 3 3 6 0 0 0 - 7001 - 0 0 - - 0\n\
             2 crs-a 2 crs-a-1 ::1 0 1 1 1 4 13 2 0 6 0 0 0 - 7009 - 0 0 - - 0\n\
             3 crs-gone 1 crs-gone-0 127.0.0.1 2 0 1 1 4 15 3 3 6 0 0 0 - 7003 - 0 0 - - 0\n"
        );
        let kept = carry_over(&dump, &text, &[]);
        assert!(kept.starts_with("1\n# be_id"));
        assert!(kept.contains(" crs-a-0 "));
        assert!(!kept.contains(" crs-a-1 "), "its port changed");
        assert!(!kept.contains("crs-gone"));
        let states = parse_servers_state(&dump);
        assert_eq!(states.len(), 3);
        assert!(states[0].is_up());
        assert!(!states[1].is_up());
        assert_eq!(carry_over("", &text, &[]), EMPTY_STATE);
    }

    #[test]
    fn reads_show_proc_and_show_sess() {
        let proc = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                    6773            master          22 [failed: 1]  0d00h03m22s     2.6.12-1+deb12u4\n\
                    # workers\n\
                    9618            worker          1               0d00h00m33s     2.6.12-1+deb12u4\n\
                    # old workers\n\
                    9433            worker          2               0d00h00m22s     2.6.12-1+deb12u4\n\
                    9307            worker          3               0d00h00m42s     2.6.12-1+deb12u4\n\
                    # programs\n\n";
        assert_eq!(
            parse_proc(proc),
            Some(ProcList {
                reloads: 22,
                failed: 1,
                workers: vec![9618],
                old_workers: vec![9433, 9307],
            })
        );
        assert_eq!(parse_proc("Unknown command.\n"), None);

        let sess = "0x5573ee3f88f0: proto=tcpv4 src=127.0.0.1:58894 fe=crs-a be=crs-a srv=crs-a-0 ts=00 epoch=0\n\
                    0x7f0f4c043dc0: proto=sockpair src=unix:2 fe=GLOBAL be=<NONE> srv=<none> ts=00 epoch=0\n\n";
        assert_eq!(
            parse_sessions(sess),
            vec![Session {
                id: "0x5573ee3f88f0".to_string(),
                backend: "crs-a".to_string(),
                server: "crs-a-0".to_string(),
            }]
        );
    }
}
