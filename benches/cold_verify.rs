//! Cold verification: finding a key whose id is not cached, against SQLite
//! (a temporary file) and PostgreSQL (`KEYGATE_TEST_POSTGRES_URL`, in a fresh
//! schema that is dropped afterwards; skipped with a message if unset).
//!
//! For each backend, in one run:
//!
//! * `<backend>/raw_select` — the floor: one `sqlx` query selecting the key's
//!   row by primary key, decoding nothing;
//! * `<backend>/store_find` — the store alone: `KeyStore::find`, query and
//!   decode into a `KeyRecord`;
//! * `<backend>/verifier_miss` — keygate's cache miss: `Verifier::find` after
//!   `Verifier::invalidate(id)` (done in the untimed setup), so every call
//!   queries the store, builds the cache entry and fills the cache;
//! * `<backend>/verifier_hit` — the same `Verifier::find` on a warm cache,
//!   for scale.
//!
//! Targets: a SQLite miss ≤ 50 µs, a PostgreSQL miss ≤ 500 µs on loopback.
//!
//! Run with `cargo bench --bench cold_verify`; results in `BENCHMARKS.md`.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkGroup, Criterion, measurement::WallTime};
use keygate::{
    Keygate,
    core::{KeyId, KeyStore, NewKey, Owner, Scope},
};
use keygate_sqlx::{PostgresStore, SqliteStore, sqlx};
use keygate_test_support::{bench, env, fixture::TempSqlite};
use tokio::runtime::Runtime;

/// The same store the `Keygate` was built over, kept to call it directly.
trait Backend: KeyStore + Clone {
    /// `SELECT 1` of the row with this id.
    fn raw_select(&self, id: KeyId) -> impl Future<Output = ()> + Send;
}

impl Backend for SqliteStore {
    async fn raw_select(&self, id: KeyId) {
        let row: Option<i64> = sqlx::query_scalar("SELECT 1 FROM keygate_keys WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await
            .expect("SQLite answers");
        assert!(row.is_some(), "the key's row exists");
    }
}

impl Backend for PostgresStore {
    async fn raw_select(&self, id: KeyId) {
        let schema = self.schema().expect("the bench uses its own schema");
        let row: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM \"{schema}\".keygate_keys WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await
        .expect("PostgreSQL answers");
        assert!(row.is_some(), "the key's row exists");
    }
}

fn bench_backend<S: Backend>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    store: &S,
) {
    let keys = rt.block_on(async { Keygate::builder(store.clone()).prefix("bench").build() });
    let created = rt
        .block_on(
            keys.manager()
                .create(NewKey::new(Owner::service("bench"), "bench").scopes([Scope::READ])),
        )
        .expect("create key");
    let id = created.key.id();
    let verifier = keys.verifier();

    group.bench_function(format!("{name}/raw_select"), |b| {
        b.to_async(rt).iter(|| store.raw_select(black_box(id)));
    });
    group.bench_function(format!("{name}/store_find"), |b| {
        b.to_async(rt).iter(|| async {
            store
                .find(black_box(id))
                .await
                .expect("store answers")
                .expect("the key exists")
        });
    });
    let before = verifier.store_queries();
    let mut misses = 0u64;
    group.bench_function(format!("{name}/verifier_miss"), |b| {
        b.to_async(rt).iter_batched(
            || {
                verifier.invalidate(id);
                misses += 1;
            },
            |()| async {
                verifier
                    .find(black_box(id))
                    .await
                    .expect("store answers")
                    .expect("the key exists")
            },
            BatchSize::PerIteration,
        );
    });
    let queries = verifier.store_queries() - before;
    assert_eq!(queries, misses, "every timed call must be a cache miss");
    group.bench_function(format!("{name}/verifier_hit"), |b| {
        b.to_async(rt).iter(|| async {
            verifier
                .find(black_box(id))
                .await
                .expect("store answers")
                .expect("the key exists")
        });
    });
    println!("{name}: {misses} cold lookups, {queries} store queries");
}

fn cold_verify(c: &mut Criterion) {
    let rt = bench::runtime();
    let mut group = c.benchmark_group("cold_verify");
    group.sample_size(50);

    let db = TempSqlite::new("keygate-cold-verify");
    let sqlite = rt
        .block_on(SqliteStore::open(db.path()))
        .expect("open SQLite file");
    bench_backend(&mut group, &rt, "sqlite", &sqlite);
    rt.block_on(sqlite.pool().close());
    drop(db);

    match env::configured(env::POSTGRES_URL_VAR) {
        Some(url) => {
            let schema = format!("keygate_bench_{}", std::process::id());
            let store = rt.block_on(async {
                let store = PostgresStore::connect(&url)
                    .await
                    .expect("connect to KEYGATE_TEST_POSTGRES_URL")
                    .with_schema(schema.clone())
                    .expect("a valid schema name");
                store.migrate().await.expect("migrate");
                store
            });
            bench_backend(&mut group, &rt, "postgres", &store);
            rt.block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA \"{schema}\" CASCADE"
                )))
                .execute(store.pool())
                .await
                .expect("drop the bench schema");
            });
        }
        None => println!(
            "cold_verify: KEYGATE_TEST_POSTGRES_URL is not set; skipping PostgreSQL \
             (e.g. KEYGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test)"
        ),
    }
    group.finish();
}

keygate_test_support::bench_main!(bench::settings(2); cold_verify);
