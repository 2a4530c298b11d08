//! Guards every dialect shares: the replay window and per-account, per-action rate limits
//! (token buckets).
//!
//! Replay: a request's Timestamp must be within the window of crsd's clock, both ways, and
//! what makes a signed request unique may be used once while its Timestamp is inside the
//! window: a Nonce per SecretId (v2, the 3.0 old signature, Capital Online) or, for TC3,
//! which carries no nonce, the signature itself. The SDKs sign only `content-type;host`, so
//! without this a captured TC3 request could be sent again, or sent to another action
//! (`X-TC-Action` is not signed). So a request that changes something (or mints access, as
//! DescribeBackupUrl's download links do) is accepted only with a signature never used before,
//! whatever action used it. A request that only reads is answered even with a used signature:
//! two identical reads in the same second sign alike, and so do two actions sent the same
//! parameters, which SDK poll loops and scripts do all the time; refusing those would break
//! the clients, and answering a read again changes nothing. A client that retries a change
//! must sign it again, in a later second.
//!
//! What was used is kept in memory and, when crsd gives the guard a folder, in a journal
//! there ([`crate::replay_journal`]), so a restart does not forget it. Rate limits live in
//! memory only.

use crate::replay_journal::{Journal, Key};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

pub struct ReplayGuard {
    window: i64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// What was used -> when its request leaves the window (unix seconds).
    used: HashMap<Key, i64>,
    last_prune: i64,
    journal: Option<Journal>,
    /// When a journal write last failed (logged at most once a minute).
    last_journal_error: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReplayError {
    Stale,
    NonceReused,
}

impl ReplayGuard {
    /// A guard that remembers in memory only (tests, tools).
    pub fn new(window_secs: i64) -> ReplayGuard {
        ReplayGuard {
            window: window_secs.max(0),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// A guard that also keeps what was used in a journal under `dir`, and starts with what
    /// the journal holds from before a restart.
    pub fn with_journal(window_secs: i64, dir: &Path, now: i64) -> std::io::Result<ReplayGuard> {
        let guard = ReplayGuard::new(window_secs);
        let (journal, used) = Journal::open(dir, guard.window, now)?;
        {
            let mut seen = guard.lock();
            seen.used = used;
            seen.journal = Some(journal);
            seen.last_prune = now;
        }
        Ok(guard)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`ReplayGuard::check`] with its refusal as the domain error every dialect renders.
    pub fn admit(
        &self,
        secret_id: &str,
        nonce: &str,
        timestamp: i64,
        now: i64,
    ) -> Result<(), crsd_core::Error> {
        self.check(secret_id, nonce, timestamp, now)
            .map_err(|e| match e {
                ReplayError::Stale => self.stale(timestamp, now),
                ReplayError::NonceReused => {
                    crsd_core::Error::NonceReused(format!("Nonce {nonce} was already used"))
                }
            })
    }

    /// For TC3, which carries no nonce: the timestamp window, and a signature used before
    /// is refused unless this request only reads (`reads_only`).
    pub fn admit_signature(
        &self,
        signature: &str,
        reads_only: bool,
        timestamp: i64,
        now: i64,
    ) -> Result<(), crsd_core::Error> {
        if !self.in_window(timestamp, now) {
            return Err(self.stale(timestamp, now));
        }
        if self.first_use(key(&["tc3", signature]), timestamp, now) || reads_only {
            return Ok(());
        }
        Err(crsd_core::Error::NonceReused(
            "this signature was already used: a request that changes something is accepted \
             only with a signature never used before, so sign it again in a later second"
                .into(),
        ))
    }

    fn in_window(&self, timestamp: i64, now: i64) -> bool {
        now.abs_diff(timestamp) <= self.window.unsigned_abs()
    }

    fn stale(&self, timestamp: i64, now: i64) -> crsd_core::Error {
        crsd_core::Error::StaleRequest(format!(
            "Timestamp {timestamp} is more than {} s from the server time {now}",
            self.window
        ))
    }

    /// Checks the timestamp against `now` and records the nonce. Call only after the
    /// signature verified, so nobody can burn another's nonces.
    pub fn check(
        &self,
        secret_id: &str,
        nonce: &str,
        timestamp: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        if !self.in_window(timestamp, now) {
            return Err(ReplayError::Stale);
        }
        if !self.first_use(key(&["nonce", secret_id, nonce]), timestamp, now) {
            return Err(ReplayError::NonceReused);
        }
        Ok(())
    }

    /// Records `key` as used by a request of `timestamp` (already inside the window); false
    /// when it was used before.
    fn first_use(&self, key: Key, timestamp: i64, now: i64) -> bool {
        let expires = timestamp.saturating_add(self.window);
        let mut seen = self.lock();
        if now.saturating_sub(seen.last_prune) > self.window {
            seen.used.retain(|_, exp| *exp >= now);
            seen.last_prune = now;
        }
        if seen.used.get(&key).is_some_and(|exp| *exp >= now) {
            return false;
        }
        seen.used.insert(key, expires);
        // A journal that cannot be written (a full disk) leaves the guard in memory only:
        // the API keeps answering, and the error is logged.
        if let Some(Err(e)) = seen.journal.as_mut().map(|j| j.append(&key, expires, now)) {
            if now.saturating_sub(seen.last_journal_error) >= 60 {
                seen.last_journal_error = now;
                tracing::error!(error = %e, "cannot write the replay journal: used nonces and signatures are kept in memory only until it can");
            }
        }
        true
    }
}

/// The journal's key for what a request used: a SHA-256 prefix of its parts, each
/// length-prefixed so that no two different part lists hash alike.
fn key(parts: &[&str]) -> Key {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()[..16].try_into().expect("16 bytes")
}

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<(i64, String), (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate: rate_per_second,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for (account, action); false when the bucket is empty.
    pub fn allow(&self, app_id: i64, action: &str) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let entry = buckets
            .entry((app_id, action.to_string()))
            .or_insert((self.burst, now));
        let elapsed = now.duration_since(entry.1).as_secs_f64();
        entry.0 = (entry.0 + elapsed * self.rate).min(self.burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_and_nonces() {
        let g = ReplayGuard::new(300);
        assert_eq!(g.check("a", "1", 1000, 1000), Ok(()));
        assert_eq!(g.check("a", "1", 1000, 1001), Err(ReplayError::NonceReused));
        assert_eq!(
            g.check("b", "1", 1000, 1001),
            Ok(()),
            "nonces are per SecretId"
        );
        assert_eq!(g.check("a", "2", 1000 - 301, 1000), Err(ReplayError::Stale));
        assert_eq!(
            g.check("a", "3", 1000 + 301, 1000),
            Err(ReplayError::Stale),
            "future too"
        );
        assert_eq!(g.check("a", "4", 1300, 1000), Ok(()));
        // Timestamps far from now do not wrap around into the window.
        assert_eq!(
            g.check("a", "5", i64::MIN + 1000, 1000),
            Err(ReplayError::Stale)
        );
        assert_eq!(g.check("a", "6", i64::MIN, 1000), Err(ReplayError::Stale));
        assert_eq!(g.check("a", "7", i64::MAX, 1000), Err(ReplayError::Stale));
    }

    #[test]
    fn a_tc3_signature_changes_something_once() {
        let g = ReplayGuard::new(300);
        let replay =
            |r: Result<(), crsd_core::Error>| matches!(r, Err(crsd_core::Error::NonceReused(_)));
        assert!(g.admit_signature("ab12", false, 1000, 1000).is_ok());
        assert!(replay(g.admit_signature("ab12", false, 1000, 1001)));
        assert!(g.admit_signature("ab12", true, 1000, 1001).is_ok());
        assert!(g.admit_signature("ab13", false, 1000, 1001).is_ok());
        // A read, repeated: answered; the same signature for a change: refused.
        assert!(g.admit_signature("ef", true, 1000, 1000).is_ok());
        assert!(g.admit_signature("ef", true, 1000, 1000).is_ok());
        assert!(replay(g.admit_signature("ef", false, 1000, 1001)));
        // A nonce with the same text is another thing.
        assert_eq!(g.check("ab12", "", 1000, 1001), Ok(()));
        assert!(matches!(
            g.admit_signature("cd", true, 600, 1000),
            Err(crsd_core::Error::StaleRequest(_))
        ));
    }

    #[test]
    fn what_was_used_survives_a_restart_through_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let g = ReplayGuard::with_journal(300, dir.path(), 1000).unwrap();
        assert_eq!(g.check("a", "1", 1000, 1000), Ok(()));
        assert!(g.admit_signature("ff", false, 1000, 1000).is_ok());
        drop(g);
        let g = ReplayGuard::with_journal(300, dir.path(), 1200).unwrap();
        assert_eq!(g.check("a", "1", 1000, 1200), Err(ReplayError::NonceReused));
        assert!(g.admit_signature("ff", false, 1000, 1200).is_err());
        assert_eq!(g.check("a", "2", 1000, 1200), Ok(()));
    }

    #[test]
    fn timestamps_far_off_do_not_wrap_into_the_window() {
        let g = ReplayGuard::new(300);
        let now = 1_800_000_000;
        // `now + i64::MIN` is now − 2^63, the value whose distance to now wrapped.
        for ts in [now + i64::MIN, i64::MIN, i64::MAX, now + i64::MAX / 2 + 1] {
            assert_eq!(
                g.check("a", &ts.to_string(), ts, now),
                Err(ReplayError::Stale),
                "{ts}"
            );
            assert!(g.admit_signature("s", true, ts, now).is_err(), "{ts}");
        }
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refuses() {
        let l = RateLimiter::new(1.0, 3.0);
        assert!(l.allow(1, "DescribeRedis"));
        assert!(l.allow(1, "DescribeRedis"));
        assert!(l.allow(1, "DescribeRedis"));
        assert!(!l.allow(1, "DescribeRedis"));
        assert!(l.allow(1, "CreateRedis"), "buckets are per action");
        assert!(l.allow(2, "DescribeRedis"), "and per account");
    }
}
