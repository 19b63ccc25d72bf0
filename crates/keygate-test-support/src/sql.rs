//! The SQL stores as fixtures: a migrated SQLite file or a PostgreSQL
//! schema of its own per test, and the PostgreSQL connection helpers.

use std::time::Duration;

use keygate_sqlx::{
    PostgresStore, SqliteStore,
    sqlx::{
        AssertSqlSafe, Executor, PgPool,
        postgres::{PgConnectOptions, PgPoolOptions},
    },
};

use crate::{
    env::{POSTGRES_URL_VAR, postgres_url},
    fixture::{Fixture, TempSqlite, unique_suffix},
};

/// A migrated SQLite store in a new file in the temporary directory,
/// removed (with its WAL files) when the test ends. Never skipped.
pub async fn sqlite() -> Option<Fixture<SqliteStore>> {
    let file = TempSqlite::new("keygate_test");
    let store = SqliteStore::connect(&file.url())
        .await
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", file.path().display()));
    store.migrate().await.expect("SQLite migrations apply");
    Some(Fixture::new(store, move || drop(file)))
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
pub async fn postgres_pool(url: &str, application_name: &str) -> PgPool {
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
                let _ = pool.execute(AssertSqlSafe(sql)).await;
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
    let fixture = Fixture::new(store, drop_schema_later(url, schema));
    fixture
        .store
        .migrate()
        .await
        .expect("PostgreSQL migrations apply");
    Some(fixture)
}
