//! Guards every dialect shares: the replay window (Timestamp skew bounded both ways, a Nonce
//! is accepted once per SecretId within the window) and per-account, per-action rate limits
//! (token buckets). Both live in memory: after a restart the Timestamp window still refuses
//! anything older than the window, which bounds what a restart can let through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct ReplayGuard {
    window: i64,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// (secret id, nonce) -> request timestamp.
    nonces: HashMap<(String, String), i64>,
    last_prune: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReplayError {
    Stale,
    NonceReused,
}

impl ReplayGuard {
    pub fn new(window_secs: i64) -> ReplayGuard {
        ReplayGuard {
            window: window_secs,
            seen: Mutex::new(Seen::default()),
        }
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

    /// The timestamp window alone, for signatures that carry no nonce (TC3).
    pub fn admit_time(&self, timestamp: i64, now: i64) -> Result<(), crsd_core::Error> {
        if now.abs_diff(timestamp) > self.window.unsigned_abs() {
            return Err(self.stale(timestamp, now));
        }
        Ok(())
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
        if now.abs_diff(timestamp) > self.window.unsigned_abs() {
            return Err(ReplayError::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if now - seen.last_prune > self.window {
            let horizon = now - 2 * self.window;
            seen.nonces.retain(|_, ts| *ts >= horizon);
            seen.last_prune = now;
        }
        let key = (secret_id.to_string(), nonce.to_string());
        if seen.nonces.contains_key(&key) {
            return Err(ReplayError::NonceReused);
        }
        seen.nonces.insert(key, timestamp);
        Ok(())
    }
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
            assert!(g.admit_time(ts, now).is_err(), "{ts}");
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
