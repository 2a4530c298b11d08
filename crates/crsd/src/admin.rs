//! The operator's commands: `crsd account | instance | task | backup ...`.
//!
//! They work on the data folder of a crsd that may be running, always through the store and
//! the service's functions, never by editing files: SQLite in WAL mode lets the lists read
//! beside crsd without blocking it (they open the database read-only), and each change is one
//! short write transaction that waits for crsd's own (the busy timeout).
//!
//! A folder that holds no crsd database is refused (exit code 2) and left as it was: a typo in
//! `--data-dir` must not create an empty database that a later `crsd serve` would take for a
//! new installation. Only `account add --init` creates one.
//!
//! A running crsd keeps each SecretId's account in memory for
//! [`crsd_service::AUTH_CACHE_TTL`] (5 s): that is how long a disabled account or a replaced
//! key may still be accepted after the command returns.

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::{Args, Subcommand};
use crsd::config::Config;
use crsd_core::clock::SystemClock;
use crsd_service::Service;
use crsd_store::Store;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Which crsd the command works on.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The config file crsd runs with: its data_dir, backup folder and time zone are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// crsd's data folder, holding crsd.db (overrides the config's data_dir).
    #[arg(long, env = "CRSD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    /// The config the command works with: the file's (or the defaults) and the data folder.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        Ok(cfg)
    }
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// List every account: app id, uin, name, SecretId (never the key), balance in cents,
    /// enabled or disabled, creation time.
    List {
        #[command(flatten)]
        target: Target,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add an account; prints {"appId","uin","secretId","secretKey"} once.
    Add {
        #[command(flatten)]
        target: Target,
        /// The account's name (shown only to the operator).
        #[arg(long, default_value = "")]
        name: String,
        /// Balance in cents.
        #[arg(long, default_value_t = 100_000_000)]
        balance: i64,
        /// Create the database if the data folder has none (a new installation); without it
        /// a folder with no crsd database is refused.
        #[arg(long)]
        init: bool,
    },
    /// Disable an account: a running crsd refuses its key in every API (as an unknown
    /// SecretId) within 5 seconds; its instances keep running and are billed as before.
    Disable {
        #[command(flatten)]
        target: Target,
        /// The account's app id.
        app_id: i64,
    },
    /// Enable a disabled account again: its key works within 5 seconds.
    Enable {
        #[command(flatten)]
        target: Target,
        /// The account's app id.
        app_id: i64,
    },
    /// Give an account a new SecretId and SecretKey, printed once as
    /// {"appId","uin","secretId","secretKey"}; a running crsd refuses the old pair within
    /// 5 seconds.
    RotateKey {
        #[command(flatten)]
        target: Target,
        /// The account's app id.
        app_id: i64,
    },
    /// Set an account's balance; prints {"appId","balance"}.
    SetBalance {
        #[command(flatten)]
        target: Target,
        /// The account's app id.
        app_id: i64,
        /// The new balance in cents (not negative).
        #[arg(allow_negative_numbers = true)]
        cents: i64,
    },
    /// Add to an account's balance (read and written in one transaction, so a purchase at
    /// the same moment is not lost); prints {"appId","balance"}.
    TopUp {
        #[command(flatten)]
        target: Target,
        /// The account's app id.
        app_id: i64,
        /// Cents to add (more than zero).
        #[arg(allow_negative_numbers = true)]
        cents: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum InstanceCommand {
    /// List every instance that is not deleted, of all accounts: id, account, name, status,
    /// address (host:port as the APIs show it), memory, replicas, creation time.
    List {
        #[command(flatten)]
        target: Target,
        /// Only this account's instances (its app id).
        #[arg(long)]
        account: Option<i64>,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// List tasks of all accounts: id, kind, instance, status, step, creation and last
    /// update times, error. The newest first, or the unfinished ones oldest first.
    List {
        #[command(flatten)]
        target: Target,
        /// Only tasks not finished yet (pending or running).
        #[arg(long)]
        running: bool,
        /// At most this many tasks (without --running).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// List an instance's backups, newest first, also when the instance is deleted (they stay
    /// until the retention expires them): id, kind, state, size, start time, file.
    List {
        #[command(flatten)]
        target: Target,
        /// The instance's id.
        #[arg(long)]
        instance: String,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the path of a backup's RDB file, to copy it, a line each for a cluster's shards
    /// (exit code 1 if it has none: an expired backup).
    Path {
        #[command(flatten)]
        target: Target,
        /// The backup's id.
        backup_id: String,
    },
}

/// One operator command.
#[derive(Debug)]
pub enum Admin {
    Account(AccountCommand),
    Instance(InstanceCommand),
    Task(TaskCommand),
    Backup(BackupCommand),
}

impl Admin {
    pub fn target(&self) -> &Target {
        match self {
            Admin::Account(c) => match c {
                AccountCommand::List { target, .. }
                | AccountCommand::Add { target, .. }
                | AccountCommand::Disable { target, .. }
                | AccountCommand::Enable { target, .. }
                | AccountCommand::RotateKey { target, .. }
                | AccountCommand::SetBalance { target, .. }
                | AccountCommand::TopUp { target, .. } => target,
            },
            Admin::Instance(InstanceCommand::List { target, .. }) => target,
            Admin::Task(TaskCommand::List { target, .. }) => target,
            Admin::Backup(
                BackupCommand::List { target, .. } | BackupCommand::Path { target, .. },
            ) => target,
        }
    }
}

/// The exit code of a folder that holds no crsd database.
pub const NO_DATABASE: u8 = 2;

/// How a command failed.
enum Failure {
    /// The folder holds no crsd database (exit code 2).
    NoDatabase(String),
    /// Anything else (exit code 1).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

type Outcome = std::result::Result<(), Failure>;

/// Runs `cmd` on `cfg`'s data folder; reports a failure on standard error.
pub fn run(cfg: Config, cmd: Admin) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .map_err(Failure::Other)
        .and_then(|rt| rt.block_on(dispatch(cfg, cmd)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::NoDatabase(msg)) => {
            eprintln!("crsd: {msg}");
            ExitCode::from(NO_DATABASE)
        }
        Err(Failure::Other(e)) => {
            eprintln!("crsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a command opens the database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    /// Read-only: the lists.
    Read,
    /// Read-write, an existing database only.
    Write,
    /// Read-write, created if missing (`account add --init`).
    Create,
}

async fn dispatch(cfg: Config, cmd: Admin) -> Outcome {
    match cmd {
        Admin::Account(c) => account(cfg, c).await,
        Admin::Instance(InstanceCommand::List { account, json, .. }) => {
            let svc = service(&cfg, Open::Read).await?;
            let list = svc.operator_instances(account).await.map_err(svc_err)?;
            let tz = svc.time_zone();
            let rows = list
                .iter()
                .map(|i| {
                    json!({
                        "id": i.id,
                        "appId": i.app_id,
                        "name": i.name,
                        "status": i.status.word(),
                        "address": format!("{}:{}", i.vip, i.port()),
                        "memMb": i.mem_mb,
                        "replicas": i.replica_count(),
                        "created": time(i.created_at, tz),
                    })
                })
                .collect();
            print_rows(
                json,
                &[
                    ("ID", "id"),
                    ("ACCOUNT", "appId"),
                    ("NAME", "name"),
                    ("STATUS", "status"),
                    ("ADDRESS", "address"),
                    ("MEMORY_MB", "memMb"),
                    ("REPLICAS", "replicas"),
                    ("CREATED", "created"),
                ],
                rows,
            );
            close(&svc).await
        }
        Admin::Task(TaskCommand::List {
            running,
            limit,
            json,
            ..
        }) => {
            let svc = service(&cfg, Open::Read).await?;
            let list = svc.operator_tasks(running, limit).await.map_err(svc_err)?;
            let tz = svc.time_zone();
            let rows = list
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "appId": t.app_id,
                        "kind": t.kind.name(),
                        "instance": t.instance_id.clone().unwrap_or_default(),
                        "status": t.status.word(),
                        "step": t.step,
                        "created": time(t.created_at, tz),
                        "updated": time(t.updated_at, tz),
                        "error": t.error.clone().unwrap_or_default(),
                    })
                })
                .collect();
            print_rows(
                json,
                &[
                    ("ID", "id"),
                    ("KIND", "kind"),
                    ("INSTANCE", "instance"),
                    ("STATUS", "status"),
                    ("STEP", "step"),
                    ("CREATED", "created"),
                    ("UPDATED", "updated"),
                    ("ERROR", "error"),
                ],
                rows,
            );
            close(&svc).await
        }
        Admin::Backup(BackupCommand::List { instance, json, .. }) => {
            let svc = service(&cfg, Open::Read).await?;
            let list = svc.operator_backups(&instance).await.map_err(svc_err)?;
            let tz = svc.time_zone();
            let rows = list
                .iter()
                .map(|b| {
                    json!({
                        "id": b.backup.id,
                        "instance": b.backup.instance_id,
                        "appId": b.backup.app_id,
                        "kind": b.backup.kind.name(),
                        "state": b.backup.state.word(),
                        "size": b.backup.size,
                        "started": time(b.backup.started_at, tz),
                        "path": b.paths.first().map(|p| path_text(p)).unwrap_or_default(),
                        "paths": b.paths.iter().map(|p| path_text(p)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print_rows(
                json,
                &[
                    ("ID", "id"),
                    ("ACCOUNT", "appId"),
                    ("KIND", "kind"),
                    ("STATE", "state"),
                    ("SIZE", "size"),
                    ("STARTED", "started"),
                    ("PATH", "path"),
                ],
                rows,
            );
            close(&svc).await
        }
        Admin::Backup(BackupCommand::Path { backup_id, .. }) => {
            let svc = service(&cfg, Open::Read).await?;
            let b = svc.operator_backup(&backup_id).await.map_err(svc_err)?;
            close(&svc).await?;
            if b.paths.is_empty() {
                return Err(
                    anyhow!("backup {backup_id} has no file ({})", b.backup.state.word()).into(),
                );
            }
            for p in &b.paths {
                println!("{}", path_text(p));
            }
            Ok(())
        }
    }
}

async fn account(cfg: Config, cmd: AccountCommand) -> Outcome {
    match cmd {
        AccountCommand::List { json, .. } => {
            let svc = service(&cfg, Open::Read).await?;
            let list = svc.account_records().await.map_err(svc_err)?;
            let tz = svc.time_zone();
            let rows = list
                .iter()
                .map(|r| {
                    json!({
                        "appId": r.account.app_id,
                        "uin": r.account.uin,
                        "name": r.account.name,
                        "secretId": r.account.secret_id,
                        "balance": r.account.balance,
                        "state": if r.disabled { "disabled" } else { "enabled" },
                        "created": time(r.created_at, tz),
                    })
                })
                .collect();
            print_rows(
                json,
                &[
                    ("APP_ID", "appId"),
                    ("UIN", "uin"),
                    ("NAME", "name"),
                    ("SECRET_ID", "secretId"),
                    ("BALANCE", "balance"),
                    ("STATE", "state"),
                    ("CREATED", "created"),
                ],
                rows,
            );
            close(&svc).await
        }
        AccountCommand::Add {
            name,
            balance,
            init,
            ..
        } => {
            let svc = service(&cfg, if init { Open::Create } else { Open::Write }).await?;
            let created = svc
                .create_account(crsd_service::NewAccount {
                    name,
                    balance,
                    secret_id: None,
                    secret_key: None,
                })
                .await
                .map_err(svc_err)?;
            print_json(&serde_json::to_value(&created).context("rendering the keys")?);
            close(&svc).await
        }
        AccountCommand::Disable { app_id, .. } | AccountCommand::Enable { app_id, .. } => {
            let disabled = matches!(cmd, AccountCommand::Disable { .. });
            let svc = service(&cfg, Open::Write).await?;
            svc.set_account_disabled(app_id, disabled)
                .await
                .map_err(svc_err)?;
            print_json(&json!({"appId": app_id, "disabled": disabled}));
            close(&svc).await
        }
        AccountCommand::RotateKey { app_id, .. } => {
            let svc = service(&cfg, Open::Write).await?;
            let created = svc.rotate_account_key(app_id).await.map_err(svc_err)?;
            print_json(&serde_json::to_value(&created).context("rendering the keys")?);
            close(&svc).await
        }
        AccountCommand::SetBalance { app_id, cents, .. } => {
            let svc = service(&cfg, Open::Write).await?;
            let balance = svc
                .set_account_balance(app_id, cents)
                .await
                .map_err(svc_err)?;
            print_json(&json!({"appId": app_id, "balance": balance}));
            close(&svc).await
        }
        AccountCommand::TopUp { app_id, cents, .. } => {
            let svc = service(&cfg, Open::Write).await?;
            let balance = svc.top_up_account(app_id, cents).await.map_err(svc_err)?;
            print_json(&json!({"appId": app_id, "balance": balance}));
            close(&svc).await
        }
    }
}

/// The service on `cfg`'s data folder, its database opened as `open` says; a folder without
/// a crsd database is refused unless `open` creates one. The service drives no process
/// here: its engine is built without the cgroup ceilings, so nothing on the host changes.
async fn service(cfg: &Config, open: Open) -> std::result::Result<Arc<Service>, Failure> {
    let db = cfg.data_dir.join("crsd.db");
    if open != Open::Create {
        check_database(&cfg.data_dir, &db).await?;
    }
    let store = match open {
        Open::Read => Store::open_read_only(&db).await,
        Open::Write | Open::Create => Store::open(&db).await,
    }
    .with_context(|| format!("opening the database {}", db.display()))?;
    let mut engine = crsd::server::engine_config(cfg);
    engine.ceiling = None;
    Ok(Service::new(
        store,
        Arc::new(crsd_engine::Engine::new(engine)),
        crsd::server::backup_store(cfg)?,
        Arc::new(SystemClock),
        crsd::server::service_config(cfg),
    ))
}

/// Refuses a data folder whose `db` is not a crsd database, touching nothing.
async fn check_database(data_dir: &Path, db: &Path) -> Outcome {
    match Store::holds_database(db).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::NoDatabase(format!(
            "{} holds no crsd database ({} is missing or not crsd's); name crsd's data folder \
             with --data-dir or the config's data_dir (only `crsd account add --init` creates \
             a database)",
            data_dir.display(),
            db.display()
        ))),
        Err(e) => Err(Failure::NoDatabase(format!(
            "{} is not a readable crsd database: {:#}",
            db.display(),
            anyhow::Error::new(e)
        ))),
    }
}

async fn close(svc: &Service) -> Outcome {
    svc.store().close().await;
    Ok(())
}

/// A service error with its internal detail (the operator may see it).
fn svc_err(e: crsd_core::Error) -> Failure {
    Failure::Other(match e {
        crsd_core::Error::Internal(detail) => anyhow!("internal error: {detail}"),
        other => anyhow!("{other}"),
    })
}

fn time(t: DateTime<Utc>, tz: Tz) -> String {
    crsd_core::timefmt::format(t, tz)
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Prints `rows` as JSON lines, or as a table of `columns` (header, field).
fn print_rows(json: bool, columns: &[(&str, &str)], rows: Vec<serde_json::Value>) {
    if json {
        for r in &rows {
            print_json(r);
        }
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(_, field)| match &r[*field] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |values: Vec<&str>| {
        let mut out = String::new();
        for (i, (v, w)) in values.iter().zip(&widths).enumerate() {
            if i + 1 == values.len() {
                out.push_str(v);
            } else {
                out.push_str(&format!("{v:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}
