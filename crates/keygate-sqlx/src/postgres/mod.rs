//! [`PostgresStore`]: keys in PostgreSQL, shared by every node, with
//! invalidations over LISTEN/NOTIFY.

mod audit;
mod keys;
mod row;
mod sql;

use std::{fmt, sync::Arc, time::Duration};

#[cfg(doc)]
use keygate_core::{AuditStore, KeyStore, StoreError};
use sqlx::{
    AssertSqlSafe, Connection, Executor,
    migrate::Migrator,
    postgres::{PgArguments, PgPool, PgPoolOptions, Postgres},
    query::Query,
};

use self::sql::Sql;

/// The channel invalidations are published on, for a store without a schema
/// of its own; a store with one uses `keygate_invalidate_{schema}`.
pub const DEFAULT_CHANNEL: &str = "keygate_invalidate";

/// Longest schema name [`PostgresStore::with_schema`] accepts: the channel
/// name built from it must fit PostgreSQL's 63-byte identifiers.
pub const MAX_SCHEMA_LEN: usize = 63 - DEFAULT_CHANNEL.len() - 1;

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

    fn query(sql: &Arc<str>) -> Query<'static, Postgres, PgArguments> {
        sqlx::query(AssertSqlSafe(Arc::clone(sql)))
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
