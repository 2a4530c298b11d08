//! The open-file limit, and how many connections the API may hold under it.
//!
//! Every connection costs a descriptor, and so does everything crsd does for its tenants:
//! reading /proc to supervise redis-server, admin connections to each instance, the SQLite
//! files, backup files. A distribution's default soft limit (1,024) is easily used up by
//! connections alone, and then the supervisor can no longer look at its nodes. So crsd raises
//! its soft limit to the hard limit at start, and keeps `reserve` descriptors out of what
//! connections may take.

/// The soft and hard RLIMIT_NOFILE after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
}

/// Above this many connections the derived cap stops growing: each open connection may hold
/// a request head's buffer, so the cap bounds memory as well as descriptors.
const MAX_DERIVED_CONNECTIONS: u64 = 8192;

/// Raises the soft open-file limit to the hard one (an unlimited hard limit: to the kernel's
/// `fs.nr_open`). Returns the limits in force afterwards.
pub fn raise() -> std::io::Result<NoFile> {
    let mut lim = get()?;
    let mut target = lim.rlim_max;
    if target == libc::RLIM_INFINITY {
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = get()?;
    }
    Ok(NoFile {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

fn get() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim)
}

/// How many connections the API may hold with `soft` descriptors: `soft - reserve` (at most
/// half of them when the limit is too small for the whole reserve), at least 1 and at most
/// [`MAX_DERIVED_CONNECTIONS`].
pub fn connection_cap(soft: u64, reserve: u64) -> usize {
    let reserve = reserve.min(soft / 2);
    let cap = soft
        .saturating_sub(reserve)
        .clamp(1, MAX_DERIVED_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_the_reserve_free() {
        assert_eq!(connection_cap(1024, 256), 768);
        assert_eq!(connection_cap(256, 256), 128);
        assert_eq!(connection_cap(65536, 256), 8192);
        assert_eq!(connection_cap(1, 256), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let now = raise().expect("raise");
        assert!(now.soft == now.hard || now.hard == libc::RLIM_INFINITY);
    }
}
