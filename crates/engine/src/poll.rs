//! Polling with a growing pause.
//!
//! A redis-server answers about ten milliseconds after spawn and a replica syncs a few after
//! that; a fixed 50 ms poll would add most of that interval to every start. So polls are
//! 1 ms apart for a short while (each is a refused connect or one round trip on loopback),
//! then the pauses double up to a cap, so slow events (a big AOF loading, a lagging replica)
//! cost few polls.

use std::time::Duration;

/// The pauses between polls: `first` until `fast_for` has passed since the first pause,
/// then doubled each time, never more than `cap`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
    fast_until: Option<tokio::time::Instant>,
    fast_for: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, fast_for: Duration, cap: Duration) -> Backoff {
        Backoff {
            next: first,
            cap,
            fast_until: None,
            fast_for,
        }
    }

    /// Readiness and exit of a process: every 1 ms for 100 ms, then doubling to 50 ms.
    pub(crate) fn process() -> Backoff {
        Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(100),
            Duration::from_millis(50),
        )
    }

    /// Sleeps for the current pause and, once the fast window is over, grows the next one.
    pub(crate) async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        let fast_until = *self.fast_until.get_or_insert(now + self.fast_for);
        tokio::time::sleep(self.next).await;
        if tokio::time::Instant::now() >= fast_until {
            self.next = (self.next * 2).min(self.cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fast_polls_first_then_pauses_double_up_to_the_cap() {
        let mut b = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(3),
            Duration::from_millis(5),
        );
        let t0 = tokio::time::Instant::now();
        let mut seen = Vec::new();
        for _ in 0..7 {
            let before = tokio::time::Instant::now();
            b.wait().await;
            seen.push((tokio::time::Instant::now() - before).as_millis());
        }
        assert_eq!(seen, vec![1, 1, 1, 2, 4, 5, 5]);
        assert_eq!((tokio::time::Instant::now() - t0).as_millis(), 19);
    }
}
