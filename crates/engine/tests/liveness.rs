//! `Engine::liveness` tells "dead" from "could not look". Alone in its test binary: it takes
//! the process's file descriptors away for a moment, which would break any test beside it.

mod support;

use crsd_engine::Liveness;
use support::Pair;

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: &libc::rlimit) {
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
}

#[tokio::test]
async fn a_node_that_cannot_be_observed_is_unknown_not_dead() {
    let p = Pair::new();
    p.engine.start(&p.master).await.expect("start");
    let pid = match p.engine.liveness(&p.master) {
        Liveness::Alive(pid) => pid,
        other => panic!("a started node is alive, got {other:?}"),
    };

    // Out of file descriptors: no /proc file, no pid file can be opened.
    let saved = nofile();
    set_nofile(&libc::rlimit {
        rlim_cur: 3,
        rlim_max: saved.rlim_max,
    });
    let starved = p.engine.liveness(&p.master);
    let starved_bool = p.engine.is_alive(&p.master);
    set_nofile(&saved);
    match starved {
        Liveness::Unknown(why) => assert!(why.contains("Too many open files"), "{why}"),
        other => panic!("without descriptors the node is unknown, got {other:?}"),
    }
    assert!(
        !starved_bool,
        "is_alive only says yes when it saw the process"
    );

    assert_eq!(p.engine.liveness(&p.master), Liveness::Alive(pid));
    p.engine.stop(&p.master).await.expect("stop");
    assert_eq!(p.engine.liveness(&p.master), Liveness::Dead);
    // A node never started (no folder, no pid file) is dead too, not unknown.
    assert_eq!(p.engine.liveness(&p.replica), Liveness::Dead);
}
