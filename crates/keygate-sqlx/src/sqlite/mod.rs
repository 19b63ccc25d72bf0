//! [`SqliteStore`]: keys in a SQLite database file.

mod audit;
mod keys;

use std::{io, net::IpAddr, path::Path, str::FromStr, time::Duration};

#[cfg(doc)]
use keygate_core::{AuditStore, KeyStore};
use keygate_core::{IpNet, Metadata, Scopes, StoreError, from_unix_micros, unix_micros};
use sqlx::{
    Row, Sqlite,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow},
};
use time::OffsetDateTime;

use crate::{
    convert::{audit_corrupt, corrupt, store_error},
    query::Backend,
    row::{Columns, Origin, StoreRow},
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
    /// `:memory:` URLs the pool keeps exactly one connection open for good
    /// (one database, however many tasks use the store), and there is no
    /// change feed (no other process can see the database).
    ///
    /// # Errors
    ///
    /// The driver's error if the URL is invalid or the database cannot be
    /// opened.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_url(url, true).await
    }

    /// Connects like [`connect`](Self::connect), to a database file that
    /// must already exist: a missing one is an error, not created. For
    /// tools that work on the database a service set up (the `keygate` CLI
    /// opens it so for every command but `migrate`), where a typo in the
    /// path must not leave an empty database behind.
    ///
    /// In-memory URLs get the same single-connection pool as with
    /// [`connect`](Self::connect): one database.
    ///
    /// # Errors
    ///
    /// [`sqlx::Error::Io`] of kind [`NotFound`](io::ErrorKind::NotFound),
    /// saying "there is no database file at" the path, if the file does not
    /// exist; otherwise as [`connect`](Self::connect).
    pub async fn connect_existing(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_url(url, false).await
    }

    async fn connect_url(url: &str, create: bool) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !create && !in_memory && !options.get_filename().exists() {
            return Err(sqlx::Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "there is no database file at {}",
                    options.get_filename().display()
                ),
            )));
        }
        let options = options.create_if_missing(create || in_memory);
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
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let store = Self::connect_with(options, false).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The pool every constructor builds: WAL, the busy timeout, and for an
    /// in-memory database one connection kept for good and no change feed.
    async fn connect_with(
        options: SqliteConnectOptions,
        in_memory: bool,
    ) -> Result<Self, sqlx::Error> {
        let options = options
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

/// Times are Unix microseconds; scopes, networks and metadata are JSON text.
impl StoreRow for SqliteRow {
    fn time(&self, column: &str, origin: Origin<'_>) -> Result<Option<OffsetDateTime>, StoreError> {
        self.try_get::<Option<i64>, _>(column)
            .map_err(store_error)?
            .map(|us| {
                from_unix_micros(us)
                    .ok_or_else(|| origin.corrupt(column, format_args!("{us} µs is out of range")))
            })
            .transpose()
    }

    fn scopes(&self, key: &str) -> Result<Scopes, StoreError> {
        serde_json::from_str(&self.text("scopes")?).map_err(|e| corrupt(key, "scopes", e))
    }

    fn allowed_ips(&self, key: &str) -> Result<Vec<IpNet>, StoreError> {
        serde_json::from_str(&self.text("allowed_ips")?).map_err(|e| corrupt(key, "allowed_ips", e))
    }

    fn metadata(&self, key: &str) -> Result<Metadata, StoreError> {
        serde_json::from_str(&self.text("metadata")?).map_err(|e| corrupt(key, "metadata", e))
    }

    fn peer(&self, event: i64) -> Result<Option<IpAddr>, StoreError> {
        self.opt_text("peer")?
            .map(|s| s.parse().map_err(|e| audit_corrupt(event, "peer", e)))
            .transpose()
    }
}

impl Backend for Sqlite {
    type Time = i64;

    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    fn time_param(t: OffsetDateTime) -> Result<i64, StoreError> {
        Ok(unix_micros(t))
    }
}

#[cfg(test)]
mod tests {
    use keygate_core::{KeyId, KeyStore};

    use super::*;

    /// Every task using a store over an in-memory URL sees one database,
    /// whichever constructor opened it, even with a private cache (where
    /// each connection would open a database of its own).
    #[tokio::test]
    async fn an_in_memory_url_is_one_database() {
        for url in ["sqlite::memory:", "sqlite://?mode=memory&cache=private"] {
            for store in [
                SqliteStore::connect(url).await.unwrap(),
                SqliteStore::connect_existing(url).await.unwrap(),
            ] {
                assert_eq!(store.pool().options().get_max_connections(), 1, "{url}");
                assert!(store.poll.is_none(), "{url}: no other process sees it");
                store.migrate().await.unwrap();
                let id: KeyId = "Ab3Cd5Ef7G".parse().unwrap();
                let (a, b, c) = tokio::join!(store.find(id), store.find(id), store.find(id));
                for found in [a, b, c] {
                    assert_eq!(found.unwrap(), None, "{url}: every task sees the tables");
                }
            }
        }
    }

    #[tokio::test]
    async fn an_existing_database_is_not_created() {
        let dir = std::env::temp_dir().join(format!("keygate-existing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("missing.db");
        let url = format!("sqlite://{}", file.display());
        let err = SqliteStore::connect_existing(&url).await.unwrap_err();
        assert!(
            matches!(&err, sqlx::Error::Io(e) if e.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("there is no database file at"),
            "{err}"
        );
        assert!(!file.exists(), "a typo must not create a file");
        let created = SqliteStore::connect(&url).await.unwrap();
        created.pool().close().await;
        let existing = SqliteStore::connect_existing(&url).await.unwrap();
        existing.pool().close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
