//! A key record as people and scripts are shown it.

use serde::Serialize;
use time::OffsetDateTime;

use crate::{CreditBalance, KeyId, KeyRecord, Metadata, Refill};

/// A [`KeyRecord`] in its text form, without its digest: what keygate's
/// management API answers and what its CLI prints, so that a script can
/// move from one to the other.
///
/// Each field is the record's field of the same name as text (scopes
/// sorted), except `head` and `status`, which the record does not store:
/// they come from [`KeyRecord::head`] and [`KeyRecord::status_at`].
/// Serialized, times are RFC 3339 and absent values `null`.
///
/// ```
/// use std::sync::Arc;
///
/// use keygate_core::{
///     KeyFormat, KeyHasher, KeyManager, KeyView, MemoryStore, NewKey, Owner, SystemClock,
/// };
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let manager = KeyManager::new(
///     Arc::new(MemoryStore::new()),
///     KeyFormat::new("mbk")?,
///     KeyHasher::sha256(),
///     Arc::new(SystemClock),
/// );
/// let created = manager.create(NewKey::new(Owner::user("42"), "laptop")).await?;
/// let view = KeyView::new(&created.record, "mbk", created.record.created_at);
/// assert_eq!(view.status, "active");
/// assert!(view.head.starts_with("mbk_live_"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KeyView {
    /// [`KeyRecord::id`].
    pub id: String,
    /// `{prefix}_{environment}_{id}`, from [`KeyRecord::head`]. Serialized
    /// as `prefix`, the name keygate's management API has always given it.
    #[serde(rename = "prefix")]
    pub head: String,
    /// [`KeyRecord::family`].
    pub family: String,
    /// [`KeyRecord::owner`].
    pub owner: String,
    /// [`KeyRecord::name`].
    pub name: String,
    /// [`KeyRecord::scopes`], sorted.
    pub scopes: Vec<String>,
    /// [`KeyRecord::environment`]: `live` or `test`.
    pub environment: &'static str,
    /// Whether the key works, from [`KeyRecord::status_at`]: `active`,
    /// `superseded`, `expired` or `revoked`.
    pub status: &'static str,
    /// [`KeyRecord::created_at`].
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// [`KeyRecord::expires_at`].
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// [`KeyRecord::revoked_at`].
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// [`KeyRecord::last_used_at`].
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// [`KeyRecord::rate_limit`] (`10/s`, or several: `10/s,10000/d`).
    pub rate_limit: Option<String>,
    /// [`KeyRecord::allowed_ips`].
    pub allowed_ips: Vec<String>,
    /// [`KeyRecord::metadata`].
    pub metadata: Metadata,
    /// [`KeyRecord::superseded_by`].
    pub superseded_by: Option<String>,
    /// [`KeyRecord::credit_account`]: the id of the credit account the key
    /// spends (its own family's, or its metered creator's), or `None` for a
    /// key that is not metered. Never the balance: that is one read of the
    /// [`CreditBank`](crate::CreditBank) per key
    /// ([`KeyManager::credits`](crate::KeyManager::credits)).
    pub credit_account: Option<String>,
}

impl KeyView {
    /// `record` as shown to people, for a service whose keys start with
    /// `prefix`, with its status at `now`.
    pub fn new(record: &KeyRecord, prefix: &str, now: OffsetDateTime) -> Self {
        Self {
            id: record.id.to_string(),
            head: record.head(prefix),
            family: record.family.to_string(),
            owner: record.owner.to_string(),
            name: record.name.clone(),
            scopes: record.scopes.iter().map(ToString::to_string).collect(),
            environment: record.environment.as_str(),
            status: record.status_at(now).as_str(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
            rate_limit: record.rate_limit.as_ref().map(ToString::to_string),
            allowed_ips: record.allowed_ips.iter().map(ToString::to_string).collect(),
            metadata: record.metadata.clone(),
            superseded_by: record.superseded_by.map(|id| id.to_string()),
            credit_account: record.credit_account.map(|id| id.to_string()),
        }
    }
}

/// The credits a key spends, as keygate's management API answers and its
/// CLI prints them (`--json`): `metered`, the `account` id, and for a
/// metered key its balance; `null` for the rest when it is not metered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreditsView {
    /// Whether the key spends credits.
    pub metered: bool,
    /// The account it spends ([`KeyRecord::credit_account`]).
    pub account: Option<KeyId>,
    /// Credits left, with any refill that is due applied.
    pub remaining: Option<u64>,
    /// How the balance refills, if it does.
    pub refill: Option<Refill>,
    /// When the next refill is due, if the balance refills.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_refill: Option<OffsetDateTime>,
}

impl CreditsView {
    /// The credits of a key spending `account` (`None`: not metered),
    /// whose balance is `balance`.
    pub fn new(account: Option<KeyId>, balance: Option<CreditBalance>) -> Self {
        match (account, balance) {
            (Some(account), Some(balance)) => Self {
                metered: true,
                account: Some(account),
                remaining: Some(balance.remaining),
                refill: balance.refill,
                next_refill: balance.next_refill,
            },
            _ => Self {
                metered: false,
                account: None,
                remaining: None,
                refill: None,
                next_refill: None,
            },
        }
    }
}
