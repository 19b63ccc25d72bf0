//! Types that describe answers to the OpenAPI document, and nothing else.
//!
//! The answers themselves are keygate-core's types, serialized:
//! [`keygate_core::KeyView`], whose `environment` and `status` are the text
//! of [`keygate_core::Environment`] and [`keygate_core::KeyStatus`]. These
//! types mirror them field for field, with the descriptions and examples
//! the document shows; they are never built.

use keygate_core::Metadata;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A key as the API shows it: everything but the key and its digest.
#[derive(ToSchema)]
#[schema(as = Key)]
#[expect(dead_code, reason = "describes keygate_core::KeyView; never built")]
pub(super) struct KeySchema {
    /// The public id (10 letters and digits).
    #[schema(example = "Ab3Cd5Ef7G")]
    id: String,
    /// The start of the key, safe to show so people can tell their keys
    /// apart: `{prefix}_{environment}_{id}`.
    #[schema(example = "mbk_live_Ab3Cd5Ef7G")]
    prefix: String,
    /// The id of the first key of this key's rotation chain; usage and
    /// rate limits are counted per family.
    #[schema(example = "Ab3Cd5Ef7G")]
    family: String,
    /// `user:<id>` or `service:<name>`.
    #[schema(example = "user:42")]
    owner: String,
    /// The key's name.
    name: String,
    /// What the key may do, sorted.
    #[schema(example = json!(["read", "write"]))]
    scopes: Vec<String>,
    /// `live` or `test`.
    environment: EnvironmentName,
    /// Whether the key works now.
    status: KeyStatus,
    /// When the key was created.
    created_at: OffsetDateTime,
    /// When the key stops working, if ever.
    #[schema(required = true)]
    expires_at: Option<OffsetDateTime>,
    /// When the key was revoked, if it was.
    #[schema(required = true)]
    revoked_at: Option<OffsetDateTime>,
    /// When the key last authenticated a request. Usage is written in
    /// batches, so this lags by up to the service's flush interval.
    #[schema(required = true)]
    last_used_at: Option<OffsetDateTime>,
    /// The key's own quotas (`10/s`, or several: `10/s,10000/d`); `null`:
    /// the service's default.
    #[schema(required = true, example = "10/s")]
    rate_limit: Option<String>,
    /// Networks the key may be used from; empty: anywhere.
    #[schema(example = json!(["10.0.0.0/8"]))]
    allowed_ips: Vec<String>,
    /// Free-form JSON kept with the key.
    #[schema(value_type = Object)]
    metadata: Metadata,
    /// The key that replaced this one in a rotation. This key keeps working
    /// until its `expires_at`, the end of the grace period.
    #[schema(required = true)]
    superseded_by: Option<String>,
    /// The id of the credit account the key spends, if it is metered: its
    /// own family's, or, for a key made by a metered `keys:manage` key, its
    /// creator's (the keys share one balance). `null`: not metered. The
    /// balance is at `GET /keys/{id}/credits`.
    #[schema(required = true, example = "Ab3Cd5Ef7G")]
    credit_account: Option<String>,
}

/// How a balance refills: to `amount` credits at the start of each
/// `interval`, in UTC (a balance above `amount`, after a top-up, is kept).
// keygate_core::Refill as the document shows it.
#[derive(ToSchema)]
#[schema(as = Refill, example = json!({"amount": 1000, "interval": "month"}))]
#[expect(dead_code, reason = "describes keygate_core::Refill; never built")]
pub(super) struct RefillSchema {
    /// The balance each refill tops up to: 1 to 10^15 credits.
    #[schema(minimum = 1, example = 1000)]
    amount: u64,
    /// `day` (midnight UTC), `month` (the first, midnight UTC), or a period
    /// from 1 s to 366 days counted from the Unix epoch: `90s`, `15min`,
    /// `6h`, `7d`.
    #[schema(example = "day")]
    interval: String,
}

/// Whether a key works now: [`keygate_core::KeyStatus`] as the OpenAPI
/// document shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[expect(dead_code, reason = "describes keygate_core::KeyStatus; never built")]
pub(super) enum KeyStatus {
    /// The key works.
    Active,
    /// The key was rotated and works until its `expires_at`.
    Superseded,
    /// The key's `expires_at` has passed.
    Expired,
    /// The key was revoked.
    Revoked,
}

/// `live` or `test`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[expect(dead_code, reason = "describes keygate_core::Environment; never built")]
pub(super) enum EnvironmentName {
    /// Production keys.
    Live,
    /// Sandbox and CI keys.
    Test,
}

/// The credits a key spends.
// keygate_core::CreditsView as the document shows it.
#[derive(ToSchema)]
#[schema(as = Credits, example = json!({
    "metered": true,
    "account": "Ab3Cd5Ef7G",
    "remaining": 740,
    "refill": {"amount": 1000, "interval": "month"},
    "next_refill": "2030-02-01T00:00:00Z"
}))]
#[expect(dead_code, reason = "describes keygate_core::CreditsView; never built")]
pub(super) struct CreditsSchema {
    /// Whether the key spends credits. A key that is not metered answers
    /// `null` for the rest.
    metered: bool,
    /// The id of the account it spends: its own family's, or, for a key
    /// made by a metered `keys:manage` key, its creator's (whose balance
    /// this then is, shared by every key spending it).
    #[schema(required = true, example = "Ab3Cd5Ef7G")]
    account: Option<String>,
    /// Credits left, with any refill that is due applied.
    #[schema(required = true, example = 740)]
    remaining: Option<u64>,
    /// How the balance refills, if it does.
    #[schema(required = true)]
    refill: Option<RefillSchema>,
    /// When the next refill is due, if the balance refills.
    #[schema(required = true)]
    next_refill: Option<OffsetDateTime>,
}
