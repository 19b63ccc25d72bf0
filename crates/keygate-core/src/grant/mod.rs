//! Delegation: what a key may hand out ([`may_grant`]), and the caps
//! every key obeys ([`Limits`]).

mod grantor;
mod limits;
#[cfg(test)]
mod tests;

use ipnet::IpNet;
use time::OffsetDateTime;

pub use self::{
    grantor::Grantor,
    limits::{Cap, Limits},
};
use crate::{Environment, KeyRecord, Metadata, Quota, Quotas, Scope, Scopes};

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
    /// Credits of its own for a key made by a metered key (whose keys spend
    /// their creator's credits), or a change to a key's metering.
    Credits,
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
            Self::Credits => "credits",
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
    pub(crate) fn new(dimension: GrantDimension, message: String) -> Self {
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
    for (_, scope) in ungrantable_scopes(&grantor.scopes, requested.scopes.iter()) {
        out.push(GrantViolation {
            scope: Some(scope.clone()),
            ..GrantViolation::new(
                GrantDimension::Scopes,
                format!("this API key lacks `{scope}`, so it cannot grant it"),
            )
        });
    }
    if !may_grant_environment(&grantor.scopes, grantor.environment, requested.environment) {
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

/// The grant rule's scope dimension alone, for a caller that knows only a
/// key's scopes (a request's key, before the store is read): each scope of
/// `requested`, with its position, that a key holding `held` may not hand
/// out. A key may grant the scopes it holds; `admin` holds every scope.
///
/// [`may_grant`] applies this rule; call it to refuse early, before
/// reading the grantor's record for the other dimensions.
///
/// ```
/// use keygate_core::{Scope, Scopes, ungrantable_scopes};
///
/// let held = Scopes::from([Scope::READ, Scope::from_static("keys:manage")]);
/// let asked = [Scope::READ, Scope::WRITE];
/// let lacking: Vec<_> = ungrantable_scopes(&held, &asked).collect();
/// assert_eq!(lacking, [(1, &Scope::WRITE)]);
/// ```
pub fn ungrantable_scopes<'a, I>(
    held: &'a Scopes,
    requested: I,
) -> impl Iterator<Item = (usize, &'a Scope)> + 'a
where
    I: IntoIterator<Item = &'a Scope>,
    I::IntoIter: 'a,
{
    requested
        .into_iter()
        .enumerate()
        .filter(move |(_, scope)| !held.allows(scope))
}

/// The grant rule's environment dimension alone: whether a key holding
/// `held` in environment `from` may create, change or rotate a key in
/// environment `to`. A `test` key grants `test` keys only; a `live` key or
/// an `admin` key grants either.
///
/// [`may_grant`] applies this rule; call it to refuse early, as with
/// [`ungrantable_scopes`].
///
/// ```
/// use keygate_core::{Environment, Scope, Scopes, may_grant_environment};
///
/// let held = Scopes::from([Scope::READ]);
/// assert!(may_grant_environment(&held, Environment::Test, Environment::Test));
/// assert!(!may_grant_environment(&held, Environment::Test, Environment::Live));
/// assert!(may_grant_environment(&Scopes::from([Scope::ADMIN]), Environment::Test, Environment::Live));
/// ```
pub fn may_grant_environment(held: &Scopes, from: Environment, to: Environment) -> bool {
    held.allows(&Scope::ADMIN) || from == Environment::Live || to == Environment::Test
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
