//! Delegation: what a key may hand out ([`may_grant`]), and the caps
//! every key obeys ([`Limits`]).

use std::time::Duration;

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::{Environment, KeyId, KeyRecord, Metadata, Quota, Quotas, Scope, Scopes};

/// The settings of a key that decide how powerful it is: what a grantor
/// holds, or what a create, change or rotation would produce.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySettings {
    /// What the key may do.
    pub scopes: Scopes,
    /// `live` or `test`.
    pub environment: Environment,
    /// When the key stops working; `None`: never.
    pub expires_at: Option<OffsetDateTime>,
    /// The quotas the key is held to: its own, or the service's default
    /// when it has none; `None`: unlimited.
    pub rate_limit: Option<Quotas>,
    /// Networks the key may be used from; empty: anywhere.
    pub allowed_ips: Vec<IpNet>,
    /// Free-form JSON.
    pub metadata: Metadata,
}

impl KeySettings {
    /// The settings of `record`, with `default_rate_limit` (the service's
    /// default quota) standing in for a key that has no quota of its own.
    pub fn of(record: &KeyRecord, default_rate_limit: Option<&Quotas>) -> Self {
        Self {
            scopes: record.scopes.clone(),
            environment: record.environment,
            expires_at: record.expires_at,
            rate_limit: record
                .rate_limit
                .clone()
                .or_else(|| default_rate_limit.cloned()),
            allowed_ips: record.allowed_ips.clone(),
            metadata: record.metadata.clone(),
        }
    }

    /// Whether these settings include `admin`, which grants everything.
    pub fn is_admin(&self) -> bool {
        self.scopes.allows(&Scope::ADMIN)
    }
}

/// The dimension in which a requested key would exceed its grantor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantDimension {
    /// A scope the grantor lacks.
    Scopes,
    /// `live` from a `test` grantor.
    Environment,
    /// No expiry, or one later than the grantor's.
    Expiry,
    /// A quota more generous than the grantor's, or none.
    RateLimit,
    /// A network outside the grantor's allowlist, or none.
    AllowedIps,
    /// Metadata the grantor does not carry.
    Metadata,
    /// Another owner's key: a delegating key manages its own owner's keys
    /// only.
    Owner,
    /// A key outside the grantor's own rotation family and the keys it
    /// created: rotating it would give the grantor a key its own
    /// revocation does not reach.
    Lineage,
}

impl GrantDimension {
    /// The field of a key's settings this dimension is about:
    /// `scopes`, `environment`, `expires_at`, `rate_limit`, `allowed_ips`
    /// or `metadata`.
    pub fn field(self) -> &'static str {
        match self {
            Self::Scopes => "scopes",
            Self::Environment => "environment",
            Self::Expiry => "expires_at",
            Self::RateLimit => "rate_limit",
            Self::AllowedIps => "allowed_ips",
            Self::Metadata => "metadata",
            Self::Owner => "owner",
            Self::Lineage => "id",
        }
    }
}

/// One way a requested key would be more powerful than its grantor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantViolation {
    /// Which dimension.
    pub dimension: GrantDimension,
    /// The scope the grantor lacks, for [`GrantDimension::Scopes`].
    pub scope: Option<Scope>,
    /// The position in the requested allowlist, for
    /// [`GrantDimension::AllowedIps`] (`None`: the list as a whole).
    pub index: Option<usize>,
    /// The metadata entry, for [`GrantDimension::Metadata`].
    pub entry: Option<String>,
    /// What is wrong, for people. Never holds key material.
    pub message: String,
}

impl GrantViolation {
    fn new(dimension: GrantDimension, message: String) -> Self {
        Self {
            dimension,
            scope: None,
            index: None,
            entry: None,
            message,
        }
    }
}

/// Whether `grantor` may create, or change a key into, `requested`: every
/// way `requested` would be more powerful than `grantor`, or `Ok` if none.
///
/// An `admin` grantor may grant anything; for any other:
///
/// A key that manages keys without being `admin` (a *delegating* key, such
/// as one with `keys:manage`) may only create, change or rotate keys that
/// are no more powerful than itself, in every dimension. [`may_grant`] is
/// that rule, in one place; [`KeyManager::create_as`](crate::KeyManager::create_as),
/// [`update_as`](crate::KeyManager::update_as) and
/// [`rotate_as`](crate::KeyManager::rotate_as) apply it. Applied to a change
/// of the caller's own key it means a key can never lift its own
/// restrictions.
///
/// | dimension | a grantor may grant |
/// |---|---|
/// | scopes | scopes it holds itself (`admin` holds every scope) |
/// | environment | `test` only, if it is a `test` key |
/// | expiry | if it expires: an expiry no later than its own (never "none") |
/// | quota | for each of its quotas, one quota at most as generous (see below) |
/// | IP allowlist | if it has one: a non-empty list of networks, each inside one of its own |
/// | metadata | entries it carries itself, with the same values |
///
/// **Quotas, per period.** Quotas are compared as what they let through: a
/// quota of `n` per `p` admits a burst of `n` and then `n / p` on average
/// (the GCRA keygate runs), so over any window of length `w` at most
/// `n + n·w/p` requests. A quota `c` is *at most as generous* as `g` if both
/// its burst and its rate are no larger: `c.limit ≤ g.limit` and
/// `c.limit / c.period ≤ g.limit / g.period`. Then `c` admits no more than
/// `g` over every window. Since a key admits a request only when all its
/// quotas do, a child satisfies the grantor's quota `g` when *one* of the
/// child's quotas is at most as generous as `g`; it must do so for every
/// quota of the grantor. A key without its own quota is judged by the
/// service's default quota (its *effective* quota), and a key with neither
/// is unlimited, which is more than any quota. So `2/s` may grant `1/s` or
/// `2/s,1000/d`, but not `100/min` (a burst of 100).
///
/// What the rule does not bound: each key has its own rate-limit state, so
/// `n` children of a key with `2/s` may together make `2n` requests a
/// second. [`Limits::max_keys_per_owner`] bounds `n`.
///
/// **Metadata.** Applications read metadata to make decisions
/// (`plan: "enterprise"`), so a delegating key may only pass on entries it
/// carries itself, unchanged; it may leave any out. `admin` sets anything.
///
/// ```
/// use keygate_core::{Environment, KeySettings, Quota, Scope, Scopes, may_grant};
///
/// let grantor = KeySettings {
///     scopes: Scopes::from([Scope::READ, Scope::from_static("keys:manage")]),
///     environment: Environment::Live,
///     expires_at: None,
///     rate_limit: Some(Quota::per_second(2).into()),
///     allowed_ips: Vec::new(),
///     metadata: Default::default(),
/// };
/// let mut child = KeySettings { scopes: Scopes::from([Scope::READ]), ..grantor.clone() };
/// assert!(may_grant(&grantor, &child).is_ok());
/// child.rate_limit = Some(Quota::per_second(100_000).into());
/// assert_eq!(may_grant(&grantor, &child).unwrap_err().len(), 1);
/// ```
///
/// # Errors
///
/// Every [`GrantViolation`] found, at least one.
pub fn may_grant(
    grantor: &KeySettings,
    requested: &KeySettings,
) -> Result<(), Vec<GrantViolation>> {
    if grantor.is_admin() {
        return Ok(());
    }
    let mut out = Vec::new();
    for scope in requested.scopes.iter() {
        if !grantor.scopes.allows(scope) {
            out.push(GrantViolation {
                scope: Some(scope.clone()),
                ..GrantViolation::new(
                    GrantDimension::Scopes,
                    format!("this API key lacks `{scope}`, so it cannot grant it"),
                )
            });
        }
    }
    if grantor.environment == Environment::Test && requested.environment == Environment::Live {
        out.push(GrantViolation::new(
            GrantDimension::Environment,
            "a `test` key cannot grant `live` keys".to_owned(),
        ));
    }
    if let Some(limit) = grantor.expires_at {
        let fits = requested.expires_at.is_some_and(|at| at <= limit);
        if !fits {
            out.push(GrantViolation::new(
                GrantDimension::Expiry,
                format!(
                    "this API key expires at {}, so the key must expire no later",
                    rfc3339(limit)
                ),
            ));
        }
    }
    if let Some(own) = &grantor.rate_limit {
        for g in own {
            let bounded = requested
                .rate_limit
                .as_ref()
                .is_some_and(|child| child.iter().any(|c| at_most_as_generous(c, g)));
            if !bounded {
                out.push(GrantViolation::new(
                    GrantDimension::RateLimit,
                    format!(
                        "this API key is limited to {g}, so the key needs a quota with a burst \
                         of at most {} and at most the same rate (such as {g} itself)",
                        g.limit()
                    ),
                ));
            }
        }
    }
    if !grantor.allowed_ips.is_empty() {
        if requested.allowed_ips.is_empty() {
            out.push(GrantViolation::new(
                GrantDimension::AllowedIps,
                "this API key is restricted to some networks, so the key must be too (an empty \
                 list means anywhere)"
                    .to_owned(),
            ));
        }
        for (i, net) in requested.allowed_ips.iter().enumerate() {
            if !grantor.allowed_ips.iter().any(|own| own.contains(net)) {
                out.push(GrantViolation {
                    index: Some(i),
                    ..GrantViolation::new(
                        GrantDimension::AllowedIps,
                        format!("{net} is not inside the networks this API key may be used from"),
                    )
                });
            }
        }
    }
    for (name, value) in &requested.metadata {
        if grantor.metadata.get(name) != Some(value) {
            out.push(GrantViolation {
                entry: Some(name.clone()),
                ..GrantViolation::new(
                    GrantDimension::Metadata,
                    format!(
                        "this API key can only pass on metadata entries it carries itself, with \
                         the same value; {:?} is not one",
                        name.escape_debug().to_string()
                    ),
                )
            });
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Whether `c` lets through no more than `g` over every window: no larger
/// burst, no faster rate.
fn at_most_as_generous(c: &Quota, g: &Quota) -> bool {
    // c.limit / c.period <= g.limit / g.period, without division.
    let rate_ok = u128::from(c.limit()) * g.period().as_nanos()
        <= u128::from(g.limit()) * c.period().as_nanos();
    c.limit() <= g.limit() && rate_ok
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Caps that apply to every key, whoever manages it (`admin`, a delegating
/// key, the CLI or the library): they bound what one owner can store and
/// how long a rotated key lingers.
///
/// ```
/// use keygate_core::Limits;
/// use std::time::Duration;
///
/// let limits = Limits {
///     max_keys_per_owner: 20,
///     ..Limits::default()
/// };
/// assert_eq!(limits.max_rotation_grace, Duration::from_secs(30 * 86_400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most keys one owner may hold that are neither revoked nor expired
    /// (default 100). Creating one more fails; a rotation, which replaces
    /// a key, is not counted.
    pub max_keys_per_owner: u64,
    /// Largest metadata, as compact JSON, in bytes (default 4 KiB).
    pub max_metadata_bytes: usize,
    /// Most entries of an IP allowlist (default 64).
    pub max_allowed_ips: usize,
    /// Longest grace period of a rotation (default 30 days).
    pub max_rotation_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys_per_owner: 100,
            max_metadata_bytes: 4 * 1024,
            max_allowed_ips: 64,
            max_rotation_grace: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Which of the [`Limits`] a request went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cap {
    /// [`Limits::max_keys_per_owner`].
    KeysPerOwner,
    /// [`Limits::max_metadata_bytes`].
    MetadataBytes,
    /// [`Limits::max_allowed_ips`].
    AllowedIps,
    /// [`Limits::max_rotation_grace`], in seconds.
    RotationGrace,
}

impl Cap {
    /// The field of a request this cap is about: `owner`, `metadata`,
    /// `allowed_ips` or `grace_seconds`.
    pub fn field(self) -> &'static str {
        match self {
            Self::KeysPerOwner => "owner",
            Self::MetadataBytes => "metadata",
            Self::AllowedIps => "allowed_ips",
            Self::RotationGrace => "grace_seconds",
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeysPerOwner => "keys per owner (neither revoked nor expired)",
            Self::MetadataBytes => "bytes of metadata (as compact JSON)",
            Self::AllowedIps => "IP allowlist entries",
            Self::RotationGrace => "seconds of rotation grace",
        })
    }
}

impl Limits {
    /// Checks the metadata and allowlist of a key being created or changed.
    pub(crate) fn check_settings(
        &self,
        metadata: Option<&Metadata>,
        allowed_ips: Option<&[IpNet]>,
    ) -> Result<(), crate::ManageError> {
        if let Some(nets) = allowed_ips
            && nets.len() > self.max_allowed_ips
        {
            return Err(over(Cap::AllowedIps, self.max_allowed_ips));
        }
        if let Some(metadata) = metadata {
            // Counting bytes while serializing would be cheaper for huge
            // values, but bodies are already bounded by the HTTP body limit.
            let bytes = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
            if bytes > self.max_metadata_bytes {
                return Err(over(Cap::MetadataBytes, self.max_metadata_bytes));
            }
        }
        Ok(())
    }
}

fn over(cap: Cap, max: usize) -> crate::ManageError {
    crate::ManageError::OverCap {
        cap,
        max: u64::try_from(max).unwrap_or(u64::MAX),
    }
}

/// A delegating key acting on keys: the key's record (as the store has it
/// now) and the service's default quota, which stands in for a missing
/// quota on both sides.
#[derive(Clone, Debug)]
pub struct Grantor {
    pub(crate) id: KeyId,
    pub(crate) family: KeyId,
    pub(crate) owner: crate::Owner,
    pub(crate) settings: KeySettings,
    pub(crate) default_rate_limit: Option<Quotas>,
}

impl Grantor {
    /// The key of `record` as a grantor, in a service whose default quota is
    /// `default_rate_limit`.
    pub fn new(record: &KeyRecord, default_rate_limit: Option<&Quotas>) -> Self {
        Self {
            id: record.id,
            family: record.family,
            owner: record.owner.clone(),
            settings: KeySettings::of(record, default_rate_limit),
            default_rate_limit: default_rate_limit.cloned(),
        }
    }

    /// The grantor's key id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// What the grantor holds.
    pub fn settings(&self) -> &KeySettings {
        &self.settings
    }

    /// Whether the grantor is `admin` (and so may grant anything).
    pub fn is_admin(&self) -> bool {
        self.settings.is_admin()
    }

    /// [`may_grant`] for `requested`, a key of `owner`; a delegating key
    /// also keeps to its own owner.
    pub(crate) fn check(
        &self,
        owner: &crate::Owner,
        requested: &KeySettings,
    ) -> Result<(), crate::ManageError> {
        let mut violations = may_grant(&self.settings, requested)
            .err()
            .unwrap_or_default();
        if !self.is_admin() && *owner != self.owner {
            violations.push(GrantViolation::new(
                GrantDimension::Owner,
                format!("this API key manages the keys of {} only", self.owner),
            ));
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(crate::ManageError::NotGrantable(violations))
        }
    }

    /// [`Grantor::check`] for `record` as it would be stored.
    pub(crate) fn check_record(&self, record: &KeyRecord) -> Result<(), crate::ManageError> {
        self.check(
            &record.owner,
            &KeySettings::of(record, self.default_rate_limit.as_ref()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Option<Quotas> {
        Some(s.parse().unwrap())
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn grantor() -> KeySettings {
        let mut metadata = Metadata::new();
        metadata.insert("plan".into(), "pro".into());
        KeySettings {
            scopes: Scopes::parse_list("read write keys:manage").unwrap(),
            environment: Environment::Live,
            expires_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1)),
            rate_limit: q("2/s"),
            allowed_ips: nets(&["203.0.113.7/32"]),
            metadata,
        }
    }

    fn dims(r: Result<(), Vec<GrantViolation>>) -> Vec<GrantDimension> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(|v| v.dimension)
            .collect()
    }

    #[test]
    fn a_key_may_grant_itself_and_anything_narrower() {
        let g = grantor();
        assert_eq!(may_grant(&g, &g), Ok(()));
        let narrower = KeySettings {
            scopes: Scopes::from([Scope::READ]),
            expires_at: g.expires_at.map(|t| t - time::Duration::MINUTE),
            rate_limit: q("1/s"),
            metadata: Metadata::new(),
            ..g.clone()
        };
        assert_eq!(may_grant(&g, &narrower), Ok(()));
    }

    #[test]
    fn every_wider_dimension_is_refused_and_all_are_reported() {
        use GrantDimension as D;
        let g = grantor();
        let mut metadata = Metadata::new();
        metadata.insert("plan".into(), "enterprise".into());
        let wider = KeySettings {
            scopes: Scopes::parse_list("read admin").unwrap(),
            environment: Environment::Live,
            expires_at: None,
            rate_limit: q("100000/s"),
            allowed_ips: Vec::new(),
            metadata,
        };
        assert_eq!(
            dims(may_grant(&g, &wider)),
            [
                D::Scopes,
                D::Expiry,
                D::RateLimit,
                D::AllowedIps,
                D::Metadata
            ]
        );
        let cases: Vec<(KeySettings, GrantDimension)> = vec![
            (
                KeySettings {
                    scopes: Scopes::parse_list("read delete").unwrap(),
                    ..g.clone()
                },
                D::Scopes,
            ),
            (
                KeySettings {
                    expires_at: g.expires_at.map(|t| t + time::Duration::SECOND),
                    ..g.clone()
                },
                D::Expiry,
            ),
            (
                KeySettings {
                    rate_limit: None,
                    ..g.clone()
                },
                D::RateLimit,
            ),
            (
                KeySettings {
                    allowed_ips: nets(&["203.0.113.0/24"]),
                    ..g.clone()
                },
                D::AllowedIps,
            ),
            (
                KeySettings {
                    allowed_ips: nets(&["203.0.113.7/32", "198.51.100.1/32"]),
                    ..g.clone()
                },
                D::AllowedIps,
            ),
        ];
        for (requested, dim) in cases {
            assert_eq!(dims(may_grant(&g, &requested)), [dim], "{requested:?}");
        }
    }

    #[test]
    fn test_keys_grant_test_keys_only() {
        let g = KeySettings {
            environment: Environment::Test,
            ..grantor()
        };
        let live = KeySettings {
            environment: Environment::Live,
            ..g.clone()
        };
        assert_eq!(dims(may_grant(&g, &live)), [GrantDimension::Environment]);
        assert_eq!(may_grant(&g, &g), Ok(()));
    }

    #[test]
    fn quotas_compare_by_burst_and_rate_for_every_grantor_period() {
        // (grantor, child, allowed)
        let table = [
            ("2/s", "2/s", true),
            ("2/s", "1/s", true),
            ("2/s", "3/s", false),
            // Same rate, but a burst of 120 where the grantor has 2.
            ("2/s", "120/min", false),
            ("2/s", "1/min", true),
            // A burst within bounds but a faster rate.
            ("2/s", "2/500ms", false),
            ("2/s", "2/s,1000/d", true),
            // The daily quota must be matched too.
            ("10/s,10000/d", "10/s", false),
            ("10/s,10000/d", "10/s,10000/d", true),
            ("10/s,10000/d", "5/s,5000/d", true),
            // One child quota may bound both: 1/min is slower than either.
            ("10/s,10000/d", "1/min", true),
            ("10000/d", "10000/d,1/s", true),
            ("10000/d", "20000/2d", false),
        ];
        let base = KeySettings {
            allowed_ips: Vec::new(),
            metadata: Metadata::new(),
            expires_at: None,
            ..grantor()
        };
        for (own, child, allowed) in table {
            let g = KeySettings {
                rate_limit: q(own),
                ..base.clone()
            };
            let c = KeySettings {
                rate_limit: q(child),
                ..base.clone()
            };
            assert_eq!(may_grant(&g, &c).is_ok(), allowed, "{own} granting {child}");
        }
        // An unlimited grantor may grant anything, an unlimited child never
        // comes from a limited grantor.
        let unlimited = KeySettings {
            rate_limit: None,
            ..base.clone()
        };
        assert!(may_grant(&unlimited, &base).is_ok());
        assert!(may_grant(&base, &unlimited).is_err());
    }

    #[test]
    fn the_default_quota_stands_in_for_a_missing_one() {
        let mut record_settings = grantor();
        record_settings.rate_limit = None;
        let default: Quotas = "1/s".parse().unwrap();
        let g = grantor(); // 2/s
        let child_default = KeySettings {
            rate_limit: Some(default),
            ..record_settings.clone()
        };
        assert!(may_grant(&g, &child_default).is_ok());
        let child_unlimited = KeySettings {
            rate_limit: None,
            ..record_settings
        };
        assert!(may_grant(&g, &child_unlimited).is_err());
    }

    #[test]
    fn allowlists_nest_across_families_and_mapped_forms() {
        let g = KeySettings {
            allowed_ips: nets(&["10.0.0.0/8", "2001:db8::/32"]),
            ..grantor()
        };
        let ok = KeySettings {
            allowed_ips: nets(&["10.1.0.0/16", "2001:db8:1::/48", "10.2.3.4/32"]),
            ..g.clone()
        };
        assert!(may_grant(&g, &ok).is_ok());
        for wide in [
            "0.0.0.0/0",
            "::/0",
            "::ffff:0:0/96",
            "11.0.0.0/8",
            "2001::/16",
        ] {
            let c = KeySettings {
                allowed_ips: nets(&[wide]),
                ..g.clone()
            };
            let err = may_grant(&g, &c).unwrap_err();
            assert_eq!(err[0].index, Some(0), "{wide}");
        }
        // An unrestricted grantor may grant any list.
        let anywhere = KeySettings {
            allowed_ips: Vec::new(),
            ..grantor()
        };
        assert!(may_grant(&anywhere, &g).is_ok());
    }

    #[test]
    fn metadata_is_passed_on_not_invented() {
        let g = grantor();
        let mut forged = g.clone();
        forged.metadata.insert("tier".into(), "gold".into());
        let err = may_grant(&g, &forged).unwrap_err();
        assert_eq!(err[0].entry.as_deref(), Some("tier"));
        let mut dropped = g.clone();
        dropped.metadata.clear();
        assert!(may_grant(&g, &dropped).is_ok());
    }

    #[test]
    fn admin_grants_everything() {
        let admin = KeySettings {
            scopes: Scopes::from([Scope::ADMIN]),
            ..grantor()
        };
        let anything = KeySettings {
            scopes: Scopes::parse_list("admin billing:write").unwrap(),
            environment: Environment::Live,
            expires_at: None,
            rate_limit: None,
            allowed_ips: Vec::new(),
            metadata: Metadata::new(),
        };
        assert!(may_grant(&admin, &anything).is_ok());
    }

    #[test]
    fn random_settings_never_let_a_child_exceed_its_grantor() {
        // A small deterministic search: for every pair drawn from a pool of
        // settings, a granted child's limits are inside the grantor's in
        // every dimension, checked independently of `may_grant`.
        let quotas = [
            None,
            q("1/s"),
            q("2/s"),
            q("100/min"),
            q("2/s,1000/d"),
            q("10/d"),
        ];
        let expiries = [None, Some(OffsetDateTime::UNIX_EPOCH), g_exp()];
        let ips = [
            nets(&[]),
            nets(&["10.0.0.0/8"]),
            nets(&["10.1.0.0/16"]),
            nets(&["0.0.0.0/0"]),
        ];
        let mut pool = Vec::new();
        for rate_limit in &quotas {
            for expires_at in expiries {
                for allowed_ips in &ips {
                    pool.push(KeySettings {
                        scopes: Scopes::from([Scope::READ]),
                        environment: Environment::Live,
                        expires_at,
                        rate_limit: rate_limit.clone(),
                        allowed_ips: allowed_ips.clone(),
                        metadata: Metadata::new(),
                    });
                }
            }
        }
        let window = Duration::from_secs(86_400 * 3);
        let admitted = |s: &KeySettings| -> Option<u128> {
            // Most requests over `window`: the tightest quota's bound.
            s.rate_limit.as_ref().map(|qs| {
                qs.iter()
                    .map(|q| {
                        u128::from(q.limit())
                            + u128::from(q.limit()) * window.as_nanos() / q.period().as_nanos()
                    })
                    .min()
                    .unwrap_or(u128::MAX)
            })
        };
        for g in &pool {
            for c in &pool {
                if may_grant(g, c).is_err() {
                    continue;
                }
                if let Some(limit) = admitted(g) {
                    assert!(admitted(c).is_some_and(|n| n <= limit), "{g:?} {c:?}");
                }
                if let Some(at) = g.expires_at {
                    assert!(c.expires_at.is_some_and(|c| c <= at));
                }
                if !g.allowed_ips.is_empty() {
                    assert!(!c.allowed_ips.is_empty());
                    for probe in ["10.1.2.3", "10.9.9.9", "8.8.8.8"] {
                        let ip = probe.parse().unwrap();
                        if crate::record::ip_allowed(&c.allowed_ips, ip) {
                            assert!(crate::record::ip_allowed(&g.allowed_ips, ip));
                        }
                    }
                }
            }
        }
    }

    fn g_exp() -> Option<OffsetDateTime> {
        Some(OffsetDateTime::UNIX_EPOCH + time::Duration::DAY)
    }
}
