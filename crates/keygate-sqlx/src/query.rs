//! Statements built once for both backends: the audit query and row limits.
//! A backend says how it numbers placeholders and binds a time
//! ([`Backend`]).

use keygate_core::{AuditQuery, StoreError};
use sqlx::{AssertSqlSafe, Database, Encode, Type, query::Query};
use time::OffsetDateTime;

use crate::row::StoreRow;

/// A database keygate stores keys in.
pub(crate) trait Backend: Database<Row: StoreRow> {
    /// What a time is bound as where a statement compares with it.
    type Time: for<'q> Encode<'q, Self> + Type<Self>;

    /// The `n`th placeholder, counted from 1 (`?1`, `$1`).
    fn placeholder(n: usize) -> String;

    /// `t` bound for a comparison.
    ///
    /// # Errors
    ///
    /// [`StoreError::Rejected`] for a time the backend cannot take.
    fn time_param(t: OffsetDateTime) -> Result<Self::Time, StoreError>;
}

/// `n` rows, as `LIMIT` takes it.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The row limit of an [`AuditQuery`]: its `limit`, or 100 for 0.
pub(crate) fn audit_limit(query: &AuditQuery) -> i64 {
    limit(if query.limit == 0 { 100 } else { query.limit })
}

/// The `WHERE … ORDER BY … LIMIT …` tail of an audit query, with
/// placeholders from `param(1)`, `param(2)`…: newest first, ties (events of
/// the same microsecond) in reverse order of writing.
pub(crate) fn audit_filter(query: &AuditQuery, param: impl Fn(usize) -> String) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        param(n)
    };
    let mut conditions = Vec::new();
    if query.key_id.is_some() {
        conditions.push(format!("key_id = {}", next()));
    }
    if query.since.is_some() {
        conditions.push(format!("at >= {}", next()));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!("{filter} ORDER BY at DESC, id DESC LIMIT {}", next())
}

/// The statement of [`AuditStore::query_audit`](keygate_core::AuditStore::query_audit),
/// with its parameters bound: `select` (`SELECT id, … FROM keygate_audit`,
/// the table named as the store names it) followed by [`audit_filter`].
pub(crate) fn audit_query<DB>(
    select: &str,
    query: &AuditQuery,
) -> Result<Query<'static, DB, DB::Arguments>, StoreError>
where
    DB: Backend,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let sql = format!("{select}{}", audit_filter(query, DB::placeholder));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(id) = query.key_id {
        q = q.bind(id.to_string());
    }
    if let Some(since) = query.since {
        q = q.bind(DB::time_param(since)?);
    }
    Ok(q.bind(audit_limit(query)))
}

#[cfg(test)]
mod tests {
    use keygate_core::KeyId;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn audit_filters_number_their_placeholders_in_bind_order() {
        let id: KeyId = "AAAAAAAAA1".parse().unwrap();
        let since = datetime!(2030-01-01 0:00 UTC);
        let q = |key_id, since| AuditQuery {
            key_id,
            since,
            limit: 0,
        };
        let pg = |n: usize| format!("${n}");
        assert_eq!(
            audit_filter(&q(None, None), pg),
            " ORDER BY at DESC, id DESC LIMIT $1"
        );
        assert_eq!(
            audit_filter(&q(Some(id), Some(since)), pg),
            " WHERE key_id = $1 AND at >= $2 ORDER BY at DESC, id DESC LIMIT $3"
        );
        assert_eq!(
            audit_filter(&q(None, Some(since)), |n| format!("?{n}")),
            " WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2"
        );
        assert_eq!(audit_limit(&q(None, None)), 100);
        assert_eq!(
            audit_limit(&AuditQuery {
                limit: usize::MAX,
                ..q(None, None)
            }),
            i64::MAX
        );
    }
}
