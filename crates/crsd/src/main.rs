//! `crsd`: the self-hosted Cloud Redis Store daemon and its operator commands (see `admin`).

mod admin;

use admin::{AccountCommand, Admin, BackupCommand, InstanceCommand, TaskCommand};
use anyhow::Result;
use clap::{Parser, Subcommand};
use crsd::config::{Config, LogFormat};
use crsd_core::clock::SystemClock;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `crsd --version`: the version and the commit built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CRSD_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(name = "crsd", version = VERSION, about = "Self-hosted Cloud Redis Store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// The config file (TOML); the defaults without it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data folder: database, instances, backups (overrides the config's data_dir).
        #[arg(long, env = "CRSD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The API's address (overrides the config's listen).
        #[arg(long, env = "CRSD_LISTEN")]
        listen: Option<SocketAddr>,
        /// TLS certificate chain (PEM) for the API; with --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM) for the API; with --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Run by Redis Sentinel at a promotion, with crsd up or down: the promoted node takes
    /// an address of its own, or the proxy leads new connections to it alone. Arguments as
    /// Sentinel passes them: <name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
    /// (`client-reconfig-script`, at `+switch-master`), or <event> <description>
    /// (`notification-script`; only `+promoted-slave` does anything).
    AddressHook {
        /// The config file crsd runs with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// crsd's data folder (overrides the config's data_dir).
        #[arg(long, env = "CRSD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// What Sentinel passes (see above).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 2..=7)]
        sentinel_args: Vec<String>,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// See the instances of every account.
    Instance {
        #[command(subcommand)]
        command: InstanceCommand,
    },
    /// See the tasks of every account.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Find backups and their files, deleted instances' included.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Certificates for the HTTPS listener.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Make a private CA and a server certificate it signs (ca.pem, ca.key, cert.pem, key.pem;
    /// keys 0600), then print the [tls] lines for crsd.toml and how to make each client trust
    /// the CA.
    Init {
        /// The config file (its data_dir and api.public_hosts are used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data folder; the files go to <data_dir>/tls unless --dir says otherwise.
        #[arg(long, env = "CRSD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Where to write the four files.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A further name (DNS name or IP address) for the certificate; repeatable.
        /// localhost, 127.0.0.1, ::1 and api.public_hosts are always in it.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Days the server certificate is valid (the CA: ten years).
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Replace existing files (clients must then trust the new CA).
        #[arg(long)]
        force: bool,
    },
}

fn load(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Config> {
    let mut cfg = match config {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    Ok(cfg)
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    // The config first: it says how to log.
    let (cfg, run) = match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            tls_cert,
            tls_key,
        } => {
            let mut cfg = load(config, data_dir)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if tls_cert.is_some() {
                cfg.tls.cert = tls_cert;
                cfg.tls.key = tls_key;
            }
            (cfg, Run::Serve)
        }
        Command::AddressHook {
            config,
            data_dir,
            sentinel_args,
        } => (load(config, data_dir)?, Run::AddressHook(sentinel_args)),
        Command::Account { command } => return run_admin(Admin::Account(command)),
        Command::Instance { command } => return run_admin(Admin::Instance(command)),
        Command::Task { command } => return run_admin(Admin::Task(command)),
        Command::Backup { command } => return run_admin(Admin::Backup(command)),
        Command::Tls {
            command:
                TlsCommand::Init {
                    config,
                    data_dir,
                    dir,
                    names,
                    days,
                    force,
                },
        } => {
            let cfg = load(config, data_dir)?;
            let dir = dir.unwrap_or_else(|| cfg.data_dir.join("tls"));
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            let names = crsd::tls_init::names(&cfg.api.public_hosts, &names);
            let made = crsd::tls_init::init(&dir, &names, days, force)?;
            print!("{}", crsd::tls_init::instructions(&made));
            return Ok(ExitCode::SUCCESS);
        }
    };
    init_log(cfg.log.format);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match run {
            Run::Serve => serve(cfg).await,
            Run::AddressHook(args) => crsd::server::address_hook(&cfg, &args).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// An operator command: its config first (it says how to log), then the command.
fn run_admin(cmd: Admin) -> Result<ExitCode> {
    let cfg = cmd.target().config()?;
    init_log(cfg.log.format);
    Ok(admin::run(cfg, cmd))
}

/// What `main` runs once the config is read.
enum Run {
    Serve,
    AddressHook(Vec<String>),
}

/// Logs to standard error: text (colours only for a terminal: a log file or the journal gets
/// plain text) or one JSON object a line. `RUST_LOG` filters; by default `info`, the access
/// log included, without sqlx's statements.
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

async fn serve(cfg: Config) -> Result<()> {
    let credentials = cfg.data_dir.join("credentials.json");
    // The first account's keys the moment it is made (see `banner`).
    let mut running = crsd::server::start_announcing(cfg.clone(), Arc::new(SystemClock), |c| {
        println!("{}", crsd::banner::first_account(c, &credentials));
    })
    .await?;
    let keys = running
        .bootstrap
        .as_ref()
        .map(|c| (c.secret_id.as_str(), c.secret_key.as_str()));
    println!(
        "{}",
        crsd::banner::next_steps(
            running.addr,
            cfg.tls.cert.is_some() && running.https_addr.is_none(),
            running.https_addr,
            running.metrics_addr,
            &credentials,
            keys,
        )
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = running.wait() => r?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; instances keep running");
    running.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
