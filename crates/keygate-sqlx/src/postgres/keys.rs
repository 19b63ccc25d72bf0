//! [`PostgresStore`]'s keys and usage.

use std::sync::Arc;

use keygate_core::{
    CreditOp, CreditOutcome, InvalidationFeed, KeyFilter, KeyId, KeyRecord, KeyStore, KeyUpdate,
    Owner, Page, Replacement, Rotation, StoreError, UsageBucket, UsageDelta,
};
use sqlx::{
    AssertSqlSafe,
    postgres::{PgArguments, Postgres},
    query::Query,
    types::Json,
};
use time::OffsetDateTime;

use super::PostgresStore;
use crate::{
    convert::{FoldedUsage, in_range, store_error},
    credits::CreditRow,
    listen,
    query::{
        bind_list, bind_page, count_active, fetch_record, fetch_records, finish_rotation,
        insert_record, limit, live_ids, threshold_seconds, update_sets, usage_since,
    },
};

/// How often a write is retried after PostgreSQL aborted it to break a
/// deadlock (concurrent usage flushes from several nodes).
const DEADLOCK_RETRIES: usize = 3;

impl PostgresStore {
    fn bind_record(
        &self,
        query: Query<'static, Postgres, PgArguments>,
        r: &KeyRecord,
    ) -> Result<Query<'static, Postgres, PgArguments>, StoreError> {
        let opt_time = |t: Option<OffsetDateTime>| t.map(in_range).transpose();
        Ok(query
            .bind(r.id.to_string())
            .bind(r.family.to_string())
            .bind(r.owner.to_string())
            .bind(r.name.clone())
            .bind(
                r.scopes
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(r.environment.as_str())
            .bind(r.digest.as_bytes().to_vec())
            .bind(in_range(r.created_at)?)
            .bind(opt_time(r.expires_at)?)
            .bind(opt_time(r.revoked_at)?)
            .bind(r.rate_limit.as_ref().map(ToString::to_string))
            .bind(r.allowed_ips.clone())
            .bind(Json(r.metadata.clone()))
            .bind(opt_time(r.last_used_at)?)
            .bind(r.superseded_by.map(|id| id.to_string()))
            .bind(self.shared.channel.clone())
            // `created_by` ($17) is written once, by an insert: updates
            // leave it alone.
            .bind(r.created_by.map(|id| id.to_string()))
            .bind(r.credit_account.map(|id| id.to_string())))
    }

    /// The statement of [`KeyStore::update`]: one `UPDATE` that sets only
    /// the columns `changes` sets (from `$3` on, `$1` the id, `$2` the
    /// channel), with its values bound. `None` if it sets nothing.
    fn update_query(
        &self,
        id: KeyId,
        c: &KeyUpdate,
    ) -> Result<Option<Query<'static, Postgres, PgArguments>>, StoreError> {
        // KeyUpdate::apply_to's rule, decided on the row as it is when the
        // statement runs: a rotated key keeps the earlier expiry (LEAST
        // ignores NULLs).
        let expires = |p: &str| {
            format!(
                "expires_at = CASE WHEN superseded_by IS NULL THEN {p}::timestamptz \
                 ELSE LEAST({p}::timestamptz, expires_at) END"
            )
        };
        let Some(sets) = update_sets::<Postgres>(c, 3, expires) else {
            return Ok(None);
        };
        let sql = format!(
            concat!(
                "WITH k AS (UPDATE {} SET {} WHERE id = $1 RETURNING ",
                key_columns!(),
                ") SELECT k.*, pg_notify($2, k.id)::text AS notified FROM k"
            ),
            self.shared.sql.keys, sets
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(self.shared.channel.clone());
        if let Some(name) = &c.name {
            query = query.bind(name.clone());
        }
        if let Some(scopes) = &c.scopes {
            query = query.bind(
                scopes
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(quotas) = &c.rate_limit {
            query = query.bind(quotas.as_ref().map(ToString::to_string));
        }
        if let Some(nets) = &c.allowed_ips {
            query = query.bind(nets.clone());
        }
        if let Some(metadata) = &c.metadata {
            query = query.bind(Json(metadata.clone()));
        }
        if let Some(account) = c.credit_account {
            query = query.bind(account.map(|id| id.to_string()));
        }
        if let Some(at) = c.expires_at {
            query = query.bind(at.map(in_range).transpose()?);
        }
        Ok(Some(query))
    }

    /// The statement of [`KeyStore::find`], with its id bound.
    fn find_query(&self, id: KeyId) -> Query<'static, Postgres, PgArguments> {
        Self::query(&self.shared.sql.find).bind(id.to_string())
    }

    async fn try_rotate(
        &self,
        id: KeyId,
        replacement: &Replacement,
    ) -> Result<Rotation, StoreError> {
        // The row lock (FOR UPDATE) makes a concurrent revoke, update or
        // rotation of the old key wait until this transaction ends, so the
        // check and the writes see the same row.
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let rotation = self.rotate_in(&mut tx, id, replacement).await;
        // Until it ends, the transaction keeps the row locked, so a
        // revocation of the key would wait for it.
        finish_rotation(tx, rotation).await
    }

    /// The reads and writes of [`try_rotate`](Self::try_rotate), inside its
    /// transaction.
    async fn rotate_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: KeyId,
        replacement: &Replacement,
    ) -> Result<Rotation, StoreError> {
        let find = Self::query(&self.shared.sql.find_for_update).bind(id.to_string());
        let current = fetch_record(find, &mut *conn)
            .await?
            .ok_or(StoreError::NotFound(id))?;
        let Some((old, new)) = replacement.apply(&current) else {
            return Ok(Rotation::NotRotatable(current));
        };
        let insert = self.bind_record(Self::query(&self.shared.sql.insert), &new)?;
        insert_record(insert, new.id, &mut *conn).await?;
        let done = Self::query(&self.shared.sql.supersede)
            .bind(id.to_string())
            .bind(new.id.to_string())
            .bind(old.expires_at.map(in_range).transpose()?)
            .bind(self.shared.channel.clone())
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
        if done.rows_affected() != 1 {
            return Ok(Rotation::NotRotatable(current));
        }
        Ok(Rotation::Rotated { old, new })
    }

    async fn try_record_usage(&self, folded: &FoldedUsage) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if !folded.counts.is_empty() {
            let mut families = Vec::with_capacity(folded.counts.len());
            let mut buckets = Vec::with_capacity(folded.counts.len());
            let mut counts = Vec::with_capacity(folded.counts.len());
            let mut refused: [Vec<i64>; 5] = Default::default();
            for (&(family, bucket), c) in &folded.counts {
                families.push(family.to_string());
                buckets.push(bucket);
                counts.push(c.requests);
                for (column, &n) in refused.iter_mut().zip(&c.refused) {
                    column.push(n);
                }
            }
            let [revoked, expired, forbidden, rate_limited, usage_exceeded] = refused;
            Self::query(&self.shared.sql.add_usage)
                .bind(families)
                .bind(buckets)
                .bind(counts)
                .bind(revoked)
                .bind(expired)
                .bind(forbidden)
                .bind(rate_limited)
                .bind(usage_exceeded)
                .execute(&mut *tx)
                .await?;
        }
        let (ids, ats): (Vec<String>, Vec<OffsetDateTime>) = folded
            .last_used
            .iter()
            .map(|(id, at)| (id.to_string(), *at))
            .unzip();
        Self::query(&self.shared.sql.last_used)
            .bind(ids)
            .bind(ats)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

fn is_deadlock(err: &sqlx::Error) -> bool {
    // 40P01 deadlock_detected, 40001 serialization_failure.
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

impl KeyStore for PostgresStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        fetch_record(self.find_query(id), &self.pool).await
    }

    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        let query = self.bind_record(Self::query(&self.shared.sql.insert), r)?;
        insert_record(query, r.id, &self.pool).await
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        // One statement: it changes only its columns, on the row as it is
        // when it runs, so a revocation or rotation in between is kept.
        let query = self
            .update_query(id, changes)?
            .unwrap_or_else(|| self.find_query(id));
        fetch_record(query, &self.pool)
            .await?
            .ok_or(StoreError::NotFound(id))
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        self.try_rotate(id, replacement).await
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        let query = Self::query(&self.shared.sql.revoke)
            .bind(id.to_string())
            .bind(in_range(at)?)
            .bind(self.shared.channel.clone());
        fetch_record(query, &self.pool).await
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let sql = AssertSqlSafe(Arc::clone(&self.shared.sql.count_active));
        count_active(sql, owner, now, &self.pool).await
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        let query = Self::query(&self.shared.sql.created_by).bind(family.to_string());
        fetch_records(query, &self.pool).await
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        let sql = AssertSqlSafe(Arc::clone(&self.shared.sql.live_ids));
        live_ids(sql, limit, &self.pool).await
    }

    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = Self::query(&self.shared.sql.claim_reminder)
            .bind(id.to_string())
            .bind(threshold_seconds(threshold))
            .bind(in_range(at)?)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<CreditOutcome>, StoreError> {
        let sql = &self.shared.sql;
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        if matches!(op, CreditOp::Update(_)) {
            // Two first top-ups of one account must not both start from
            // nothing: make the row, then lock it.
            Self::query(&sql.open_credits)
                .bind(account.to_string())
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        let row = Self::query(&sql.lock_credits)
            .bind(account.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let current = row
            .map(|row| CreditRow::read(&row, account)?.account(account))
            .transpose()?;
        let applied = op.apply(current, now);
        if let Some(state) = applied.write {
            let row = CreditRow::of(&state);
            Self::query(&sql.write_credits)
                .bind(account.to_string())
                .bind(row.remaining)
                .bind(row.refill_amount)
                .bind(row.refill_seconds)
                .bind(row.refilled_at.map(in_range).transpose()?)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        // A read, a refused charge or a refund after a refill writes
        // nothing; an opened account is kept even then.
        tx.commit().await.map_err(store_error)?;
        Ok(applied.outcome)
    }

    async fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> Result<(), StoreError> {
        Self::query(&self.shared.sql.release_reminder)
            .bind(id.to_string())
            .bind(threshold_seconds(threshold))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = match page.cursor {
            None => &self.shared.sql.list_first,
            Some(_) => &self.shared.sql.list_after,
        };
        fetch_records(bind_page(Self::query(sql), owner, page)?, &self.pool).await
    }

    async fn list_keys(
        &self,
        filter: &KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let query = bind_list::<Postgres>(&self.shared.sql.list, filter, now, page)?;
        fetch_records(query, &self.pool).await
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let query = Self::query(&self.shared.sql.expiring)
            .bind(in_range(before)?)
            .bind(limit(max));
        fetch_records(query, &self.pool).await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let folded = FoldedUsage::new(batch);
        // sqlx's encoder panics on a time whose UTC form is out of range.
        for &(_, bucket) in folded.counts.keys() {
            in_range(bucket)?;
        }
        for &at in folded.last_used.values() {
            in_range(at)?;
        }
        let mut attempt = 0;
        loop {
            match self.try_record_usage(&folded).await {
                Ok(()) => return Ok(()),
                Err(e) if is_deadlock(&e) && attempt < DEADLOCK_RETRIES => attempt += 1,
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let sql = AssertSqlSafe(Arc::clone(&self.shared.sql.usage));
        usage_since(sql, family, since, &self.pool).await
    }

    fn subscribe(&self) -> Option<InvalidationFeed> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                target: "keygate::store",
                "PostgresStore::subscribe called outside a tokio runtime: no invalidation feed",
            );
            return None;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(listen::FEED_CAPACITY);
        runtime.spawn(listen::run(
            self.pool.clone(),
            self.shared.channel.clone(),
            tx,
        ));
        Some(rx)
    }
}
