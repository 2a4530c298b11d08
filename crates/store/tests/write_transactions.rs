//! A write transaction that is dropped (a refused request: charged, then found invalid) rolls
//! back on its own connection a moment later. The next writer, on another connection, reads
//! and then writes; that must wait for the rollback rather than fail with `SQLITE_BUSY`
//! (SQLite does not wait on a busy lock when a transaction that has read tries to write).

mod common;

use chrono::Utc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_after_a_dropped_write_waits_for_its_rollback() {
    let (_dir, store) = common::store_with_account(1000, Utc::now()).await;

    // Hold a few connections busy reading so that writers land on different connections.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    store.account(1).await.unwrap();
                }
            })
        })
        .collect();

    for round in 0..200 {
        // Charged, then refused: dropped without commit.
        let mut refused = store.write().await.unwrap();
        refused.set_balance(1, 0).await.unwrap();
        drop(refused);

        // The next order reads the balance, then charges.
        let mut next = store.write().await.unwrap();
        let balance = next
            .account(1)
            .await
            .unwrap_or_else(|e| panic!("round {round}: reading: {e:?}"))
            .unwrap()
            .balance;
        assert_eq!(
            balance,
            1000 - round,
            "round {round}: the refused charge stayed"
        );
        next.set_balance(1, balance - 1)
            .await
            .unwrap_or_else(|e| panic!("round {round}: writing after a read: {e:?}"));
        next.commit().await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(store.account(1).await.unwrap().unwrap().balance, 800);
}
