//! Rate-limit quotas, written like governor's: `Quota::per_second(100)`.

use std::{fmt, num::NonZeroU32, str::FromStr, sync::Arc, time::Duration};

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
    /// millisecond, longer than 366 days, or not a whole number of
    /// milliseconds (which the text form, and so a store, could not keep).
    pub fn new(limit: u32, period: Duration) -> Result<Self, InvalidQuota> {
        let limit = NonZeroU32::new(limit).ok_or(InvalidQuota::ZeroLimit)?;
        if period < Duration::from_millis(1)
            || period > Duration::from_secs(366 * 86_400)
            || !period.subsec_nanos().is_multiple_of(1_000_000)
        {
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

impl Quota {
    /// This quota and `other`, both enforced: `Quota::per_second(10)
    /// .and(Quota::per_day(10_000))`.
    #[must_use]
    pub fn and(self, other: Quota) -> Quotas {
        Quotas::from(self).and(other)
    }
}

/// A key's rate limit: one [`Quota`] or several that every request must all
/// satisfy, e.g. 10 per second *and* 10 000 per day.
///
/// A request is checked against all of them at once: if one rejects it,
/// none is charged (all-or-nothing), so a burst refused by the per-second
/// quota costs nothing from the daily one.
///
/// Never empty. The quotas are kept sorted by period and without
/// duplicates, so equal sets compare equal; at most [`Quotas::MAX`].
/// The text form lists them with commas, `10/s,10000/d`, and that is how
/// they are stored and serialized. Cloning is cheap.
///
/// ```
/// use keygate_core::{Quota, Quotas};
///
/// let limits = Quota::per_second(10).and(Quota::per_day(10_000));
/// assert_eq!(limits.to_string(), "10/s,10000/d");
/// assert_eq!("10000/d, 10/s".parse::<Quotas>()?, limits);
/// assert_eq!(Quotas::from(Quota::per_minute(60)).as_slice(), [Quota::per_minute(60)]);
/// # Ok::<(), keygate_core::InvalidQuota>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Quotas(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    One(Quota),
    // At least two, sorted, without duplicates.
    Many(Arc<[Quota]>),
}

impl Quotas {
    /// The most quotas one key may have. Every decision checks each of
    /// them, and a shared limiter keeps state for each.
    pub const MAX: usize = 8;

    /// The given quotas, sorted by period, without duplicates.
    ///
    /// # Errors
    ///
    /// [`InvalidQuota::Empty`] if there is none, [`InvalidQuota::TooMany`]
    /// if there are more than [`Quotas::MAX`] distinct ones.
    pub fn new(quotas: impl IntoIterator<Item = Quota>) -> Result<Self, InvalidQuota> {
        let mut all: Vec<Quota> = quotas.into_iter().collect();
        all.sort_unstable_by_key(|q| (q.period, q.limit));
        all.dedup();
        match all.len() {
            0 => Err(InvalidQuota::Empty),
            1 => Ok(Self(Repr::One(all[0]))),
            n if n > Self::MAX => Err(InvalidQuota::TooMany),
            _ => Ok(Self(Repr::Many(all.into()))),
        }
    }

    /// These quotas and `quota`.
    ///
    /// # Panics
    ///
    /// If that makes more than [`Quotas::MAX`]; use [`Quotas::new`] for
    /// values from configuration.
    #[must_use]
    pub fn and(self, quota: Quota) -> Self {
        match Self::new(self.as_slice().iter().copied().chain([quota])) {
            Ok(quotas) => quotas,
            Err(_) => panic!("a key has at most {} quotas", Self::MAX),
        }
    }

    /// The quotas, shortest period first.
    pub fn as_slice(&self) -> &[Quota] {
        match &self.0 {
            Repr::One(q) => std::slice::from_ref(q),
            Repr::Many(all) => all,
        }
    }

    /// The quota, if there is exactly one.
    pub fn single(&self) -> Option<Quota> {
        match self.0 {
            Repr::One(q) => Some(q),
            Repr::Many(_) => None,
        }
    }

    /// How many quotas there are (at least one).
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Always `false`: there is at least one quota. (For the `len` lint.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The quotas, shortest period first.
    pub fn iter(&self) -> std::slice::Iter<'_, Quota> {
        self.as_slice().iter()
    }
}

impl From<Quota> for Quotas {
    fn from(quota: Quota) -> Self {
        Self(Repr::One(quota))
    }
}

impl<'a> IntoIterator for &'a Quotas {
    type Item = &'a Quota;
    type IntoIter = std::slice::Iter<'a, Quota>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Quotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quotas({self})")
    }
}

impl fmt::Display for Quotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, q) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(q, f)?;
        }
        Ok(())
    }
}

impl FromStr for Quotas {
    type Err = InvalidQuota;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Bound the work before parsing: more commas than quotas allowed
        // cannot make a valid list.
        if s.bytes().filter(|&b| b == b',').count() >= Self::MAX {
            return Err(InvalidQuota::TooMany);
        }
        let quotas = s
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Quota>, _>>()?;
        Self::new(quotas)
    }
}

impl Serialize for Quotas {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Accepts the text form (`"10/s,10000/d"`) or a list of quotas
/// (`["10/s", "10000/d"]`).
impl<'de> Deserialize<'de> for Quotas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Quotas;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("quotas such as \"10/s,10000/d\" or [\"10/s\", \"10000/d\"]")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quotas, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Quotas, A::Error> {
                let mut all = Vec::new();
                while let Some(q) = seq.next_element::<Quota>()? {
                    if all.len() == Quotas::MAX {
                        return Err(serde::de::Error::custom(InvalidQuota::TooMany));
                    }
                    all.push(q);
                }
                Quotas::new(all).map_err(serde::de::Error::custom)
            }
        }

        // Only self-describing formats can say which of the two they hold;
        // others (bincode, postcard) get the text form, as it is written.
        if d.is_human_readable() {
            d.deserialize_any(Visitor)
        } else {
            d.deserialize_str(Visitor)
        }
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
    #[error("a quota's period is a whole number of milliseconds, from 1 ms to 366 days")]
    Period,
    /// The text form is not `n/unit`.
    #[error(
        "write a quota as `n/unit`, e.g. `100/s`, `600/min`, `10000/h`, `10/30s`, \
         and several as `10/s,10000/d`"
    )]
    Syntax,
    /// A list of quotas is empty.
    #[error("give at least one quota, e.g. `100/s`")]
    Empty,
    /// A list has more than [`Quotas::MAX`] quotas.
    #[error("a key has at most {} quotas", Quotas::MAX)]
    TooMany,
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
        // The text form counts whole milliseconds, so a quota must too.
        assert_eq!(
            Quota::new(5, Duration::from_micros(1_500)).unwrap_err(),
            InvalidQuota::Period
        );
        assert_eq!(
            format!("5/{}d", u64::MAX).parse::<Quota>().unwrap_err(),
            InvalidQuota::Period
        );
    }

    #[test]
    fn quota_lists_are_sorted_sets() {
        let day = Quota::per_day(10_000);
        let sec = Quota::per_second(10);
        let both = day.and(sec);
        assert_eq!(both.as_slice(), [sec, day]);
        assert_eq!(both, sec.and(day).and(sec));
        assert_eq!(both.single(), None);
        assert_eq!(Quotas::from(sec).single(), Some(sec));
        assert_eq!(Quotas::new([sec, sec]).unwrap().single(), Some(sec));
        assert_eq!(Quotas::new([]).unwrap_err(), InvalidQuota::Empty);
        let nine = (1..=9).map(Quota::per_second);
        assert_eq!(Quotas::new(nine).unwrap_err(), InvalidQuota::TooMany);
    }

    #[test]
    fn quota_lists_have_a_text_form() {
        let both = Quota::per_second(10).and(Quota::per_day(10_000));
        assert_eq!(both.to_string(), "10/s,10000/d");
        assert_eq!(" 10000/d , 10/s ".parse::<Quotas>().unwrap(), both);
        assert_eq!("600/min".parse::<Quotas>().unwrap().to_string(), "600/min");
        assert_eq!("".parse::<Quotas>().unwrap_err(), InvalidQuota::Syntax);
        assert_eq!("10/s,".parse::<Quotas>().unwrap_err(), InvalidQuota::Syntax);
        assert_eq!(
            "10/s,0/d".parse::<Quotas>().unwrap_err(),
            InvalidQuota::ZeroLimit
        );
        let long = vec!["1/s"; 100_000].join(",");
        assert_eq!(long.parse::<Quotas>().unwrap_err(), InvalidQuota::TooMany);
    }

    #[test]
    fn quota_lists_serialize_as_text_and_read_lists_too() {
        let both = Quota::per_second(10).and(Quota::per_day(10_000));
        assert_eq!(serde_json::to_string(&both).unwrap(), r#""10/s,10000/d""#);
        let from_text: Quotas = serde_json::from_str(r#""10000/d,10/s""#).unwrap();
        let from_list: Quotas = serde_json::from_str(r#"["10/s","10000/d"]"#).unwrap();
        assert_eq!(from_text, both);
        assert_eq!(from_list, both);
        assert!(serde_json::from_str::<Quotas>("[]").is_err());
        assert!(serde_json::from_str::<Quotas>("5").is_err());
    }

    #[test]
    fn governor_quota_has_the_same_shape() {
        let g = Quota::per_minute(60).to_governor();
        assert_eq!(g.burst_size().get(), 60);
        assert_eq!(g.replenish_interval(), Duration::from_secs(1));
    }
}
