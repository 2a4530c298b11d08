//! A full disk must not break the store for longer than it lasts. The database lives on a
//! small tmpfs (mounting one needs root / CAP_SYS_ADMIN; without it the test says why it
//! skipped and passes); a filler file takes the rest of the space, so commits fail with
//! SQLITE_FULL, on every connection of the pool, while readers keep the others busy. Once
//! the filler is gone, every later read and write must work: no connection may be left
//! counting a transaction SQLite already rolled back (its next BEGIN would fail with
//! "begin_with at non-zero transaction depth" until the process restarts).

use chrono::Utc;
use crsd_core::model::Account;
use crsd_store::Store;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for one test; unmounted (lazily) on drop, so also when the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

fn account(n: i64, name_len: usize) -> Account {
    Account {
        app_id: 0,
        uin: format!("u{n}"),
        name: "x".repeat(name_len),
        secret_id: format!("id-{n}"),
        secret_key: "key".into(),
        balance: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_connection_works_again_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "4m") else {
        // CI runs as root: there the test must run, not pass by skipping.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a tmpfs under CI"
        );
        eprintln!("skipped: needs CAP_SYS_ADMIN to mount tmpfs");
        return;
    };
    let store = Store::open(&mnt.join("crsd.db")).await.unwrap();
    let mut tx = store.write().await.unwrap();
    let first = tx
        .insert_account(&account(0, 10), Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let filler = mnt.join("filler");
    fill(&filler);

    // Readers on their own connections, so that the writers land on every one of the pool.
    let readers = |rounds: usize| -> Vec<tokio::task::JoinHandle<()>> {
        (0..6)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        store.account(first).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect()
    };

    // The disk is full: big transactions fail, at a statement or at COMMIT.
    let busy = readers(400);
    let mut failures = 0;
    for n in 1..=60 {
        let outcome = async {
            let mut tx = store.write().await?;
            for k in 0..4 {
                tx.insert_account(&account(n * 10 + k, 256 * 1024), Utc::now())
                    .await?;
            }
            tx.commit().await
        }
        .await;
        if outcome.is_err() {
            failures += 1;
        }
    }
    for r in busy {
        r.await.unwrap();
    }
    assert!(failures > 0, "the full disk never failed a write");

    // Space is back: every read and write works, on whichever connection it gets.
    std::fs::remove_file(&filler).unwrap();
    let busy = readers(2000);
    for round in 0..300 {
        let mut tx = store
            .write()
            .await
            .unwrap_or_else(|e| panic!("round {round}: begin: {e:?}"));
        tx.set_balance(first, round)
            .await
            .unwrap_or_else(|e| panic!("round {round}: write: {e:?}"));
        tx.commit()
            .await
            .unwrap_or_else(|e| panic!("round {round}: commit: {e:?}"));
        if round % 3 == 0 {
            // A refused change: dropped, rolled back.
            let mut tx = store.write().await.unwrap();
            tx.set_balance(first, 1_000_000).await.unwrap();
        }
        tokio::task::yield_now().await;
    }
    for r in busy {
        r.await.unwrap();
    }
    assert_eq!(store.account(first).await.unwrap().unwrap().balance, 299);
    store.close().await;
}
