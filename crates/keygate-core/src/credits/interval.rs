//! [`Refill`] and [`RefillInterval`]: when and how far a balance refills.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Time};

use super::MAX_CREDITS;

const DAY: u64 = 86_400;
/// The longest refill period: a year of 366 days.
const MAX_PERIOD: u64 = 366 * DAY;

/// How a balance refills: to `amount` credits at the start of each
/// `interval`, lazily (at the first charge or read in a new period).
///
/// Its text form is `{amount}/{interval}`: `20/day`, `1000/month`,
/// `500/6h`.
///
/// ```
/// use keygate_core::{Refill, RefillInterval};
///
/// let refill: Refill = "1000/month".parse()?;
/// assert_eq!(refill, Refill::monthly(1000)?);
/// assert_eq!(refill.interval, RefillInterval::Monthly);
/// assert_eq!("500/6h".parse::<Refill>()?.to_string(), "500/6h");
/// # Ok::<(), keygate_core::InvalidRefill>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRefill")]
pub struct Refill {
    /// The balance each refill tops up to (1 to [`MAX_CREDITS`]).
    pub amount: u64,
    /// When refills happen.
    pub interval: RefillInterval,
}

impl Refill {
    /// Tops up to `amount` at each midnight UTC.
    ///
    /// # Errors
    ///
    /// `amount` is 0 or above [`MAX_CREDITS`].
    pub fn daily(amount: u64) -> Result<Self, InvalidRefill> {
        Self::new(amount, RefillInterval::Daily)
    }

    /// Tops up to `amount` on the first of each month, midnight UTC.
    ///
    /// # Errors
    ///
    /// `amount` is 0 or above [`MAX_CREDITS`].
    pub fn monthly(amount: u64) -> Result<Self, InvalidRefill> {
        Self::new(amount, RefillInterval::Monthly)
    }

    /// Tops up to `amount` every `period` (whole seconds, 1 s to 366
    /// days), counted from the Unix epoch, so every process agrees on when
    /// a period starts.
    ///
    /// # Errors
    ///
    /// `amount` or `period` out of range.
    pub fn every(amount: u64, period: Duration) -> Result<Self, InvalidRefill> {
        Self::new(amount, RefillInterval::every(period)?)
    }

    /// This refill, if every field is in range (its fields are public, so a
    /// refill built by hand may not be); a period of exactly a day becomes
    /// [`RefillInterval::Daily`], as stores read it back.
    ///
    /// # Errors
    ///
    /// An amount or period out of range.
    pub fn checked(self) -> Result<Self, InvalidRefill> {
        let interval = match self.interval {
            RefillInterval::Every(period) => RefillInterval::every(period)?,
            other => other,
        };
        Self::new(self.amount, interval)
    }

    /// Tops up to `amount` at the start of each `interval`.
    ///
    /// # Errors
    ///
    /// `amount` is 0 or above [`MAX_CREDITS`].
    pub fn new(amount: u64, interval: RefillInterval) -> Result<Self, InvalidRefill> {
        if amount == 0 || amount > MAX_CREDITS {
            return Err(InvalidRefill::new(format!(
                "a refill amount is 1 to {MAX_CREDITS} credits"
            )));
        }
        Ok(Self { amount, interval })
    }
}

#[derive(Deserialize)]
struct RawRefill {
    amount: u64,
    interval: RefillInterval,
}

impl TryFrom<RawRefill> for Refill {
    type Error = InvalidRefill;

    fn try_from(raw: RawRefill) -> Result<Self, Self::Error> {
        Self::new(raw.amount, raw.interval)
    }
}

impl fmt::Display for Refill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.amount, self.interval)
    }
}

impl FromStr for Refill {
    type Err = InvalidRefill;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (amount, interval) = s.trim().split_once('/').ok_or_else(|| {
            InvalidRefill::new("a refill is `{amount}/{interval}`, e.g. `20/day`")
        })?;
        let amount = amount
            .trim()
            .parse()
            .map_err(|_| InvalidRefill::new(format!("a refill amount is 1 to {MAX_CREDITS}")))?;
        Self::new(amount, interval.parse()?)
    }
}

/// When a balance refills. Periods are in UTC and start at fixed instants
/// every process computes alike: midnight, the first of the month, or
/// multiples of the period since the Unix epoch.
///
/// Text form: `day`, `month`, or a period such as `90s`, `15min`, `6h`,
/// `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefillInterval {
    /// Each day at midnight UTC.
    Daily,
    /// The first of each month at midnight UTC.
    Monthly,
    /// Every so many seconds since the Unix epoch (never exactly a day:
    /// that is [`Daily`](Self::Daily)).
    Every(Duration),
}

impl RefillInterval {
    /// The interval of `period`: whole seconds, 1 s to 366 days; a day is
    /// [`Daily`](Self::Daily).
    ///
    /// # Errors
    ///
    /// `period` out of range or not whole seconds.
    pub fn every(period: Duration) -> Result<Self, InvalidRefill> {
        let secs = period.as_secs();
        if period.subsec_nanos() != 0 || secs == 0 || secs > MAX_PERIOD {
            return Err(InvalidRefill::new(
                "a refill period is whole seconds, from 1 s to 366 days",
            ));
        }
        Ok(Self::from_period_secs(secs))
    }

    fn from_period_secs(secs: u64) -> Self {
        if secs == DAY {
            Self::Daily
        } else {
            Self::Every(Duration::from_secs(secs))
        }
    }

    /// The interval as stores keep it: its period in seconds, `0` for
    /// [`Monthly`](Self::Monthly) (calendar months have no fixed length).
    pub fn as_seconds(self) -> u64 {
        match self {
            Self::Daily => DAY,
            Self::Monthly => 0,
            Self::Every(d) => d.as_secs(),
        }
    }

    /// The interval a store kept with [`as_seconds`](Self::as_seconds).
    ///
    /// # Errors
    ///
    /// A period out of range (the store holds invalid data).
    pub fn from_seconds(secs: u64) -> Result<Self, InvalidRefill> {
        match secs {
            0 => Ok(Self::Monthly),
            s if s <= MAX_PERIOD => Ok(Self::from_period_secs(s)),
            _ => Err(InvalidRefill::new("a refill period is at most 366 days")),
        }
    }

    /// The start of the period `now` falls in. (`now` itself for the few
    /// instants `time` can hold in some offset but not in UTC, at the ends
    /// of its range: never a panic.)
    pub fn period_start(self, now: OffsetDateTime) -> OffsetDateTime {
        let Some(now) = now.checked_to_offset(time::UtcOffset::UTC) else {
            return now;
        };
        match self {
            Self::Monthly => now
                .replace_date(month_start(now.date()))
                .replace_time(Time::MIDNIGHT),
            Self::Daily | Self::Every(_) => {
                let period = i64::try_from(self.as_seconds()).unwrap_or(i64::MAX);
                // A hand-built `Every` under a second has no period.
                if period == 0 {
                    return now;
                }
                let t = now.unix_timestamp();
                // `OffsetDateTime` never goes below year -9999, so this
                // stays in range.
                OffsetDateTime::from_unix_timestamp(t.div_euclid(period) * period).unwrap_or(now)
            }
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next_start(self, start: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::Monthly => {
                let date = start.date();
                let next = match date.month() {
                    Month::December => Date::from_calendar_date(date.year() + 1, Month::January, 1),
                    m => Date::from_calendar_date(date.year(), m.next(), 1),
                };
                next.map_or(start, |d| start.replace_date(d))
            }
            Self::Daily | Self::Every(_) => start.saturating_add(time::Duration::seconds(
                i64::try_from(self.as_seconds()).unwrap_or(i64::MAX),
            )),
        }
    }
}

fn month_start(date: Date) -> Date {
    date.replace_day(1).unwrap_or(date)
}

impl fmt::Display for RefillInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Daily => f.write_str("day"),
            Self::Monthly => f.write_str("month"),
            Self::Every(d) => {
                let s = d.as_secs();
                if s % DAY == 0 {
                    write!(f, "{}d", s / DAY)
                } else if s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s % 60 == 0 {
                    write!(f, "{}min", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

impl FromStr for RefillInterval {
    type Err = InvalidRefill;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "day" | "daily" => return Ok(Self::Daily),
            "month" | "monthly" => return Ok(Self::Monthly),
            _ => {}
        }
        let unknown = || {
            InvalidRefill::new(format!(
                "unknown refill interval {:?}: use `day`, `month`, or a period such as `90s`, `15min`, `6h`, `7d`",
                s.chars().take(32).collect::<String>()
            ))
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(unknown)?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| unknown())?;
        let unit_secs = match unit {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "d" => DAY,
            _ => return Err(unknown()),
        };
        Self::every(Duration::from_secs(
            n.checked_mul(unit_secs).ok_or_else(unknown)?,
        ))
    }
}

impl Serialize for RefillInterval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RefillInterval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A refill that cannot be: an amount of 0 or above
/// [`MAX_CREDITS`], a period out of range, or text that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRefill(String);

impl InvalidRefill {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
