//! `Store::tasks` reads tasks by id, in chunks that stay under SQLite's bound-parameter limit.

use chrono::Utc;
use crsd_core::model::{Account, TaskKind};
use crsd_store::{NewTask, Store};

#[tokio::test]
async fn tasks_by_id_finds_those_that_exist_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("crsd.db")).await.unwrap();
    let mut tx = store.write().await.unwrap();
    let account = Account {
        app_id: 1,
        uin: "1".into(),
        name: "one".into(),
        secret_id: "id1".into(),
        secret_key: "key1".into(),
        balance: 0,
    };
    tx.insert_account(&account, Utc::now()).await.unwrap();
    let mut made = Vec::new();
    for kind in [
        TaskKind::DeleteInstance,
        TaskKind::RestoreBackup,
        TaskKind::CloseInstance,
    ] {
        let task = NewTask {
            app_id: 1,
            kind,
            instance_id: None,
            deal_id: None,
            payload: serde_json::json!({}),
        };
        made.push((tx.insert_task(&task, Utc::now()).await.unwrap(), kind));
    }
    tx.commit().await.unwrap();

    assert!(store.tasks(&[]).await.unwrap().is_empty());
    // 1,200 ids of which three exist, the last one past the second chunk.
    let mut ids: Vec<i64> = (1_000_000..1_001_197).collect();
    ids.insert(3, made[0].0);
    ids.insert(700, made[1].0);
    ids.push(made[2].0);
    let mut found: Vec<(i64, TaskKind)> = store
        .tasks(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.kind))
        .collect();
    found.sort_by_key(|(id, _)| *id);
    assert_eq!(found, made);
}
