//! What a store keeps about a key, and what a request learns about it.

use std::{fmt, net::IpAddr, str::FromStr, sync::Arc};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Environment, KeyDigest, KeyId, Quotas, Scopes};

/// Free-form JSON attached to a key (plan, customer id, contact…).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Who a key belongs to: a person or a service. One owner may hold many keys.
///
/// Its text form is `user:{id}` or `service:{name}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A person, by your application's user id.
    User(String),
    /// A machine client: another service, a partner, a CI job.
    Service(String),
}

impl Owner {
    /// An owner that is a user of your application.
    pub fn user(id: impl Into<String>) -> Self {
        Self::User(id.into())
    }

    /// An owner that is a service.
    pub fn service(name: impl Into<String>) -> Self {
        Self::Service(name.into())
    }

    /// `"user"` or `"service"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Service(_) => "service",
        }
    }

    /// The user id or service name.
    pub fn id(&self) -> &str {
        match self {
            Self::User(id) | Self::Service(id) => id,
        }
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({self})")
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

impl FromStr for Owner {
    type Err = InvalidOwner;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s.split_once(':').ok_or(InvalidOwner(()))?;
        // Characters, as the error (and the management API's OpenAPI
        // pattern) say: 256 `é` are 512 bytes and were refused.
        if id.is_empty() || id.chars().count() > 256 || id.chars().any(char::is_control) {
            return Err(InvalidOwner(()));
        }
        match kind {
            "user" => Ok(Self::User(id.to_owned())),
            "service" => Ok(Self::Service(id.to_owned())),
            _ => Err(InvalidOwner(())),
        }
    }
}

impl Serialize for Owner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The error returned for an owner that is not `user:{id}` or `service:{name}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("an owner is `user:<id>` or `service:<name>` (1 to 256 characters, no control characters)")]
pub struct InvalidOwner(());

/// Everything a store keeps about one key. Never the key itself: only its
/// [`KeyDigest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id, unique in the store.
    pub id: KeyId,
    /// The id of the first key of a rotation chain (equal to `id` for a key
    /// that was never rotated). Rate-limit state and usage are kept per
    /// family, so rotating a key does not hand out a fresh quota.
    pub family: KeyId,
    /// Who the key belongs to.
    pub owner: Owner,
    /// A human name: "CI deploy key", "Zapier integration".
    pub name: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// `live` or `test`.
    pub environment: Environment,
    /// SHA-256 or HMAC-SHA-256 of the key.
    pub digest: KeyDigest,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the key stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
    /// When the key was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
    /// This key's own quotas, all enforced at once; `None` means the
    /// layer's default.
    #[serde(default)]
    pub rate_limit: Option<Quotas>,
    /// Networks the key may be used from; empty means anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<IpNet>,
    /// Free-form JSON.
    #[serde(default)]
    pub metadata: Metadata,
    /// When the key last authenticated a request, as of the last usage
    /// flush (usage is written in batches, so this lags by up to the flush
    /// interval).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_used_at: Option<OffsetDateTime>,
    /// The key that replaced this one in a rotation. The old key keeps
    /// working until its `expires_at` (the end of the grace period).
    #[serde(default)]
    pub superseded_by: Option<KeyId>,
    /// The rotation family of the key that created this one, when a
    /// delegating (non-`admin`) key did (see
    /// [`KeyManager::create_as`](crate::KeyManager::create_as)). Revoking
    /// that family's current key revokes this one too. `None` for keys made
    /// by `admin` keys, the CLI or the library directly. A rotation keeps it.
    #[serde(default)]
    pub created_by: Option<KeyId>,
    /// The credit account the key spends, if it is metered (see
    /// [`CreditBank`](crate::CreditBank)): its own rotation family for a key
    /// with credits of its own, its creator's account for a key a metered
    /// key delegated. `None`: the key is not metered. A rotation keeps it.
    #[serde(default)]
    pub credit_account: Option<KeyId>,
}

impl KeyRecord {
    /// Whether the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Whether the key is expired at `now`. A key is expired from the instant
    /// of `expires_at` on.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether the key may be used from `ip`.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        ip_allowed(&self.allowed_ips, ip)
    }

    /// Whether the key works at `now`, and if not, why: revocation wins over
    /// expiry, and expiry over supersession (a superseded key still works
    /// until the end of its grace period, its `expires_at`).
    pub fn status_at(&self, now: OffsetDateTime) -> KeyStatus {
        if self.is_revoked() {
            KeyStatus::Revoked
        } else if self.is_expired_at(now) {
            KeyStatus::Expired
        } else if self.superseded_by.is_some() {
            KeyStatus::Superseded
        } else {
            KeyStatus::Active
        }
    }

    /// The public head of the key, `{prefix}_{environment}_{id}`: everything
    /// but the secret, what listings show so people can tell keys apart.
    ///
    /// ```
    /// # use keygate_core::{Environment, KeyId};
    /// # fn head(record: &keygate_core::KeyRecord) {
    /// let shown = record.head("mbk"); // "mbk_live_Ab3Cd5Ef7GhJ"
    /// # }
    /// ```
    pub fn head(&self, prefix: &str) -> String {
        format!("{prefix}_{}_{}", self.environment, self.id)
    }
}

/// Whether a key works, from [`KeyRecord::status_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// The key works.
    Active,
    /// The key was rotated: it works until its `expires_at` (the end of the
    /// grace period), and its replacement should be used.
    Superseded,
    /// The key's `expires_at` has passed.
    Expired,
    /// The key was revoked.
    Revoked,
}

impl KeyStatus {
    /// Every status, in the order [`KeyStatus::as_str`] documents.
    pub const ALL: [Self; 4] = [Self::Active, Self::Superseded, Self::Expired, Self::Revoked];

    /// `active`, `superseded`, `expired` or `revoked`: the serialized form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry of an IP allowlist as people write it: a network in CIDR form
/// (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`192.0.2.7`, kept
/// as `192.0.2.7/32`). Host bits are cleared, so `10.1.2.3/8` is kept as
/// `10.0.0.0/8`. `None` if it is neither.
pub fn parse_allowed_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

pub(crate) fn ip_allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    if nets.is_empty() {
        return true;
    }
    // An IPv4 client reaching a dual-stack socket shows up as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    nets.iter().any(|net| net.contains(&ip))
}

/// What a request learns about the key that authenticated it: the record
/// without the digest and without the key. Each field is the
/// [`KeyRecord`] field of the same name.
///
/// The layer shares one `Arc<KeyInfo>` per cached key among all requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyInfo {
    /// [`KeyRecord::id`].
    pub id: KeyId,
    /// [`KeyRecord::family`].
    pub family: KeyId,
    /// [`KeyRecord::owner`].
    pub owner: Owner,
    /// [`KeyRecord::name`].
    pub name: String,
    /// [`KeyRecord::scopes`].
    pub scopes: Scopes,
    /// [`KeyRecord::environment`].
    pub environment: Environment,
    /// [`KeyRecord::expires_at`].
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// [`KeyRecord::metadata`].
    pub metadata: Metadata,
    /// [`KeyRecord::credit_account`].
    pub credit_account: Option<KeyId>,
}

impl From<&KeyRecord> for KeyInfo {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id,
            family: r.family,
            owner: r.owner.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            environment: r.environment,
            expires_at: r.expires_at,
            metadata: r.metadata.clone(),
            credit_account: r.credit_account,
        }
    }
}

impl From<&KeyRecord> for Arc<KeyInfo> {
    fn from(r: &KeyRecord) -> Self {
        Arc::new(KeyInfo::from(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip() {
        for s in ["user:42", "service:billing-sync", "user:a:b"] {
            assert_eq!(s.parse::<Owner>().unwrap().to_string(), s);
        }
        for bad in ["42", "team:x", "user:", "user:\n"] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?}");
        }
        assert_eq!(Owner::user("7").kind(), "user");
        // 1 to 256 characters, not bytes.
        assert!(format!("user:{}", "é".repeat(256)).parse::<Owner>().is_ok());
        assert!(
            format!("user:{}", "a".repeat(257))
                .parse::<Owner>()
                .is_err()
        );
    }

    #[test]
    fn ip_allowlists_match_networks_and_mapped_addresses() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(ip_allowed(&nets, "10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&nets, "2001:db8::1".parse().unwrap()));
        assert!(!ip_allowed(&nets, "192.168.1.1".parse().unwrap()));
        assert!(ip_allowed(&[], "192.168.1.1".parse().unwrap()));
    }
}
