//! The query strings of `GET /keys` and `GET /keys/{id}/usage`.

use keygate_core::{Cursor, Environment, Owner, StatusFilter};
use time::OffsetDateTime;
use utoipa::IntoParams;

use super::{super::schema::EnvironmentName, Errors, FieldError, value::timestamp};

/// Page size when the query gives none.
const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
const MAX_LIMIT: usize = 200;

/// The query of `GET /keys`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::manage) struct ListQuery {
    /// Whose keys: `user:<id>` or `service:<name>`. Default: every owner's
    /// for an `admin` key, the caller's own owner's for a `keys:manage` key
    /// (which may name no other owner).
    #[param(value_type = Option<String>, example = "user:42")]
    pub(in crate::manage) owner: Option<Owner>,
    /// Only keys in this state now: `active` (works now: neither revoked nor
    /// expired, a rotated key in its grace period included), `expiring`
    /// (active, and expires within the service's expiry-warning window, 7
    /// days by default: the window in which its responses carry `Sunset`),
    /// `revoked`, or `expired` (not revoked, past its `expires_at`).
    #[param(value_type = Option<ListStatus>)]
    pub(in crate::manage) status: Option<StatusFilter>,
    /// Only keys of this environment.
    #[param(value_type = Option<EnvironmentName>)]
    pub(in crate::manage) environment: Option<Environment>,
    /// Most keys to return (1 to 200, default 50).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 200)]
    pub(in crate::manage) limit: usize,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub(in crate::manage) cursor: Option<Cursor>,
}

/// The states `GET /keys` filters by, as the OpenAPI document shows them
/// ([`StatusFilter`]'s text form).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[expect(
    dead_code,
    reason = "describes keygate_core::StatusFilter; never built"
)]
pub(in crate::manage) enum ListStatus {
    /// Works now.
    Active,
    /// Works now and expires within the expiry-warning window.
    Expiring,
    /// Revoked.
    Revoked,
    /// Past its expiry, not revoked.
    Expired,
}

/// The query of `GET /keys/{id}/usage`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::manage) struct UsageQuery {
    /// Start of the period (RFC 3339). Default: 24 hours ago.
    #[param(value_type = Option<String>, format = DateTime, example = "2030-01-01T00:00:00Z")]
    pub(in crate::manage) since: Option<OffsetDateTime>,
}

/// The query parameters, each at most once. Parameters this API does not
/// know are ignored: the query may carry the API key itself, or a client's
/// cache-buster.
fn params<const N: usize>(
    query: Option<&str>,
    names: [&str; N],
    errors: &mut Errors,
) -> [Option<String>; N] {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_some() {
                errors.push(k, "given more than once");
            }
            out[i] = Some(v.into_owned());
        }
    }
    out
}

/// Reads the query of `GET /keys`.
pub(in crate::manage) fn list(query: Option<&str>) -> Result<ListQuery, Vec<FieldError>> {
    let mut errors = Errors::default();
    let e = &mut errors;
    let [owner, limit, cursor, status, environment] = params(
        query,
        ["owner", "limit", "cursor", "status", "environment"],
        e,
    );
    let owner = owner.map(|s| e.check("owner", s.parse().map_err(|err| format!("{err}"))));
    let status = status.map(|s| {
        let parsed = s
            .parse::<StatusFilter>()
            .map_err(|_| "must be `active`, `expiring`, `revoked` or `expired`".to_owned());
        e.check("status", parsed)
    });
    let environment = environment.map(|s| {
        let parsed = s
            .parse::<Environment>()
            .map_err(|_| "must be `live` or `test`".to_owned());
        e.check("environment", parsed)
    });
    let limit = limit.map(|s| {
        let parsed = s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("must be a whole number from 1 to {MAX_LIMIT}"));
        e.check("limit", parsed)
    });
    let cursor = cursor.map(|s| {
        let parsed = s.parse::<Cursor>().map_err(|_| {
            "not a cursor this API handed out; pass `next_cursor` unchanged".to_owned()
        });
        e.check("cursor", parsed)
    });
    errors.finish(|| {
        Some(ListQuery {
            owner: owner.flatten(),
            limit: limit.flatten().unwrap_or(DEFAULT_LIMIT),
            cursor: cursor.flatten(),
            status: status.flatten(),
            environment: environment.flatten(),
        })
    })
}

/// Reads the query of `GET /keys/{id}/usage`.
pub(in crate::manage) fn usage(query: Option<&str>) -> Result<UsageQuery, Vec<FieldError>> {
    let mut errors = Errors::default();
    let e = &mut errors;
    let [since] = params(query, ["since"], e);
    let since = since.map(|s| e.check("since", timestamp(&s)));
    errors.finish(|| {
        Some(UsageQuery {
            since: since.flatten(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{super::fields, *};

    #[test]
    fn queries_are_checked_and_unknown_parameters_ignored() {
        let q = list(Some("owner=user%3A7&limit=5&api_key=x")).unwrap();
        assert_eq!(q.owner, Some(Owner::user("7")));
        assert_eq!(q.limit, 5);
        assert_eq!(list(None).unwrap().limit, DEFAULT_LIMIT);
        let errors = list(Some("limit=0&cursor=nope&owner=x&limit=3")).unwrap_err();
        assert_eq!(fields(&errors), vec!["limit", "owner", "cursor"]);
        let q = list(Some("status=expiring&environment=test")).unwrap();
        assert_eq!(q.status.map(|s| s.as_str()), Some("expiring"));
        assert_eq!(q.environment, Some(Environment::Test));
        let errors = list(Some("status=superseded&environment=prod&status=")).unwrap_err();
        assert_eq!(fields(&errors), vec!["status", "status", "environment"]);
        assert!(usage(Some("since=yesterday")).is_err());
    }
}
