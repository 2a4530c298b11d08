//! Startup, background loops and ordered shutdown.
//!
//! Start: open-file limit raised -> data dir (0700) -> metadata store -> redis-server check ->
//! first account ->
//! one supervisor pass (re-adopts running instances, restarts dead ones) -> task runner (resumes
//! unfinished tasks) -> loops -> metrics listener -> listener. `/healthz` answers once the
//! listener is up.
//! Shutdown: one signal; the listener stops taking requests and drains, then the loops and the
//! metrics listener stop.
//! redis-server processes are never stopped by crsd stopping: instances outlive crsd.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use crsd_backupstore::{BackupStore, LocalStore};
use crsd_core::clock::SharedClock;
use crsd_engine::{
    CeilingConfig, Engine, EngineConfig, ProxyConfig, SentinelConfig, SentinelTimers,
};
use crsd_service::{
    BackupSettings, DiskReserve, HaSettings, MonitorSettings, NewAccount, Service, ServiceConfig,
    UndoRetry,
};
use crsd_store::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    /// The metrics listener's address; `None` when `[metrics] listen` is empty.
    pub metrics_addr: Option<SocketAddr>,
    pub service: Arc<Service>,
    /// Set on first start: the account made then (printed once).
    pub bootstrap: Option<crsd_service::accounts_created::Created>,
    shutdown: watch::Sender<bool>,
    listener: crate::listener::Listener,
    /// The HTTPS listener of its own (`[tls] listen`), beside the HTTP one.
    https: Option<crate::listener::Listener>,
    /// Its address.
    pub https_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops taking requests, drains for up to `grace`, stops the loops.
    pub async fn shutdown(self, grace: Duration) {
        match self.https {
            Some(https) => {
                tokio::join!(self.listener.shutdown(grace), https.shutdown(grace));
            }
            None => self.listener.shutdown(grace).await,
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(grace, t).await;
        }
        self.service.store().close().await;
    }

    /// Tells the background loops (supervisor, runner, expiry) and the metrics listener to
    /// stop, without waiting.
    pub fn stop_loops(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Runs until the server ends (error) — used by `crsd serve` with a signal handler.
    pub async fn wait(&mut self) -> Result<()> {
        match &mut self.https {
            Some(https) => tokio::select! {
                r = self.listener.task() => r??,
                r = https.task() => r??,
            },
            None => self.listener.task().await??,
        }
        Ok(())
    }
}

pub async fn start(cfg: Config, clock: SharedClock) -> Result<Running> {
    start_announcing(cfg, clock, |_| {}).await
}

/// [`start`], calling `first_account` with the account a first start makes as soon as it is
/// made: before the listener binds, so that its keys are shown even if that fails.
pub async fn start_announcing(
    cfg: Config,
    clock: SharedClock,
    first_account: impl FnOnce(&crsd_service::accounts_created::Created),
) -> Result<Running> {
    cfg.validate()?;
    let max_connections = connection_cap(&cfg);
    prepare_data_dir(&cfg.data_dir)?;
    check_redis_server(&cfg.instances.redis_server)?;
    warn_overcommit();
    warn_ephemeral_overlap(cfg.instances.port_min, cfg.instances.port_max);

    let store = Store::open(&cfg.data_dir.join("crsd.db"))
        .await
        .context("opening the metadata store")?;
    let mut service_cfg = service_config(&cfg);
    service_cfg.ha = Some(ha_settings(&cfg)?);
    service_cfg.exporter = exporter_config(&cfg)?;
    let service = Service::new(
        store,
        Arc::new(Engine::new(engine_config(&cfg))),
        backup_store(&cfg)?,
        clock,
        service_cfg,
    );
    let bootstrap = bootstrap_account(&service, &cfg).await?;
    if let Some(created) = &bootstrap {
        first_account(created);
    }
    match service.sweep_backup_store().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed unfinished backup files"),
        Err(e) => tracing::error!(error = ?e, "cannot sweep the backup store"),
    }

    // Before any task or supervisor pass touches a node: folders of the previous release's
    // layout move while their processes run (adopted below, not restarted).
    if let Err(e) = service.migrate_layout().await {
        tracing::error!(error = ?e, "cannot carry node folders over to this release's layout");
    }
    match service.supervise_once().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            restarted = n,
            "started redis-server processes that were down"
        ),
        Err(e) => tracing::error!(error = ?e, "first supervisor pass failed"),
    }
    // Instances of the previous release get their stable address (their master moves to a
    // new port, live), then the sentinels and the proxy run and serve every instance.
    if let Err(e) = service.adopt_addresses().await {
        tracing::error!(error = ?e, "cannot give instances of the previous release their stable address");
    }
    service
        .start_ha()
        .await
        .map_err(|e| anyhow::anyhow!("starting Sentinel and the proxy: {e}"))?;

    let metrics_listener = match cfg.metrics.addr().map_err(anyhow::Error::msg)? {
        Some(addr) => Some(crate::metrics::bind(addr)?),
        None => None,
    };
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(service.clone().run_tasks(rx.clone())),
        tokio::spawn(service.clone().run_supervisor(rx.clone())),
        tokio::spawn(service.clone().run_expiry(rx.clone())),
        tokio::spawn(service.clone().run_sampler(rx.clone())),
        tokio::spawn(service.clone().run_address_follower(rx.clone())),
        tokio::spawn(service.clone().run_backup_schedule(rx.clone())),
    ];
    let mut metrics_addr = None;
    if let Some(listener) = metrics_listener {
        let bound = listener.local_addr()?;
        tasks.push(crate::metrics::spawn(listener, service.clone(), rx)?);
        tracing::info!(addr = %bound, "crsd serves its metrics at /metrics");
        metrics_addr = Some(bound);
    }

    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("binding {}", cfg.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    // With `[tls] listen`, HTTPS there and plain HTTP on `listen`; else `listen` is HTTPS
    // when a certificate is set.
    let https_listener = match cfg.tls.listen_addr().map_err(anyhow::Error::msg)? {
        Some(a) => {
            let l = std::net::TcpListener::bind(a).with_context(|| format!("binding {a}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let main_is_https = cfg.tls.cert.is_some() && https_listener.is_none();
    // Download links crsd makes itself go over HTTPS whenever it serves HTTPS.
    let own_base = match &https_listener {
        Some(l) => format!("https://{}", l.local_addr()?),
        None if main_is_https => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    let base_or_own = |configured: &str| {
        if configured.is_empty() {
            own_base.clone()
        } else {
            configured.trim_end_matches('/').to_string()
        }
    };
    let app = crsd_api::router(
        service.clone(),
        crsd_api::ApiConfig {
            public_hosts: cfg.api.public_hosts.clone(),
            replay_window_secs: cfg.api.replay_window_secs,
            rate_per_second: cfg.api.rate_per_second,
            rate_burst: cfg.api.rate_burst,
            replay_dir: Some(cfg.data_dir.join("replay")),
            limits: cfg.api.limits(),
        },
        crsd_api::Downloads {
            signer: crsd_api::download::DownloadSigner::new(
                download_key(&cfg.data_dir)?,
                Duration::from_secs(cfg.backups.url_ttl_hours * 3600),
            ),
            intranet_base: base_or_own(&cfg.backups.intranet_base_url),
            extranet_base: base_or_own(&cfg.backups.extranet_base_url),
        },
    )
    .context("opening the replay journal")?;
    let tls = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(cert), Some(key)) => Some(crate::listener::tls_acceptor(cert, key)?),
        _ => None,
    };
    // Two listeners share the connection budget.
    let limits = crate::listener::Limits {
        max_connections: if https_listener.is_some() {
            (max_connections / 2).max(1)
        } else {
            max_connections
        },
        header_timeout: Duration::from_secs(cfg.api.header_timeout_secs),
        max_head_bytes: cfg.api.max_head_bytes,
    };
    let (https, https_addr) = match https_listener {
        Some(l) => {
            let bound = l.local_addr()?;
            let served = crate::listener::spawn(l, tls.clone(), app.clone(), limits.clone())?;
            tracing::info!(addr = %bound, tls = true, "crsd is listening");
            (Some(served), Some(bound))
        }
        None => (None, None),
    };
    let listener = crate::listener::spawn(
        listener,
        if main_is_https { tls } else { None },
        app,
        limits,
    )?;
    tracing::info!(%addr, tls = main_is_https, "crsd is listening");
    Ok(Running {
        addr,
        metrics_addr,
        service,
        bootstrap,
        shutdown,
        listener,
        https,
        https_addr,
        tasks,
    })
}

/// Raises the open-file limit and returns how many connections the API may hold: the
/// configured number, or what the limit leaves after the reserve.
fn connection_cap(cfg: &Config) -> usize {
    let derived = match crate::fd_limit::raise() {
        Ok(nofile) => {
            let cap = crate::fd_limit::connection_cap(nofile.soft, cfg.api.fd_reserve);
            tracing::info!(
                open_files = nofile.soft,
                hard_limit = nofile.hard,
                derived_max_connections = cap,
                "open-file limit"
            );
            cap
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            crate::fd_limit::connection_cap(1024, cfg.api.fd_reserve)
        }
    };
    let cap = if cfg.api.max_connections > 0 {
        cfg.api.max_connections
    } else {
        derived
    };
    tracing::info!(max_connections = cap, "API connection limit");
    cap
}

pub fn engine_config(cfg: &Config) -> EngineConfig {
    EngineConfig {
        redis_server: cfg.instances.redis_server.clone(),
        bind: cfg.instances.bind.clone(),
        start_timeout: Duration::from_secs(cfg.instances.start_timeout_secs),
        ceiling: cfg.instances.ceiling.then(|| CeilingConfig {
            group: "crsd".into(),
            memory_headroom_percent: cfg.instances.memory_headroom_percent,
            memory_headroom_min_mb: cfg.instances.memory_headroom_min_mb,
            cpu_weight: cfg.instances.cpu_weight,
            cpu_quota_percent: cfg.instances.cpu_quota_percent,
        }),
        root: cfg.data_dir.join("instances"),
    }
}

pub fn service_config(cfg: &Config) -> ServiceConfig {
    ServiceConfig {
        data_dir: cfg.data_dir.clone(),
        instance_bind: cfg.instances.bind.clone(),
        instance_host: if cfg.instances.host.is_empty() {
            cfg.instances.bind.clone()
        } else {
            cfg.instances.host.clone()
        },
        address_pool: cfg.address_pool().unwrap_or_default(),
        port_min: cfg.instances.port_min,
        port_max: cfg.instances.port_max,
        allow_no_auth: cfg.instances.allow_no_auth,
        catalog: cfg.catalog.clone(),
        time_zone: cfg.tz(),
        supervise_every: Duration::from_millis(cfg.loops.supervise_every_ms.max(50)),
        expiry_every: Duration::from_secs(cfg.loops.expiry_every_secs.max(1)),
        task_concurrency: cfg.loops.task_concurrency,
        backups: BackupSettings {
            retention: chrono::Duration::days(cfg.backups.retention_days),
            daily_at: cfg.backups.daily_time().unwrap_or_default(),
            manual_per_day: cfg.backups.manual_per_day,
            snapshot_timeout: Duration::from_secs(cfg.backups.snapshot_timeout_secs.max(1)),
        },
        disk: DiskReserve {
            min_free_bytes: cfg.backups.min_free_bytes,
            min_free_percent: cfg.backups.min_free_percent,
            backup_dir: Some(backup_dir(cfg)),
        },
        undo_retry: UndoRetry {
            attempts: cfg.loops.undo_attempts,
            first: Duration::from_secs(1),
            max: Duration::from_secs(cfg.loops.undo_backoff_max_secs.max(1)),
        },
        ha: None,
        exporter: None,
        monitor: MonitorSettings {
            sample_every: Duration::from_secs(cfg.monitor.sample_interval_secs.max(1)),
            retention: Duration::from_secs(cfg.monitor.retention_hours.saturating_mul(3600)),
        },
        cluster_node_timeout_ms: cfg.ha.cluster_node_timeout_ms.max(100),
        warm_nodes: cfg.instances.warm_nodes,
        warm_cluster_nodes: cfg.instances.warm_cluster_nodes,
    }
}

/// The host's redis exporter, from `[metrics]`; its folder is `<data_dir>/exporter`.
pub fn exporter_config(cfg: &Config) -> Result<Option<crsd_engine::ExporterConfig>> {
    let Some(addr) = cfg.metrics.exporter_addr().map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    Ok(Some(crsd_engine::ExporterConfig {
        program: cfg.metrics.exporter.clone(),
        listen: addr.to_string(),
        root: cfg.data_dir.join("exporter"),
    }))
}

/// Sentinel and the proxy, from the config; their folders are `<data_dir>/sentinel` and
/// `<data_dir>/proxy`, the sentinels' own password in `<data_dir>/sentinel.secret` (0600).
pub fn ha_settings(cfg: &Config) -> Result<HaSettings> {
    ha_parts(cfg, Some(write_address_hook(cfg)?))
}

/// [`ha_settings`] with the given reconfig script (none for `address-hook` itself, which
/// only drives the proxy and the nodes).
fn ha_parts(cfg: &Config, reconfig_script: Option<std::path::PathBuf>) -> Result<HaSettings> {
    let ha = &cfg.ha;
    Ok(HaSettings {
        sentinel: SentinelConfig {
            program: ha.redis_sentinel.clone(),
            bind: cfg.instances.bind.clone(),
            ports: ha.sentinel_ports.clone(),
            quorum: ha.quorum,
            down_after_ms: ha.down_after_ms,
            failover_timeout_ms: ha.failover_timeout_ms,
            root: cfg.data_dir.join("sentinel"),
            secret: hex::encode(secret_file(&cfg.data_dir.join("sentinel.secret"))?),
            timers: Some(SentinelTimers::default()),
        },
        proxy: ProxyConfig {
            program: ha.haproxy.clone(),
            root: cfg.data_dir.join("proxy"),
            bind: cfg.instances.bind.clone(),
            check_inter_ms: ha.check_interval_ms,
            ..ProxyConfig::default()
        },
        failover_grace: Duration::from_secs(ha.failover_grace_secs.max(1)),
        reconfig_script,
    })
}

/// Writes `<data_dir>/sentinel/address-hook`, the script Sentinel runs at a promotion: it runs
/// this crsd binary's `address-hook` with the same config. 0700; paths are single-quoted (a
/// quote in one is refused).
fn write_address_hook(cfg: &Config) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().context("finding crsd's own binary")?;
    let quote = |p: &std::path::Path| -> Result<String> {
        let s = p
            .to_str()
            .filter(|s| !s.contains('\''))
            .ok_or_else(|| anyhow::anyhow!("{} cannot be quoted for a shell", p.display()))?;
        Ok(format!("'{s}'"))
    };
    let data_dir = std::fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
    let mut line = format!("exec {} address-hook", quote(&exe)?);
    if let Some(src) = &cfg.source {
        line.push_str(&format!(" --config {}", quote(src)?));
    }
    line.push_str(&format!(" --data-dir {} \"$@\"", quote(&data_dir)?));
    let text = format!(
        "#!/bin/sh\n# Written by crsd at start: Redis Sentinel runs this at +switch-master, so the\n\
         # instance's address follows the new master while crsd is down.\n{line}\n"
    );
    let dir = cfg.data_dir.join("sentinel");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = data_dir.join("sentinel").join("address-hook");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The local backup store under the configured folder (default `<data_dir>/backups`).
/// The local backup store's folder.
fn backup_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.backups
        .dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("backups"))
}

pub fn backup_store(cfg: &Config) -> Result<Arc<dyn BackupStore>> {
    let dir = backup_dir(cfg);
    let store = LocalStore::open(&dir)
        .with_context(|| format!("opening the backup store {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// The key that signs download URLs: 32 random bytes made on first start, kept in
/// `<data_dir>/download.key` (0600) so links survive a restart.
fn download_key(data_dir: &Path) -> Result<[u8; 32]> {
    secret_file(&data_dir.join("download.key"))
}

/// 32 random bytes kept in `path` (0600), made on first use.
fn secret_file(path: &Path) -> Result<[u8; 32]> {
    use rand::RngCore;
    let path = path.to_path_buf();
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is not 32 bytes", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    write_secret_bytes(&path, &key)?;
    Ok(key)
}

fn prepare_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("instances"))
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting mode 0700 on {}", dir.display()))?;
    Ok(())
}

fn check_redis_server(bin: &Path) -> Result<()> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (install Debian's redis-server package)",
                bin.display()
            )
        })?;
    if !out.status.success() {
        bail!("{} --version failed", bin.display());
    }
    tracing::info!(version = %String::from_utf8_lossy(&out.stdout).trim(), "redis-server found");
    Ok(())
}

/// BGSAVE and replication fork; with `vm.overcommit_memory = 0` a large fork can fail with
/// "Cannot allocate memory" (Redis's own advice is 1).
fn warn_overcommit() {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/vm/overcommit_memory") {
        if v.trim() != "1" {
            tracing::warn!(
                value = v.trim(),
                "vm.overcommit_memory is not 1: forks for backups and replica syncs of large instances may fail"
            );
        }
    }
}

/// The kernel hands ports of `net.ipv4.ip_local_port_range` to outgoing connections (a
/// replica's link to its master, any client on the machine), except those listed in
/// `net.ipv4.ip_local_reserved_ports`. Such a connection can hold an instance port in the
/// moment before redis-server binds it, and that create or start then fails with "Address
/// already in use".
fn warn_ephemeral_overlap(port_min: u16, port_max: u16) {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let reserved =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default();
    if let Some(port) = ephemeral_overlap(&range, &reserved, port_min, port_max) {
        tracing::warn!(
            instance_ports = %format!("{port_min}-{port_max}"),
            ephemeral_ports = %range.split_whitespace().collect::<Vec<_>>().join("-"),
            first_shared = port,
            "instance ports overlap the kernel's ephemeral port range: an outgoing connection \
             can take a port before redis-server binds it; choose ports outside it or list them \
             in net.ipv4.ip_local_reserved_ports"
        );
    }
}

/// The first port of `port_min..=port_max` the kernel may hand to an outgoing connection:
/// inside the ephemeral range (the text of `ip_local_port_range`, "LOW HIGH") and not
/// reserved (the text of `ip_local_reserved_ports`, e.g. "8080,16400-17399").
fn ephemeral_overlap(range: &str, reserved: &str, port_min: u16, port_max: u16) -> Option<u16> {
    let mut it = range.split_whitespace().map(str::parse::<u16>);
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    let reserved: Vec<(u16, u16)> = reserved
        .trim()
        .split(',')
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect();
    (port_min.max(lo)..=port_max.min(hi))
        .find(|p| !reserved.iter().any(|(a, b)| (a..=b).contains(&p)))
}

/// On first start (no account yet) makes one, with the bootstrap keys when given, writes
/// `credentials.json` (0600) and returns it so the caller prints it once.
async fn bootstrap_account(
    svc: &Service,
    cfg: &Config,
) -> Result<Option<crsd_service::accounts_created::Created>> {
    if svc.account_count().await? > 0 {
        return Ok(None);
    }
    let created = svc
        .create_account(NewAccount {
            name: "default".into(),
            balance: cfg.accounts.bootstrap_balance,
            secret_id: std::env::var("CRSD_BOOTSTRAP_SECRET_ID")
                .ok()
                .filter(|s| !s.is_empty()),
            secret_key: std::env::var("CRSD_BOOTSTRAP_SECRET_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the first account: {e:?}"))?;
    write_secret_file(
        &cfg.data_dir.join("credentials.json"),
        &serde_json::to_string_pretty(&created)?,
    )?;
    Ok(Some(created))
}

pub fn write_secret_file(path: &Path, text: &str) -> Result<()> {
    write_secret_bytes(path, format!("{text}\n").as_bytes())
}

/// Writes a file only crsd may read (0600): temporary name, fsync, rename.
fn write_secret_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `crsd address-hook`: what Sentinel's `client-reconfig-script` runs at `+switch-master`,
/// with Sentinel's 7 arguments (`<name> <role> <state> <from-ip> <from-port> <to-ip>
/// <to-port>`): the new master takes an address of its own, or the proxy leads new
/// connections to it alone (see the service's `addresses.rs`). Exit status 1 (an error) makes Sentinel run it again.
pub async fn address_hook(cfg: &Config, args: &[String]) -> Result<()> {
    let Some((name, to_ip, to_port)) = promotion(args)? else {
        // Another of Sentinel's warnings: nothing to do.
        return Ok(());
    };
    let to_port: u16 = to_port.parse().context("the new master's port")?;
    // Read-only: several of these run at once at every failover, beside crsd's writes.
    let store = crsd_store::Store::open_read_only(&cfg.data_dir.join("crsd.db"))
        .await
        .context("opening the metadata store")?;
    let mut engine = engine_config(cfg);
    // Admin calls and, to fence a hung node, a kill: no ceiling to set up.
    engine.ceiling = None;
    let mut service_cfg = service_config(cfg);
    // The proxy's CLI, to fence; nothing is started or written.
    service_cfg.ha = Some(ha_parts(cfg, None)?);
    let svc = crsd_service::Service::new(
        store,
        std::sync::Arc::new(crsd_engine::Engine::new(engine)),
        backup_store(cfg)?,
        Arc::new(crsd_core::clock::SystemClock),
        service_cfg,
    );
    if svc.address_hook(name, to_ip, to_port).await? {
        tracing::info!(instance = %name, master = %format!("{to_ip}:{to_port}"), "the instance's address is on its new master");
        Ok(())
    } else {
        // Exit status 1: Sentinel runs the script again (up to 10 times).
        anyhow::bail!("{name}: {to_ip}:{to_port} did not take the instance's address")
    }
}

/// The instance and the promoted node's address in Sentinel's arguments: a
/// `client-reconfig-script`'s 7, or a `notification-script`'s 2 when the event is
/// `+promoted-slave` (description `slave <ip>:<port> <ip> <port> @ <name> <master-ip>
/// <master-port>`); `None` for any other event. (Sentinel runs the notification script for
/// its warnings only: `+failover-state-wait-promotion`, earlier, is a notice.)
fn promotion(args: &[String]) -> Result<Option<(&str, &str, &str)>> {
    match args {
        [name, _role, _state, _from_ip, _from_port, to_ip, to_port] => {
            Ok(Some((name, to_ip, to_port)))
        }
        [event, description] if event == "+promoted-slave" => {
            let words: Vec<&str> = description.split_whitespace().collect();
            match words.as_slice() {
                ["slave", _, ip, port, "@", name, _, _] => Ok(Some((name, ip, port))),
                _ => anyhow::bail!("an unexpected promotion event: {description:?}"),
            }
        }
        [_event, _description] => Ok(None),
        _ => anyhow::bail!("expected Sentinel's 7 or 2 arguments"),
    }
}

#[cfg(test)]
mod tests {
    use super::ephemeral_overlap;

    #[test]
    fn sentinel_promotions_are_read_from_both_scripts_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let reconfig = args(&[
            "crs-a",
            "leader",
            "start",
            "127.0.0.1",
            "7001",
            "127.0.0.2",
            "7002",
        ]);
        assert_eq!(
            super::promotion(&reconfig).unwrap(),
            Some(("crs-a", "127.0.0.2", "7002"))
        );
        let promotion = args(&[
            "+promoted-slave",
            "slave 127.0.0.2:7002 127.0.0.2 7002 @ crs-a 127.0.0.1 7001",
        ]);
        assert_eq!(
            super::promotion(&promotion).unwrap(),
            Some(("crs-a", "127.0.0.2", "7002"))
        );
        let other = args(&["+sdown", "master crs-a 127.0.0.1 7001"]);
        assert_eq!(super::promotion(&other).unwrap(), None);
        assert!(super::promotion(&args(&["a", "b", "c"])).is_err());
        let garbled = args(&["+promoted-slave", "slave x"]);
        assert!(super::promotion(&garbled).is_err());
    }

    #[test]
    fn an_instance_range_inside_the_ephemeral_range_is_reported() {
        let linux_default = "32768\t60999\n";
        assert_eq!(
            ephemeral_overlap(linux_default, "", 36400, 36439),
            Some(36400)
        );
        assert_eq!(
            ephemeral_overlap(linux_default, "", 30000, 32768),
            Some(32768)
        );
        assert_eq!(
            ephemeral_overlap(linux_default, "\n", 60999, 61100),
            Some(60999)
        );
        // crsd's default range and ranges on either side are fine.
        assert_eq!(ephemeral_overlap(linux_default, "", 16400, 17399), None);
        assert_eq!(ephemeral_overlap(linux_default, "", 30000, 32767), None);
        assert_eq!(ephemeral_overlap(linux_default, "", 61000, 61100), None);
        assert_eq!(ephemeral_overlap("garbage", "", 36400, 36439), None);
        // Reserved ports are never handed out: a fully reserved range is fine.
        assert_eq!(
            ephemeral_overlap(linux_default, "8080,36400-36439\n", 36400, 36439),
            None
        );
        assert_eq!(
            ephemeral_overlap(linux_default, "36400-36419,36421-36439", 36400, 36439),
            Some(36420)
        );
    }
}
