//! The times keygate accepts: [`checked_utc`] and [`checked_after`].
//!
//! Every time that comes in from outside (an expiry in a request, a CLI
//! flag, a `since`, a cursor) goes through one of these before it is used
//! or stored. `time` itself accepts years −9999 to 9999 in any offset, but
//! such a value breaks later: `9999-12-31T23:59:59-23:59` is in year 10000
//! once converted to UTC, which no RFC 3339 text can show and sqlx's
//! PostgreSQL encoder panics on. Bounding every time to years 1970–9999 in
//! UTC keeps every conversion and every formatting of it infallible.

use std::time::Duration;

use time::{OffsetDateTime, UtcOffset, macros::datetime};

/// The earliest time keygate accepts: `1970-01-01T00:00:00Z`.
pub const MIN_TIME: OffsetDateTime = datetime!(1970-01-01 0:00 UTC);

/// The latest time keygate accepts: `9999-12-31T23:59:59.999999Z`.
pub const MAX_TIME: OffsetDateTime = datetime!(9999-12-31 23:59:59.999_999 UTC);

/// The error for a time outside [`MIN_TIME`]..=[`MAX_TIME`] (in UTC), or a
/// duration that takes a time past [`MAX_TIME`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a time must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (in UTC)")]
pub struct TimeOutOfRange(());

/// `t` in UTC, truncated to the microsecond (what every store keeps
/// exactly), if it is within [`MIN_TIME`]..=[`MAX_TIME`] once in UTC.
///
/// ```
/// use keygate_core::{checked_utc, time::macros::datetime};
///
/// let t = checked_utc(datetime!(2030-01-01 12:00:00.1234567 +02:00))?;
/// assert_eq!(t, datetime!(2030-01-01 10:00:00.123456 UTC));
/// assert!(checked_utc(datetime!(9999-12-31 23:59:59 -23:59)).is_err());
/// assert!(checked_utc(datetime!(0000-01-01 0:00 +23:59)).is_err());
/// # Ok::<(), keygate_core::TimeOutOfRange>(())
/// ```
///
/// # Errors
///
/// [`TimeOutOfRange`] outside those bounds.
pub fn checked_utc(t: OffsetDateTime) -> Result<OffsetDateTime, TimeOutOfRange> {
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or(TimeOutOfRange(()))?;
    let utc = to_micros(utc);
    if (MIN_TIME..=MAX_TIME).contains(&utc) {
        Ok(utc)
    } else {
        Err(TimeOutOfRange(()))
    }
}

/// `t + after`, checked as by [`checked_utc`]: `after` may be as large as
/// `Duration::MAX` without overflowing.
///
/// # Errors
///
/// [`TimeOutOfRange`] if `t` is out of range or the sum is past [`MAX_TIME`].
pub fn checked_after(t: OffsetDateTime, after: Duration) -> Result<OffsetDateTime, TimeOutOfRange> {
    let after = time::Duration::try_from(after).map_err(|_| TimeOutOfRange(()))?;
    let t = checked_utc(t)?;
    checked_utc(t.checked_add(after).ok_or(TimeOutOfRange(()))?)
}

/// `t` truncated to the microsecond: what every store (PostgreSQL
/// included) keeps exactly, so records round-trip unchanged.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// `t` as Unix time in whole microseconds, rounded down (towards the past
/// for times before 1970). `time`'s whole range fits.
pub fn unix_micros(t: OffsetDateTime) -> i64 {
    let us = t.unix_timestamp_nanos().div_euclid(1_000);
    // ±9999 years is about ±3.2e17 µs, well inside i64.
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}

/// The inverse of [`unix_micros`]: `None` outside `time`'s range.
pub fn from_unix_micros(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_are_refused_and_never_panic() {
        for bad in [
            datetime!(0000-01-01 0:00 +23:59),
            datetime!(-9999-01-01 0:00 UTC),
            datetime!(9999-12-31 23:59:59 -23:59),
            datetime!(1969-12-31 23:59:59.999999 UTC),
            datetime!(1970-01-01 0:00 +00:01),
            OffsetDateTime::new_in_offset(
                time::Date::MAX,
                time::Time::MAX,
                UtcOffset::from_hms(-25, -59, -59).unwrap(),
            ),
            OffsetDateTime::new_in_offset(
                time::Date::MIN,
                time::Time::MIDNIGHT,
                UtcOffset::from_hms(25, 59, 59).unwrap(),
            ),
        ] {
            assert_eq!(checked_utc(bad), Err(TimeOutOfRange(())), "{bad}");
        }
        assert_eq!(checked_utc(MIN_TIME), Ok(MIN_TIME));
        assert_eq!(checked_utc(MAX_TIME), Ok(MAX_TIME));
        assert_eq!(
            checked_utc(datetime!(9999-12-31 23:59:59.9999999 UTC)),
            Ok(MAX_TIME)
        );
        assert_eq!(
            checked_utc(datetime!(1970-01-01 0:00 -00:01)),
            Ok(datetime!(1970-01-01 0:01 UTC))
        );
    }

    #[test]
    fn durations_are_added_without_overflow() {
        let now = datetime!(2030-01-01 0:00 UTC);
        assert!(checked_after(now, Duration::MAX).is_err());
        assert!(checked_after(now, Duration::from_secs(u64::MAX)).is_err());
        assert!(checked_after(now, Duration::from_secs(i64::MAX as u64)).is_err());
        assert!(checked_after(MAX_TIME, Duration::from_micros(1)).is_err());
        assert_eq!(checked_after(now, Duration::ZERO), Ok(now));
        assert_eq!(
            checked_after(now, Duration::from_secs(86_400)),
            Ok(datetime!(2030-01-02 0:00 UTC))
        );
    }

    #[test]
    fn unix_micros_round_trip_and_round_down() {
        use time::macros::datetime;
        for t in [
            datetime!(2030-05-06 07:08:09.123456 UTC),
            datetime!(1960-01-01 00:00:00.000001 UTC),
            datetime!(-9999-01-01 0:00 UTC),
            datetime!(9999-12-31 23:59:59.999999 UTC),
        ] {
            assert_eq!(from_unix_micros(unix_micros(t)), Some(t));
        }
        let t = datetime!(1969-12-31 23:59:59.9999995 UTC);
        assert_eq!(from_unix_micros(unix_micros(t)), Some(to_micros(t)));
        assert_eq!(to_micros(t), datetime!(1969-12-31 23:59:59.999999 UTC));
        assert_eq!(from_unix_micros(i64::MAX), None);
    }
}
