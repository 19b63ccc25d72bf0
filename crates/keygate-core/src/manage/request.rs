//! What to issue, what to change, and what issuing returns.

use std::time::Duration;

use ipnet::IpNet;

use super::ManageError;
use crate::{
    CreditUpdate, Environment, KeyRecord, MAX_CREDITS, Metadata, Owner, PlaintextKey, Quotas,
    Refill, Scopes, checked_after,
};

/// What to issue: the settings of a new key.
///
/// ```
/// use keygate_core::{NewKey, Owner, Quota, Scope};
/// use std::time::Duration;
///
/// let new = NewKey::new(Owner::service("billing-sync"), "nightly export")
///     .scopes([Scope::READ, Scope::from_static("billing:read")])
///     .expires_in(Duration::from_secs(90 * 86_400))
///     .rate_limit(Quota::per_minute(600));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NewKey {
    pub(crate) owner: Owner,
    pub(crate) name: String,
    pub(crate) scopes: Scopes,
    pub(crate) environment: Environment,
    expires_in: Option<Duration>,
    pub(crate) rate_limit: Option<Quotas>,
    pub(crate) allowed_ips: Vec<IpNet>,
    pub(crate) metadata: Metadata,
    pub(crate) credits: Option<u64>,
    pub(crate) refill: Option<Refill>,
}

impl NewKey {
    /// A `live` key for `owner`, named `name`, with no scopes, no expiry, the
    /// layer's default quota and no IP restriction.
    pub fn new(owner: Owner, name: impl Into<String>) -> Self {
        Self {
            owner,
            name: name.into(),
            scopes: Scopes::none(),
            environment: Environment::Live,
            expires_in: None,
            rate_limit: None,
            allowed_ips: Vec::new(),
            metadata: Metadata::new(),
            credits: None,
            refill: None,
        }
    }

    /// The key's scopes.
    pub fn scopes(mut self, scopes: impl Into<Scopes>) -> Self {
        self.scopes = scopes.into();
        self
    }

    /// `live` (the default) or `test`.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Expire the key this long after creation. Without it, the key gets
    /// the manager's default lifetime, if any
    /// ([`Limits::default_key_lifetime`](crate::Limits::default_key_lifetime));
    /// longer than its maximum is refused.
    pub fn expires_in(mut self, after: Duration) -> Self {
        self.expires_in = Some(after);
        self
    }

    /// The key's own quota, or several enforced at once
    /// (`Quota::per_second(10).and(Quota::per_day(10_000))`), instead of the
    /// layer's default.
    pub fn rate_limit(mut self, quotas: impl Into<Quotas>) -> Self {
        self.rate_limit = Some(quotas.into());
        self
    }

    /// Only accept the key from these networks.
    pub fn allowed_ips(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed_ips = nets.into_iter().collect();
        self
    }

    /// Free-form JSON to keep with the key.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Meter the key: it starts with `credits` and each admitted request
    /// spends one (or the cost its route declares); at 0 it is refused with
    /// 429 `usage_exceeded` until a refill or a top-up. Up to
    /// [`MAX_CREDITS`].
    ///
    /// ```
    /// use keygate_core::{NewKey, Owner, Refill};
    ///
    /// let trial = NewKey::new(Owner::user("42"), "trial")
    ///     .credits(1_000)
    ///     .refill(Refill::monthly(1_000)?);
    /// # Ok::<(), keygate_core::InvalidRefill>(())
    /// ```
    pub fn credits(mut self, credits: u64) -> Self {
        self.credits = Some(credits);
        self
    }

    /// Refill the key's credits as `refill` says (the key is metered, and
    /// starts with `refill.amount` credits unless [`credits`](Self::credits)
    /// says otherwise).
    pub fn refill(mut self, refill: Refill) -> Self {
        self.refill = Some(refill);
        self
    }

    /// The credit account a new key with these settings opens, if it is
    /// metered.
    pub(crate) fn credit_setup(&self) -> Result<Option<CreditUpdate>, ManageError> {
        let Some(credits) = self.credits.or(self.refill.map(|r| r.amount)) else {
            return Ok(None);
        };
        if credits > MAX_CREDITS {
            return Err(ManageError::CreditsOutOfRange);
        }
        let refill = self
            .refill
            .map(Refill::checked)
            .transpose()
            .map_err(|_| ManageError::CreditsOutOfRange)?;
        Ok(Some(CreditUpdate::set(credits).with_refill(refill)))
    }

    /// Whether the key asks for credits of its own.
    pub(crate) fn is_metered(&self) -> bool {
        self.credits.is_some() || self.refill.is_some()
    }

    /// The expiry of this key if it is created at `now` under `limits`
    /// (their default and maximum lifetimes), to the microsecond.
    pub(crate) fn expires_at(
        &self,
        now: time::OffsetDateTime,
        limits: &crate::Limits,
    ) -> Result<Option<time::OffsetDateTime>, ManageError> {
        limits
            .key_lifetime(self.expires_in)?
            .map(|d| checked_after(now, d))
            .transpose()
            .map_err(|_| ManageError::ExpiryOutOfRange)
    }
}

impl From<Vec<crate::Scope>> for Scopes {
    fn from(v: Vec<crate::Scope>) -> Self {
        v.into_iter().collect()
    }
}

/// A freshly issued key: the plaintext, shown once, and its record.
#[derive(Debug)]
pub struct CreatedKey {
    /// The key to hand to the client. It is not stored anywhere.
    pub key: PlaintextKey,
    /// What the store now holds.
    pub record: KeyRecord,
}

pub(super) fn check_name(name: &str) -> Result<(), ManageError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        Err(ManageError::InvalidName)
    } else {
        Ok(())
    }
}

/// The changes [`KeyManager::update`](super::KeyManager::update) makes: only fields that are `Some`
/// change. For optional settings, `Some(None)` clears them.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct KeyUpdate {
    /// A new name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<Scopes>,
    /// New quotas (`Some(None)`: back to the layer's default).
    pub rate_limit: Option<Option<Quotas>>,
    /// A new IP allowlist (empty: anywhere).
    pub allowed_ips: Option<Vec<IpNet>>,
    /// New metadata.
    pub metadata: Option<Metadata>,
    /// A new expiry (`Some(None)`: never). On a key that was rotated (in
    /// its grace period) the expiry can only be brought forward: a later
    /// time, or `Some(None)`, leaves it at the end of the grace period.
    pub expires_at: Option<Option<time::OffsetDateTime>>,
    /// A new credit account (`Some(None)`: the key is no longer metered).
    /// [`KeyManager::update_credits`](super::KeyManager::update_credits)
    /// meters a key; only an `admin` grantor may change this.
    pub credit_account: Option<Option<crate::KeyId>>,
}

impl KeyUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        // The derived comparison looks at every field, new ones included.
        *self == Self::default()
    }

    /// Applies these changes to `record`, as every [`KeyStore`](crate::KeyStore)
    /// must (atomically, to the record as it is at the time of the write):
    /// only the fields that are `Some` change, and for a rotated key
    /// (`superseded_by` set) the expiry becomes the earlier of the one asked
    /// for and its current one, so a change never extends a grace period.
    /// Nothing else (`revoked_at`, `superseded_by`, id, owner, digest…) is
    /// ever touched.
    pub fn apply_to(&self, record: &mut KeyRecord) {
        let Self {
            name,
            scopes,
            rate_limit,
            allowed_ips,
            metadata,
            expires_at,
            credit_account,
        } = self;
        if let Some(name) = name {
            record.name.clone_from(name);
        }
        if let Some(scopes) = scopes {
            record.scopes = scopes.clone();
        }
        if let Some(rate_limit) = rate_limit {
            record.rate_limit.clone_from(rate_limit);
        }
        if let Some(nets) = allowed_ips {
            record.allowed_ips.clone_from(nets);
        }
        if let Some(metadata) = metadata {
            record.metadata.clone_from(metadata);
        }
        if let Some(account) = *credit_account {
            record.credit_account = account;
        }
        if let Some(expires_at) = *expires_at {
            record.expires_at = if record.superseded_by.is_some() {
                // The earliest of the two that are set.
                match (expires_at, record.expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            } else {
                expires_at
            };
        }
    }
}
