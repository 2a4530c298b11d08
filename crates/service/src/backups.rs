//! Backups: ManualBackupInstance, GetRedisBackupList, GetBackupDownloadUrl, RestoreInstance
//! and ExportRedisBackup, the daily automatic backup, and retention.
//!
//! # What a user can rely on
//! * A listed backup is a whole RDB file. The backup task snapshots the replica (BGSAVE, so
//!   the master never forks) after a replication barrier (so every write the master
//!   acknowledged before the request is in it), moves the file into the backup store, and
//!   only then records the backup, in the transaction that ends the task. A failed or
//!   interrupted backup leaves no record and, through the store, no file.
//! * A restore checks the file against its recorded SHA-256 and with redis-check-rdb before
//!   it touches the instance. It then stops every node, swaps each node's AOF folder for one
//!   built from the backup (each node's own folder is kept aside) and starts them all at once
//!   on the backup's RDB: every node loads the same data in parallel, and the replicas
//!   continue from the replication offset the RDB records instead of copying the data set
//!   from the master. Writes are refused until each node's AOF holds the restored data.
//!   Anything failing after the swap swaps the old folders back: the instance ends with the
//!   backup's data or with its own, never a mix.
//! * Backups past the retention are expired: the file is removed, the record stays with
//!   status -1.
//! * A backup or restore that would leave less free space than the disk reserve (see `disk`)
//!   is refused (a daily one waits for a later pass of its day).
//! * Once a day at `daily_at` (operator's time zone) every running instance gets a system
//!   backup. The day is recorded with the task, so a restart never backs up twice a day,
//!   and an instance busy at that time is picked up as soon as it is idle again that day.

use crate::instances::check_idle;
use crate::steps::Finish;
use crate::Service;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use crsd_backupstore::BackupKey;
use crsd_core::model::{Backup, BackupKind, BackupState, Instance, InstanceStatus, Task, TaskKind};
use crsd_core::{ids, rules, Error, Field, Result};
use crsd_store::{BackupFilter, NewTask};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest remark a backup keeps.
const MAX_REMARK_CHARS: usize = 256;
/// How long the replica may take to receive every write acknowledged before a backup.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long restored nodes may take to load the backup, resync and write their AOF, each.
const RESTORE_SYNC_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// Backups older than this are expired.
    pub retention: chrono::Duration,
    /// Local time of the daily automatic backup.
    pub daily_at: NaiveTime,
    /// Manual backups allowed per instance and day (the seed asks for 24).
    pub manual_per_day: i64,
    /// How long one snapshot (BGSAVE) may take.
    pub snapshot_timeout: Duration,
}

impl Default for BackupSettings {
    fn default() -> BackupSettings {
        BackupSettings {
            retention: chrono::Duration::days(7),
            daily_at: NaiveTime::from_hms_opt(3, 0, 0).unwrap_or_default(),
            manual_per_day: 24,
            snapshot_timeout: Duration::from_secs(3600),
        }
    }
}

/// When an instance's automatic backup runs: on these local week days, at this local hour
/// (API 3.0 DescribeAutoBackupConfig / ModifyAutoBackupConfig). Without settings of its own
/// an instance is backed up every day at `BackupSettings::daily_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoBackupConfig {
    pub week_days: Vec<Weekday>,
    pub start: NaiveTime,
    /// How many days backups are kept: the operator's retention, the same for every instance.
    pub storage_days: i64,
}

impl AutoBackupConfig {
    /// English day names, Monday first, as the model spells them.
    pub fn week_day_names(&self) -> Vec<&'static str> {
        ALL_DAYS
            .iter()
            .filter(|d| self.week_days.contains(d))
            .map(|d| day_name(*d))
            .collect()
    }

    /// `HH:00-HH:00`, the one-hour window the backup starts in.
    pub fn time_period(&self) -> String {
        let h = self.start.hour();
        format!("{:02}:00-{:02}:00", h, (h + 1) % 24)
    }
}

const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn parse_day(name: &str) -> Option<Weekday> {
    ALL_DAYS.into_iter().find(|d| day_name(*d) == name.trim())
}

/// GetRedisBackupList / DescribeInstanceBackups, parsed.
#[derive(Debug, Clone, Default)]
pub struct BackupQuery {
    pub redis_id: String,
    pub limit: i64,
    pub offset: i64,
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    /// Only backups whose `status` is one of these; all when empty.
    pub statuses: Vec<i64>,
}

/// One page of an instance's backups.
#[derive(Debug, Clone)]
pub struct BackupPage {
    /// How many match, over all pages.
    pub total: i64,
    pub backups: Vec<Backup>,
    pub instance_name: String,
}

/// A file a download URL may stream.
#[derive(Debug, Clone)]
pub struct BackupDownload {
    pub path: PathBuf,
    pub size: u64,
}

impl Service {
    /// ManualBackupInstance: records a backup task; the instance keeps serving meanwhile.
    pub async fn manual_backup(&self, app_id: i64, redis_id: &str, remark: &str) -> Result<i64> {
        rules::check_field_text(Field::Remark, remark, MAX_REMARK_CHARS)?;
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, redis_id).await?;
        check_idle(&inst)?;
        let day_start = self.local_day_start(self.now());
        let today = tx
            .count_tasks_since(
                &inst.id,
                TaskKind::BackupInstance,
                day_start,
                "backupType",
                BackupKind::Manual.name(),
            )
            .await?;
        let limit = self.cfg.backups.manual_per_day;
        if today >= limit {
            return Err(Error::BackupQuotaExceeded { limit });
        }
        self.check_disk_for(self.expected_dump_bytes(&inst.id))?;
        let task_id = self
            .lock_for_backup(&mut tx, &mut inst, BackupKind::Manual, remark)
            .await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(task_id)
    }

    /// GetRedisBackupList: one instance's backups, newest first.
    pub async fn backup_list(&self, app_id: i64, q: BackupQuery) -> Result<BackupPage> {
        crate::page::check(q.limit, q.offset)?;
        self.backup_page(app_id, q).await
    }

    /// Every backup of the instance, newest first, as one list: for dialects whose list
    /// actions have no paging (Capital Online's).
    pub async fn backup_list_all(&self, app_id: i64, redis_id: &str) -> Result<Vec<Backup>> {
        let q = BackupQuery {
            redis_id: redis_id.to_string(),
            limit: i64::MAX,
            offset: 0,
            ..Default::default()
        };
        Ok(self.backup_page(app_id, q).await?.backups)
    }

    async fn backup_page(&self, app_id: i64, q: BackupQuery) -> Result<BackupPage> {
        let inst = self.owned_instance(app_id, &q.redis_id).await?;
        let begin = self.parse_time(Field::BeginTime, &q.begin_time)?;
        let end = self.parse_end_time(Field::EndTime, &q.end_time)?;
        let filter = BackupFilter {
            app_id,
            instance_id: inst.id.clone(),
            begin,
            end,
            statuses: q.statuses,
            limit: q.limit,
            offset: q.offset,
        };
        let (total, backups) = self.store.list_backups(&filter).await?;
        Ok(BackupPage {
            total,
            backups,
            instance_name: inst.name,
        })
    }

    /// GetBackupDownloadUrl's checks: the instance's own backup, in a downloadable state.
    /// The URL itself is the HTTP layer's (it signs it).
    pub async fn backup_for_download(
        &self,
        app_id: i64,
        redis_id: &str,
        backup_id: &str,
    ) -> Result<Backup> {
        let inst = self.owned_instance(app_id, redis_id).await?;
        let backup = self.owned_backup(&inst, backup_id).await?;
        match backup.state {
            BackupState::Normal | BackupState::Exported => Ok(backup),
            BackupState::Expired | BackupState::Exporting => {
                Err(Error::BackupStatusAbnormal(backup.id))
            }
        }
    }

    /// The file behind a download URL whose signature was checked; None once the backup is
    /// gone (expired, deleted).
    ///
    /// `file_id` is a backup id, or a cluster backup's shard file (`<id>-s<shard>`, see
    /// `Backup::file_id`).
    pub async fn backup_file(&self, file_id: &str) -> Result<Option<BackupDownload>> {
        let (backup_id, shard) = match self.store.backup(file_id).await? {
            Some(b) => (b, None),
            None => {
                let (id, shard) = Backup::parse_file_id(file_id);
                match (self.store.backup(id).await?, shard) {
                    (Some(b), Some(s)) => (b, Some(s)),
                    _ => return Ok(None),
                }
            }
        };
        let backup = backup_id;
        if !matches!(backup.state, BackupState::Normal | BackupState::Exported) {
            return Ok(None);
        }
        let Some((_, file, size, _)) = backup_files(&backup)
            .into_iter()
            .find(|(s, _, _, _)| *s == shard)
        else {
            return Ok(None);
        };
        let key = BackupKey {
            instance_id: backup.instance_id.clone(),
            backup_id: file,
        };
        Ok(self
            .backup_store
            .local_path(&key)
            .map(|path| BackupDownload { path, size }))
    }

    /// RestoreInstance: checks, then a task that puts the backup's data in place.
    pub async fn restore(
        &self,
        app_id: i64,
        redis_id: &str,
        password: &str,
        backup_id: &str,
    ) -> Result<i64> {
        // The layout is read from the nodes before the write transaction (no I/O under it);
        // the task checks the files again before it touches anything.
        {
            let inst = self.owned_instance(app_id, redis_id).await?;
            if let Ok(backup) = self.owned_backup(&inst, backup_id).await {
                self.check_restore_layout(&inst, &backup).await?;
            }
        }
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, redis_id).await?;
        let mut backup = backup_of(tx.backup(backup_id).await?, &inst, backup_id)?;
        crate::instances::check_instance_password(&inst, password)?;
        // The backup's own lock first: restoring the very backup a running restore uses is
        // 10710, any other operation on the held instance 10707.
        if backup.lock_task.is_some() {
            return Err(Error::BackupLocked(backup.id));
        }
        check_idle(&inst)?;
        if !matches!(backup.state, BackupState::Normal | BackupState::Exported) {
            return Err(Error::BackupStatusAbnormal(backup.id));
        }
        // Every node writes the restored data set once more: the new base of its AOF (the
        // staged file itself is a link to the backup where the filesystem allows one).
        let nodes = inst.nodes.len().max(1) as u64;
        self.check_disk_for(backup.size.saturating_mul(nodes))?;
        let task_id = self
            .lock_with_task(
                &mut tx,
                &mut inst,
                TaskKind::RestoreBackup,
                json!({ "backupId": backup.id }),
            )
            .await?;
        backup.lock_task = Some(task_id);
        tx.update_backup(&backup).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(task_id)
    }

    /// ExportRedisBackup: only cluster instances export their backups (a master-replica
    /// backup is one RDB, downloadable as it is); the `exportBackup` task checks each shard's
    /// file and marks the backup exported.
    pub async fn export_backup(&self, app_id: i64, redis_id: &str, backup_id: &str) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, redis_id).await?;
        if !inst.is_cluster() {
            return Err(Error::ExportNeedsCluster);
        }
        if backup_id.is_empty() {
            return Err(Error::MissingField(Field::BackupId));
        }
        let mut backup = backup_of(tx.backup(backup_id).await?, &inst, backup_id)?;
        if backup.lock_task.is_some() {
            return Err(Error::BackupLocked(backup.id));
        }
        // Only a backup in status 2 is exported (seed 003: 10711 otherwise).
        if backup.state != BackupState::Normal {
            return Err(Error::BackupStatusAbnormal(backup.id));
        }
        check_idle(&inst)?;
        let task_id = self
            .lock_with_task(
                &mut tx,
                &mut inst,
                TaskKind::ExportBackup,
                json!({ "backupId": backup.id }),
            )
            .await?;
        backup.lock_task = Some(task_id);
        backup.state = BackupState::Exporting;
        tx.update_backup(&backup).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(task_id)
    }

    /// GetBackupDownloadUrl (v2): a cluster's backup is downloadable once exported (seed
    /// 003); a standard instance's at once.
    pub async fn exported_backup_for_download(
        &self,
        app_id: i64,
        redis_id: &str,
        backup_id: &str,
    ) -> Result<Backup> {
        let backup = self
            .backup_for_download(app_id, redis_id, backup_id)
            .await?;
        if !backup.shards.is_empty() && backup.state != BackupState::Exported {
            return Err(Error::BackupStatusAbnormal(backup.id));
        }
        Ok(backup)
    }

    /// task_exportBackup: every shard's file checked against its SHA-256; the backup is then
    /// exported (status 4), downloadable as one RDB per shard.
    pub(crate) async fn export_files(&self, task: &Task) -> Result<Finish> {
        let backup_id = payload_str(task, "backupId")?;
        let backup = self
            .store
            .backup(&backup_id)
            .await?
            .ok_or_else(|| Error::BackupNotFound(backup_id.clone()))?;
        self.verified_backup_files(&backup).await?;
        let mut f = Finish::to(InstanceStatus::Running);
        f.unlock_backup = Some(backup_id);
        f.backup_state = Some(BackupState::Exported);
        Ok(f)
    }

    /// Runs the daily backups and the retention until `shutdown` turns true.
    pub async fn run_backup_schedule(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut timer = self
            .metrics
            .loop_timer("backup_schedule", self.cfg.expiry_every);
        loop {
            let started = timer.pass_starts();
            match self.daily_backups_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(instances = n, "daily backups recorded"),
                Err(e) => tracing::error!(error = ?e, "daily backup pass failed"),
            }
            match self.expire_backups_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(backups = n, "backups expired"),
                Err(e) => tracing::error!(error = ?e, "backup retention pass failed"),
            }
            timer.pass_ended(started);
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.expiry_every) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// An instance's automatic backup settings (the operator's default when it has none).
    pub async fn auto_backup_config(&self, app_id: i64, id: &str) -> Result<AutoBackupConfig> {
        let inst = self.owned_instance(app_id, id).await?;
        self.config_of(&inst.id).await
    }

    /// Changes an instance's automatic backup days and/or hour (`HH:00-HH:00`). The storage
    /// days are the operator's: a client may name them, not change them.
    pub async fn set_auto_backup_config(
        &self,
        app_id: i64,
        id: &str,
        week_days: Option<Vec<String>>,
        time_period: Option<String>,
        storage_days: Option<i64>,
    ) -> Result<AutoBackupConfig> {
        let kept = self.cfg.backups.retention.num_days();
        if storage_days.is_some_and(|d| d != kept) {
            return Err(Error::invalid(
                "BackupStorageDays",
                format!("this operator keeps backups {kept} days"),
            ));
        }
        let inst = self.owned_instance(app_id, id).await?;
        let mut cfg = self.config_of(&inst.id).await?;
        if let Some(days) = week_days {
            let mut parsed = Vec::new();
            for d in &days {
                let day = parse_day(d).ok_or_else(|| {
                    Error::invalid("WeekDays", format!("{d} is not Monday..Sunday"))
                })?;
                if !parsed.contains(&day) {
                    parsed.push(day);
                }
            }
            if parsed.is_empty() {
                return Err(Error::invalid("WeekDays", "name at least one day"));
            }
            cfg.week_days = parsed;
        }
        if let Some(period) = time_period {
            cfg.start = parse_period(&period)?;
        }
        let days: Vec<&str> = cfg.week_day_names();
        let mut tx = self.store.write().await?;
        tx.set_backup_config(&inst.id, &days.join(","), i64::from(cfg.start.hour()))
            .await?;
        tx.commit().await?;
        Ok(cfg)
    }

    async fn config_of(&self, instance_id: &str) -> Result<AutoBackupConfig> {
        Ok(self.config_from(self.store.backup_config(instance_id).await?))
    }

    /// An instance's settings from its stored row, or the operator's defaults without one.
    fn config_from(&self, row: Option<(String, i64)>) -> AutoBackupConfig {
        let storage_days = self.cfg.backups.retention.num_days();
        match row {
            Some((days, hour)) => AutoBackupConfig {
                week_days: days.split(',').filter_map(parse_day).collect(),
                start: NaiveTime::from_hms_opt(hour.clamp(0, 23) as u32, 0, 0)
                    .unwrap_or(self.cfg.backups.daily_at),
                storage_days,
            },
            None => AutoBackupConfig {
                week_days: ALL_DAYS.to_vec(),
                start: self.cfg.backups.daily_at,
                storage_days,
            },
        }
    }

    /// Records today's system backup for every running, idle instance whose settings name
    /// today, that existed at today's backup time and has none yet, once that time has
    /// passed. Returns how many.
    pub async fn daily_backups_once(&self) -> Result<usize> {
        let now = self.now();
        let tz = self.time_zone();
        let local = now.with_timezone(&tz);
        let today = local.date_naive();
        let day = today.format("%Y-%m-%d").to_string();
        let mut recorded = 0;
        // Two reads per pass, not a read and a write transaction per instance: the pass runs
        // every few seconds, and after the backup time most instances are done for the day.
        let done = self.store.daily_backups_on(&day).await?;
        let mut configs = self.store.backup_configs().await?;
        for candidate in self.store.live_instances().await? {
            if candidate.status != InstanceStatus::Running
                || candidate.lock_task.is_some()
                || done.contains(&candidate.id)
            {
                continue;
            }
            let cfg = self.config_from(configs.remove(&candidate.id));
            if !cfg.week_days.contains(&today.weekday()) {
                continue;
            }
            let Some(due) = tz
                .from_local_datetime(&today.and_time(cfg.start))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
            else {
                continue;
            };
            if now < due || candidate.created_at > due {
                continue;
            }
            if self
                .check_disk_for(self.expected_dump_bytes(&candidate.id))
                .is_err()
            {
                // Not claimed: a later pass of the day takes it once there is room.
                continue;
            }
            let mut tx = self.store.write().await?;
            if tx.has_daily_backup(&day, &candidate.id).await? {
                continue;
            }
            let Some(mut inst) = tx.instance(&candidate.id).await? else {
                continue;
            };
            if check_idle(&inst).is_err() {
                continue;
            }
            let task_id = self
                .lock_for_backup(&mut tx, &mut inst, BackupKind::System, "")
                .await?;
            if !tx.claim_daily_backup(&day, &inst.id, task_id).await? {
                continue; // dropped: rolls back
            }
            tx.commit().await?;
            recorded += 1;
        }
        if recorded > 0 {
            self.wake.notify_one();
        }
        Ok(recorded)
    }

    /// When the retention pass expires a backup: the retention after the backup began.
    pub fn backup_expires_at(&self, backup: &Backup) -> DateTime<Utc> {
        backup.started_at + self.cfg.backups.retention
    }

    /// Expires backups past the retention: file removed, record kept with status -1.
    /// A backup held by a task (a restore) waits for the next pass.
    pub async fn expire_backups_once(&self) -> Result<usize> {
        let cutoff = self.now() - self.cfg.backups.retention;
        let mut expired = 0;
        for old in self.store.backups_started_before(cutoff).await? {
            let mut tx = self.store.write().await?;
            let Some(mut backup) = tx.backup(&old.id).await? else {
                continue;
            };
            if backup.lock_task.is_some() || backup.state == BackupState::Expired {
                continue;
            }
            backup.state = BackupState::Expired;
            tx.update_backup(&backup).await?;
            tx.commit().await?;
            // The record says expired first: a download that races this sees 404, never a
            // file that is being removed.
            self.delete_backup_file(&backup).await?;
            expired += 1;
        }
        Ok(expired)
    }

    /// DeleteBackup: forgets one of the instance's backups and removes its file. A backup a
    /// running restore uses is refused (BackupLocked). The record goes first, in its own
    /// commit: a download racing this sees 404, and a crash before the file is removed leaves
    /// an orphan that the start-up sweep removes.
    pub async fn delete_backup(&self, app_id: i64, redis_id: &str, backup_id: &str) -> Result<()> {
        if backup_id.is_empty() {
            return Err(Error::MissingField(Field::BackupId));
        }
        let mut tx = self.store.write().await?;
        let inst = self.owned_in_tx(&mut tx, app_id, redis_id).await?;
        let backup = backup_of(tx.backup(backup_id).await?, &inst, backup_id)?;
        if backup.lock_task.is_some() {
            return Err(Error::BackupLocked(backup.id));
        }
        tx.delete_backup(&backup.id).await?;
        tx.commit().await?;
        self.delete_backup_file(&backup).await
    }

    /// At start, before any task runs: removes temporary files a crash left in the backup
    /// store, and stored files no usable backup record names (a crash between a record's
    /// expiry or deletion and its file's removal, or a backup task interrupted between
    /// storing its file and recording it, which stores it again when it resumes).
    /// Returns how many files went.
    pub async fn sweep_backup_store(&self) -> Result<usize> {
        let store = self.backup_store.clone();
        let (temporaries, stored) = tokio::task::spawn_blocking(move || {
            Ok::<_, crsd_backupstore::StoreError>((store.sweep()?, store.list()?))
        })
        .await
        .map_err(|e| Error::internal(format!("sweep panicked: {e}")))?
        .map_err(|e| Error::internal(format!("sweeping the backup store: {e}")))?;
        // One read of the records, not one per stored file.
        let usable: std::collections::HashSet<(String, String)> = self
            .store
            .live_backups()
            .await?
            .into_iter()
            .filter(|b| matches!(b.state, BackupState::Normal | BackupState::Exported))
            .flat_map(|b| backup_keys(&b))
            .map(|k| (k.instance_id, k.backup_id))
            .collect();
        let mut removed = temporaries;
        for key in stored {
            if !usable.contains(&(key.instance_id.clone(), key.backup_id.clone())) {
                let store = self.backup_store.clone();
                let name = key.to_string();
                tokio::task::spawn_blocking(move || store.delete(&key))
                    .await
                    .map_err(|e| Error::internal(format!("delete panicked: {e}")))?
                    .map_err(|e| Error::internal(format!("removing orphan {name}: {e}")))?;
                tracing::info!(backup = %name, "removed a backup file no record names");
                removed += 1;
            }
        }
        Ok(removed)
    }

    // ---------------- task steps ----------------

    /// task_backupInstance: barrier on the master, snapshot on the replica, file into the
    /// store; the record is written by the task's final transaction.
    pub(crate) async fn take_backup(&self, task: &Task, inst: &Instance) -> Result<Finish> {
        let backup_id = payload_str(task, "backupId")?;
        let kind = BackupKind::from_name(&payload_str(task, "backupType")?)
            .ok_or_else(|| Error::internal(format!("task {}: bad backupType", task.id)))?;
        let remark = payload_str(task, "remark").unwrap_or_default();
        if inst.is_cluster() {
            let (size, shards) = self.take_shard_backups(inst, &backup_id).await?;
            let mut f = Finish::to(InstanceStatus::Running);
            f.new_backup = Some(Backup {
                id: backup_id,
                app_id: inst.app_id,
                instance_id: inst.id.clone(),
                kind,
                remark,
                state: BackupState::Normal,
                lock_task: None,
                size,
                sha256: String::new(),
                started_at: task.created_at,
                finished_at: self.now(),
                shards,
            });
            return Ok(f);
        }
        let master = self.master_spec(inst)?;
        let replicas = self.replica_specs(inst);
        // The snapshot comes from a replica (the master never forks for it); with none, from
        // the master itself.
        let source = replicas.first().unwrap_or(&master).clone();
        self.runtime
            .replication_barrier(&master, replicas.len(), BARRIER_TIMEOUT)
            .await
            .map_err(crate::steps::engine_err)?;
        let rdb = self
            .runtime
            .snapshot(&source, self.cfg.backups.snapshot_timeout)
            .await
            .map_err(crate::steps::engine_err)?;
        let key = BackupKey {
            instance_id: inst.id.clone(),
            backup_id: backup_id.clone(),
        };
        let store = self.backup_store.clone();
        let stored = {
            let key = key.clone();
            // No record exists yet, so a file under this id is what an interrupted attempt of
            // this very task left: replace it.
            tokio::task::spawn_blocking(move || {
                store.delete(&key).and_then(|()| store.ingest(&key, &rdb))
            })
            .await
            .map_err(|e| Error::internal(format!("ingest panicked: {e}")))?
            .map_err(|e| Error::internal(format!("storing backup {backup_id}: {e}")))?
        };
        let mut f = Finish::to(InstanceStatus::Running);
        f.new_backup = Some(Backup {
            id: backup_id,
            app_id: inst.app_id,
            instance_id: inst.id.clone(),
            kind,
            remark,
            state: BackupState::Normal,
            lock_task: None,
            size: stored.size,
            sha256: stored.sha256,
            started_at: task.created_at,
            finished_at: self.now(),
            shards: Vec::new(),
        });
        Ok(f)
    }

    /// After a failed backup: no file under its id (the record was never written).
    pub(crate) async fn undo_backup(&self, task: &Task, inst: &Instance) {
        if let Ok(backup_id) = payload_str(task, "backupId") {
            let mut files = vec![backup_id.clone()];
            if inst.is_cluster() {
                files.extend(
                    inst.shard_ids()
                        .into_iter()
                        .map(|s| format!("{backup_id}-s{s}")),
                );
            }
            for file in files {
                let key = BackupKey {
                    instance_id: inst.id.clone(),
                    backup_id: file,
                };
                let store = self.backup_store.clone();
                let _ = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            }
        }
    }

    /// task_restoreBackup. Steps: 1 = file verified and staged next to every node's data;
    /// 2 = nodes stopped and the staged data swapped in on each (their own data kept aside);
    /// then every node starts on the restored RDB at once, the replicas continue from the
    /// RDB's replication offset (no full sync), each node's AOF is turned on and written,
    /// writes are allowed again, the old data is dropped.
    pub(crate) async fn restore_backup(&self, task: &mut Task, inst: &Instance) -> Result<Finish> {
        let backup_id = payload_str(task, "backupId")?;
        let backup = self
            .store
            .backup(&backup_id)
            .await?
            .ok_or_else(|| Error::BackupNotFound(backup_id.clone()))?;
        let replicas = self.replica_specs(inst);
        let nodes = self.node_specs(inst);
        let runtime = &self.runtime;
        let err = crate::steps::engine_err;
        if task.step < 2 {
            // Check the files before anything is touched; a resumed task checks again. A
            // cluster's nodes each take their shard's file.
            let mut files = std::collections::HashMap::new();
            for (shard, path) in self.verified_backup_files(&backup).await? {
                runtime.check_rdb(&path).await.map_err(|e| {
                    Error::BackupCorrupt(format!("redis-check-rdb refused {}: {e}", backup.id))
                })?;
                files.insert(shard, path);
            }
            for spec in &nodes {
                let shard = inst
                    .nodes
                    .iter()
                    .find(|n| n.id == spec.name)
                    .map(|n| n.shard)
                    .unwrap_or(0);
                let path = files.get(&shard).ok_or_else(|| {
                    Error::BackupCorrupt(format!(
                        "backup {} has no file for shard {shard}",
                        backup.id
                    ))
                })?;
                runtime.stage_restore(spec, path).map_err(err)?;
            }
            self.step_done(task, 1).await?;
            // Every node stops on purpose: Sentinel must not fail over meanwhile.
            self.unwatch(&inst.id).await?;
            for spec in nodes.iter().rev() {
                runtime.stop(spec).await.map_err(err)?;
            }
            for spec in &nodes {
                runtime.swap_in_restore(spec).map_err(err)?;
            }
            self.step_done(task, 2).await?;
        }
        self.start_restored_nodes(&nodes, RESTORE_SYNC_TIMEOUT)
            .await?;
        for replica in &replicas {
            runtime
                .wait_replica_linked(replica, RESTORE_SYNC_TIMEOUT)
                .await
                .map_err(err)?;
        }
        let settled: Vec<_> = nodes
            .iter()
            .map(|spec| {
                let runtime = runtime.clone();
                let spec = spec.clone();
                tokio::spawn(
                    async move { runtime.settle_restored(&spec, RESTORE_SYNC_TIMEOUT).await },
                )
            })
            .collect();
        for joined in settled {
            joined
                .await
                .map_err(|e| Error::internal(format!("settling a restored node: {e}")))?
                .map_err(err)?;
        }
        for spec in &nodes {
            runtime.finish_restore(spec).map_err(err)?;
        }
        if inst.is_cluster() {
            // The same nodes with the same identities: the cluster only has to say ok again.
            runtime
                .form_cluster(&self.cluster_shards(inst), RESTORE_SYNC_TIMEOUT)
                .await
                .map_err(err)?;
        }
        self.wait_address_ready(inst).await?;
        self.keep_promotable(inst, crate::ha::STREAM_CHECK_IN_TASK)
            .await;
        self.watch(inst).await?;
        let mut f = Finish::to(InstanceStatus::Running);
        f.unlock_backup = Some(backup.id);
        Ok(f)
    }

    /// After a failed restore: the master's own data back in place, every node running.
    pub(crate) async fn undo_restore(&self, task: &Task, inst: &Instance) -> Result<Finish> {
        // An instance without a recorded master is refused here as the restore refused it.
        self.master_spec(inst)?;
        let replicas = self.replica_specs(inst);
        let nodes = self.node_specs(inst);
        let runtime = &self.runtime;
        let err = crate::steps::engine_err;
        if task.step >= 1 {
            for spec in nodes.iter().rev() {
                runtime.stop(spec).await.map_err(err)?;
            }
            for spec in &nodes {
                runtime.roll_back_restore(spec).map_err(err)?;
            }
            if task.step >= 2 {
                // A replica copies its master's own data again rather than trust its own.
                for replica in &replicas {
                    runtime.discard_data(replica).map_err(err)?;
                }
            }
        }
        self.start_nodes(&nodes).await?;
        for replica in &replicas {
            // A cluster's replica follows whom the cluster says: never told by REPLICAOF.
            if inst.is_cluster() {
                runtime
                    .wait_replica_linked(replica, RESTORE_SYNC_TIMEOUT)
                    .await
            } else {
                runtime
                    .wait_replica_synced(replica, RESTORE_SYNC_TIMEOUT)
                    .await
            }
            .map_err(err)?;
        }
        for spec in &nodes {
            runtime.finish_restore(spec).map_err(err)?;
        }
        if inst.is_cluster() {
            runtime
                .form_cluster(&self.cluster_shards(inst), RESTORE_SYNC_TIMEOUT)
                .await
                .map_err(err)?;
        }
        self.wait_address_ready(inst).await?;
        self.keep_promotable(inst, crate::ha::STREAM_CHECK_IN_TASK)
            .await;
        self.watch(inst).await?;
        let mut f = Finish::to(InstanceStatus::Running);
        f.unlock_backup = payload_str(task, "backupId").ok();
        Ok(f)
    }

    // ---------------- helpers ----------------

    /// The backup's local files, by shard (a standard backup's one file as shard 0), after
    /// each one's SHA-256 matched the record.
    async fn verified_backup_files(&self, backup: &Backup) -> Result<Vec<(i64, PathBuf)>> {
        let mut out = Vec::new();
        for (shard, file, _, sha256) in backup_files(backup) {
            let key = BackupKey {
                instance_id: backup.instance_id.clone(),
                backup_id: file.clone(),
            };
            let path = self.backup_store.local_path(&key).ok_or_else(|| {
                Error::BackupCorrupt(format!("backup {} has no file {file}", backup.id))
            })?;
            let p = path.clone();
            let actual = tokio::task::spawn_blocking(move || crsd_backupstore::hash_file(&p))
                .await
                .map_err(|e| Error::internal(format!("hashing panicked: {e}")))?
                .map_err(|e| Error::BackupCorrupt(format!("reading backup {file}: {e}")))?
                .sha256;
            if actual != sha256 {
                return Err(Error::BackupCorrupt(format!(
                    "backup {file}: SHA-256 {actual} differs from the recorded {sha256}"
                )));
            }
            out.push((shard.unwrap_or(0), path));
        }
        Ok(out)
    }

    async fn delete_backup_file(&self, backup: &Backup) -> Result<()> {
        for key in backup_keys(backup) {
            let store = self.backup_store.clone();
            let name = key.to_string();
            tokio::task::spawn_blocking(move || store.delete(&key))
                .await
                .map_err(|e| Error::internal(format!("delete panicked: {e}")))?
                .map_err(|e| Error::internal(format!("deleting backup {name}: {e}")))?;
        }
        Ok(())
    }

    async fn owned_backup(&self, inst: &Instance, backup_id: &str) -> Result<Backup> {
        if backup_id.is_empty() {
            return Err(Error::MissingField(Field::BackupId));
        }
        backup_of(self.store.backup(backup_id).await?, inst, backup_id)
    }

    /// Records a backup task and holds the instance with it. The instance stays "running"
    /// (it serves throughout); the lock keeps other tasks off it meanwhile.
    async fn lock_for_backup(
        &self,
        tx: &mut crsd_store::WriteTx,
        inst: &mut Instance,
        kind: BackupKind,
        remark: &str,
    ) -> Result<i64> {
        let task_id = tx
            .insert_task(
                &NewTask {
                    app_id: inst.app_id,
                    kind: TaskKind::BackupInstance,
                    instance_id: Some(inst.id.clone()),
                    deal_id: None,
                    payload: json!({
                        "backupId": ids::new_backup_id(),
                        "backupType": kind.name(),
                        "remark": remark,
                    }),
                },
                self.now(),
            )
            .await?;
        inst.lock_task = Some(task_id);
        tx.update_instance(inst).await?;
        Ok(task_id)
    }

    fn local_day_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let tz = self.time_zone();
        let day = now.with_timezone(&tz).date_naive();
        tz.from_local_datetime(&day.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now)
    }
}

/// `HH:00-HH:00` (one whole hour; `23:00-00:00` wraps) -> the start hour.
fn parse_period(period: &str) -> Result<NaiveTime> {
    let bad = || Error::invalid("TimePeriod", format!("{period} is not HH:00-HH:00"));
    let (from, to) = period.trim().split_once('-').ok_or_else(bad)?;
    let parse = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
    let (from, to) = (parse(from)?, parse(to)?);
    if from.minute() != 0 || to.minute() != 0 || (from.hour() + 1) % 24 != to.hour() {
        return Err(bad());
    }
    Ok(from)
}

/// The backup read for `backup_id` when it is one of `inst`'s (and so of its account);
/// otherwise, and when none was found, BackupNotFound.
fn backup_of(found: Option<Backup>, inst: &Instance, backup_id: &str) -> Result<Backup> {
    match found {
        Some(b) if b.instance_id == inst.id && b.app_id == inst.app_id => Ok(b),
        _ => Err(Error::BackupNotFound(backup_id.to_string())),
    }
}

/// A backup as the operator sees it (`crsd backup list`): its record and its file, when the
/// backup store keeps a local one (an expired backup has none).
#[derive(Debug, Clone)]
pub struct OperatorBackup {
    pub backup: Backup,
    /// Its files on this host (one a shard for a cluster's backup); none once expired.
    pub paths: Vec<PathBuf>,
}

impl Service {
    /// Every backup of instance `instance_id` for the operator: whichever account owns it,
    /// the instance deleted or not (its backups stay until retention expires them), expired
    /// ones included, newest first, each with its file.
    pub async fn operator_backups(&self, instance_id: &str) -> Result<Vec<OperatorBackup>> {
        let backups = self.store.instance_backups(instance_id).await?;
        Ok(backups
            .into_iter()
            .map(|b| self.operator_backup_of(b))
            .collect())
    }

    /// One backup for the operator, by id, with its file.
    pub async fn operator_backup(&self, backup_id: &str) -> Result<OperatorBackup> {
        let backup = self
            .store
            .backup(backup_id)
            .await?
            .ok_or_else(|| Error::BackupNotFound(backup_id.to_string()))?;
        Ok(self.operator_backup_of(backup))
    }

    fn operator_backup_of(&self, backup: Backup) -> OperatorBackup {
        let paths = match backup.state {
            BackupState::Expired => Vec::new(),
            // A cluster's backup: one file a shard, in the shards' order.
            _ => backup_keys(&backup)
                .iter()
                .filter_map(|k| self.backup_store.local_path(k))
                .collect(),
        };
        OperatorBackup { backup, paths }
    }
}

/// A backup's files as (shard, file id, size, SHA-256).
fn backup_files(b: &Backup) -> Vec<(Option<i64>, String, u64, String)> {
    b.files()
        .into_iter()
        .map(|f| (f.shard, f.file_id, f.size, f.sha256))
        .collect()
}

/// The store keys of a backup's files.
fn backup_keys(b: &Backup) -> Vec<BackupKey> {
    backup_files(b)
        .into_iter()
        .map(|(_, file, _, _)| BackupKey {
            instance_id: b.instance_id.clone(),
            backup_id: file,
        })
        .collect()
}

pub(crate) fn payload_str(task: &Task, key: &str) -> Result<String> {
    task.payload
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::internal(format!("task {} payload lacks {key}", task.id)))
}

/// Refuses what the cluster edition does not offer yet, before anything changes.
pub(crate) fn not_yet_for_cluster(inst: &Instance, what: &str) -> Result<()> {
    if inst.is_cluster() {
        return Err(Error::Unsupported(format!("{what} is not available yet")));
    }
    Ok(())
}
