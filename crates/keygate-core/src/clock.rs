//! Wall-clock time, injectable so tests can move it.

use std::{
    cell::Cell,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
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
        utc(SystemTime::now())
    }
}

/// `t` as an `OffsetDateTime`, exactly as `OffsetDateTime::from(t)` has it.
///
/// Turning a count of seconds into a calendar date is the expensive part
/// of reading the clock, and the layer reads it on every request: each
/// thread remembers the last whole second it converted, and a reading in
/// the same second only replaces the nanoseconds.
fn utc(t: SystemTime) -> OffsetDateTime {
    thread_local! {
        static SECOND: Cell<(u64, OffsetDateTime)> =
            const { Cell::new((u64::MAX, OffsetDateTime::UNIX_EPOCH)) };
    }
    let Ok(since) = t.duration_since(SystemTime::UNIX_EPOCH) else {
        return OffsetDateTime::from(t);
    };
    let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
    let cached = SECOND.try_with(|second| {
        let (at, base) = second.get();
        if at == secs {
            return base.replace_nanosecond(nanos).ok();
        }
        let base = i64::try_from(secs)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())?;
        second.set((secs, base));
        base.replace_nanosecond(nanos).ok()
    });
    // Out of `time`'s range, or the thread is exiting: the plain way.
    cached
        .ok()
        .flatten()
        .unwrap_or_else(|| OffsetDateTime::from(t))
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use time::OffsetDateTime;

    use super::{Clock, SystemClock, utc};

    /// The remembered second never changes an answer: every reading,
    /// within a second, across second and day boundaries, back and
    /// forth, and before 1970, equals the plain conversion.
    #[test]
    fn system_time_converts_as_time_does() {
        let epoch = SystemTime::UNIX_EPOCH;
        let mut readings = Vec::new();
        for base in [
            0,
            1,
            86_399,
            86_400,
            951_782_399,
            1_700_000_000,
            4_102_444_799,
        ] {
            for nanos in [0, 1, 499_999_999, 999_999_999] {
                readings.push(epoch + Duration::new(base, nanos));
            }
        }
        // Backwards, and the same second again after another.
        readings.extend(readings.clone().into_iter().rev());
        readings.push(epoch - Duration::new(86_400, 5));
        readings.push(epoch - Duration::from_nanos(1));
        readings.push(epoch + Duration::new(1_700_000_000, 7));
        for t in readings {
            assert_eq!(utc(t), OffsetDateTime::from(t), "{t:?}");
        }
    }

    #[test]
    fn system_clock_tells_the_system_time() {
        let before = OffsetDateTime::now_utc();
        let now = SystemClock.now();
        let after = OffsetDateTime::now_utc();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }
}
