//! The query strings of `GET /keys` and `GET /keys/{id}/usage`.

use keygate_core::{Cursor, Owner};
use time::OffsetDateTime;
use utoipa::IntoParams;

use super::{Errors, FieldError, value::timestamp};

/// Page size when the query gives none.
const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
const MAX_LIMIT: usize = 200;

/// The query of `GET /keys`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::manage) struct ListQuery {
    /// Whose keys: `user:<id>` or `service:<name>`. Default: the owner of
    /// the key making the request.
    #[param(value_type = Option<String>, example = "user:42")]
    pub(in crate::manage) owner: Option<Owner>,
    /// Most keys to return (1 to 200, default 50).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 200)]
    pub(in crate::manage) limit: usize,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub(in crate::manage) cursor: Option<Cursor>,
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
    let [owner, limit, cursor] = params(query, ["owner", "limit", "cursor"], e);
    let owner = owner.map(|s| e.check("owner", s.parse().map_err(|err| format!("{err}"))));
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
        assert!(usage(Some("since=yesterday")).is_err());
    }
}
