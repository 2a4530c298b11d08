//! The backup listing's status filter runs in SQL: it must agree with `Backup::status_code`
//! for every state, locked or not.

mod common;

use chrono::{Duration, TimeZone, Utc};
use crsd_core::model::{Backup, BackupKind, BackupState};
use crsd_store::BackupFilter;

#[tokio::test]
async fn status_filter_agrees_with_status_code() {
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let (_dir, store) = common::store_with_account(0, t0).await;
    let mut all = Vec::new();
    let mut tx = store.write().await.unwrap();
    let states = [
        BackupState::Normal,
        BackupState::Expired,
        BackupState::Exporting,
        BackupState::Exported,
    ];
    for (n, (state, lock)) in states
        .iter()
        .flat_map(|s| [(*s, None), (*s, Some(9))])
        .enumerate()
    {
        let b = Backup {
            id: format!("b-{n}"),
            app_id: 1,
            instance_id: "crs-1".into(),
            kind: BackupKind::Manual,
            remark: String::new(),
            state,
            lock_task: lock,
            size: 1,
            sha256: String::new(),
            started_at: t0 + Duration::seconds(n as i64),
            finished_at: t0 + Duration::seconds(n as i64),
            // A cluster's backup keeps its shards' files (read back whole below).
            shards: if n == 0 {
                vec![crsd_core::model::BackupShard {
                    shard: 1,
                    slots: "5461-10922".into(),
                    size: 7,
                    sha256: "ab".repeat(32),
                }]
            } else {
                Vec::new()
            },
        };
        tx.insert_backup(&b).await.unwrap();
        all.push(b);
    }
    tx.commit().await.unwrap();

    for code in [-1, 1, 2, 3, 4] {
        let f = BackupFilter {
            app_id: 1,
            instance_id: "crs-1".into(),
            begin: None,
            end: None,
            statuses: vec![code],
            limit: 100,
            offset: 0,
        };
        let (total, listed) = store.list_backups(&f).await.unwrap();
        let mut got: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
        let mut want: Vec<&str> = all
            .iter()
            .filter(|b| b.status_code() == code)
            .map(|b| b.id.as_str())
            .collect();
        got.sort();
        want.sort();
        assert!(!want.is_empty(), "status {code} has examples");
        assert_eq!(got, want, "status {code}");
        assert_eq!(total as usize, want.len(), "status {code}");
    }
}
