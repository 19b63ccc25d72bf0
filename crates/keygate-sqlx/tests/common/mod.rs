//! Fixtures shared by the test files: a fresh store per test, cleaned up
//! afterwards even when the test panics.

#![allow(dead_code, unreachable_pub)]

use std::{
    path::PathBuf,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use keygate_core::{
    Environment, KeyHasher, KeyId, KeyRecord, MemoryStore, Metadata, Owner, Scopes,
    time::OffsetDateTime,
};
use keygate_sqlx::{
    PostgresStore, SqliteStore,
    sqlx::{
        Executor,
        postgres::{PgConnectOptions, PgPoolOptions},
    },
};

/// A live key record for `owner` with nothing optional set: id and family
/// `key` (ten id characters), named after it, with the digest of `key`.
pub fn record(key: &str, owner: &Owner, created_at: OffsetDateTime) -> KeyRecord {
    let id: KeyId = key.parse().expect("a ten-character key id");
    KeyRecord {
        id,
        family: id,
        owner: owner.clone(),
        name: key.to_owned(),
        scopes: Scopes::none(),
        environment: Environment::Live,
        digest: KeyHasher::sha256().digest(key),
        created_at,
        expires_at: None,
        revoked_at: None,
        rate_limit: None,
        allowed_ips: Vec::new(),
        metadata: Metadata::new(),
        last_used_at: None,
        superseded_by: None,
        created_by: None,
    }
}

/// Now, to the microsecond the SQL stores keep.
pub fn now_us() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("a valid nanosecond")
}

/// The variable that names the PostgreSQL server to test against.
pub const POSTGRES_URL_VAR: &str = "KEYGATE_TEST_POSTGRES_URL";

/// A store under test, and what to clean up when the test ends.
pub struct Fixture<S> {
    pub store: S,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl<S> Fixture<S> {
    pub fn new(store: S, cleanup: impl FnOnce() + Send + 'static) -> Self {
        Self {
            store,
            cleanup: Some(Box::new(cleanup)),
        }
    }
}

impl<S> Drop for Fixture<S> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

/// A name unique to this test process and call: `{pid}_{run}_{n}`.
pub fn unique_suffix() -> String {
    static RUN: OnceLock<u128> = OnceLock::new();
    static N: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            % 1_000_000_000_000
    });
    format!(
        "{}_{run}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn memory() -> Option<Fixture<MemoryStore>> {
    Some(Fixture::new(MemoryStore::new(), || {}))
}

/// A migrated SQLite store in a new file in the temporary directory,
/// removed (with its WAL files) when the test ends.
pub async fn sqlite() -> Option<Fixture<SqliteStore>> {
    let path = std::env::temp_dir().join(format!("keygate_test_{}.db", unique_suffix()));
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    store.migrate().await.expect("SQLite migrations apply");
    Some(Fixture::new(store, move || remove_sqlite_files(&path)))
}

fn remove_sqlite_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = PathBuf::from(path).into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Says that the current test is skipped because `var` is unset, on the
/// terminal: written to stderr directly, which the test harness does not
/// capture (it captures `eprintln!`), so a plain `cargo test` shows it.
fn say_skipped(var: &str, example: &str) {
    use std::io::Write as _;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped {test}: {var} is not set (set it, e.g. {var}={example}, to run it; \
         with CI=true it fails instead)"
    );
}

/// The PostgreSQL URL to test against, or `None` (after saying so) when the
/// variable is unset outside CI. In CI (`CI=true`) a missing variable fails
/// the test: CI must not pass by testing nothing.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{POSTGRES_URL_VAR} is not set, and CI=true: PostgreSQL tests must run in CI \
             (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => {
            say_skipped(POSTGRES_URL_VAR, "postgres://postgres@127.0.0.1:5432/test");
            None
        }
    }
}

/// Connection options for the test server, tagged with `application_name`
/// so a test can find its own connections in `pg_stat_activity`.
pub fn postgres_options(url: &str, application_name: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>()
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={url:?} is not a PostgreSQL URL: {e}"))
        .application_name(application_name)
}

/// A pool on the test server; failing to reach it fails the test (the
/// variable says a server is there).
pub async fn postgres_pool(url: &str, application_name: &str) -> keygate_sqlx::sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(postgres_options(url, application_name))
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {POSTGRES_URL_VAR}={url:?}: {e}"))
}

/// A schema of its own for one test: `keygate_test_{pid}_{run}_{n}`.
pub fn fresh_schema() -> String {
    format!("keygate_test_{}", unique_suffix())
}

/// Drops `schema` (best effort) from a thread of its own, so it works from
/// `Drop`, inside or outside a runtime, and while unwinding.
pub fn drop_schema_later(url: String, schema: String) -> impl FnOnce() + Send + 'static {
    move || {
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(pool) = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(postgres_options(&url, "keygate_test_cleanup"))
                    .await
                else {
                    return;
                };
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = pool.execute(keygate_sqlx::sqlx::AssertSqlSafe(sql)).await;
                pool.close().await;
            });
        })
        .join();
    }
}

/// A migrated PostgreSQL store in a fresh schema, dropped when the test
/// ends; `None` when the server is not configured (outside CI).
pub async fn postgres() -> Option<Fixture<PostgresStore>> {
    let url = postgres_url()?;
    let schema = fresh_schema();
    let pool = postgres_pool(&url, "keygate_test").await;
    let store = PostgresStore::new(pool)
        .with_schema(schema.clone())
        .expect("test schema names are valid");
    let cleanup = drop_schema_later(url, schema);
    let fixture = Fixture::new(store, cleanup);
    fixture
        .store
        .migrate()
        .await
        .expect("PostgreSQL migrations apply");
    Some(fixture)
}
