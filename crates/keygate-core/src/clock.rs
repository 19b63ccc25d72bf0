//! Wall-clock time, injectable so tests can move it.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use time::OffsetDateTime;

use crate::sync::lock;

/// A source of the current time, used for expiry and revocation checks.
///
/// The layer reads it on every request: expiry is exact to this clock, never
/// cached as "still valid".
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; for tests.
///
/// Clones share the same time.
///
/// ```
/// use keygate_core::{Clock, FakeClock};
/// use std::time::Duration;
///
/// let clock = FakeClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), time::macros::datetime!(2030-01-01 0:01:30 UTC));
/// ```
#[derive(Clone, Debug)]
pub struct FakeClock(Arc<Mutex<OffsetDateTime>>);

impl FakeClock {
    /// A clock stopped at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// A clock stopped at the current system time.
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = lock(&self.0);
        *t += by;
    }

    /// Sets the clock.
    pub fn set(&self, at: OffsetDateTime) {
        *lock(&self.0) = at;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        *lock(&self.0)
    }
}
