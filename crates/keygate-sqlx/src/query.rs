//! Statements built and run once for both backends: the audit query, the
//! `SET` list of an update, row limits, reading key rows, inserting one,
//! counting, listing ids and usage, and ending a rotation. A backend says how it numbers placeholders and binds a time
//! ([`Backend`]).

use keygate_core::{
    AuditQuery, KeyFilter, KeyId, KeyRecord, KeyUpdate, Owner, Page, Rotation, StatusFilter,
    StoreError, UsageBucket, usage_bucket,
};
use sqlx::{
    AssertSqlSafe, Database, Encode, Executor, FromRow, IntoArguments, SqlSafeStr, Transaction,
    Type, query::Query,
};
use time::OffsetDateTime;

use crate::{
    convert::{insert_error, key_ids, store_error},
    row::{StoreRow, record, records, usage},
};

/// A database keygate stores keys in.
pub(crate) trait Backend:
    Database<Row: StoreRow, Arguments: Send + IntoArguments<Self>>
{
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
    for<'e> String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
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

/// The `SET` list of the `UPDATE` of [`KeyStore::update`](keygate_core::KeyStore::update):
/// only the columns `changes` sets, with placeholders numbered from `first`
/// on in the order the backend binds them (name, scopes, rate limit,
/// networks, metadata, expiry), the expiry as `expires(placeholder)` writes
/// it. `None` if it sets nothing.
pub(crate) fn update_sets<DB: Backend>(
    changes: &KeyUpdate,
    first: usize,
    expires: impl FnOnce(&str) -> String,
) -> Option<String> {
    let mut n = first;
    let mut param = || {
        n += 1;
        DB::placeholder(n - 1)
    };
    let mut sets = Vec::new();
    for (set, column) in [
        (changes.name.is_some(), "name"),
        (changes.scopes.is_some(), "scopes"),
        (changes.rate_limit.is_some(), "rate_limit"),
        (changes.allowed_ips.is_some(), "allowed_ips"),
        (changes.metadata.is_some(), "metadata"),
        (changes.credit_account.is_some(), "credit_account"),
    ] {
        if set {
            sets.push(format!("{column} = {}", param()));
        }
    }
    if changes.expires_at.is_some() {
        sets.push(expires(&param()));
    }
    (!sets.is_empty()).then(|| sets.join(", "))
}

/// `query` (a page of [`KeyStore::list_by_owner`](keygate_core::KeyStore::list_by_owner))
/// with its parameters bound: the owner, the limit, and after a cursor its
/// time and id.
pub(crate) fn bind_page<'q, DB>(
    query: Query<'q, DB, DB::Arguments>,
    owner: &keygate_core::Owner,
    page: keygate_core::Page,
) -> Result<Query<'q, DB, DB::Arguments>, StoreError>
where
    DB: Backend,
    for<'e> String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
{
    let query = query.bind(owner.to_string()).bind(limit(page.limit));
    Ok(match page.cursor {
        None => query,
        Some(c) => query
            .bind(DB::time_param(c.created_at)?)
            .bind(c.id.to_string()),
    })
}

/// The `WHERE … ORDER BY … LIMIT …` tail of [`KeyStore::list_keys`](keygate_core::KeyStore::list_keys),
/// with placeholders from `param(1)` on, in the order [`bind_list`] binds
/// them: owner, environment, the status's times, the cursor's time and id,
/// the limit. [`KeyFilter::matches`] is the rule it states in SQL.
pub(crate) fn list_filter(
    filter: &KeyFilter,
    page: Page,
    param: impl Fn(usize) -> String,
) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        param(n)
    };
    let mut conditions = Vec::new();
    if filter.owner.is_some() {
        conditions.push(format!("owner = {}", next()));
    }
    if filter.environment.is_some() {
        conditions.push(format!("environment = {}", next()));
    }
    match filter.status {
        None => {}
        Some(StatusFilter::Active) => conditions.push(format!(
            "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {})",
            next()
        )),
        Some(StatusFilter::Expiring { .. }) => {
            let (now, until) = (next(), next());
            conditions.push(format!(
                "revoked_at IS NULL AND expires_at > {now} AND expires_at <= {until}"
            ));
        }
        Some(StatusFilter::Revoked) => conditions.push("revoked_at IS NOT NULL".to_owned()),
        Some(StatusFilter::Expired) => {
            conditions.push(format!("revoked_at IS NULL AND expires_at <= {}", next()));
        }
    }
    if page.cursor.is_some() {
        let (at, id) = (next(), next());
        conditions.push(format!("(created_at, id) < ({at}, {id})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "{filter} ORDER BY created_at DESC, id DESC LIMIT {}",
        next()
    )
}

/// The statement of [`KeyStore::list_keys`](keygate_core::KeyStore::list_keys),
/// with its parameters bound: `select` (`SELECT … FROM keygate_keys`, the
/// table named as the store names it) followed by [`list_filter`].
pub(crate) fn bind_list<DB>(
    select: &str,
    filter: &KeyFilter,
    now: OffsetDateTime,
    page: Page,
) -> Result<Query<'static, DB, DB::Arguments>, StoreError>
where
    DB: Backend,
    for<'e> String: Encode<'e, DB> + Type<DB>,
    for<'e> i64: Encode<'e, DB> + Type<DB>,
{
    let sql = format!("{select}{}", list_filter(filter, page, DB::placeholder));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(owner) = &filter.owner {
        q = q.bind(owner.to_string());
    }
    if let Some(environment) = filter.environment {
        q = q.bind(environment.as_str().to_owned());
    }
    match filter.status {
        None | Some(StatusFilter::Revoked) => {}
        Some(StatusFilter::Active | StatusFilter::Expired) => q = q.bind(DB::time_param(now)?),
        Some(status @ StatusFilter::Expiring { .. }) => {
            let until = status.expiring_until(now).unwrap_or(keygate_core::MAX_TIME);
            q = q.bind(DB::time_param(now)?).bind(DB::time_param(until)?);
        }
    }
    if let Some(c) = page.cursor {
        q = q.bind(DB::time_param(c.created_at)?).bind(c.id.to_string());
    }
    Ok(q.bind(limit(page.limit)))
}

/// The key rows `query` returns, decoded.
pub(crate) async fn fetch_records<'c, DB: Backend>(
    query: Query<'_, DB, DB::Arguments>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Vec<KeyRecord>, StoreError> {
    records(&query.fetch_all(executor).await.map_err(store_error)?)
}

/// The key row `query` returns, if any, decoded.
pub(crate) async fn fetch_record<'c, DB: Backend>(
    query: Query<'_, DB, DB::Arguments>,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Option<KeyRecord>, StoreError> {
    let row = query.fetch_optional(executor).await.map_err(store_error)?;
    row.as_ref().map(record).transpose()
}

/// Runs `query`, the `INSERT` of the key `id`; a key already there is
/// [`StoreError::Duplicate`].
pub(crate) async fn insert_record<'c, DB: Backend>(
    query: Query<'_, DB, DB::Arguments>,
    id: KeyId,
    executor: impl Executor<'c, Database = DB>,
) -> Result<(), StoreError> {
    query
        .execute(executor)
        .await
        .map_err(|e| insert_error(e, id))?;
    Ok(())
}

/// What [`KeyStore::count_active_by_owner`](keygate_core::KeyStore::count_active_by_owner)
/// returns: `sql` counts the keys of an owner (first placeholder) live at a
/// time (second).
pub(crate) async fn count_active<'c, DB: Backend>(
    sql: impl SqlSafeStr,
    owner: &Owner,
    now: OffsetDateTime,
    executor: impl Executor<'c, Database = DB>,
) -> Result<u64, StoreError>
where
    for<'e> String: Encode<'e, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let n: i64 = sqlx::query_scalar(sql)
        .bind(owner.to_string())
        .bind(DB::time_param(now)?)
        .fetch_one(executor)
        .await
        .map_err(store_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// What [`KeyStore::list_live_ids`](keygate_core::KeyStore::list_live_ids)
/// returns: `sql` selects the ids, at most its placeholder's number.
pub(crate) async fn live_ids<'c, DB: Backend>(
    sql: impl SqlSafeStr,
    max: usize,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Vec<KeyId>, StoreError>
where
    for<'e> i64: Encode<'e, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    let rows: Vec<(String,)> = sqlx::query_as(sql)
        .bind(limit(max))
        .fetch_all(executor)
        .await
        .map_err(store_error)?;
    key_ids(rows)
}

/// What [`KeyStore::usage`](keygate_core::KeyStore::usage) returns: `sql`
/// selects the buckets of a family (first placeholder) from the one holding
/// a time (second) on.
pub(crate) async fn usage_since<'c, DB: Backend>(
    sql: impl SqlSafeStr,
    family: KeyId,
    since: OffsetDateTime,
    executor: impl Executor<'c, Database = DB>,
) -> Result<Vec<UsageBucket>, StoreError>
where
    for<'e> String: Encode<'e, DB> + Type<DB>,
{
    let rows = sqlx::query(sql)
        .bind(family.to_string())
        .bind(DB::time_param(usage_bucket(since))?)
        .fetch_all(executor)
        .await
        .map_err(store_error)?;
    rows.iter().map(|row| usage(row, family.as_str())).collect()
}

/// Ends the transaction of a rotation on every path: commits what rotated,
/// rolls back anything else. A dropped transaction only rolls back when its
/// connection is next used, and until then holds its locks.
pub(crate) async fn finish_rotation<DB: Database>(
    tx: Transaction<'_, DB>,
    rotation: Result<Rotation, StoreError>,
) -> Result<Rotation, StoreError> {
    match rotation {
        Ok(rotated @ Rotation::Rotated { .. }) => {
            tx.commit().await.map_err(store_error)?;
            Ok(rotated)
        }
        other => {
            tx.rollback().await.map_err(store_error)?;
            other
        }
    }
}

/// A reminder's threshold as stored: whole seconds, saturating.
pub(crate) fn threshold_seconds(threshold: std::time::Duration) -> i64 {
    i64::try_from(threshold.as_secs()).unwrap_or(i64::MAX)
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
