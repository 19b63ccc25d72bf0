//! The hot path at scale: 10 000, 100 000 and 1 000 000 keys cached, with
//! random access across the key set; resident memory per cached key; and
//! what building a `Keygate` over a store of 1 000 000 keys costs.
//!
//! One `MemoryStore` gets 1 000 000 records, inserted directly (generated
//! keys, SHA-256 digests), once. For each size N a `Keygate` over that store
//! (cache capacity 2 000 000, so nothing is evicted) is warmed by looking up
//! its first N ids, and stays alive to the end, so no size reuses another's
//! freed memory. Resident memory (`/proc/self/statm`) is read before and
//! after warming; the difference over N is printed as bytes per cached key.
//!
//! Group `scale`, for each N, in one run:
//!
//! * `lookup_hit/N` — `Verifier::lookup` of a random one of the N ids, at a
//!   fixed instant at which every key was already looked up once, so no
//!   lookup also tells moka about the read (the steady state of the hot
//!   tier);
//! * `std_hashmap_get/N` — for scale, the same random `get` (and `Arc`
//!   clone) in a std `HashMap` holding the same N entries: what the memory
//!   hierarchy alone charges at that size;
//! * `request/N` — one `GET /notes` with a random one of the N keys through
//!   an axum router with keygate's layer (default quota that never rejects),
//!   as in `request_path` (request built in the untimed setup). The clock
//!   runs here: a key's first request in each second also does a moka `get`,
//!   which with many keys and random access is most requests.
//!
//! Group `startup`: `build/1000000_keys` builds a `Keygate` over the store of
//! 1 000 000 keys (outside a runtime, so no background task is spawned);
//! `build/empty_store` is the same over an empty store. The bench checks that
//! building queried nothing and cached nothing.
//!
//! Run with `cargo bench --bench scale`; results in `BENCHMARKS.md`.

use std::{collections::HashMap, hint::black_box, sync::Arc, time::Instant};

use axum::http::StatusCode;
use criterion::{BatchSize, Criterion};
use keygate::{
    Keygate,
    core::{
        CacheConfig, CachedKey, Clock, Environment, KeyFormat, KeyHasher, KeyId, KeyRecord,
        KeyStore, Lookup, MemoryStore, Owner, Scope, Scopes, SystemClock, time,
    },
};
use keygate_test_support::{
    bench::{self, NEVER_REJECTS, call, header, request},
    record,
};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's second field is resident pages");
    pages * 4096
}

/// xorshift64: a random index per call for a few nanoseconds, the same cost
/// at every size.
struct Indices(u64);

impl Indices {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        #[allow(clippy::cast_possible_truncation)] // n fits in usize, and so does the rest
        let i = (self.0 % n as u64) as usize;
        i
    }
}

/// One million keys and their records, made once.
struct KeySet {
    keys: Vec<String>,
    ids: Vec<KeyId>,
    store: MemoryStore,
}

impl KeySet {
    fn new(rt: &tokio::runtime::Runtime, n: usize) -> Self {
        let format = KeyFormat::new("bench").expect("a valid prefix");
        let hasher = KeyHasher::sha256();
        let owner = Owner::service("bench");
        let scopes: Scopes = [Scope::READ].into();
        let now = time::OffsetDateTime::now_utc();
        let store = MemoryStore::new();
        let mut keys = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        rt.block_on(async {
            for _ in 0..n {
                let key = format.generate(Environment::Live).expect("OS randomness");
                let record = KeyRecord {
                    name: "bench".to_owned(),
                    scopes: scopes.clone(),
                    digest: hasher.digest(key.expose_secret()),
                    ..record(key.id().as_str(), &owner, now)
                };
                store.insert(&record).await.expect("ids are unique");
                keys.push(key.expose_secret().to_owned());
                ids.push(key.id());
            }
        });
        Self { keys, ids, store }
    }

    fn keygate(&self) -> Keygate {
        Keygate::builder(self.store.clone())
            .prefix("bench")
            .cache(CacheConfig {
                capacity: 2_000_000,
                ..CacheConfig::default()
            })
            .default_rate_limit(NEVER_REJECTS)
            .build()
    }
}

#[allow(clippy::too_many_lines)] // fixture, then three benchmarks per size
fn scale(c: &mut Criterion) {
    let rt = bench::runtime();
    let start = Instant::now();
    let set = KeySet::new(&rt, SIZES[SIZES.len() - 1]);
    println!(
        "scale: {} keys generated and stored in {:.1?}",
        set.keys.len(),
        start.elapsed()
    );

    // Startup first, while the store holds 1 M keys and nothing is cached.
    let mut group = c.benchmark_group("startup");
    group.bench_function("build/1000000_keys", |b| {
        b.iter(|| set.keygate());
    });
    let empty = MemoryStore::new();
    group.bench_function("build/empty_store", |b| {
        b.iter(|| Keygate::builder(empty.clone()).prefix("bench").build());
    });
    group.finish();
    let built = set.keygate();
    assert_eq!(built.verifier().store_queries(), 0, "build queries nothing");
    assert_eq!(built.verifier().cached_keys(), 0, "build caches nothing");
    drop(built);

    let mut gates = Vec::new();
    let mut memory = Vec::new();
    for n in SIZES {
        let keys = set.keygate();
        let rss_before = rss_bytes();
        let start = Instant::now();
        rt.block_on(async {
            for &id in &set.ids[..n] {
                keys.verifier()
                    .find(id)
                    .await
                    .expect("memory store answers")
                    .expect("the key exists");
            }
        });
        let warm = start.elapsed();
        assert_eq!(
            keys.verifier().cached_keys(),
            n as u64,
            "every key is cached"
        );
        let rss_after = rss_bytes();
        #[allow(clippy::cast_precision_loss)] // sizes are small
        let per_key = (rss_after.saturating_sub(rss_before)) as f64 / n as f64;
        println!("scale: warmed {n} keys in {warm:.1?}; RSS +{per_key:.0} bytes per cached key");
        memory.push((n, per_key, warm));
        gates.push(keys);
    }

    let mut group = c.benchmark_group("scale");
    for (n, keys) in SIZES.into_iter().zip(&gates) {
        let verifier = Arc::clone(keys.verifier());
        let now = SystemClock.now();
        let mut pick = Indices(0x9E37_79B9_7F4A_7C15);
        // A key's first hot hit in a new second also tells moka about the
        // read (`get`, hundreds of ns); touch every key once at `now`, so
        // `lookup_hit` times the steady state, whatever N is.
        for &id in &set.ids[..n] {
            assert!(matches!(verifier.lookup(id, now), Lookup::Hit(_)));
        }
        group.bench_function(format!("lookup_hit/{n}"), |b| {
            b.iter(|| match verifier.lookup(set.ids[pick.next(n)], now) {
                Lookup::Hit(e) => e,
                _ => unreachable!("every key is cached"),
            });
        });

        let map: HashMap<KeyId, Arc<CachedKey>> = set.ids[..n]
            .iter()
            .map(|&id| match verifier.lookup(id, now) {
                Lookup::Hit(e) => (id, e),
                _ => unreachable!("every key is cached"),
            })
            .collect();
        group.bench_function(format!("std_hashmap_get/{n}"), |b| {
            b.iter(|| map.get(&set.ids[pick.next(n)]).map(Arc::clone));
        });
        drop(map);

        let svc = bench::service(bench::app().layer(keys.layer()));
        let status = rt
            .block_on(call(svc.clone(), request(Some(&header(&set.keys[0])))))
            .status();
        assert_eq!(status, StatusCode::OK, "keygate admits the key");
        let before = verifier.store_queries();
        group.bench_function(format!("request/{n}"), |b| {
            b.to_async(&rt).iter_batched(
                || (svc.clone(), request(Some(&header(&set.keys[pick.next(n)])))),
                |(svc, req)| async move { black_box(call(svc, req).await.status()) },
                BatchSize::SmallInput,
            );
        });
        assert_eq!(
            verifier.store_queries(),
            before,
            "every request hit the cache"
        );
    }
    group.finish();

    println!("\nresident memory per cached key (RSS after warming − before, over N):");
    for (n, per_key, warm) in memory {
        println!("  {n:>9} keys: {per_key:>6.0} bytes/key (warmed in {warm:.1?})");
    }
}

keygate_test_support::bench_main!(bench::settings(2).sample_size(50); scale);
