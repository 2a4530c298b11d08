//! Taking over warm nodes (`Engine::claim`) against real redis-server processes: a node
//! started as an empty master with secrets of its own becomes the master or replica its
//! instance's spec says, in place; a second claim (a task resumed after a crash) changes
//! nothing; a warm node that died, or one that answers neither secret, is started from the
//! instance's spec instead.

mod support;

use std::time::Duration;

use crsd_engine::{acl_sha256_hex, NodeSpec, Role};
use support::{random_secret, user_conn, wait_until, Pair, PASSWORD};

/// What the warm pool starts for `spec`'s node: an empty master with its own secrets and a
/// `default` password nobody has.
fn warm_of(spec: &NodeSpec) -> NodeSpec {
    NodeSpec {
        role: Role::Master,
        master: None,
        maxmemory_mb: 16,
        admin_secret: random_secret(),
        repl_secret: random_secret(),
        default_password_sha256: acl_sha256_hex(&random_secret()),
        ..spec.clone()
    }
}

async fn as_admin(
    port: u16,
    secret: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://crsd:{secret}@127.0.0.1:{port}/"))?
        .get_multiplexed_async_connection()
        .await
}

#[tokio::test]
async fn a_claimed_pair_serves_its_instance_and_a_second_claim_changes_nothing() {
    let p = Pair::new();
    let (wm, wr) = (warm_of(&p.master), warm_of(&p.replica));
    let hm = p.engine.start(&wm).await.expect("warm master");
    let hr = p.engine.start(&wr).await.expect("warm replica");
    assert!(
        user_conn(p.master.port, PASSWORD).await.is_err(),
        "not the customer's yet"
    );

    let cm = p
        .engine
        .claim(&p.master, &wm.admin_secret)
        .await
        .expect("claim master");
    let cr = p
        .engine
        .claim(&p.replica, &wr.admin_secret)
        .await
        .expect("claim replica");
    assert_eq!(
        (cm.pid, cr.pid),
        (hm.pid, hr.pid),
        "taken in place, not restarted"
    );
    for (spec, warm) in [(&p.master, &wm), (&p.replica, &wr)] {
        assert!(as_admin(spec.port, &warm.admin_secret).await.is_err());
        assert!(as_admin(spec.port, &spec.admin_secret).await.is_ok());
    }

    // The customer writes to the master; the replica, following it as the instance's
    // replication user, gets the write.
    let mut user = user_conn(p.master.port, PASSWORD).await.expect("customer");
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async::<()>(&mut user)
        .await
        .unwrap();
    wait_until("replica in sync", Duration::from_secs(10), || async {
        p.engine.replica_in_sync(&p.replica).await.unwrap_or(false)
    })
    .await;
    // The write's stream may follow the full sync by up to a second (the master's cron).
    wait_until(
        "the write reaches the replica",
        Duration::from_secs(5),
        || async {
            let Ok(mut r) = as_admin(p.replica.port, &p.replica.admin_secret).await else {
                return false;
            };
            let got: Option<String> = redis::cmd("GET")
                .arg("k")
                .query_async(&mut r)
                .await
                .unwrap_or(None);
            got.as_deref() == Some("v")
        },
    )
    .await;
    let mut r = as_admin(p.replica.port, &p.replica.admin_secret)
        .await
        .unwrap();
    let maxmemory: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(
        maxmemory[1],
        (p.replica.maxmemory_mb * 1024 * 1024).to_string()
    );

    // A resumed task claims again: the same processes, the data kept.
    let again = p
        .engine
        .claim(&p.master, &wm.admin_secret)
        .await
        .expect("again");
    assert_eq!(again.pid, hm.pid);
    let again = p
        .engine
        .claim(&p.replica, &wr.admin_secret)
        .await
        .expect("again");
    assert_eq!(again.pid, hr.pid);
    let got: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut user)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("v"));

    // A restart renders the instance's config (the file still carries the pool's marker):
    // the instance's users, the replica's role and the data.
    p.engine.stop(&p.replica).await.unwrap();
    let restarted = p.engine.start(&p.replica).await.expect("restart");
    assert_ne!(restarted.pid, hr.pid);
    wait_until("replica in sync again", Duration::from_secs(10), || async {
        p.engine.replica_in_sync(&p.replica).await.unwrap_or(false)
    })
    .await;
    let mut r = user_conn(p.replica.port, PASSWORD).await.unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_warm_node_that_died_or_answers_neither_secret_starts_from_the_spec() {
    let p = Pair::new();
    // Died in the pool.
    let wm = warm_of(&p.master);
    let h = p.engine.start(&wm).await.expect("warm master");
    unsafe {
        libc::kill(h.pid as i32, libc::SIGKILL);
    }
    wait_until("the warm node is gone", Duration::from_secs(5), || async {
        !p.engine.is_alive(&wm)
    })
    .await;
    let c = p
        .engine
        .claim(&p.master, &wm.admin_secret)
        .await
        .expect("claim");
    assert_ne!(c.pid, h.pid);
    assert!(user_conn(p.master.port, PASSWORD).await.is_ok());

    // Runs with secrets that are neither the pool's nor the instance's: not trusted.
    let stranger = warm_of(&p.replica);
    let h = p.engine.start(&stranger).await.expect("stranger");
    let c = p
        .engine
        .claim(&p.replica, &random_secret())
        .await
        .expect("claim");
    assert_ne!(c.pid, h.pid, "started anew");
    assert!(as_admin(p.replica.port, &stranger.admin_secret)
        .await
        .is_err());
    wait_until("replica in sync", Duration::from_secs(10), || async {
        p.engine.replica_in_sync(&p.replica).await.unwrap_or(false)
    })
    .await;
}
