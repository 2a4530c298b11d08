//! Shared test fixture: a store in a temporary folder with one account.

use chrono::{DateTime, Utc};
use crsd_core::model::Account;
use crsd_store::Store;

/// A fresh store holding account 1 (created at `at`, with `balance` cents); keep the folder
/// alive as long as the store.
pub async fn store_with_account(balance: i64, at: DateTime<Utc>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("crsd.db")).await.unwrap();
    let account = Account {
        app_id: 1,
        uin: "1".into(),
        name: "one".into(),
        secret_id: "id1".into(),
        secret_key: "key1".into(),
        balance,
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_account(&account, at).await.unwrap();
    tx.commit().await.unwrap();
    (dir, store)
}
