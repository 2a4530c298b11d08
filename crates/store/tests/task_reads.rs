//! `Store::tasks` reads tasks by id, in chunks that stay under SQLite's bound-parameter limit.

mod common;

use chrono::Utc;
use crsd_core::model::TaskKind;
use crsd_store::NewTask;

#[tokio::test]
async fn tasks_by_id_finds_those_that_exist_across_chunks() {
    let (_dir, store) = common::store_with_account(0, Utc::now()).await;
    let mut tx = store.write().await.unwrap();
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
