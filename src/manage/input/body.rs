//! The bodies of `POST /keys`, `PATCH /keys/{id}`,
//! `POST /keys/{id}/rotate` and `PATCH /keys/{id}/credits`.

use keygate_core::{
    BalanceChange, CreditUpdate, Environment, IpNet, KeyUpdate, Metadata, Owner, Quotas, Refill,
    Scope,
};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{
    super::schema::{EnvironmentName, RefillSchema},
    Errors, FieldError,
    value::{
        credits, environment, metadata, name, networks, object, optional, optional_timestamp,
        owner, quotas, refill, required, scopes, seconds, unknown_fields,
    },
};

/// The settings of a new key.
#[derive(Debug, ToSchema)]
#[schema(as = CreateKey)]
pub(in crate::manage) struct CreateKeyRequest {
    /// Who the key belongs to: `user:<id>` or `service:<name>`. Absent or
    /// `null`: the caller's own owner (the owner of the API key making the
    /// request, or the signed-in person).
    #[schema(value_type = Option<String>, example = "user:42")]
    pub(in crate::manage) owner: Owner,
    /// A name for people: 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, example = "CI deploy")]
    pub(in crate::manage) name: String,
    /// What the key may do (may be empty). Each scope is 1 to 64
    /// characters from `a-z`, `0-9` and `:._-`, starting with a letter.
    #[schema(value_type = Vec<String>, example = json!(["read", "billing:read"]))]
    pub(in crate::manage) scopes: Vec<Scope>,
    /// Expire the key this many seconds after creation (at least 1).
    /// Absent or `null`: never.
    #[schema(minimum = 1, example = 7_776_000)]
    pub(in crate::manage) expires_in_seconds: Option<u64>,
    /// The key's own quota, `n/unit` (`10/s`, `600/min`, `10000/h`,
    /// `10/30s`), or up to 8 separated by commas (`10/s,10000/d`), all
    /// enforced at once. Absent or `null`: the service's default.
    #[schema(value_type = Option<String>, example = "10/s,10000/d")]
    pub(in crate::manage) rate_limit: Option<Quotas>,
    /// Networks the key may be used from, as CIDR (`10.0.0.0/8`) or single
    /// addresses. Absent or empty: anywhere.
    #[schema(value_type = Vec<String>, example = json!(["10.0.0.0/8", "2001:db8::/32"]))]
    #[serde(default)]
    pub(in crate::manage) allowed_ips: Vec<IpNet>,
    /// Free-form JSON object kept with the key.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub(in crate::manage) metadata: Metadata,
    /// `live` or `test`. Absent: the environment of the key making the
    /// request.
    #[schema(value_type = Option<EnvironmentName>)]
    pub(in crate::manage) environment: Option<Environment>,
    /// Meter the key: the credits it starts with (0 to 10^15). Each
    /// admitted request spends one, or the cost its route declares; at 0
    /// the key is refused until a refill or a top-up. With `refill` and
    /// without `credits`, the key starts with the refill's `amount`. Absent
    /// or `null` (and no `refill`): the key is not metered. A key made by a
    /// metered `keys:manage` key spends its creator's credits and cannot
    /// have its own (403 `not_grantable` on `credits`).
    #[schema(example = 1000)]
    pub(in crate::manage) credits: Option<u64>,
    /// Refill the key's credits to `amount` at the start of each
    /// `interval` (UTC). Absent or `null`: no refill.
    #[schema(value_type = Option<RefillSchema>)]
    pub(in crate::manage) refill: Option<Refill>,
}

/// Changes to a key: only the fields present change.
#[derive(Debug, Default, ToSchema)]
#[schema(as = UpdateKey)]
pub(in crate::manage) struct UpdateKeyRequest {
    /// A new name: 1 to 200 characters.
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    #[serde(default)]
    pub(in crate::manage) name: Option<String>,
    /// New scopes, replacing the old ones.
    #[schema(value_type = Vec<String>, example = json!(["read"]))]
    #[serde(default)]
    pub(in crate::manage) scopes: Option<Vec<Scope>>,
    /// New quotas (`100/min`, or several: `10/s,10000/d`); `null` goes back
    /// to the service's default.
    #[schema(value_type = Option<String>, example = "100/min")]
    #[serde(default)]
    pub(in crate::manage) rate_limit: Option<Option<Quotas>>,
    /// A new IP allowlist, replacing the old one; empty: anywhere.
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub(in crate::manage) allowed_ips: Option<Vec<IpNet>>,
    /// New metadata, replacing the old object.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub(in crate::manage) metadata: Option<Metadata>,
    /// A new expiry (RFC 3339); `null`: never.
    #[schema(value_type = Option<String>, format = DateTime, example = "2030-01-01T00:00:00Z")]
    #[serde(default)]
    pub(in crate::manage) expires_at: Option<Option<OffsetDateTime>>,
}

/// A change to the credits of a key: its balance (`set` or `add`, not
/// both), its refill, or both. A key that is not metered becomes metered,
/// with an account of its own that starts from 0 before the change.
#[derive(Debug, Default, ToSchema)]
#[schema(
    as = UpdateCredits,
    example = json!({"add": 5000, "refill": {"amount": 1000, "interval": "month"}})
)]
pub(in crate::manage) struct UpdateCreditsRequest {
    /// The new balance (0 to 10^15): it replaces the current one, and
    /// counts as this refill period's.
    #[schema(value_type = u64, example = 5000)]
    #[serde(default)]
    pub(in crate::manage) set: Option<u64>,
    /// Credits to add to the balance (a purchase); the balance never goes
    /// above 10^15.
    #[schema(value_type = u64, example = 1000)]
    #[serde(default)]
    pub(in crate::manage) add: Option<u64>,
    /// The new refill rule, effective from the current period; `null`:
    /// the balance no longer refills.
    #[schema(value_type = Option<RefillSchema>)]
    #[serde(default)]
    pub(in crate::manage) refill: Option<Option<Refill>>,
}

impl From<&UpdateCreditsRequest> for CreditUpdate {
    fn from(r: &UpdateCreditsRequest) -> Self {
        Self {
            balance: match (r.set, r.add) {
                (Some(n), _) => Some(BalanceChange::Set(n)),
                (None, Some(n)) => Some(BalanceChange::Add(n)),
                (None, None) => None,
            },
            refill: r.refill,
        }
    }
}

impl From<UpdateKeyRequest> for KeyUpdate {
    fn from(r: UpdateKeyRequest) -> Self {
        Self {
            name: r.name,
            scopes: r.scopes.map(|s| s.into_iter().collect()),
            rate_limit: r.rate_limit,
            allowed_ips: r.allowed_ips,
            metadata: r.metadata,
            expires_at: r.expires_at,
            credit_account: None,
        }
    }
}

/// How to rotate a key.
#[derive(Debug, ToSchema)]
#[schema(as = RotateKey)]
pub(in crate::manage) struct RotateKeyRequest {
    /// How long the old key keeps working, in seconds (0: it stops now).
    #[schema(minimum = 0, example = 86_400)]
    pub(in crate::manage) grace_seconds: u64,
}

/// Reads the body of `POST /keys`; a key without `owner` is for
/// `own_owner`, the caller's.
pub(in crate::manage) fn create(
    body: &[u8],
    own_owner: &Owner,
) -> Result<CreateKeyRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let owner = match optional(&mut map, "owner") {
        Some(v) => e.check("owner", owner(&v)),
        None => Some(own_owner.clone()),
    };
    let name = required(&mut map, "name", e).and_then(|v| e.check("name", name(&v)));
    let scopes = required(&mut map, "scopes", e).and_then(|v| scopes("scopes", &v, e));
    let expires_in = optional(&mut map, "expires_in_seconds")
        .map(|v| e.check("expires_in_seconds", seconds(&v, 1)));
    let rate_limit = map
        .remove("rate_limit")
        .map(|v| e.check("rate_limit", quotas(&v)));
    let allowed_ips = optional(&mut map, "allowed_ips").map(|v| networks("allowed_ips", &v, e));
    let metadata = optional(&mut map, "metadata").map(|v| e.check("metadata", metadata(&v)));
    let environment =
        optional(&mut map, "environment").map(|v| e.check("environment", environment(&v)));
    let credits = optional(&mut map, "credits").map(|v| e.check("credits", credits(&v)));
    let refill = optional(&mut map, "refill").map(|v| refill("refill", &v, e));
    unknown_fields(
        map,
        "owner, name, scopes, expires_in_seconds, rate_limit, allowed_ips, metadata, \
         environment, credits, refill",
        e,
    );
    errors.finish(|| {
        Some(CreateKeyRequest {
            owner: owner?,
            name: name?,
            scopes: scopes?,
            expires_in_seconds: expires_in.flatten(),
            rate_limit: rate_limit.flatten().flatten(),
            allowed_ips: allowed_ips.flatten().unwrap_or_default(),
            metadata: metadata.flatten().unwrap_or_default(),
            environment: environment.flatten(),
            credits: credits.flatten(),
            refill: refill.flatten(),
        })
    })
}

/// Reads the body of `PATCH /keys/{id}`.
pub(in crate::manage) fn update(body: &[u8]) -> Result<UpdateKeyRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let mut req = UpdateKeyRequest::default();
    // `null` means "clear" for the settings that can be cleared, and is
    // an error for the others.
    if let Some(v) = map.remove("name") {
        req.name = e.check("name", name(&v));
    }
    if let Some(v) = map.remove("scopes") {
        req.scopes = scopes("scopes", &v, e);
    }
    if let Some(v) = map.remove("rate_limit") {
        req.rate_limit = e.check("rate_limit", quotas(&v));
    }
    if let Some(v) = map.remove("allowed_ips") {
        req.allowed_ips = networks("allowed_ips", &v, e);
    }
    if let Some(v) = map.remove("metadata") {
        req.metadata = e.check("metadata", metadata(&v));
    }
    if let Some(v) = map.remove("expires_at") {
        req.expires_at = e.check("expires_at", optional_timestamp(&v));
    }
    for fixed in [
        "id",
        "family",
        "owner",
        "environment",
        "created_at",
        "prefix",
    ] {
        if map.remove(fixed).is_some() {
            e.push(
                fixed,
                "cannot be changed; create a new key (or rotate this one) instead",
            );
        }
    }
    // A key's credits are not a setting of the key: they have a route of
    // their own, which only an `admin` may use.
    for credit in ["credits", "refill", "credit_account", "set", "add"] {
        if map.remove(credit).is_some() {
            e.push(
                credit,
                "credits are changed with `PATCH /keys/{id}/credits` (by an `admin` only), not \
                 here",
            );
        }
    }
    unknown_fields(
        map,
        "name, scopes, rate_limit, allowed_ips, metadata, expires_at",
        e,
    );
    errors.finish(|| Some(req))
}

/// Reads the body of `PATCH /keys/{id}/credits`: `set` or `add` (not
/// both), and/or `refill`; at least one of them.
pub(in crate::manage) fn update_credits(
    body: &[u8],
) -> Result<UpdateCreditsRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let mut req = UpdateCreditsRequest::default();
    if let Some(v) = map.remove("set") {
        req.set = e.check("set", credits(&v));
    }
    if let Some(v) = map.remove("add") {
        req.add = e.check("add", credits(&v));
    }
    if let Some(v) = map.remove("refill") {
        req.refill = match v {
            Value::Null => Some(None),
            v => refill("refill", &v, e).map(Some),
        };
    }
    unknown_fields(map, "set, add, refill", e);
    if req.set.is_some() && req.add.is_some() {
        e.push(
            "add",
            "give either `set` (the new balance) or `add` (a top-up), not both",
        );
    }
    if e.0.is_empty() && req.set.is_none() && req.add.is_none() && req.refill.is_none() {
        e.push(
            "body",
            "nothing to change: give `set` (the new balance) or `add` (a top-up), and/or \
             `refill` (`null` removes it)",
        );
    }
    errors.finish(|| Some(req))
}

/// Reads the body of `POST /keys/{id}/rotate`.
pub(in crate::manage) fn rotate(body: &[u8]) -> Result<RotateKeyRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let grace = match map.remove("grace_seconds") {
        None | Some(Value::Null) => {
            e.push(
                "grace_seconds",
                "required: how long the old key keeps working, in seconds (0 to stop it now)",
            );
            None
        }
        Some(v) => e.check("grace_seconds", seconds(&v, 0)),
    };
    unknown_fields(map, "grace_seconds", e);
    errors.finish(|| {
        Some(RotateKeyRequest {
            grace_seconds: grace?,
        })
    })
}

#[cfg(test)]
mod tests {
    use keygate_core::Quota;

    use super::{
        super::{fields, usage},
        *,
    };

    #[test]
    fn create_reports_every_bad_field() {
        let body = br#"{"owner":"team:x","name":" ","scopes":["read","Bad",3],
            "expires_in_seconds":-5,"rate_limit":"5/fortnight","allowed_ips":["10.0.0.0/33"],
            "metadata":[],"environment":"prod","colour":"red"}"#;
        let errors = create(body, &me()).unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "owner",
                "name",
                "scopes[1]",
                "scopes[2]",
                "expires_in_seconds",
                "rate_limit",
                "allowed_ips[0]",
                "metadata",
                "environment",
                "colour"
            ]
        );
    }

    #[test]
    fn create_reads_a_full_body() {
        let body = br#"{"owner":"service:ci","name":"deploy","scopes":["write"],
            "expires_in_seconds":60,"rate_limit":"10/s","allowed_ips":["10.1.2.3/8","192.0.2.7"],
            "metadata":{"team":"infra"},"environment":"test"}"#;
        let req = create(body, &me()).unwrap();
        assert_eq!(req.owner, Owner::service("ci"));
        assert_eq!(req.expires_in_seconds, Some(60));
        assert_eq!(req.rate_limit, Some(Quota::per_second(10).into()));
        assert_eq!(
            req.allowed_ips,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert_eq!(req.environment, Some(Environment::Test));
    }

    /// The caller's own owner, in these tests.
    fn me() -> Owner {
        Owner::user("me")
    }

    #[test]
    fn a_key_without_an_owner_is_the_callers_own() {
        for body in [
            &br#"{"name":"n","scopes":[]}"#[..],
            br#"{"owner":null,"name":"n","scopes":[]}"#,
        ] {
            assert_eq!(create(body, &me()).unwrap().owner, me());
        }
    }

    #[test]
    fn bodies_that_are_not_objects_are_errors_on_body() {
        for body in [&b"{"[..], b"[]", b"\"x\"", b"{\"owner\":}"] {
            assert_eq!(fields(&create(body, &me()).unwrap_err()), vec!["body"]);
        }
        assert_eq!(
            fields(&create(b"", &me()).unwrap_err()),
            vec!["name", "scopes"]
        );
    }

    #[test]
    fn update_distinguishes_absent_null_and_fixed_fields() {
        let req = update(br#"{"rate_limit":null,"expires_at":"2030-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(req.rate_limit, Some(None));
        assert!(req.expires_at.unwrap().is_some());
        assert!(req.name.is_none());
        let errors = update(br#"{"owner":"user:b","name":null,"expires_at":"soon"}"#).unwrap_err();
        assert_eq!(fields(&errors), vec!["name", "expires_at", "owner"]);
    }

    #[test]
    fn times_are_converted_to_utc_and_range_checked() {
        let t = |s: &str| update(format!(r#"{{"expires_at":"{s}"}}"#).as_bytes());
        for bad in [
            "0000-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "1969-12-31T23:59:59Z",
            "10000-01-01T00:00:00Z",
            "-9999-01-01T00:00:00Z",
        ] {
            assert_eq!(fields(&t(bad).unwrap_err()), vec!["expires_at"], "{bad}");
            let q = format!("since={}", bad.replace('+', "%2B"));
            assert_eq!(
                fields(&usage(Some(&q)).unwrap_err()),
                vec!["since"],
                "{bad}"
            );
        }
        let at = t("2030-01-01T02:00:00.1234567+02:00").unwrap().expires_at;
        assert_eq!(
            at,
            Some(Some(time::macros::datetime!(2030-01-01 0:00:00.123456 UTC)))
        );
    }
}
