//! [`SqliteStore`]'s keys and usage.

use keygate_core::{
    CreditOp, CreditOutcome, InvalidationFeed, KeyFilter, KeyId, KeyRecord, KeyStore, KeyUpdate,
    Owner, Page, Replacement, Rotation, StoreError, UsageBucket, UsageDelta, unix_micros,
};
use sqlx::{AssertSqlSafe, Sqlite, query::Query, sqlite::SqliteArguments};
use time::OffsetDateTime;

use super::SqliteStore;
use crate::{
    convert::{FoldedUsage, in_range, store_error},
    credits::CreditRow,
    poll,
    query::{
        bind_list, bind_page, count_active, fetch_record, fetch_records, finish_rotation,
        insert_record, limit, live_ids, threshold_seconds, update_sets, usage_since,
    },
};

/// The seventeen columns of a record, in `key_columns!()` order, bound to `query`.
fn bind_record<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    r: &KeyRecord,
) -> Result<Query<'q, Sqlite, SqliteArguments>, StoreError> {
    let json = |v: Result<String, serde_json::Error>| {
        v.map_err(|e| StoreError::Corrupt(format!("cannot encode key {}: {e}", r.id)))
    };
    let time = |t: OffsetDateTime| in_range(t).map(unix_micros);
    let opt_time = |t: Option<OffsetDateTime>| t.map(time).transpose();
    Ok(query
        .bind(r.id.to_string())
        .bind(r.family.to_string())
        .bind(r.owner.to_string())
        .bind(r.name.clone())
        .bind(json(serde_json::to_string(&r.scopes))?)
        .bind(r.environment.as_str())
        .bind(r.digest.as_bytes().to_vec())
        .bind(time(r.created_at)?)
        .bind(opt_time(r.expires_at)?)
        .bind(opt_time(r.revoked_at)?)
        .bind(r.rate_limit.as_ref().map(ToString::to_string))
        .bind(json(serde_json::to_string(&r.allowed_ips))?)
        .bind(json(serde_json::to_string(&r.metadata))?)
        .bind(opt_time(r.last_used_at)?)
        .bind(r.superseded_by.map(|id| id.to_string()))
        .bind(r.created_by.map(|id| id.to_string()))
        .bind(r.credit_account.map(|id| id.to_string())))
}

const FIND: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM keygate_keys WHERE id = ?1"
);

const INSERT: &str = concat!(
    "INSERT INTO keygate_keys (",
    key_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
);

/// The reads and writes of [`SqliteStore::rotate`], inside its transaction.
async fn rotate_in(
    conn: &mut sqlx::SqliteConnection,
    id: KeyId,
    replacement: &Replacement,
) -> Result<Rotation, StoreError> {
    let current = fetch_record(sqlx::query(FIND).bind(id.as_str()), &mut *conn)
        .await?
        .ok_or(StoreError::NotFound(id))?;
    let Some((old, new)) = replacement.apply(&current) else {
        return Ok(Rotation::NotRotatable(current));
    };
    insert_record(bind_record(sqlx::query(INSERT), &new)?, new.id, &mut *conn).await?;
    let done = sqlx::query(
        "UPDATE keygate_keys SET superseded_by = ?2, expires_at = ?3 \
         WHERE id = ?1 AND revoked_at IS NULL AND superseded_by IS NULL",
    )
    .bind(id.as_str())
    .bind(new.id.as_str())
    .bind(
        old.expires_at
            .map(|t| in_range(t).map(unix_micros))
            .transpose()?,
    )
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    if done.rows_affected() != 1 {
        return Ok(Rotation::NotRotatable(current));
    }
    Ok(Rotation::Rotated { old, new })
}

/// The `UPDATE` of [`KeyStore::update`]: `SET` names only the columns
/// `changes` sets, bound from `?2` on in the order [`bind_update`] binds
/// them. `None` if it sets nothing.
fn update_sql(changes: &KeyUpdate) -> Option<String> {
    // KeyUpdate::apply_to's rule, decided on the row as it is when the
    // statement runs: a rotated key keeps the earlier expiry. SQLite's
    // two-argument MIN is NULL if either is, hence the cases.
    let expires = |p: &str| {
        format!(
            "expires_at = CASE WHEN superseded_by IS NULL OR expires_at IS NULL THEN {p} \
             WHEN {p} IS NULL THEN expires_at ELSE MIN({p}, expires_at) END"
        )
    };
    let sets = update_sets::<Sqlite>(changes, 2, expires)?;
    Some(format!(
        concat!(
            "UPDATE keygate_keys SET {} WHERE id = ?1 RETURNING ",
            key_columns!()
        ),
        sets
    ))
}

/// Binds what [`update_sql`] names, in its order.
fn bind_update<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments>,
    id: KeyId,
    c: &KeyUpdate,
) -> Result<Query<'q, Sqlite, SqliteArguments>, StoreError> {
    let json = |v: Result<String, serde_json::Error>| {
        v.map_err(|e| StoreError::Corrupt(format!("cannot encode key {id}: {e}")))
    };
    if let Some(name) = &c.name {
        query = query.bind(name.clone());
    }
    if let Some(scopes) = &c.scopes {
        query = query.bind(json(serde_json::to_string(scopes))?);
    }
    if let Some(quotas) = &c.rate_limit {
        query = query.bind(quotas.as_ref().map(ToString::to_string));
    }
    if let Some(nets) = &c.allowed_ips {
        query = query.bind(json(serde_json::to_string(nets))?);
    }
    if let Some(metadata) = &c.metadata {
        query = query.bind(json(serde_json::to_string(metadata))?);
    }
    if let Some(account) = c.credit_account {
        query = query.bind(account.map(|id| id.to_string()));
    }
    if let Some(at) = c.expires_at {
        query = query.bind(at.map(|t| in_range(t).map(unix_micros)).transpose()?);
    }
    Ok(query)
}

impl KeyStore for SqliteStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        fetch_record(sqlx::query(FIND).bind(id.as_str()), &self.pool).await
    }

    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        insert_record(bind_record(sqlx::query(INSERT), r)?, r.id, &self.pool).await
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        let Some(sql) = update_sql(changes) else {
            return self.find(id).await?.ok_or(StoreError::NotFound(id));
        };
        // One statement: it changes only its columns, on the row as it is
        // when it runs, so a revocation or rotation in between is kept.
        let query = bind_update(
            sqlx::query(AssertSqlSafe(sql)).bind(id.as_str()),
            id,
            changes,
        )?;
        fetch_record(query, &self.pool)
            .await?
            .ok_or(StoreError::NotFound(id))
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        // IMMEDIATE takes the write lock before the read, so no other writer
        // can revoke, rotate or change the old key between the check and the
        // writes.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        let rotation = rotate_in(&mut tx, id, replacement).await;
        // Until it ends, the transaction holds the database's write lock.
        finish_rotation(tx, rotation).await
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        const SQL: &str = concat!(
            "UPDATE keygate_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 RETURNING ",
            key_columns!(),
        );
        let query = sqlx::query(SQL).bind(id.as_str()).bind(unix_micros(at));
        fetch_record(query, &self.pool).await
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT count(*) FROM keygate_keys WHERE owner = ?1 \
            AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)";
        count_active(SQL, owner, now, &self.pool).await
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            key_columns!(),
            " FROM keygate_keys WHERE created_by = ?1"
        );
        fetch_records(sqlx::query(SQL).bind(family.as_str()), &self.pool).await
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        const SQL: &str = "SELECT id FROM keygate_keys WHERE revoked_at IS NULL LIMIT ?1";
        live_ids(SQL, limit, &self.pool).await
    }

    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO keygate_reminders (key_id, threshold, claimed_at) \
                           VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
        let done = sqlx::query(SQL)
            .bind(id.as_str())
            .bind(threshold_seconds(threshold))
            .bind(unix_micros(in_range(at)?))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM keygate_reminders WHERE key_id = ?1 AND threshold = ?2";
        sqlx::query(SQL)
            .bind(id.as_str())
            .bind(threshold_seconds(threshold))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        const FIRST: &str = concat!(
            "SELECT ",
            key_columns!(),
            " FROM keygate_keys WHERE owner = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
        );
        const AFTER: &str = concat!(
            "SELECT ",
            key_columns!(),
            " FROM keygate_keys WHERE owner = ?1 AND (created_at, id) < (?3, ?4) \
             ORDER BY created_at DESC, id DESC LIMIT ?2",
        );
        let sql = if page.cursor.is_some() { AFTER } else { FIRST };
        fetch_records(bind_page(sqlx::query(sql), owner, page)?, &self.pool).await
    }

    async fn list_keys(
        &self,
        filter: &KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        const SELECT: &str = concat!("SELECT ", key_columns!(), " FROM keygate_keys");
        let query = bind_list::<Sqlite>(SELECT, filter, now, page)?;
        fetch_records(query, &self.pool).await
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            key_columns!(),
            " FROM keygate_keys WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
             AND expires_at <= ?1 ORDER BY expires_at, id LIMIT ?2",
        );
        let query = sqlx::query(SQL).bind(unix_micros(before)).bind(limit(max));
        fetch_records(query, &self.pool).await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let folded = FoldedUsage::new(batch);
        // IMMEDIATE takes the write lock up front, so the busy timeout applies
        // instead of a deferred transaction failing when it upgrades.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        for (&(family, bucket), counts) in &folded.counts {
            let [revoked, expired, forbidden, rate_limited, usage_exceeded] = counts.refused;
            sqlx::query(concat!(
                "INSERT INTO keygate_usage (family, ",
                usage_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (family, bucket) DO UPDATE SET \
                 requests = requests + excluded.requests, \
                 refused_revoked = refused_revoked + excluded.refused_revoked, \
                 refused_expired = refused_expired + excluded.refused_expired, \
                 refused_forbidden = refused_forbidden + excluded.refused_forbidden, \
                 refused_rate_limited = refused_rate_limited + excluded.refused_rate_limited, \
                 refused_usage_exceeded = refused_usage_exceeded + excluded.refused_usage_exceeded",
            ))
            .bind(family.as_str())
            .bind(unix_micros(bucket))
            .bind(counts.requests)
            .bind(revoked)
            .bind(expired)
            .bind(forbidden)
            .bind(rate_limited)
            .bind(usage_exceeded)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        for (&id, &at) in &folded.last_used {
            let at = unix_micros(at);
            sqlx::query(
                "UPDATE keygate_keys SET last_used_at = ?2 \
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            )
            .bind(id.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<CreditOutcome>, StoreError> {
        // IMMEDIATE takes the write lock before the read: no other process
        // can charge the account between this read and this write.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        let row = sqlx::query(
            "SELECT remaining, refill_amount, refill_seconds, refilled_at \
             FROM keygate_credits WHERE account = ?1",
        )
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        let current = row
            .map(|row| CreditRow::read(&row, account)?.account(account))
            .transpose()?;
        let applied = op.apply(current, now);
        if let Some(state) = applied.write {
            let row = CreditRow::of(&state);
            let refilled_at = row.refilled_at.map(in_range).transpose()?.map(unix_micros);
            sqlx::query(
                "INSERT INTO keygate_credits \
                 (account, remaining, refill_amount, refill_seconds, refilled_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account) DO UPDATE SET \
                 remaining = excluded.remaining, refill_amount = excluded.refill_amount, \
                 refill_seconds = excluded.refill_seconds, refilled_at = excluded.refilled_at",
            )
            .bind(account.as_str())
            .bind(row.remaining)
            .bind(row.refill_amount)
            .bind(row.refill_seconds)
            .bind(refilled_at)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
        }
        // Nothing written: dropping the transaction rolls it back.
        Ok(applied.outcome)
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            usage_columns!(),
            " FROM keygate_usage WHERE family = ?1 AND bucket >= ?2 ORDER BY bucket"
        );
        usage_since(SQL, family, since, &self.pool).await
    }

    /// Polls `keygate_key_changes` (see the type's docs); `None` without a
    /// tokio runtime or with [`without_change_feed`](Self::without_change_feed).
    fn subscribe(&self) -> Option<InvalidationFeed> {
        let every = self.poll?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                target: "keygate::store",
                "SqliteStore::subscribe called outside a tokio runtime: no change feed",
            );
            return None;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(poll::FEED_CAPACITY);
        runtime.spawn(poll::run(self.pool.clone(), every, tx));
        Some(rx)
    }
}
