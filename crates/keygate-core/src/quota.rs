//! Rate-limit quotas, written like governor's: `Quota::per_second(100)`.

use std::{fmt, num::NonZeroU32, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

/// How many requests a key may make per period.
///
/// A quota of `n` per period admits a burst of `n` at once and then refills
/// evenly, one request every `period / n` (the GCRA that governor runs).
/// Its text form is `n/unit` — `100/s`, `600/min`, `10000/h`, `50000/d`, or
/// `n/{count}{unit}` such as `10/30s` — and that is how it is stored and
/// serialized.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: NonZeroU32,
    period: Duration,
}

impl Quota {
    /// `limit` requests per `period`.
    ///
    /// # Errors
    ///
    /// [`InvalidQuota`] if `limit` is zero or `period` is shorter than a
    /// millisecond or longer than a year.
    pub fn new(limit: u32, period: Duration) -> Result<Self, InvalidQuota> {
        let limit = NonZeroU32::new(limit).ok_or(InvalidQuota::ZeroLimit)?;
        if period < Duration::from_millis(1) || period > Duration::from_secs(366 * 86_400) {
            return Err(InvalidQuota::Period);
        }
        Ok(Self { limit, period })
    }

    const fn per(limit: u32, secs: u64) -> Self {
        match NonZeroU32::new(limit) {
            Some(limit) => Self {
                limit,
                period: Duration::from_secs(secs),
            },
            None => panic!("a quota's limit must be at least 1"),
        }
    }

    /// `n` requests per second.
    ///
    /// # Panics
    ///
    /// If `n` is zero. Use [`Quota::new`] for values from configuration.
    pub const fn per_second(n: u32) -> Self {
        Self::per(n, 1)
    }

    /// `n` requests per minute.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub const fn per_minute(n: u32) -> Self {
        Self::per(n, 60)
    }

    /// `n` requests per hour.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub const fn per_hour(n: u32) -> Self {
        Self::per(n, 3_600)
    }

    /// `n` requests per day.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub const fn per_day(n: u32) -> Self {
        Self::per(n, 86_400)
    }

    /// Requests admitted per period (and the largest burst).
    pub const fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The time in which one request's worth of quota refills.
    pub fn replenish_interval(&self) -> Duration {
        self.period / self.limit.get()
    }

    /// This quota as governor's.
    pub fn to_governor(&self) -> governor::Quota {
        // `with_period` only fails for a zero interval, which `new` rules out
        // for all but absurd limits; fall back to the shortest interval.
        let interval = self.replenish_interval().max(Duration::from_nanos(1));
        governor::Quota::with_period(interval)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.limit)
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota({self})")
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let (count, unit) = if ms.is_multiple_of(86_400_000) {
            (ms / 86_400_000, "d")
        } else if ms.is_multiple_of(3_600_000) {
            (ms / 3_600_000, "h")
        } else if ms.is_multiple_of(60_000) {
            (ms / 60_000, "min")
        } else if ms.is_multiple_of(1_000) {
            (ms / 1_000, "s")
        } else {
            (ms, "ms")
        };
        if count == 1 {
            write!(f, "{}/{unit}", self.limit)
        } else {
            write!(f, "{}/{count}{unit}", self.limit)
        }
    }
}

impl FromStr for Quota {
    type Err = InvalidQuota;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (limit, per) = s.trim().split_once('/').ok_or(InvalidQuota::Syntax)?;
        let limit: u32 = limit.trim().parse().map_err(|_| InvalidQuota::Syntax)?;
        let per = per.trim();
        let digits = per.bytes().take_while(u8::is_ascii_digit).count();
        let count: u64 = if digits == 0 {
            1
        } else {
            per[..digits].parse().map_err(|_| InvalidQuota::Syntax)?
        };
        let unit_ms: u64 = match &per[digits..] {
            "ms" => 1,
            "s" | "sec" | "second" | "seconds" => 1_000,
            "m" | "min" | "minute" | "minutes" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            _ => return Err(InvalidQuota::Syntax),
        };
        let ms = count.checked_mul(unit_ms).ok_or(InvalidQuota::Period)?;
        Self::new(limit, Duration::from_millis(ms))
    }
}

impl Serialize for Quota {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a quota is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidQuota {
    /// The limit is zero.
    #[error("a quota admits at least one request per period")]
    ZeroLimit,
    /// The period is out of range.
    #[error("a quota's period is between 1 ms and 366 days")]
    Period,
    /// The text form is not `n/unit`.
    #[error("write a quota as `n/unit`, e.g. `100/s`, `600/min`, `10000/h`, `10/30s`")]
    Syntax,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for (text, q) in [
            ("100/s", Quota::per_second(100)),
            ("600/min", Quota::per_minute(600)),
            ("10000/h", Quota::per_hour(10_000)),
            ("5/d", Quota::per_day(5)),
            ("10/30s", Quota::new(10, Duration::from_secs(30)).unwrap()),
            (
                "3/250ms",
                Quota::new(3, Duration::from_millis(250)).unwrap(),
            ),
        ] {
            assert_eq!(text.parse::<Quota>().unwrap(), q);
            assert_eq!(q.to_string(), text);
        }
        assert_eq!("7 / minute".parse::<Quota>().unwrap(), Quota::per_minute(7));
    }

    #[test]
    fn bad_quotas_are_errors() {
        assert_eq!("0/s".parse::<Quota>().unwrap_err(), InvalidQuota::ZeroLimit);
        assert_eq!(
            "5/fortnight".parse::<Quota>().unwrap_err(),
            InvalidQuota::Syntax
        );
        assert_eq!("5".parse::<Quota>().unwrap_err(), InvalidQuota::Syntax);
        assert_eq!("5/400d".parse::<Quota>().unwrap_err(), InvalidQuota::Period);
        assert_eq!("5/0s".parse::<Quota>().unwrap_err(), InvalidQuota::Period);
        assert_eq!(
            format!("5/{}d", u64::MAX).parse::<Quota>().unwrap_err(),
            InvalidQuota::Period
        );
    }

    #[test]
    fn governor_quota_has_the_same_shape() {
        let g = Quota::per_minute(60).to_governor();
        assert_eq!(g.burst_size().get(), 60);
        assert_eq!(g.replenish_interval(), Duration::from_secs(1));
    }
}
