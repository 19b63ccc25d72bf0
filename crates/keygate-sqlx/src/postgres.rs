//! [`PostgresStore`]: keys in PostgreSQL, shared by every node, with
//! invalidations over LISTEN/NOTIFY.

use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

use keygate_core::{
    AuditEvent, AuditQuery, AuditStore, InvalidationFeed, IpNet, KeyId, KeyRecord, KeyStore,
    KeyUpdate, Metadata, Owner, Page, Replacement, Rotation, Scope, Scopes, StoreError,
    UsageBucket, UsageDelta, usage_bucket,
};
use sqlx::{
    AssertSqlSafe, Connection, Executor, Row,
    error::BoxDynError,
    migrate::Migrator,
    postgres::{
        PgArguments, PgPool, PgPoolOptions, PgRow, PgTypeInfo, PgValueFormat, PgValueRef, Postgres,
    },
    query::Query,
    types::Json,
};
use time::OffsetDateTime;

use crate::{
    convert::{
        FoldedUsage, audit_corrupt, audit_filter, audit_limit, corrupt, digest, in_range,
        insert_error, parse, requests, store_error,
    },
    listen,
};

/// The channel invalidations are published on, for a store without a schema
/// of its own; a store with one uses `keygate_invalidate_{schema}`.
pub const DEFAULT_CHANNEL: &str = "keygate_invalidate";

/// Longest schema name [`PostgresStore::with_schema`] accepts: the channel
/// name built from it must fit PostgreSQL's 63-byte identifiers.
pub const MAX_SCHEMA_LEN: usize = 63 - DEFAULT_CHANNEL.len() - 1;

/// How often a write is retried after PostgreSQL aborted it to break a
/// deadlock (concurrent usage flushes from several nodes).
const DEADLOCK_RETRIES: usize = 3;

/// A [`KeyStore`] in PostgreSQL: for services that run on several nodes.
///
/// Tables are `keygate_keys`, `keygate_usage` and `keygate_audit` (the
/// persisted audit trail, see [`AuditStore`]), created by
/// [`migrate`](Self::migrate), which records applied versions in
/// `keygate_migrations` (apart from your application's `_sqlx_migrations`).
/// Without [`with_schema`](Self::with_schema) they live in the first schema
/// of the connections' `search_path` (usually `public`).
///
/// # Cross-node invalidation
///
/// [`insert`](KeyStore::insert), [`update`](KeyStore::update),
/// [`rotate`](KeyStore::rotate) (both keys) and [`revoke`](KeyStore::revoke)
/// publish the key's id with `pg_notify` in the same statement as the
/// change, so a notification goes out exactly when the change commits. [`subscribe`](KeyStore::subscribe) starts a task that
/// LISTENs on the [`channel`](Self::channel) over a connection of its own
/// and feeds what it hears to keygate's cache:
///
/// * each notification becomes [`Invalidation::Key`](keygate_core::Invalidation::Key)
///   (a payload that is not a key id, such as a bare
///   `NOTIFY keygate_invalidate` after editing keys by hand, becomes
///   [`Invalidation::All`](keygate_core::Invalidation::All));
/// * once listening, and again after every reconnection, it sends
///   `Invalidation::All`, since notifications published while it was not
///   listening are lost;
/// * it reconnects by itself, with backoff, when the connection drops;
/// * if the consumer falls more than 1024 messages behind, it sends
///   `Invalidation::All` instead of buffering without bound;
/// * it stops when the feed's receiver is dropped or the pool is closed.
///
/// Every node sharing the tables must use the same schema setting, so that
/// they publish and listen on the same channel.
///
/// ```no_run
/// use keygate_sqlx::PostgresStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://keygate@db.internal/app")
///     .await?
///     .with_schema("auth")?;
/// store.migrate().await?; // creates the schema `auth` if needed
/// assert_eq!(store.channel(), "keygate_invalidate_auth");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    shared: Arc<Shared>,
}

struct Shared {
    schema: Option<String>,
    channel: String,
    sql: Sql,
}

/// The statements, with the table names of this store's schema.
struct Sql {
    /// `keygate_keys`, qualified with the schema if there is one.
    keys: String,
    find: Arc<str>,
    count_active: Arc<str>,
    created_by: Arc<str>,
    live_ids: Arc<str>,
    /// `find` that also locks the row until the transaction ends.
    find_for_update: Arc<str>,
    insert: Arc<str>,
    supersede: Arc<str>,
    revoke: Arc<str>,
    list_first: Arc<str>,
    list_after: Arc<str>,
    expiring: Arc<str>,
    add_usage: Arc<str>,
    last_used: Arc<str>,
    usage: Arc<str>,
    add_audit: Arc<str>,
    /// `SELECT … FROM keygate_audit`, to which [`audit_filter`] is appended.
    audit: String,
    prune_audit: Arc<str>,
}

impl Sql {
    fn new(schema: Option<&str>) -> Self {
        let prefix = schema.map_or_else(String::new, |s| format!("\"{s}\"."));
        let keys = format!("{prefix}keygate_keys");
        let usage = format!("{prefix}keygate_usage");
        let audit = format!("{prefix}keygate_audit");
        let audit_cols = audit_columns!();
        let cols = key_columns!();
        let s = |sql: String| Arc::<str>::from(sql);
        Self {
            find: s(format!("SELECT {cols} FROM {keys} WHERE id = $1")),
            count_active: s(format!(
                "SELECT count(*) FROM {keys} WHERE owner = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            )),
            created_by: s(format!("SELECT {cols} FROM {keys} WHERE created_by = $1")),
            live_ids: s(format!(
                "SELECT id FROM {keys} WHERE revoked_at IS NULL LIMIT $1"
            )),
            find_for_update: s(format!(
                "SELECT {cols} FROM {keys} WHERE id = $1 FOR UPDATE"
            )),
            insert: s(format!(
                "WITH k AS (INSERT INTO {keys} ({cols}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $17) RETURNING id) \
                 SELECT pg_notify($16, k.id) FROM k"
            )),
            supersede: s(format!(
                "WITH k AS (UPDATE {keys} SET superseded_by = $2, expires_at = $3 \
                 WHERE id = $1 AND revoked_at IS NULL AND superseded_by IS NULL RETURNING id) \
                 SELECT pg_notify($4, k.id) FROM k"
            )),
            revoke: s(format!(
                "WITH k AS (UPDATE {keys} SET revoked_at = COALESCE(revoked_at, $2) \
                 WHERE id = $1 RETURNING {cols}) \
                 SELECT k.*, pg_notify($3, k.id)::text AS notified FROM k"
            )),
            list_first: s(format!(
                "SELECT {cols} FROM {keys} WHERE owner = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )),
            list_after: s(format!(
                "SELECT {cols} FROM {keys} WHERE owner = $1 AND (created_at, id) < ($3, $4) \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )),
            expiring: s(format!(
                "SELECT {cols} FROM {keys} WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
                 AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2"
            )),
            add_usage: s(format!(
                "INSERT INTO {usage} AS u (family, bucket, requests) \
                 SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::int8[]) \
                 ON CONFLICT (family, bucket) DO UPDATE SET requests = u.requests + EXCLUDED.requests"
            )),
            last_used: s(format!(
                "UPDATE {keys} AS k SET last_used_at = u.at \
                 FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at) \
                 WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)"
            )),
            usage: s(format!(
                "SELECT bucket, requests FROM {usage} WHERE family = $1 AND bucket >= $2 \
                 ORDER BY bucket"
            )),
            // One statement for the whole batch; ORDER BY the position in
            // the batch so ids grow in the order the events were written.
            add_audit: s(format!(
                "INSERT INTO {audit} ({audit_cols}) \
                 SELECT {audit_cols} FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], \
                 $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::inet[]) \
                 WITH ORDINALITY AS e({audit_cols}, n) ORDER BY n"
            )),
            audit: format!("SELECT id, {audit_cols} FROM {audit}"),
            prune_audit: s(format!("DELETE FROM {audit} WHERE at < $1")),
            keys,
        }
    }
}

/// The error returned by [`PostgresStore::with_schema`] for a name it does
/// not accept.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "a keygate schema name is 1 to {MAX_SCHEMA_LEN} characters from a-z, 0-9 and `_`, \
     not starting with a digit; got {0:?}"
)]
pub struct InvalidSchema(String);

impl PostgresStore {
    /// A store over an existing pool, using the tables in the first schema of
    /// the connections' `search_path`. Run [`migrate`](Self::migrate) once
    /// before using it.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            shared: Arc::new(Shared {
                schema: None,
                channel: DEFAULT_CHANNEL.to_owned(),
                sql: Sql::new(None),
            }),
        }
    }

    /// Connects to a `postgres://` URL with a pool of up to 10 connections
    /// that gives up waiting for one after 5 seconds (so an outage surfaces
    /// as [`StoreError::Unavailable`] rather than a hung request).
    ///
    /// For TLS (`sslmode=require`), enable one of sqlx's TLS features in your
    /// own `Cargo.toml`, e.g. `sqlx = { version = "0.9", features =
    /// ["tls-rustls"] }`.
    ///
    /// # Errors
    ///
    /// The driver's error if the URL is invalid or the server cannot be
    /// reached.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self::new(pool))
    }

    /// Keeps keygate's tables in the schema `schema` (created by
    /// [`migrate`](Self::migrate) if missing) instead of the `search_path`,
    /// and publishes invalidations on `keygate_invalidate_{schema}`, so
    /// stores in different schemas of one database neither see each other's
    /// keys nor each other's invalidations. Useful to keep keygate apart from
    /// application tables, and to give each test run a fresh schema.
    ///
    /// The name is used as given (quoted), so it is restricted to lowercase
    /// letters, digits and `_`, at most [`MAX_SCHEMA_LEN`] characters.
    ///
    /// # Errors
    ///
    /// [`InvalidSchema`] for any other name.
    pub fn with_schema(self, schema: impl Into<String>) -> Result<Self, InvalidSchema> {
        let schema = schema.into();
        let valid = (1..=MAX_SCHEMA_LEN).contains(&schema.len())
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(InvalidSchema(schema));
        }
        Ok(Self {
            pool: self.pool,
            shared: Arc::new(Shared {
                channel: format!("{DEFAULT_CHANNEL}_{schema}"),
                sql: Sql::new(Some(&schema)),
                schema: Some(schema),
            }),
        })
    }

    /// Creates or upgrades keygate's tables (and the schema, if the store has
    /// one). Safe to run on every start and from several nodes at once:
    /// PostgreSQL serializes concurrent runs with an advisory lock.
    ///
    /// # Errors
    ///
    /// The driver's error (as [`sqlx::Error::Migrate`] for a migration that
    /// failed or was changed after it was applied).
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut migrator: Migrator = sqlx::migrate!("./migrations/postgres");
        migrator.dangerous_set_table_name("keygate_migrations");
        let Some(schema) = &self.shared.schema else {
            migrator.run(&self.pool).await?;
            return Ok(());
        };
        // The migrations name their tables unqualified; run them on a
        // connection of their own whose search_path is the schema, and close
        // it afterwards so the setting never leaks into the pool.
        let mut conn = self.pool.acquire().await?.detach();
        let result = async {
            // Only create what is missing: a schema made by a DBA may be
            // usable by a role that may not create schemas.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(schema.as_str())
                    .fetch_one(&mut conn)
                    .await?;
            if !exists {
                conn.execute(AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                )))
                .await?;
            }
            conn.execute(AssertSqlSafe(format!("SET search_path TO \"{schema}\"")))
                .await?;
            migrator.run(&mut conn).await?;
            Ok(())
        }
        .await;
        let _ = conn.close().await;
        result
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema set with [`with_schema`](Self::with_schema), if any.
    pub fn schema(&self) -> Option<&str> {
        self.shared.schema.as_deref()
    }

    /// The LISTEN/NOTIFY channel this store publishes invalidations on:
    /// [`DEFAULT_CHANNEL`], or `keygate_invalidate_{schema}`.
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }

    fn query(sql: &Arc<str>) -> Query<'static, sqlx::Postgres, PgArguments> {
        sqlx::query(AssertSqlSafe(Arc::clone(sql)))
    }

    fn bind_record(
        &self,
        query: Query<'static, sqlx::Postgres, PgArguments>,
        r: &KeyRecord,
    ) -> Result<Query<'static, sqlx::Postgres, PgArguments>, StoreError> {
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
            .bind(r.created_by.map(|id| id.to_string())))
    }

    /// The statement of [`KeyStore::update`]: one `UPDATE` that sets only
    /// the columns `changes` sets (from `$3` on, `$1` the id, `$2` the
    /// channel), with its values bound. `None` if it sets nothing.
    fn update_query(
        &self,
        id: KeyId,
        c: &KeyUpdate,
    ) -> Result<Option<Query<'static, sqlx::Postgres, PgArguments>>, StoreError> {
        let mut sets = Vec::new();
        let mut n = 2;
        let mut param = || {
            n += 1;
            format!("${n}")
        };
        for (set, column) in [
            (c.name.is_some(), "name"),
            (c.scopes.is_some(), "scopes"),
            (c.rate_limit.is_some(), "rate_limit"),
            (c.allowed_ips.is_some(), "allowed_ips"),
            (c.metadata.is_some(), "metadata"),
        ] {
            if set {
                sets.push(format!("{column} = {}", param()));
            }
        }
        if c.expires_at.is_some() {
            // KeyUpdate::apply_to's rule, decided on the row as it is when
            // the statement runs: a rotated key keeps the earlier expiry
            // (LEAST ignores NULLs).
            let p = param();
            sets.push(format!(
                "expires_at = CASE WHEN superseded_by IS NULL THEN {p}::timestamptz \
                 ELSE LEAST({p}::timestamptz, expires_at) END"
            ));
        }
        if sets.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            concat!(
                "WITH k AS (UPDATE {} SET {} WHERE id = $1 RETURNING ",
                key_columns!(),
                ") SELECT k.*, pg_notify($2, k.id)::text AS notified FROM k"
            ),
            self.shared.sql.keys,
            sets.join(", ")
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
        if let Some(at) = c.expires_at {
            query = query.bind(at.map(in_range).transpose()?);
        }
        Ok(Some(query))
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
        // End the transaction here on every path: a dropped one only rolls
        // back when its connection is next used, and until then it keeps
        // the row locked, so a revocation of the key would wait for it.
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

    /// The reads and writes of [`try_rotate`](Self::try_rotate), inside its
    /// transaction.
    async fn rotate_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: KeyId,
        replacement: &Replacement,
    ) -> Result<Rotation, StoreError> {
        let current = Self::query(&self.shared.sql.find_for_update)
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(record)
            .transpose()?
            .ok_or(StoreError::NotFound(id))?;
        let Some((old, new)) = replacement.apply(&current) else {
            return Ok(Rotation::NotRotatable(current));
        };
        self.bind_record(Self::query(&self.shared.sql.insert), &new)?
            .execute(&mut *conn)
            .await
            .map_err(|e| insert_error(e, new.id))?;
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
            for (&(family, bucket), &n) in &folded.counts {
                families.push(family.to_string());
                buckets.push(bucket);
                counts.push(n);
            }
            Self::query(&self.shared.sql.add_usage)
                .bind(families)
                .bind(buckets)
                .bind(counts)
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

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool)
            .field("schema", &self.shared.schema)
            .field("channel", &self.shared.channel)
            .finish()
    }
}

fn record(row: &PgRow) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get("id").map_err(store_error)?;
    let k = id.as_str();
    let text = |column: &str| row.try_get::<String, _>(column).map_err(store_error);
    let opt_text = |column: &str| {
        row.try_get::<Option<String>, _>(column)
            .map_err(store_error)
    };
    let time = |column: &str| {
        row.try_get::<Option<PgTime>, _>(column)
            .map(|t| t.map(|t| t.0))
            .map_err(store_error)
    };
    let scopes = row
        .try_get::<Vec<String>, _>("scopes")
        .map_err(store_error)?
        .into_iter()
        .map(|s| parse::<Scope>(&s, k, "scopes"))
        .collect::<Result<Scopes, _>>()?;
    let digest_bytes: Vec<u8> = row.try_get("digest").map_err(store_error)?;
    Ok(KeyRecord {
        id: parse(k, k, "id")?,
        family: parse(&text("family")?, k, "family")?,
        owner: parse::<Owner>(&text("owner")?, k, "owner")?,
        name: text("name")?,
        scopes,
        environment: parse(&text("environment")?, k, "environment")?,
        digest: digest(&digest_bytes, k)?,
        created_at: time("created_at")?.ok_or_else(|| corrupt(k, "created_at", "NULL"))?,
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
        rate_limit: opt_text("rate_limit")?
            .map(|q| parse(&q, k, "rate_limit"))
            .transpose()?,
        allowed_ips: row
            .try_get::<Vec<IpNet>, _>("allowed_ips")
            .map_err(store_error)?,
        metadata: row
            .try_get::<Json<Metadata>, _>("metadata")
            .map_err(store_error)?
            .0,
        last_used_at: time("last_used_at")?,
        superseded_by: opt_text("superseded_by")?
            .map(|s| parse(&s, k, "superseded_by"))
            .transpose()?,
        created_by: opt_text("created_by")?
            .map(|s| parse(&s, k, "created_by"))
            .transpose()?,
    })
}

/// A `timestamptz` read with checked arithmetic. sqlx's own decoder adds
/// the value to 2000-01-01 with `+`, which panics for what PostgreSQL can
/// hold but `time` cannot (`infinity`, years past 9999): such a row must be
/// an error, never a panic.
struct PgTime(OffsetDateTime);

impl sqlx::Type<Postgres> for PgTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for PgTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        /// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix microseconds.
        const PG_EPOCH_UNIX_MICROS: i128 = 946_684_800_000_000;
        match value.format() {
            PgValueFormat::Binary => {
                let us = <i64 as sqlx::Decode<'r, Postgres>>::decode(value)?;
                let nanos = (i128::from(us) + PG_EPOCH_UNIX_MICROS) * 1_000;
                Ok(Self(OffsetDateTime::from_unix_timestamp_nanos(nanos)?))
            }
            // The text form is parsed, not computed: it cannot overflow.
            PgValueFormat::Text => Ok(Self(
                <OffsetDateTime as sqlx::Decode<'r, Postgres>>::decode(value)?,
            )),
        }
    }
}

fn records(rows: &[PgRow]) -> Result<Vec<KeyRecord>, StoreError> {
    rows.iter().map(record).collect()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn is_deadlock(err: &sqlx::Error) -> bool {
    // 40P01 deadlock_detected, 40001 serialization_failure.
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

impl KeyStore for PostgresStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Self::query(&self.shared.sql.find)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        self.bind_record(Self::query(&self.shared.sql.insert), r)?
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, r.id))?;
        Ok(())
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        let Some(query) = self.update_query(id, changes)? else {
            return self.find(id).await?.ok_or(StoreError::NotFound(id));
        };
        // One statement: it changes only its columns, on the row as it is
        // when it runs, so a revocation or rotation in between is kept.
        query
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(record)
            .transpose()?
            .ok_or(StoreError::NotFound(id))
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        self.try_rotate(id, replacement).await
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        Self::query(&self.shared.sql.revoke)
            .bind(id.to_string())
            .bind(in_range(at)?)
            .bind(self.shared.channel.clone())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.shared.sql.count_active)))
            .bind(owner.to_string())
            .bind(in_range(now)?)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = Self::query(&self.shared.sql.created_by)
            .bind(family.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        records(&rows)
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as(AssertSqlSafe(Arc::clone(&self.shared.sql.live_ids)))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
        crate::convert::key_ids(rows)
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let query = match page.cursor {
            None => Self::query(&self.shared.sql.list_first)
                .bind(owner.to_string())
                .bind(limit(page.limit)),
            Some(c) => Self::query(&self.shared.sql.list_after)
                .bind(owner.to_string())
                .bind(limit(page.limit))
                .bind(in_range(c.created_at)?)
                .bind(c.id.to_string()),
        };
        records(&query.fetch_all(&self.pool).await.map_err(store_error)?)
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        max: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = Self::query(&self.shared.sql.expiring)
            .bind(in_range(before)?)
            .bind(limit(max))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        records(&rows)
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
        let rows = Self::query(&self.shared.sql.usage)
            .bind(family.to_string())
            .bind(in_range(usage_bucket(since))?)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get("requests").map_err(store_error)?;
                Ok(UsageBucket {
                    bucket: row.try_get::<PgTime, _>("bucket").map_err(store_error)?.0,
                    requests: requests(n, family.as_str())?,
                })
            })
            .collect()
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

fn audit_event(row: &PgRow) -> Result<AuditEvent, StoreError> {
    let n: i64 = row.try_get("id").map_err(store_error)?;
    let opt_text = |column: &str| {
        row.try_get::<Option<String>, _>(column)
            .map_err(store_error)
    };
    let action: String = row.try_get("action").map_err(store_error)?;
    Ok(AuditEvent {
        at: row
            .try_get::<PgTime, _>("at")
            .map_err(|e| audit_corrupt(n, "at", e))?
            .0,
        action: action.parse().map_err(|e| audit_corrupt(n, "action", e))?,
        outcome: row.try_get("outcome").map_err(store_error)?,
        detail: opt_text("detail")?,
        key_id: opt_text("key_id")?
            .map(|s| s.parse().map_err(|e| audit_corrupt(n, "key_id", e)))
            .transpose()?,
        actor: opt_text("actor")?,
        method: opt_text("method")?,
        path: opt_text("path")?,
        // A network (`10.0.0.0/8`) put there by hand is not a client address.
        peer: row
            .try_get::<Option<IpAddr>, _>("peer")
            .map_err(|e| audit_corrupt(n, "peer", e))?,
    })
}

/// The persisted audit trail, in `keygate_audit`. Times keep microseconds;
/// events come back newest first, and events of the same microsecond in
/// reverse order of writing.
impl AuditStore for PostgresStore {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let texts = |f: fn(&AuditEvent) -> Option<&str>| -> Vec<Option<String>> {
            events.iter().map(|e| f(e).map(str::to_owned)).collect()
        };
        // A single statement: the batch is written whole or not at all.
        Self::query(&self.shared.sql.add_audit)
            .bind(
                events
                    .iter()
                    .map(|e| in_range(e.at))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(texts(|e| Some(e.action.as_str())))
            .bind(texts(|e| Some(e.outcome.as_str())))
            .bind(texts(|e| e.detail.as_deref()))
            .bind(
                events
                    .iter()
                    .map(|e| e.key_id.map(|id| id.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(texts(|e| e.actor.as_deref()))
            .bind(texts(|e| e.method.as_deref()))
            .bind(texts(|e| e.path.as_deref()))
            .bind(events.iter().map(|e| e.peer).collect::<Vec<_>>())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = format!(
            "{}{}",
            self.shared.sql.audit,
            audit_filter(query, |n| format!("${n}"))
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(id) = query.key_id {
            q = q.bind(id.to_string());
        }
        if let Some(since) = query.since {
            q = q.bind(in_range(since)?);
        }
        let rows = q
            .bind(audit_limit(query))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(audit_event).collect()
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = Self::query(&self.shared.sql.prune_audit)
            .bind(in_range(before)?)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> PostgresStore {
        // A lazy pool never connects until used.
        PostgresStore::new(PgPool::connect_lazy("postgres://localhost/none").unwrap())
    }

    #[tokio::test]
    async fn schema_names_are_checked_and_name_the_channel() {
        assert_eq!(store().channel(), DEFAULT_CHANNEL);
        assert_eq!(store().schema(), None);
        let longest = "s".repeat(MAX_SCHEMA_LEN);
        for good in ["auth", "keygate_test_1_2_3", "_x", longest.as_str()] {
            let s = store().with_schema(good).unwrap();
            assert_eq!(s.schema(), Some(good));
            assert_eq!(s.channel(), format!("keygate_invalidate_{good}"));
            assert!(s.channel().len() <= 63, "PostgreSQL truncates longer names");
        }
        let too_long = "s".repeat(MAX_SCHEMA_LEN + 1);
        for bad in [
            "",
            "Auth",
            "1st",
            "a-b",
            "a\"b",
            "a.b",
            "ä",
            too_long.as_str(),
        ] {
            assert!(store().with_schema(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn statements_name_the_schema() {
        let s = store().with_schema("tenant_7").unwrap();
        assert!(s.shared.sql.find.contains("FROM \"tenant_7\".keygate_keys"));
        assert!(store().shared.sql.find.contains("FROM keygate_keys"));
        assert!(format!("{s:?}").contains("keygate_invalidate_tenant_7"));
    }
}
