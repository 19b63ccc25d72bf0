//! [`SqliteStore`]: keys in a SQLite database file.

use std::{path::Path, str::FromStr, time::Duration};

use keygate_core::{
    AuditEvent, AuditQuery, AuditStore, InvalidationFeed, KeyId, KeyRecord, KeyStore, KeyUpdate,
    Metadata, Owner, Page, Replacement, Rotation, Scopes, StoreError, UsageBucket, UsageDelta,
    unix_micros, usage_bucket,
};
use sqlx::{
    AssertSqlSafe, Row,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow},
};
use time::OffsetDateTime;

use crate::{
    convert::{
        FoldedUsage, audit_corrupt, audit_filter, audit_limit, corrupt, digest, from_unix_micros,
        in_range, insert_error, parse, requests, store_error,
    },
    poll,
};

/// How long a statement waits for another connection's write lock before
/// giving up with `SQLITE_BUSY` (reported as [`StoreError::Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`KeyStore`] in a SQLite database: the embedded default, for a service
/// that runs as one process (or several processes on one machine sharing the
/// file).
///
/// Tables are `keygate_keys`, `keygate_usage`, `keygate_audit` (the
/// persisted audit trail, see [`AuditStore`]) and `keygate_key_changes`
/// (the change feed's log; processes with a feed prune it to the last
/// hour), created by
/// [`migrate`](Self::migrate); applied migrations are recorded in
/// `keygate_migrations`, apart from your application's own `_sqlx_migrations`.
/// Times are stored as Unix microseconds, so they round-trip exactly at the
/// precision [`KeyManager`](keygate_core::KeyManager) issues them with;
/// finer parts are dropped.
///
/// SQLite has no LISTEN/NOTIFY, so the change feed
/// ([`KeyStore::subscribe`]) polls a table that triggers fill on every
/// change to a key, whoever makes it: a key the `keygate` CLI revokes in
/// another process is refused here within the
/// [poll interval](Self::poll_changes_every) (1 s by default), not when the
/// cached entry expires. Each poll is one indexed query; usage updates are
/// not logged.
///
/// ```
/// use keygate_core::{KeyStore, KeyId};
/// use keygate_sqlx::SqliteStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
/// let id: KeyId = "Ab3Cd5Ef7G".parse()?;
/// assert_eq!(store.find(id).await?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    // How often the change feed polls; `None`: no feed.
    poll: Option<Duration>,
}

/// How often [`SqliteStore`]'s change feed reads new changes by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

impl SqliteStore {
    /// A store over an existing pool. Run [`migrate`](Self::migrate) once
    /// before using it.
    ///
    /// Configure the pool's connections with a busy timeout (as
    /// [`connect`](Self::connect) does), or concurrent writers fail at once
    /// instead of waiting their turn.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            poll: Some(DEFAULT_POLL_INTERVAL),
        }
    }

    /// How often the change feed reads the changes other processes made
    /// (default [`DEFAULT_POLL_INTERVAL`]; at least 10 ms). This bounds how
    /// long a key revoked elsewhere keeps working here.
    #[must_use]
    pub fn poll_changes_every(mut self, every: Duration) -> Self {
        self.poll = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// No change feed: [`KeyStore::subscribe`] returns `None`, and changes
    /// made by other processes reach this process's cache when its entries
    /// expire. [`connect`](Self::connect) chooses this for in-memory
    /// databases, which no other process can open.
    #[must_use]
    pub fn without_change_feed(mut self) -> Self {
        self.poll = None;
        self
    }

    /// Connects to a database URL such as `sqlite://keygate.db` or
    /// `sqlite::memory:`, creating the file if it is missing, in WAL journal
    /// mode with a 5 second busy timeout.
    ///
    /// An in-memory database lives as long as its connection, so for
    /// `:memory:` URLs the pool keeps exactly one connection open for good,
    /// and there is no change feed (no other process can see the database).
    ///
    /// # Errors
    ///
    /// The driver's error if the URL is invalid or the database cannot be
    /// opened.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::connect_with(options, in_memory).await
    }

    /// Opens (creating it if missing) the database file at `path` and
    /// applies any pending migrations: everything needed to start.
    ///
    /// ```
    /// use keygate_sqlx::SqliteStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("keygate-doc-open-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = SqliteStore::open(dir.join("keygate.db")).await?;
    /// # drop(store);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The driver's error if the file cannot be opened or created, or a
    /// migration fails.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new().filename(path);
        let store = Self::connect_with(options, false).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_with(
        options: SqliteConnectOptions,
        in_memory: bool,
    ) -> Result<Self, sqlx::Error> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        if in_memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            return Ok(Self::new(pool.connect_with(options).await?).without_change_feed());
        }
        Ok(Self::new(
            SqlitePoolOptions::new().connect_with(options).await?,
        ))
    }

    /// Creates or upgrades keygate's tables. Safe to run on every start;
    /// applied versions are recorded in `keygate_migrations`.
    ///
    /// # Errors
    ///
    /// The driver's error (as [`sqlx::Error::Migrate`] for a migration that
    /// failed or was changed after it was applied).
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut migrator: Migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.dangerous_set_table_name("keygate_migrations");
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn record(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get("id").map_err(store_error)?;
    let k = id.as_str();
    let text = |column: &str| row.try_get::<String, _>(column).map_err(store_error);
    let opt_text = |column: &str| {
        row.try_get::<Option<String>, _>(column)
            .map_err(store_error)
    };
    let time = |column: &str| -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get::<Option<i64>, _>(column)
            .map_err(store_error)?
            .map(|us| from_unix_micros(us, k, column))
            .transpose()
    };
    let digest_bytes: Vec<u8> = row.try_get("digest").map_err(store_error)?;
    Ok(KeyRecord {
        id: parse(k, k, "id")?,
        family: parse(&text("family")?, k, "family")?,
        owner: parse::<Owner>(&text("owner")?, k, "owner")?,
        name: text("name")?,
        scopes: serde_json::from_str::<Scopes>(&text("scopes")?)
            .map_err(|e| corrupt(k, "scopes", e))?,
        environment: parse(&text("environment")?, k, "environment")?,
        digest: digest(&digest_bytes, k)?,
        created_at: time("created_at")?.ok_or_else(|| corrupt(k, "created_at", "NULL"))?,
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
        rate_limit: opt_text("rate_limit")?
            .map(|q| parse(&q, k, "rate_limit"))
            .transpose()?,
        allowed_ips: serde_json::from_str(&text("allowed_ips")?)
            .map_err(|e| corrupt(k, "allowed_ips", e))?,
        metadata: serde_json::from_str::<Metadata>(&text("metadata")?)
            .map_err(|e| corrupt(k, "metadata", e))?,
        last_used_at: time("last_used_at")?,
        superseded_by: opt_text("superseded_by")?
            .map(|s| parse(&s, k, "superseded_by"))
            .transpose()?,
        created_by: opt_text("created_by")?
            .map(|s| parse(&s, k, "created_by"))
            .transpose()?,
    })
}

fn records(rows: &[SqliteRow]) -> Result<Vec<KeyRecord>, StoreError> {
    rows.iter().map(record).collect()
}

/// The sixteen columns of a record, in `key_columns!()` order, bound to `query`.
fn bind_record<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    r: &KeyRecord,
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>, StoreError> {
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
        .bind(r.created_by.map(|id| id.to_string())))
}

const FIND: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM keygate_keys WHERE id = ?1"
);

const INSERT: &str = concat!(
    "INSERT INTO keygate_keys (",
    key_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
);

/// The reads and writes of [`SqliteStore::rotate`], inside its transaction.
async fn rotate_in(
    conn: &mut sqlx::SqliteConnection,
    id: KeyId,
    replacement: &Replacement,
) -> Result<Rotation, StoreError> {
    let current = sqlx::query(FIND)
        .bind(id.as_str())
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
    bind_record(sqlx::query(INSERT), &new)?
        .execute(&mut *conn)
        .await
        .map_err(|e| insert_error(e, new.id))?;
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
    let mut n = 1;
    let mut param = || {
        n += 1;
        format!("?{n}")
    };
    let mut sets = Vec::new();
    for (set, column) in [
        (changes.name.is_some(), "name"),
        (changes.scopes.is_some(), "scopes"),
        (changes.rate_limit.is_some(), "rate_limit"),
        (changes.allowed_ips.is_some(), "allowed_ips"),
        (changes.metadata.is_some(), "metadata"),
    ] {
        if set {
            sets.push(format!("{column} = {}", param()));
        }
    }
    if changes.expires_at.is_some() {
        // KeyUpdate::apply_to's rule, decided on the row as it is when the
        // statement runs: a rotated key keeps the earlier expiry. SQLite's
        // two-argument MIN is NULL if either is, hence the cases.
        let p = param();
        sets.push(format!(
            "expires_at = CASE WHEN superseded_by IS NULL OR expires_at IS NULL THEN {p} \
             WHEN {p} IS NULL THEN expires_at ELSE MIN({p}, expires_at) END"
        ));
    }
    if sets.is_empty() {
        return None;
    }
    Some(format!(
        concat!(
            "UPDATE keygate_keys SET {} WHERE id = ?1 RETURNING ",
            key_columns!()
        ),
        sets.join(", ")
    ))
}

/// Binds what [`update_sql`] names, in its order.
fn bind_update<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    id: KeyId,
    c: &KeyUpdate,
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>, StoreError> {
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
    if let Some(at) = c.expires_at {
        query = query.bind(at.map(|t| in_range(t).map(unix_micros)).transpose()?);
    }
    Ok(query)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl KeyStore for SqliteStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query(FIND)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        bind_record(sqlx::query(INSERT), r)?
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, r.id))?;
        Ok(())
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        let Some(sql) = update_sql(changes) else {
            return self.find(id).await?.ok_or(StoreError::NotFound(id));
        };
        // One statement: it changes only its columns, on the row as it is
        // when it runs, so a revocation or rotation in between is kept.
        bind_update(
            sqlx::query(AssertSqlSafe(sql)).bind(id.as_str()),
            id,
            changes,
        )?
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(record)
        .transpose()?
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
        // End the transaction here on every path: a dropped one only rolls
        // back when its connection is next used, and until then it holds the
        // database's write lock.
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

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        const SQL: &str = concat!(
            "UPDATE keygate_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 RETURNING ",
            key_columns!(),
        );
        sqlx::query(SQL)
            .bind(id.as_str())
            .bind(unix_micros(at))
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
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM keygate_keys WHERE owner = ?1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(owner.to_string())
        .bind(unix_micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            key_columns!(),
            " FROM keygate_keys WHERE created_by = ?1"
        );
        let rows = sqlx::query(SQL)
            .bind(family.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        records(&rows)
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM keygate_keys WHERE revoked_at IS NULL LIMIT ?1")
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
        crate::convert::key_ids(rows)
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
        let query = match page.cursor {
            None => sqlx::query(FIRST)
                .bind(owner.to_string())
                .bind(limit(page.limit)),
            Some(c) => sqlx::query(AFTER)
                .bind(owner.to_string())
                .bind(limit(page.limit))
                .bind(unix_micros(c.created_at))
                .bind(c.id.to_string()),
        };
        records(&query.fetch_all(&self.pool).await.map_err(store_error)?)
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
        let rows = sqlx::query(SQL)
            .bind(unix_micros(before))
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
        // IMMEDIATE takes the write lock up front, so the busy timeout applies
        // instead of a deferred transaction failing when it upgrades.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        for (&(family, bucket), &n) in &folded.counts {
            sqlx::query(
                "INSERT INTO keygate_usage (family, bucket, requests) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (family, bucket) DO UPDATE SET requests = requests + excluded.requests",
            )
            .bind(family.as_str())
            .bind(unix_micros(bucket))
            .bind(n)
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

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let rows = sqlx::query(
            "SELECT bucket, requests FROM keygate_usage WHERE family = ?1 AND bucket >= ?2 \
             ORDER BY bucket",
        )
        .bind(family.as_str())
        .bind(unix_micros(usage_bucket(since)))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let f = family.as_str();
                let bucket: i64 = row.try_get("bucket").map_err(store_error)?;
                let n: i64 = row.try_get("requests").map_err(store_error)?;
                Ok(UsageBucket {
                    bucket: from_unix_micros(bucket, f, "bucket")?,
                    requests: requests(n, f)?,
                })
            })
            .collect()
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

fn audit_event(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let n: i64 = row.try_get("id").map_err(store_error)?;
    let opt_text = |column: &str| {
        row.try_get::<Option<String>, _>(column)
            .map_err(store_error)
    };
    let at: i64 = row.try_get("at").map_err(store_error)?;
    let action: String = row.try_get("action").map_err(store_error)?;
    Ok(AuditEvent {
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000)
            .map_err(|e| audit_corrupt(n, "at", e))?,
        action: action.parse().map_err(|e| audit_corrupt(n, "action", e))?,
        outcome: row.try_get("outcome").map_err(store_error)?,
        detail: opt_text("detail")?,
        key_id: opt_text("key_id")?
            .map(|s| s.parse().map_err(|e| audit_corrupt(n, "key_id", e)))
            .transpose()?,
        actor: opt_text("actor")?,
        method: opt_text("method")?,
        path: opt_text("path")?,
        peer: opt_text("peer")?
            .map(|s| s.parse().map_err(|e| audit_corrupt(n, "peer", e)))
            .transpose()?,
    })
}

/// The persisted audit trail, in `keygate_audit`. Times keep microseconds;
/// events come back newest first, and events of the same microsecond in
/// reverse order of writing.
impl AuditStore for SqliteStore {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO keygate_audit (",
            audit_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        );
        if events.is_empty() {
            return Ok(());
        }
        // One transaction: the batch is written whole or not at all, and
        // costs one commit (one fsync) instead of one per event.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        for e in events {
            sqlx::query(SQL)
                .bind(unix_micros(e.at))
                .bind(e.action.as_str())
                .bind(e.outcome.as_str())
                .bind(e.detail.as_deref())
                .bind(e.key_id.as_ref().map(KeyId::as_str))
                .bind(e.actor.as_deref())
                .bind(e.method.as_deref())
                .bind(e.path.as_deref())
                .bind(e.peer.map(|ip| ip.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let sql = format!(
            concat!("SELECT id, ", audit_columns!(), " FROM keygate_audit{}"),
            audit_filter(query, |n| format!("?{n}"))
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(id) = query.key_id {
            q = q.bind(id.to_string());
        }
        if let Some(since) = query.since {
            q = q.bind(unix_micros(since));
        }
        let rows = q
            .bind(audit_limit(query))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(audit_event).collect()
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM keygate_audit WHERE at < ?1")
            .bind(unix_micros(before))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}
