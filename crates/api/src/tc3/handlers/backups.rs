//! API 3.0 handlers of backups: listing, manual backups, download links, restores and the
//! daily backup configuration.

use super::{fields, time_in, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::catalog::REDIS_VERSION;
use crsd_core::model::BackupKind;
use crsd_core::{Error, Result};
use crsd_service::BackupQuery;
use serde_json::{json, Value};

/// DescribeInstanceBackups.
pub(super) async fn describe_instance_backups(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let time = time_in(svc.time_zone());
    let id = p.required_str("InstanceId")?;
    // The model's default filter is [2] (normal backups).
    let mut statuses = p.int_list("Status")?;
    if statuses.is_empty() {
        statuses.push(2);
    }
    let (limit, offset) = (p.int_or("Limit", 20)?, p.int_or("Offset", 0)?);
    if !(0..=100).contains(&limit) || offset < 0 {
        return Err(Error::invalid(
            "Limit",
            "Limit is 0-100 and Offset not negative",
        ));
    }
    let q = BackupQuery {
        redis_id: id,
        limit,
        offset,
        begin_time: p.str("BeginTime")?,
        end_time: p.str("EndTime")?,
        statuses,
    };
    let page = svc.backup_list(app, q).await?;
    let (total, list, name) = (page.total, page.backups, page.instance_name);
    let set: Vec<Value> = list
        .iter()
        .map(|b| {
            json!({
                "StartTime": time(b.started_at),
                "BackupId": b.id,
                "BackupType": match b.kind {
                    BackupKind::Manual => "0",
                    BackupKind::System => "1",
                },
                "Status": b.status_code(),
                "Remark": b.remark,
                "Locked": b.locked(),
                "BackupSize": b.size,
                "FullBackup": 0,
                "InstanceType": 17,
                "InstanceId": b.instance_id,
                "InstanceName": name,
                "Region": "",
                "EndTime": time(b.finished_at),
                "FileType": format!("RDB-Redis {REDIS_VERSION}"),
                "ExpireTime": time(svc.backup_expires_at(b)),
                "Encrypted": false,
            })
        })
        .collect();
    Ok(fields([
        ("TotalCount", json!(total)),
        ("BackupSet", json!(set)),
    ]))
}

/// ManualBackupInstance.
pub(super) async fn manual_backup_instance(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let task = svc
        .manual_backup(app, &id, &p.str("Remark")?.unwrap_or_default())
        .await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// DescribeBackupUrl.
pub(super) async fn describe_backup_url(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let backup_id = p.required_str("BackupId")?;
    let backup = svc.backup_for_download(app, &id, &backup_id).await?;
    // One file per shard of a cluster's backup, one for a standard instance's.
    let (mut outer, mut inner, mut names, mut infos) = (vec![], vec![], vec![], vec![]);
    for f in backup.files() {
        let (extranet, intranet) = state.downloads.urls(&f.file_id, svc.now());
        let file = format!("{}.rdb", f.file_id);
        infos.push(json!({
            "FileName": file,
            "FileSize": f.size,
            "DownloadUrl": extranet,
            "InnerDownloadUrl": intranet,
        }));
        outer.push(extranet);
        inner.push(intranet);
        names.push(file);
    }
    Ok(fields([
        ("DownloadUrl", json!(outer)),
        ("InnerDownloadUrl", json!(inner)),
        ("Filenames", json!(names)),
        ("BackupInfos", json!(infos)),
    ]))
}

/// RestoreInstance.
pub(super) async fn restore_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let backup_id = p.required_str("BackupId")?;
    let task = svc
        .restore(
            app,
            &id,
            &p.str("Password")?.unwrap_or_default(),
            &backup_id,
        )
        .await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// DescribeAutoBackupConfig.
pub(super) async fn describe_auto_backup_config(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let cfg = svc
        .auto_backup_config(app, &p.required_str("InstanceId")?)
        .await?;
    Ok(fields([
        ("AutoBackupType", json!(1)),
        ("WeekDays", json!(cfg.week_day_names())),
        ("TimePeriod", json!(cfg.time_period())),
        ("BackupStorageDays", json!(cfg.storage_days)),
        ("BinlogStorageDays", json!(cfg.storage_days)),
    ]))
}

/// ModifyAutoBackupConfig.
pub(super) async fn modify_auto_backup_config(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    if let Some(t) = p.int("AutoBackupType")? {
        if t != 1 {
            return Err(Error::invalid(
                "AutoBackupType",
                "only 1 (timed backup) exists",
            ));
        }
    }
    let week_days = match p.get("WeekDays") {
        Some(_) => Some(p.str_list("WeekDays")?),
        None => None,
    };
    let cfg = svc
        .set_auto_backup_config(
            app,
            &id,
            week_days,
            p.str("TimePeriod")?,
            p.int("BackupStorageDays")?,
        )
        .await?;
    Ok(fields([
        ("AutoBackupType", json!(1)),
        ("WeekDays", json!(cfg.week_day_names())),
        ("TimePeriod", json!(cfg.time_period())),
        ("BackupStorageDays", json!(cfg.storage_days)),
    ]))
}
