//! When to reconnect a long-lived connection, such as a store's
//! invalidation feed, after it failed.

use std::time::Duration;

/// The wait before each attempt to (re)connect a long-lived connection: none
/// at first, then doubling on each failure up to a maximum.
///
/// A connection that stayed up for the "stable" time before it was lost is
/// taken as healthy, and reconnected at once; one lost sooner counts as one
/// more failure, so a server that accepts and then keeps dropping us is not
/// hammered.
///
/// The `Default` is what keygate's feeds use (PostgreSQL LISTEN, Redis
/// pub/sub): 100 ms first, 5 s at most, stable after 10 s.
///
/// ```
/// use std::time::Duration;
///
/// use keygate_core::Backoff;
///
/// let mut backoff = Backoff::default();
/// assert_eq!(backoff.delay(), None);
/// assert_eq!(backoff.failed(), Duration::from_millis(100));
/// assert_eq!(backoff.failed(), Duration::from_millis(200));
/// // Up for a minute: the next attempt is made at once.
/// backoff.lost(Duration::from_secs(60));
/// assert_eq!(backoff.delay(), None);
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    stable_after: Duration,
    /// The wait before the next attempt; `None` for at once.
    delay: Option<Duration>,
}

impl Backoff {
    /// Waits `first` after the first failure, doubling on each further one up
    /// to `max`; a connection up for `stable_after` resets it.
    #[must_use]
    pub const fn new(first: Duration, max: Duration, stable_after: Duration) -> Self {
        Self {
            first,
            max,
            stable_after,
            delay: None,
        }
    }

    /// The wait before the next attempt, `None` when it is to be made at once.
    #[must_use]
    pub const fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// Sleeps for [`delay`](Self::delay), returning at once when there is none.
    ///
    /// Cancel-safe: race it against whatever should end the loop instead.
    pub async fn wait(&self) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// Records that an attempt to connect failed, and returns the wait before
    /// the next one (for the log).
    pub fn failed(&mut self) -> Duration {
        let next = self.next();
        self.delay = Some(next);
        next
    }

    /// Records that a connection was lost after being up for `up_for`: at
    /// least the stable time resets the backoff, less counts as a failure.
    pub fn lost(&mut self, up_for: Duration) {
        self.delay = (up_for < self.stable_after).then(|| self.next());
    }

    fn next(&self) -> Duration {
        self.delay
            .map_or(self.first, |delay| delay.saturating_mul(2).min(self.max))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff() -> Backoff {
        Backoff::new(100 * MS, 1000 * MS, 10_000 * MS)
    }

    #[test]
    fn first_attempt_is_at_once() {
        assert_eq!(backoff().delay(), None);
    }

    #[test]
    fn failures_double_the_wait_up_to_the_max() {
        let mut backoff = backoff();
        let waits: Vec<_> = (0..6).map(|_| backoff.failed()).collect();
        assert_eq!(
            waits,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(backoff.delay(), Some(1000 * MS));
    }

    #[test]
    fn a_stable_connection_resets_the_wait() {
        let mut backoff = backoff();
        backoff.failed();
        backoff.failed();
        backoff.lost(10_000 * MS);
        assert_eq!(backoff.delay(), None);
        assert_eq!(backoff.failed(), 100 * MS);
    }

    #[test]
    fn a_short_lived_connection_counts_as_a_failure() {
        let mut backoff = backoff();
        backoff.lost(9_999 * MS);
        assert_eq!(backoff.delay(), Some(100 * MS));
        backoff.failed();
        backoff.lost(MS);
        assert_eq!(backoff.delay(), Some(400 * MS));
    }

    #[test]
    fn the_default_is_the_feeds_settings() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.failed(), 100 * MS);
        for _ in 0..10 {
            backoff.failed();
        }
        assert_eq!(backoff.delay(), Some(5000 * MS));
        backoff.lost(9_999 * MS);
        assert_eq!(backoff.delay(), Some(5000 * MS));
        backoff.lost(10_000 * MS);
        assert_eq!(backoff.delay(), None);
    }

    /// `wait` sleeps the delay on tokio's clock, so a paused runtime shows
    /// it without a real sleep.
    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_the_delay() {
        let mut backoff = backoff();
        let start = tokio::time::Instant::now();
        backoff.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        backoff.failed();
        backoff.wait().await;
        assert_eq!(start.elapsed(), 100 * MS);
    }
}
