//! [`KeyFilter`]: which keys a listing returns.

use std::{fmt, str::FromStr, time::Duration};

use time::OffsetDateTime;

use crate::{Environment, KeyRecord, MAX_TIME, Owner, checked_after};

/// How long before its expiry a key counts as [`StatusFilter::Expiring`]
/// when nothing else is configured: 7 days, the same window in which the
/// layer starts sending `Sunset` headers (`KeygateBuilder::expiry_warning`)
/// and in which `keygate keys expiring` looks by default.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86_400);

/// Which keys a listing ([`KeyStore::list_keys`](crate::KeyStore::list_keys))
/// returns: every condition that is set must hold. The default lists every
/// key.
///
/// ```
/// use keygate_core::{Environment, KeyFilter, Owner, StatusFilter};
///
/// let filter = KeyFilter {
///     owner: Some(Owner::user("alice")),
///     environment: Some(Environment::Live),
///     status: Some(StatusFilter::Active),
/// };
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only this owner's keys.
    pub owner: Option<Owner>,
    /// Only keys of this environment.
    pub environment: Option<Environment>,
    /// Only keys in this state at the listing's `now`.
    pub status: Option<StatusFilter>,
}

/// A key's state, as listings filter by it. Judged at the `now` the listing
/// is given, as [`KeyRecord::status_at`] judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusFilter {
    /// Works now: neither revoked nor expired. A key in its rotation grace
    /// period (status `superseded`) is included: it still works until its
    /// `expires_at`.
    Active,
    /// Works now but expires within the window: not revoked, `now <
    /// expires_at <= now + within`. Use [`DEFAULT_EXPIRY_WARNING`] for the
    /// window in which the layer warns clients with `Sunset` headers.
    /// Expiring keys are also [`Active`](Self::Active).
    Expiring {
        /// How far ahead to look.
        within: Duration,
    },
    /// Revoked (whether or not it has also expired since).
    Revoked,
    /// Not revoked, and its `expires_at` has passed (`expires_at <= now`).
    Expired,
}

impl StatusFilter {
    /// The end of the [`Expiring`](Self::Expiring) window that starts at
    /// `now`, capped at [`MAX_TIME`]; `None` for the other states.
    pub fn expiring_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Self::Expiring { within } => Some(checked_after(now, *within).unwrap_or(MAX_TIME)),
            _ => None,
        }
    }

    /// The name listings use for this state: `active`, `expiring`,
    /// `revoked` or `expired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expiring { .. } => "expiring",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for StatusFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads `active`, `expiring` (with [`DEFAULT_EXPIRY_WARNING`] as its
/// window), `revoked` or `expired`.
impl FromStr for StatusFilter {
    type Err = InvalidStatusFilter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "expiring" => Ok(Self::Expiring {
                within: DEFAULT_EXPIRY_WARNING,
            }),
            "revoked" => Ok(Self::Revoked),
            "expired" => Ok(Self::Expired),
            _ => Err(InvalidStatusFilter(())),
        }
    }
}

/// The error for a status that is not `active`, `expiring`, `revoked` or
/// `expired`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a status filter is one of active, expiring, revoked or expired")]
pub struct InvalidStatusFilter(());

impl KeyFilter {
    /// Every key.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether `record` passes this filter at `now`: the rule every
    /// [`KeyStore::list_keys`](crate::KeyStore::list_keys) applies.
    pub fn matches(&self, record: &KeyRecord, now: OffsetDateTime) -> bool {
        if self.owner.as_ref().is_some_and(|o| *o != record.owner) {
            return false;
        }
        if self.environment.is_some_and(|e| e != record.environment) {
            return false;
        }
        let Some(status) = self.status else {
            return true;
        };
        let revoked = record.is_revoked();
        let expired = record.is_expired_at(now);
        match status {
            StatusFilter::Active => !revoked && !expired,
            StatusFilter::Expiring { .. } => {
                let until = status.expiring_until(now).unwrap_or(MAX_TIME);
                !revoked && !expired && record.expires_at.is_some_and(|at| at <= until)
            }
            StatusFilter::Revoked => revoked,
            StatusFilter::Expired => !revoked && expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn statuses_read_and_print_the_same_words() {
        for word in ["active", "expiring", "revoked", "expired"] {
            assert_eq!(word.parse::<StatusFilter>().unwrap().as_str(), word);
        }
        assert!("superseded".parse::<StatusFilter>().is_err());
        assert!("".parse::<StatusFilter>().is_err());
    }

    #[test]
    fn an_expiring_window_past_year_9999_ends_there() {
        let far = StatusFilter::Expiring {
            within: Duration::MAX,
        };
        let now = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(far.expiring_until(now), Some(MAX_TIME));
        assert_eq!(StatusFilter::Active.expiring_until(now), None);
    }
}
