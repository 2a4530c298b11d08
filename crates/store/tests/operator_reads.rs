//! What the operator's commands read and change: the database check that refuses a folder
//! without one, accounts with their disabled flag and creation time, keys and the listings
//! across accounts.

mod common;

use chrono::{Duration, TimeZone, Utc};
use crsd_core::model::{Account, Backup, BackupKind, BackupState, TaskKind};
use crsd_store::{NewTask, Store};

#[tokio::test]
async fn holds_database_tells_a_crsd_database_from_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(!Store::holds_database(&missing).await.unwrap());
    assert!(!missing.exists(), "not created");
    assert!(
        !Store::holds_database(dir.path()).await.unwrap(),
        "a folder"
    );
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"not sqlite at all, just some text of some length\n",
    )
    .unwrap();
    assert!(Store::holds_database(&garbage).await.is_err());
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(
        !Store::holds_database(&empty).await.unwrap(),
        "an empty file"
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "left as it was"
    );

    let (store_dir, store) = common::store_with_account(0, Utc::now()).await;
    let db = store_dir.path().join("crsd.db");
    assert!(Store::holds_database(&db).await.unwrap(), "while open");
    store.close().await;
    assert!(Store::holds_database(&db).await.unwrap(), "closed");
}

#[tokio::test]
async fn accounts_are_disabled_rekeyed_and_listed() {
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let (_dir, store) = common::store_with_account(5, t0).await;
    let mut tx = store.write().await.unwrap();
    let two = Account {
        app_id: 2,
        uin: "2".into(),
        name: "two".into(),
        secret_id: "id2".into(),
        secret_key: "key2".into(),
        balance: 7,
    };
    tx.insert_account(&two, t0 + Duration::seconds(1))
        .await
        .unwrap();
    assert!(tx.set_account_disabled(2, true).await.unwrap());
    assert!(
        !tx.set_account_disabled(3, true).await.unwrap(),
        "no account 3"
    );
    assert!(tx.set_account_keys(1, "id1b", "key1b").await.unwrap());
    assert!(!tx.set_account_keys(3, "x", "y").await.unwrap());
    assert!(
        tx.set_account_keys(1, "id2", "k").await.is_err(),
        "a SecretId belongs to one account"
    );
    tx.commit().await.unwrap();

    let all = store.account_records().await.unwrap();
    let summary: Vec<(i64, &str, bool, i64)> = all
        .iter()
        .map(|r| {
            (
                r.account.app_id,
                r.account.secret_id.as_str(),
                r.disabled,
                r.created_at.timestamp(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "id1b", false, 1_700_000_000),
            (2, "id2", true, 1_700_000_001)
        ]
    );
    assert!(store
        .account_record_by_secret_id("id1")
        .await
        .unwrap()
        .is_none());
    let one = store
        .account_record_by_secret_id("id1b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.account.secret_key, "key1b");
}

#[tokio::test]
async fn tasks_and_backups_are_listed_across_accounts() {
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let (_dir, store) = common::store_with_account(0, t0).await;
    let mut tx = store.write().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let t = NewTask {
            app_id: 1,
            kind: TaskKind::BackupInstance,
            instance_id: Some("crs-1".into()),
            deal_id: None,
            payload: serde_json::json!({}),
        };
        ids.push(tx.insert_task(&t, t0 + Duration::seconds(n)).await.unwrap());
    }
    for (n, state) in [BackupState::Normal, BackupState::Expired]
        .into_iter()
        .enumerate()
    {
        tx.insert_backup(&Backup {
            id: format!("b-{n}"),
            app_id: 1,
            instance_id: "crs-1".into(),
            kind: BackupKind::Manual,
            remark: String::new(),
            state,
            lock_task: None,
            size: 1,
            sha256: String::new(),
            started_at: t0 + Duration::seconds(n as i64),
            finished_at: t0 + Duration::seconds(n as i64),
            shards: Vec::new(),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let recent: Vec<i64> = store
        .recent_tasks(2)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(recent, vec![ids[2], ids[1]], "the newest first");
    let backups: Vec<String> = store
        .instance_backups("crs-1")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(
        backups,
        vec!["b-1", "b-0"],
        "expired ones too, newest first"
    );
    assert!(store.instance_backups("crs-2").await.unwrap().is_empty());
}
