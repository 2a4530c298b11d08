//! crsd-store: the metadata store.
//!
//! SQLite through sqlx by default (one file under the data dir, WAL, `synchronous=FULL`, mode
//! 0600 because it holds the API secret keys), with the migrations embedded and applied at open.
//! Writes go through [`Store::write`], which serialises writers in-process (SQLite has one
//! writer) and begins `IMMEDIATE`: SQLite's write lock is taken at `BEGIN`, where a busy lock
//! is waited for (up to the busy timeout), never at a transaction's first write after a
//! read, where SQLite fails at once. It yields a [`WriteTx`]: a state change and the task row
//! that carries it out commit together.
//!
//! A failed transaction never poisons the pool. SQLite may roll a transaction back by itself
//! on an error (`SQLITE_FULL`, `SQLITE_IOERR`, ...); sqlx's ROLLBACK then fails and its
//! connection still counts one open transaction, so its next `BEGIN IMMEDIATE` would fail
//! ("begin_with at non-zero transaction depth") for as long as the process lives. So a
//! [`WriteTx`] whose BEGIN or COMMIT failed is rolled back or, if that fails too, its
//! connection is closed instead of going back to the pool; and the pool closes any connection
//! handed out that still counts a transaction (one whose statement failed and whose
//! rollback failed after it was dropped).
//!
//! This crate holds no business rules: it stores and finds what the service decides.

mod rows;
mod snapshot;

use chrono::{DateTime, Utc};
use crsd_core::model::{
    Account, Backup, BackupState, CommandSnapshot, Deal, Instance, InstanceStatus, NodeSample,
    Task, TaskKind, TaskStatus, TaskView, WarmNode, WarmState,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous, SqliteTransactionManager,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqlitePool, TransactionManager};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use rows::{from_millis, millis};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<StoreError> for crsd_core::Error {
    fn from(e: StoreError) -> crsd_core::Error {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        crsd_core::Error::Internal(detail)
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    instances: Arc<snapshot::InstanceSnapshot>,
}

/// Which instances DescribeRedis-like listings want.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub app_id: i64,
    pub ids: Vec<String>,
    /// Substring of the instance name.
    pub name: Option<String>,
    /// Substring of the instance's address (`vip`).
    pub address: Option<String>,
    pub project_ids: Vec<i64>,
    /// Empty: every zone.
    pub zone_ids: Vec<i64>,
    pub vpc_ids: Vec<i64>,
    pub un_vpc_ids: Vec<String>,
    pub subnet_ids: Vec<i64>,
    pub un_subnet_ids: Vec<String>,
    pub order_by: InstanceOrder,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InstanceOrder {
    Id,
    Project,
    #[default]
    CreateTime,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub app_id: i64,
    pub instance_id: Option<String>,
    pub instance_name: Option<String>,
    pub begin: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub statuses: Vec<i64>,
    pub kinds: Vec<TaskKind>,
    pub limit: i64,
    pub offset: i64,
}

/// Which backups GetRedisBackupList-like listings want: one instance's, newest first.
#[derive(Debug, Clone, Default)]
pub struct BackupFilter {
    pub app_id: i64,
    pub instance_id: String,
    /// Inclusive bounds on `started_at`.
    pub begin: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Only backups whose `Backup::status_code` is one of these; all when empty.
    pub statuses: Vec<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// An account as the operator sees it (`crsd account list`): what the APIs use, whether it is
/// disabled and when it was created.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub account: Account,
    /// A disabled account's keys are refused by every API.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A task to record with the state change it carries out.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub app_id: i64,
    pub kind: TaskKind,
    pub instance_id: Option<String>,
    pub deal_id: Option<i64>,
    pub payload: serde_json::Value,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies the migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        prepare_file(path)?;
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // The pool pings a returned connection, which runs the rollback a dropped
            // transaction queued; one that still counts an open transaction after that is
            // closed here rather than handed out (its next BEGIN would fail).
            .before_acquire(|conn, _meta| {
                Box::pin(async move {
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "closing a database connection left inside a failed transaction"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            instances: Arc::default(),
        })
    }

    /// Opens an existing database for reading only: no migration, no write, no lock a
    /// writer would wait for. For short-lived helper processes that run beside crsd
    /// (Sentinel's `address-hook`, several at once at every failover).
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        Ok(Store {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            instances: Arc::default(),
        })
    }

    /// Whether `path` holds a crsd database (a SQLite file with crsd's tables), read without
    /// creating or changing anything: operator commands refuse a folder where it does not
    /// rather than make an empty database there. An error is a file that exists but cannot
    /// be read as SQLite (or not at all).
    pub async fn holds_database(path: &Path) -> Result<bool> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(StoreError::File {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let tables: i64 = sqlx::query(
            "SELECT COUNT(*) FROM sqlite_master
             WHERE type = 'table' AND name IN ('_sqlx_migrations', 'accounts', 'instances')",
        )
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
        conn.close().await?;
        Ok(tables == 3)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins the one write transaction.
    pub async fn write(&self) -> Result<WriteTx> {
        let guard = self.writer.clone().lock_owned().await;
        // IMMEDIATE: take SQLite's write lock at BEGIN, where a busy lock is waited for. A
        // dropped WriteTx releases `writer` at once but rolls back on its connection a moment
        // later; a deferred transaction that read meanwhile and then wrote would fail at once
        // with SQLITE_BUSY (SQLite never waits when a reader tries to become a writer).
        let mut conn = self.pool.acquire().await?;
        let begun =
            SqliteTransactionManager::begin(&mut conn, Some(Cow::Borrowed("BEGIN IMMEDIATE")))
                .await;
        if let Err(e) = begun {
            settle_failed(conn).await;
            return Err(e.into());
        }
        Ok(WriteTx {
            conn: Some(conn),
            _guard: guard,
            instances: self.instances.clone(),
            wrote_instances: false,
        })
    }

    // ---------------- accounts ----------------

    pub async fn account_by_secret_id(&self, secret_id: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE secret_id = ?")
            .bind(secret_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::account(&r)).transpose()
    }

    pub async fn account(&self, app_id: i64) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE app_id = ?")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::account(&r)).transpose()
    }

    /// The account a SecretId names with whether it is disabled (signature verification).
    pub async fn account_record_by_secret_id(
        &self,
        secret_id: &str,
    ) -> Result<Option<AccountRecord>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE secret_id = ?")
            .bind(secret_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::account_record(&r)).transpose()
    }

    /// Every account, disabled ones included, by app id.
    pub async fn account_records(&self) -> Result<Vec<AccountRecord>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY app_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::account_record).collect()
    }

    pub async fn count_accounts(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// The ports reserved for the proxy's spare frontends, lowest first (a read: no write
    /// lock, for the common case where none is missing).
    pub async fn spare_ports(&self) -> Result<Vec<u16>> {
        let mut conn = self.pool.acquire().await?;
        read_spare_ports(&mut conn).await
    }

    // ---------------- instances ----------------

    pub async fn instance(&self, id: &str) -> Result<Option<Instance>> {
        let mut conn = self.pool.acquire().await?;
        read_instance(&mut conn, id).await
    }

    /// Every instance that still has processes or data (not deleted), with its nodes.
    /// The warm pool's nodes, the oldest first.
    pub async fn warm_nodes(&self) -> Result<Vec<WarmNode>> {
        let rows = sqlx::query("SELECT * FROM warm_nodes ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::warm_node).collect()
    }

    pub async fn live_instances(&self) -> Result<Vec<Instance>> {
        let rows = sqlx::query("SELECT * FROM instances WHERE status != ? ORDER BY created_at")
            .bind(InstanceStatus::Deleted.code())
            .fetch_all(&self.pool)
            .await?;
        let mut list: Vec<Instance> = rows.iter().map(rows::instance).collect::<Result<_>>()?;
        let node_rows = sqlx::query("SELECT * FROM nodes ORDER BY instance_id, seq")
            .fetch_all(&self.pool)
            .await?;
        let mut by_instance: std::collections::HashMap<String, Vec<crsd_core::model::Node>> =
            std::collections::HashMap::new();
        for r in &node_rows {
            let instance_id: String = r.try_get("instance_id")?;
            by_instance
                .entry(instance_id)
                .or_default()
                .push(rows::node(r)?);
        }
        for inst in &mut list {
            inst.nodes = by_instance.remove(&inst.id).unwrap_or_default();
        }
        Ok(list)
    }

    /// How many instances that are not deleted have each status (statuses with none are
    /// left out); for the metrics, one query.
    pub async fn instances_by_status(&self) -> Result<Vec<(InstanceStatus, i64)>> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) FROM instances WHERE status != ? GROUP BY status")
                .bind(InstanceStatus::Deleted.code())
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let code: i64 = r.try_get(0)?;
            if let Some(status) = InstanceStatus::from_code(code) {
                out.push((status, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// One page of an account's visible instances and the total count, from the in-memory
    /// copy (see the `snapshot` module).
    pub async fn list_instances(&self, f: &InstanceFilter) -> Result<(i64, Vec<Instance>)> {
        if let Some(all) = self.instances.get() {
            return Ok(snapshot::page(&all, f));
        }
        let generation = self.instances.generation();
        let all = Arc::new(snapshot::group(self.live_instances().await?));
        self.instances.install(generation, all.clone());
        Ok(snapshot::page(&all, f))
    }

    // ---------------- deals ----------------

    pub async fn deal(&self, id: i64) -> Result<Option<Deal>> {
        let row = sqlx::query("SELECT * FROM deals WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::deal(&r)).transpose()
    }

    // ---------------- backups ----------------

    /// The recorded size of every backup whose file the backup store holds (all but the
    /// expired ones), in bytes; for the metrics, one query.
    pub async fn backup_bytes(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COALESCE(SUM(size), 0) FROM backups WHERE state != ?")
                .bind(crsd_core::model::BackupState::Expired.code())
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    pub async fn backup(&self, id: &str) -> Result<Option<Backup>> {
        let row = sqlx::query("SELECT * FROM backups WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::backup(&r)).transpose()
    }

    /// One page of an instance's backups, newest first, and the total count.
    pub async fn list_backups(&self, f: &BackupFilter) -> Result<(i64, Vec<Backup>)> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM backups");
        push_backup_where(&mut count, f);
        let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM backups");
        push_backup_where(&mut q, f);
        q.push(" ORDER BY started_at DESC, id DESC LIMIT ");
        q.push_bind(f.limit);
        q.push(" OFFSET ");
        q.push_bind(f.offset);
        let rows = q.build().fetch_all(&self.pool).await?;
        let list = rows.iter().map(rows::backup).collect::<Result<_>>()?;
        Ok((total, list))
    }

    /// Every backup record of `instance_id`, whoever owns it and whatever became of the
    /// instance (deleted ones included), expired ones too, newest first.
    pub async fn instance_backups(&self, instance_id: &str) -> Result<Vec<Backup>> {
        let rows = sqlx::query(
            "SELECT * FROM backups WHERE instance_id = ? ORDER BY started_at DESC, id DESC",
        )
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::backup).collect()
    }

    /// Unexpired backups that started before `before`, oldest first (retention).
    pub async fn backups_started_before(&self, before: DateTime<Utc>) -> Result<Vec<Backup>> {
        let rows = sqlx::query(
            "SELECT * FROM backups WHERE state != ? AND started_at < ? ORDER BY started_at",
        )
        .bind(BackupState::Expired.code())
        .bind(millis(before))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::backup).collect()
    }

    /// An instance's automatic backup settings: (comma-separated day names, local hour).
    pub async fn backup_config(&self, instance_id: &str) -> Result<Option<(String, i64)>> {
        let row =
            sqlx::query("SELECT week_days, start_hour FROM backup_configs WHERE instance_id = ?")
                .bind(instance_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Every instance's own daily backup settings (days, start hour), by instance id: what
    /// the daily backup pass reads once instead of once per instance.
    pub async fn backup_configs(&self) -> Result<std::collections::HashMap<String, (String, i64)>> {
        let rows = sqlx::query("SELECT instance_id, week_days, start_hour FROM backup_configs")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect()
    }

    /// The instances that have their daily backup of `day` recorded.
    pub async fn daily_backups_on(&self, day: &str) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT instance_id FROM daily_backups WHERE day = ?")
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Every backup record not expired (the startup sweep keeps the files these name).
    pub async fn live_backups(&self) -> Result<Vec<Backup>> {
        let rows = sqlx::query("SELECT * FROM backups WHERE state != ?")
            .bind(BackupState::Expired.code())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::backup).collect()
    }

    // ---------------- tasks ----------------

    /// When the newest succeeded task of one of `kinds` on `instance_id` ended.
    pub async fn last_task_end(
        &self,
        instance_id: &str,
        kinds: &[TaskKind],
    ) -> Result<Option<DateTime<Utc>>> {
        let mut last: Option<DateTime<Utc>> = None;
        for kind in kinds {
            let row = sqlx::query(
                "SELECT MAX(updated_at) FROM tasks WHERE instance_id = ? AND kind = ? AND status = ?",
            )
            .bind(instance_id)
            .bind(kind.name())
            .bind(TaskStatus::Succeeded.code())
            .fetch_one(&self.pool)
            .await?;
            if let Some(ms) = row.try_get::<Option<i64>, _>(0)? {
                let at = rows::from_millis(ms);
                last = Some(last.map_or(at, |l| l.max(at)));
            }
        }
        Ok(last)
    }

    pub async fn task(&self, id: i64) -> Result<Option<Task>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::task(&r)).transpose()
    }

    /// The tasks with these ids (those that exist): one read per 500 ids.
    pub async fn tasks(&self, ids: &[i64]) -> Result<Vec<Task>> {
        let mut tasks = Vec::new();
        for chunk in ids.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM tasks WHERE id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            list.push_unseparated(")");
            for row in q.build().fetch_all(&self.pool).await? {
                tasks.push(rows::task(&row)?);
            }
        }
        Ok(tasks)
    }

    /// The newest `limit` tasks of every account, newest first.
    pub async fn recent_tasks(&self, limit: i64) -> Result<Vec<Task>> {
        let rows = sqlx::query("SELECT * FROM tasks ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Tasks not yet finished (pending or running), oldest first.
    pub async fn unfinished_tasks(&self) -> Result<Vec<Task>> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE status IN (0, 1) ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::task).collect()
    }

    pub async fn list_tasks(&self, f: &TaskFilter) -> Result<(i64, Vec<TaskView>)> {
        let base = "FROM tasks t LEFT JOIN instances i ON i.id = t.instance_id";
        let mut count = QueryBuilder::<Sqlite>::new(format!("SELECT COUNT(*) {base}"));
        push_task_where(&mut count, f);
        let total: i64 = count.build().fetch_one(&self.pool).await?.try_get(0)?;

        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT t.*, COALESCE(i.name, '') AS instance_name, COALESCE(i.project_id, 0) AS instance_project {base}"
        ));
        push_task_where(&mut q, f);
        q.push(" ORDER BY t.id DESC LIMIT ");
        q.push_bind(f.limit);
        q.push(" OFFSET ");
        q.push_bind(f.offset);
        let rows = q.build().fetch_all(&self.pool).await?;
        let list = rows
            .iter()
            .map(|r| {
                Ok(TaskView {
                    task: rows::task(r)?,
                    instance_name: r.try_get("instance_name")?,
                    project_id: r.try_get("instance_project")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok((total, list))
    }

    // ---------------- node samples ----------------

    /// The samples of instance `instance_id`'s nodes taken from `from` to `to` (both
    /// inclusive, whole seconds), oldest first and, within a round, by node id.
    pub async fn node_samples(
        &self,
        instance_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<NodeSample>> {
        let rows = sqlx::query(
            "SELECT * FROM node_samples WHERE instance_id = ? AND at >= ? AND at <= ?
             ORDER BY at, node_id",
        )
        .bind(instance_id)
        .bind(from.timestamp())
        .bind(to.timestamp())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::node_sample).collect()
    }

    // ---------------- command snapshots ----------------

    /// Node `node_id`'s newest command snapshot taken at or before `at`.
    pub async fn command_snapshot_before(
        &self,
        node_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandSnapshot>> {
        let row = sqlx::query(
            "SELECT * FROM command_snapshots WHERE node_id = ? AND at <= ?
             ORDER BY at DESC LIMIT 1",
        )
        .bind(node_id)
        .bind(at.timestamp())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::command_snapshot).transpose()
    }
}

fn params_json(i: &Instance) -> Result<String> {
    serde_json::to_string(&i.params)
        .map_err(|e| StoreError::Corrupt(format!("instance params: {e}")))
}

fn push_backup_where(q: &mut QueryBuilder<'_, Sqlite>, f: &BackupFilter) {
    q.push(" WHERE app_id = ");
    q.push_bind(f.app_id);
    q.push(" AND instance_id = ");
    q.push_bind(f.instance_id.clone());
    if let Some(begin) = f.begin {
        q.push(" AND started_at >= ");
        q.push_bind(millis(begin));
    }
    if let Some(end) = f.end {
        q.push(" AND started_at <= ");
        q.push_bind(millis(end));
    }
    // `Backup::status_code` in SQL: a normal backup a task holds shows 1, any other its state.
    let status = format!(
        "(CASE WHEN lock_task IS NOT NULL AND state = {} THEN 1 ELSE state END)",
        BackupState::Normal.code()
    );
    push_in(q, &status, &f.statuses);
}

fn push_task_where(q: &mut QueryBuilder<'_, Sqlite>, f: &TaskFilter) {
    q.push(" WHERE t.app_id = ");
    q.push_bind(f.app_id);
    if let Some(id) = &f.instance_id {
        q.push(" AND t.instance_id = ");
        q.push_bind(id.clone());
    }
    if let Some(name) = &f.instance_name {
        q.push(" AND i.name = ");
        q.push_bind(name.clone());
    }
    if let Some(begin) = f.begin {
        q.push(" AND t.created_at >= ");
        q.push_bind(millis(begin));
    }
    if let Some(end) = f.end {
        q.push(" AND t.created_at <= ");
        q.push_bind(millis(end));
    }
    push_in(q, "t.status", &f.statuses);
    let kinds: Vec<String> = f.kinds.iter().map(|k| k.name().to_string()).collect();
    push_in(q, "t.kind", &kinds);
}

fn push_in<'a, T>(q: &mut QueryBuilder<'a, Sqlite>, column: &str, values: &[T])
where
    T: Clone + 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send,
{
    if values.is_empty() {
        return;
    }
    q.push(format!(" AND {column} IN ("));
    let mut sep = q.separated(", ");
    for v in values {
        sep.push_bind(v.clone());
    }
    q.push(")");
}

fn prepare_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(())
}

/// After a failed BEGIN or COMMIT: rolls back what may still be open; a connection that still
/// counts a transaction afterwards (SQLite already rolled it back, so sqlx's ROLLBACK failed)
/// is closed, never returned to the pool.
async fn settle_failed(mut conn: PoolConnection<Sqlite>) {
    if conn.is_in_transaction() {
        if let Err(e) = SqliteTransactionManager::rollback(&mut conn).await {
            tracing::warn!(error = %e, "rollback after a failed transaction failed");
        }
    }
    if conn.is_in_transaction() {
        tracing::warn!("closing a database connection left inside a failed transaction");
        let _ = conn.detach().close().await;
    }
}

/// The one write transaction; dropped without [`WriteTx::commit`] it rolls back.
pub struct WriteTx {
    /// Some until the commit; the transaction is open on it.
    conn: Option<PoolConnection<Sqlite>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    instances: Arc<snapshot::InstanceSnapshot>,
    wrote_instances: bool,
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            // Queued on the connection, run before anything else uses it (the pool pings a
            // returned connection); if it fails, the pool closes the connection.
            SqliteTransactionManager::start_rollback(conn);
        }
    }
}

impl WriteTx {
    pub async fn commit(mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Err(StoreError::Corrupt(
                "write transaction already ended".into(),
            ));
        };
        if let Err(e) = SqliteTransactionManager::commit(&mut conn).await {
            settle_failed(conn).await;
            return Err(e.into());
        }
        if self.wrote_instances {
            self.instances.invalidate();
        }
        Ok(())
    }

    /// The connection the transaction is open on.
    fn conn(&mut self) -> Result<&mut SqliteConnection> {
        match self.conn.as_deref_mut() {
            Some(c) => Ok(c),
            None => Err(StoreError::Corrupt(
                "write transaction already ended".into(),
            )),
        }
    }

    pub async fn insert_account(&mut self, a: &Account, now: DateTime<Utc>) -> Result<i64> {
        let id = sqlx::query(
            "INSERT INTO accounts (app_id, uin, name, secret_id, secret_key, balance, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(if a.app_id > 0 { Some(a.app_id) } else { None })
        .bind(&a.uin)
        .bind(&a.name)
        .bind(&a.secret_id)
        .bind(&a.secret_key)
        .bind(a.balance)
        .bind(millis(now))
        .execute(self.conn()?)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    pub async fn max_app_id(&mut self) -> Result<Option<i64>> {
        Ok(sqlx::query("SELECT MAX(app_id) FROM accounts")
            .fetch_one(self.conn()?)
            .await?
            .try_get(0)?)
    }

    pub async fn account(&mut self, app_id: i64) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE app_id = ?")
            .bind(app_id)
            .fetch_optional(self.conn()?)
            .await?;
        row.map(|r| rows::account(&r)).transpose()
    }

    /// Disables or enables account `app_id`; false if there is no such account.
    pub async fn set_account_disabled(&mut self, app_id: i64, disabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE accounts SET disabled = ? WHERE app_id = ?")
            .bind(disabled)
            .bind(app_id)
            .execute(self.conn()?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the keys of account `app_id`; false if there is no such account. The
    /// SecretId is unique: one another account holds fails.
    pub async fn set_account_keys(
        &mut self,
        app_id: i64,
        secret_id: &str,
        secret_key: &str,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE accounts SET secret_id = ?, secret_key = ? WHERE app_id = ?")
                .bind(secret_id)
                .bind(secret_key)
                .bind(app_id)
                .execute(self.conn()?)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_balance(&mut self, app_id: i64, balance: i64) -> Result<()> {
        sqlx::query("UPDATE accounts SET balance = ? WHERE app_id = ?")
            .bind(balance)
            .bind(app_id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    pub async fn instance(&mut self, id: &str) -> Result<Option<Instance>> {
        read_instance(self.conn()?, id).await
    }

    /// The ports reserved for the proxy's spare frontends, lowest first.
    pub async fn spare_ports(&mut self) -> Result<Vec<u16>> {
        read_spare_ports(self.conn()?).await
    }

    /// Reserves `port` for a spare frontend.
    pub async fn add_spare_port(&mut self, port: u16) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO spare_ports (port) VALUES (?)")
            .bind(i64::from(port))
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    /// Takes a spare frontend's port out of the reserve for an instance: `wanted` if it is
    /// one, else the lowest when `wanted` is `None`. `None` if there is no such port.
    pub async fn take_spare_port(&mut self, wanted: Option<u16>) -> Result<Option<u16>> {
        let port = match wanted {
            Some(p) => self.spare_ports().await?.into_iter().find(|s| *s == p),
            None => self.spare_ports().await?.into_iter().next(),
        };
        if let Some(p) = port {
            sqlx::query("DELETE FROM spare_ports WHERE port = ?")
                .bind(i64::from(p))
                .execute(self.conn()?)
                .await?;
        }
        Ok(port)
    }

    /// Adds a node to the warm pool.
    pub async fn insert_warm_node(&mut self, w: &WarmNode) -> Result<()> {
        sqlx::query(
            "INSERT INTO warm_nodes (id, cluster, port, admin_secret, repl_secret, created_at, state)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&w.id)
        .bind(w.cluster)
        .bind(i64::from(w.port))
        .bind(&w.admin_secret)
        .bind(&w.repl_secret)
        .bind(millis(w.created_at))
        .bind(w.state.name())
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    /// Moves a warm node from `from` to `to`; false (nothing changed) when it is not in
    /// `from` any more, e.g. a create took it.
    pub async fn set_warm_state(
        &mut self,
        id: &str,
        from: WarmState,
        to: WarmState,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE warm_nodes SET state = ? WHERE id = ? AND state = ?")
            .bind(to.name())
            .bind(id)
            .bind(from.name())
            .execute(self.conn()?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes `n` ready warm nodes of the kind (`cluster`) out of the pool, the oldest first:
    /// all `n`, or none when the pool holds fewer.
    pub async fn take_warm_nodes(&mut self, cluster: bool, n: usize) -> Result<Vec<WarmNode>> {
        let rows = sqlx::query(
            "SELECT * FROM warm_nodes WHERE cluster = ? AND state = 'ready'
             ORDER BY created_at, id LIMIT ?",
        )
        .bind(cluster)
        .bind(n as i64)
        .fetch_all(self.conn()?)
        .await?;
        if rows.len() < n {
            return Ok(Vec::new());
        }
        let taken: Vec<WarmNode> = rows.iter().map(rows::warm_node).collect::<Result<_>>()?;
        for w in &taken {
            self.delete_warm_node(&w.id).await?;
        }
        Ok(taken)
    }

    /// Removes a node from the warm pool (taken, or stopped by the pool's keeper).
    pub async fn delete_warm_node(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM warm_nodes WHERE id = ?")
            .bind(id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    /// Ports held by nodes, by live instances' stable addresses (a deleted instance has none)
    /// and by the proxy's spare frontends. and by the warm pool's nodes.
    pub async fn used_ports(&mut self) -> Result<Vec<u16>> {
        let rows = sqlx::query(
            "SELECT port FROM nodes UNION SELECT port FROM instances WHERE port != 0 AND status != -3
             UNION SELECT port FROM spare_ports UNION SELECT port FROM warm_nodes",
        )
            .fetch_all(self.conn()?)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<i64, _>(0)? as u16))
            .collect()
    }

    /// Ports of the nodes of cluster instances (their cluster buses listen above them).
    pub async fn cluster_node_ports(&mut self) -> Result<Vec<u16>> {
        let rows = sqlx::query(
            "SELECT n.port FROM nodes n JOIN instances i ON i.id = n.instance_id
             WHERE i.type_id = ? UNION SELECT port FROM warm_nodes WHERE cluster = 1",
        )
        .bind(crsd_core::catalog::CLUSTER_TYPE_ID)
        .fetch_all(self.conn()?)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<i64, _>(0)? as u16))
            .collect()
    }

    /// Addresses of the address pool taken by nodes and by live instances (an address belongs
    /// to one node or one instance, at every port).
    pub async fn used_hosts(&mut self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT host FROM nodes WHERE host != '' UNION SELECT vip FROM instances WHERE status != -3",
        )
        .fetch_all(self.conn()?)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Makes the stored nodes of `i` exactly `i.nodes`: removed ones are deleted, new ones
    /// inserted, changed roles and ports written.
    async fn write_nodes(&mut self, i: &Instance) -> Result<()> {
        let stored = sqlx::query("SELECT id FROM nodes WHERE instance_id = ?")
            .bind(&i.id)
            .fetch_all(self.conn()?)
            .await?;
        for r in &stored {
            let id: String = r.try_get(0)?;
            if !i.nodes.iter().any(|n| n.id == id) {
                sqlx::query("DELETE FROM nodes WHERE id = ?")
                    .bind(&id)
                    .execute(self.conn()?)
                    .await?;
            }
        }
        for n in &i.nodes {
            sqlx::query(
                "INSERT INTO nodes (id, instance_id, seq, shard, role, port, host, folder, warm_secret)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET role = excluded.role, port = excluded.port,
                   shard = excluded.shard, host = excluded.host,
                   warm_secret = excluded.warm_secret",
            )
            .bind(&n.id)
            .bind(&i.id)
            .bind(n.seq)
            .bind(n.shard)
            .bind(n.role.name())
            .bind(n.port as i64)
            .bind(&n.host)
            .bind(&n.folder)
            .bind(&n.warm_secret)
            .execute(self.conn()?)
            .await?;
        }
        Ok(())
    }

    pub async fn insert_instance(&mut self, i: &Instance) -> Result<()> {
        self.wrote_instances = true;
        sqlx::query(
            "INSERT INTO instances (id, app_id, name, project_id, zone_id, region_id, type_id, mem_mb,
               status, vip, vpc_id, un_vpc_id, subnet_id, un_subnet_id, created_at,
               deadline, auto_renew, password_hash, password_acl, admin_secret, repl_secret, lock_task,
               params, billing_mode, next_node_seq, port)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&i.id)
        .bind(i.app_id)
        .bind(&i.name)
        .bind(i.project_id)
        .bind(i.zone_id)
        .bind(i.region_id)
        .bind(i.type_id)
        .bind(i.mem_mb)
        .bind(i.status.code())
        .bind(&i.vip)
        .bind(i.vpc_id)
        .bind(&i.un_vpc_id)
        .bind(i.subnet_id)
        .bind(&i.un_subnet_id)
        .bind(millis(i.created_at))
        .bind(millis(i.deadline))
        .bind(i.auto_renew)
        .bind(&i.password_hash)
        .bind(&i.password_acl)
        .bind(&i.admin_secret)
        .bind(&i.repl_secret)
        .bind(i.lock_task)
        .bind(params_json(i)?)
        .bind(i.billing.code())
        .bind(i.node_seq)
        .bind(i.port as i64)
        .execute(self.conn()?)
        .await?;
        self.write_nodes(i).await
    }

    /// Writes every mutable column of `i` (the id, owner and secrets of crsd's users never change).
    pub async fn update_instance(&mut self, i: &Instance) -> Result<()> {
        self.wrote_instances = true;
        sqlx::query(
            "UPDATE instances SET name = ?, project_id = ?, mem_mb = ?, status = ?, deadline = ?,
               auto_renew = ?, password_hash = ?, password_acl = ?, lock_task = ?, params = ?,
               billing_mode = ?, next_node_seq = ?, port = ?
             WHERE id = ?",
        )
        .bind(&i.name)
        .bind(i.project_id)
        .bind(i.mem_mb)
        .bind(i.status.code())
        .bind(millis(i.deadline))
        .bind(i.auto_renew)
        .bind(&i.password_hash)
        .bind(&i.password_acl)
        .bind(i.lock_task)
        .bind(params_json(i)?)
        .bind(i.billing.code())
        .bind(i.node_seq)
        .bind(i.port as i64)
        .bind(&i.id)
        .execute(self.conn()?)
        .await?;
        self.write_nodes(i).await
    }

    /// Adds `n` kills by the memory ceiling to the instance's count (`update_instance` leaves
    /// the count alone, so a task ending at the same time cannot lose one).
    pub async fn add_oom_kills(&mut self, id: &str, n: i64) -> Result<()> {
        self.wrote_instances = true;
        sqlx::query("UPDATE instances SET oom_kills = oom_kills + ? WHERE id = ?")
            .bind(n)
            .bind(id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    pub async fn insert_deal(&mut self, d: &Deal) -> Result<i64> {
        let detail = serde_json::to_string(&d.detail)
            .map_err(|e| StoreError::Corrupt(format!("goods detail: {e}")))?;
        let id = sqlx::query(
            "INSERT INTO deals (name, app_id, zone_id, goods_num, creator, status, price, detail,
               created_at, overdue_at, end_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.name)
        .bind(d.app_id)
        .bind(d.zone_id)
        .bind(d.goods_num)
        .bind(&d.creator)
        .bind(d.status)
        .bind(d.price)
        .bind(detail)
        .bind(millis(d.created_at))
        .bind(millis(d.overdue_at))
        .bind(d.end_at.map(millis))
        .execute(self.conn()?)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    pub async fn set_deal_name(&mut self, id: i64, name: &str) -> Result<()> {
        sqlx::query("UPDATE deals SET name = ? WHERE id = ?")
            .bind(name)
            .bind(id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    pub async fn deal(&mut self, id: i64) -> Result<Option<Deal>> {
        let row = sqlx::query("SELECT * FROM deals WHERE id = ?")
            .bind(id)
            .fetch_optional(self.conn()?)
            .await?;
        row.map(|r| rows::deal(&r)).transpose()
    }

    pub async fn set_deal_status(
        &mut self,
        id: i64,
        status: i64,
        end_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query("UPDATE deals SET status = ?, end_at = ? WHERE id = ?")
            .bind(status)
            .bind(end_at.map(millis))
            .bind(id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    pub async fn insert_task(&mut self, t: &NewTask, now: DateTime<Utc>) -> Result<i64> {
        let id = sqlx::query(
            "INSERT INTO tasks (app_id, kind, instance_id, deal_id, status, step, payload, created_at, updated_at)
             VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?)",
        )
        .bind(t.app_id)
        .bind(t.kind.name())
        .bind(&t.instance_id)
        .bind(t.deal_id)
        .bind(t.payload.to_string())
        .bind(millis(now))
        .bind(millis(now))
        .execute(self.conn()?)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    pub async fn task(&mut self, id: i64) -> Result<Option<Task>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_optional(self.conn()?)
            .await?;
        row.map(|r| rows::task(&r)).transpose()
    }

    pub async fn backup(&mut self, id: &str) -> Result<Option<Backup>> {
        let row = sqlx::query("SELECT * FROM backups WHERE id = ?")
            .bind(id)
            .fetch_optional(self.conn()?)
            .await?;
        row.map(|r| rows::backup(&r)).transpose()
    }

    pub async fn insert_backup(&mut self, b: &Backup) -> Result<()> {
        sqlx::query(
            "INSERT INTO backups (id, app_id, instance_id, kind, remark, state, lock_task, size,
               sha256, started_at, finished_at, shards)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.id)
        .bind(b.app_id)
        .bind(&b.instance_id)
        .bind(b.kind.name())
        .bind(&b.remark)
        .bind(b.state.code())
        .bind(b.lock_task)
        .bind(b.size as i64)
        .bind(&b.sha256)
        .bind(millis(b.started_at))
        .bind(millis(b.finished_at))
        .bind(serde_json::to_string(&b.shards).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    /// Writes the mutable columns of `b`: its state and lock.
    pub async fn update_backup(&mut self, b: &Backup) -> Result<()> {
        sqlx::query("UPDATE backups SET state = ?, lock_task = ? WHERE id = ?")
            .bind(b.state.code())
            .bind(b.lock_task)
            .bind(&b.id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    /// Forgets a backup (DeleteBackup); the caller removes its file after the commit.
    pub async fn delete_backup(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM backups WHERE id = ?")
            .bind(id)
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    /// Tasks of `kind` on `instance_id` created at or after `since` that did not fail, whose
    /// payload field `field` equals `value` (e.g. manual backups of the day).
    pub async fn count_tasks_since(
        &mut self,
        instance_id: &str,
        kind: TaskKind,
        since: DateTime<Utc>,
        field: &str,
        value: &str,
    ) -> Result<i64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM tasks WHERE instance_id = ? AND kind = ? AND created_at >= ?
               AND status IN (?, ?, ?) AND json_extract(payload, '$.' || ?) = ?",
        )
        .bind(instance_id)
        .bind(kind.name())
        .bind(millis(since))
        .bind(TaskStatus::Pending.code())
        .bind(TaskStatus::Running.code())
        .bind(TaskStatus::Succeeded.code())
        .bind(field)
        .bind(value)
        .fetch_one(self.conn()?)
        .await?
        .try_get(0)?;
        Ok(n)
    }

    /// Records the daily backup of `instance_id` for `day`; false if that day already has one.
    pub async fn claim_daily_backup(
        &mut self,
        day: &str,
        instance_id: &str,
        task_id: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO daily_backups (day, instance_id, task_id) VALUES (?, ?, ?)
             ON CONFLICT (day, instance_id) DO NOTHING",
        )
        .bind(day)
        .bind(instance_id)
        .bind(task_id)
        .execute(self.conn()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_backup_config(
        &mut self,
        instance_id: &str,
        week_days: &str,
        start_hour: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO backup_configs (instance_id, week_days, start_hour) VALUES (?, ?, ?)
             ON CONFLICT (instance_id) DO UPDATE SET week_days = excluded.week_days,
               start_hour = excluded.start_hour",
        )
        .bind(instance_id)
        .bind(week_days)
        .bind(start_hour)
        .execute(self.conn()?)
        .await?;
        Ok(())
    }

    /// Whether `instance_id` has its daily backup for `day`.
    pub async fn has_daily_backup(&mut self, day: &str, instance_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM daily_backups WHERE day = ? AND instance_id = ?")
            .bind(day)
            .bind(instance_id)
            .fetch_optional(self.conn()?)
            .await?;
        Ok(row.is_some())
    }

    /// Records one sampling round. A node's second sample in the same second replaces the
    /// first (one row per node and second).
    pub async fn insert_node_samples(&mut self, samples: &[NodeSample]) -> Result<()> {
        // 17 bound values a row: 500 rows stay well under SQLite's limit of 32,766.
        for chunk in samples.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO node_samples (node_id, instance_id, at, role, span_ms,
                   used_memory, ops_per_sec, connections, keyspace_hits, keyspace_misses,
                   net_in_bps, net_out_bps, keys, expired_keys, evicted_keys, repl_lag_bytes,
                   cpu_secs) ",
            );
            q.push_values(chunk, |mut b, s| {
                b.push_bind(&s.node_id)
                    .push_bind(&s.instance_id)
                    .push_bind(s.at.timestamp())
                    .push_bind(s.role.name())
                    .push_bind(s.span_ms)
                    .push_bind(s.used_memory)
                    .push_bind(s.ops_per_sec)
                    .push_bind(s.connections)
                    .push_bind(s.keyspace_hits)
                    .push_bind(s.keyspace_misses)
                    .push_bind(s.net_in_bps)
                    .push_bind(s.net_out_bps)
                    .push_bind(s.keys)
                    .push_bind(s.expired_keys)
                    .push_bind(s.evicted_keys)
                    .push_bind(s.repl_lag_bytes)
                    .push_bind(s.cpu_secs);
            });
            q.build().execute(self.conn()?).await?;
        }
        Ok(())
    }

    /// Records command snapshots; a node's second one in the same second replaces the first.
    pub async fn insert_command_snapshots(&mut self, snaps: &[CommandSnapshot]) -> Result<()> {
        for chunk in snaps.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO command_snapshots (node_id, instance_id, at, run_id,
                   commands) ",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for s in chunk {
                let json = serde_json::to_string(&s.commands)
                    .map_err(|e| StoreError::Corrupt(format!("command snapshot: {e}")))?;
                rows.push((s, json));
            }
            q.push_values(rows, |mut b, (s, json)| {
                b.push_bind(s.node_id.clone())
                    .push_bind(s.instance_id.clone())
                    .push_bind(s.at.timestamp())
                    .push_bind(s.run_id.clone())
                    .push_bind(json);
            });
            q.build().execute(self.conn()?).await?;
        }
        Ok(())
    }

    /// Forgets up to `max_rows` of the oldest command snapshots taken before `before`;
    /// returns how many (fewer than `max_rows`: none older is left).
    pub async fn prune_command_snapshots(
        &mut self,
        before: DateTime<Utc>,
        max_rows: i64,
    ) -> Result<u64> {
        self.prune_oldest("command_snapshots", before, max_rows)
            .await
    }

    /// Forgets up to `max_rows` of the oldest samples taken before `before`; returns how many
    /// it forgot (fewer than `max_rows`: none older is left). Bounded, so that catching up
    /// after a long stop never holds the write lock for long.
    pub async fn prune_node_samples(
        &mut self,
        before: DateTime<Utc>,
        max_rows: i64,
    ) -> Result<u64> {
        self.prune_oldest("node_samples", before, max_rows).await
    }

    /// Deletes up to `max_rows` of `table`'s oldest rows (by its `at` column) older than
    /// `before`; how many. `table` is one of ours, never a caller's text.
    async fn prune_oldest(
        &mut self,
        table: &'static str,
        before: DateTime<Utc>,
        max_rows: i64,
    ) -> Result<u64> {
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE rowid IN
               (SELECT rowid FROM {table} WHERE at < ? ORDER BY at LIMIT ?)"
        ))
        .bind(before.timestamp())
        .bind(max_rows)
        .execute(self.conn()?)
        .await?;
        Ok(done.rows_affected())
    }

    /// Pending -> running, and nothing else: a late mark can never overwrite how the task
    /// ended, so the runner need not wait for it before the task starts working.
    pub async fn mark_task_running(&mut self, id: i64, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE tasks SET status = ?, updated_at = ? WHERE id = ? AND status = ?")
            .bind(TaskStatus::Running.code())
            .bind(millis(now))
            .bind(id)
            .bind(TaskStatus::Pending.code())
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    pub async fn update_task(&mut self, t: &Task) -> Result<()> {
        sqlx::query(
            "UPDATE tasks SET status = ?, step = ?, payload = ?, error = ?, updated_at = ?,
               undo_status = ?, undo_attempts = ?, retry_at = ?, detail = ?
             WHERE id = ?",
        )
        .bind(t.status.code())
        .bind(t.step)
        .bind(t.payload.to_string())
        .bind(&t.error)
        .bind(millis(t.updated_at))
        .bind(t.undo.map(TaskStatus::code))
        .bind(t.undo_attempts)
        .bind(t.retry_at.map(millis))
        .bind(&t.detail)
        .bind(t.id)
        .execute(self.conn()?)
        .await?;
        Ok(())
    }
}

/// The spare frontends' ports, lowest first, read on `conn`.
async fn read_spare_ports(conn: &mut SqliteConnection) -> Result<Vec<u16>> {
    let rows = sqlx::query("SELECT port FROM spare_ports ORDER BY port")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<i64, _>(0)? as u16))
        .collect()
}

/// One instance with its nodes, read on `conn`.
async fn read_instance(conn: &mut SqliteConnection, id: &str) -> Result<Option<Instance>> {
    let Some(row) = sqlx::query("SELECT * FROM instances WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut inst = rows::instance(&row)?;
    let nodes = sqlx::query("SELECT * FROM nodes WHERE instance_id = ? ORDER BY seq")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    inst.nodes = nodes.iter().map(rows::node).collect::<Result<_>>()?;
    Ok(Some(inst))
}
