//! The request path, keygate beside its peers, in one run and in-process.
//!
//! Group `request`: one `GET /notes` carrying an `X-API-Key` header, through
//! an axum 0.8 router with a trivial handler, made ready and called on a clone
//! of the router's service (after `with_state(())`, as `axum::serve` does),
//! on a current-thread tokio runtime. Every variant gets the same request:
//!
//! * `bare` — the router alone;
//! * `tower_governor` — keyed by the `X-API-Key` value (a `String` key), with
//!   a quota that never rejects;
//! * `tower_http_validate` — `ValidateRequestHeaderLayer::custom` comparing
//!   `X-API-Key` to a constant: the least a layer can do;
//! * `hand_written` — a hand-rolled guard on the same tower-http layer:
//!   SHA-256 of the whole key, a `HashMap` of digests, a governor check
//!   keyed by a number, the key's information into the extensions, and
//!   nothing else (no format or checksum, revocation, expiry, scope, usage
//!   or audit): the floor under any API-key layer;
//! * `tower_governor_headers`, `keygate_headers` — both with the quota's
//!   headers on every admitted response (`use_headers()`,
//!   `rate_limit_headers(true)`);
//! * `keygate` — the memory store, a warm cache, a key with `read`, and a
//!   default quota that never rejects (so the limiter runs); no `tracing`
//!   subscriber, like the peers, which log nothing;
//! * `keygate_sqlite` — as `keygate`, over a `SqliteStore` in a temporary
//!   file (removed afterwards) instead of the memory store: with a warm
//!   cache the store is not touched, so this should match `keygate`;
//! * `keygate_optional_no_key` — keygate in optional mode
//!   (`KeygateBuilder::optional(true)`) and a request that carries no key:
//!   what routes shared with session or JWT authentication pay for it;
//! * `keygate_audit_on` — as `keygate`, with a `tracing` subscriber that
//!   formats the audit event (and throws it away): what audit costs when on;
//! * `keygate_audit_on_admitted_debug` — the same subscriber (at `INFO`) and
//!   a layer built with `audit_admitted_level(Level::DEBUG)`: what a busy
//!   service saves by keeping admissions out of its `INFO` logs.
//!
//! Building the request is setup and not timed; dropping the response is.
//!
//! Group `request_lower_envelope`: the same variants, each sample timed as
//! its fastest chunk of 100 requests. Contention from other work on a shared
//! machine only ever adds time, so this is the steadier comparison there.
//!
//! Group `pieces`: the building blocks of keygate's request path, each alone,
//! with a few references for scale.
//!
//! Run with `cargo bench --bench request_path`; results in `BENCHMARKS.md`.

use std::{
    collections::HashMap,
    hint::black_box,
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Method, Request, StatusCode},
    routing::RouterIntoService,
};
use criterion::{BatchSize, Criterion};
use keygate::{
    Keygate, MethodScopes,
    core::{
        CachedKey, Check, Clock, GovernorLimiter, KeyId, Lookup, MemoryStore, Quota, Quotas,
        RateLimiter, SystemClock,
    },
};
use keygate_sqlx::SqliteStore;
use keygate_test_support::{
    bench::{self, ApiKeyHeader, NEVER_REJECTS, app, call, request, service},
    fixture::TempSqlite,
};
use tokio::runtime::Runtime;
use tower_governor::governor::GovernorConfigBuilder;

/// `tower_governor`'s config: one request per nanosecond, a burst of a
/// billion. A macro because its middleware type (governor's `NoOpMiddleware`)
/// cannot be named without depending on governor.
macro_rules! governor_builder {
    () => {
        GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000_000)
            .key_extractor(ApiKeyHeader)
    };
}

macro_rules! governor_config {
    () => {
        governor_builder!()
            .finish()
            .expect("non-zero period and burst")
    };
}

/// Discards what it is given, counting the bytes.
struct CountingSink(Arc<AtomicUsize>);

impl io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Everything the benchmarks share: the runtime, the key and the routers.
struct Fixture {
    rt: Runtime,
    keys: Keygate,
    key: String,
    header: HeaderValue,
    /// As `keys`, over a SQLite file, with a key of its own.
    sqlite: Keygate,
    sqlite_header: HeaderValue,
    /// A metered key of `keys` (credits in the memory store).
    metered_header: HeaderValue,
    /// A metered key of `sqlite` (credits in the SQLite file).
    sqlite_metered_header: HeaderValue,
    /// Optional mode over the memory store.
    optional: Keygate,
    /// As `keys`, over the same store, with admissions audited at `DEBUG`.
    quiet_audit: Keygate,
    /// As `keys`, over the same store, with RateLimit headers on admitted
    /// responses (beside `tower_governor`'s `use_headers()`).
    with_headers: Keygate,
    _db: TempSqlite,
}

/// One router under test and the key its requests carry, if any.
struct Variant {
    name: &'static str,
    router: Router,
    header: Option<HeaderValue>,
}

impl Fixture {
    fn new() -> Self {
        let rt = bench::runtime();
        let store = MemoryStore::new();
        let keys = bench::builder(store.clone()).build();
        let quiet_audit = bench::builder(store.clone())
            .audit_admitted_level(tracing::Level::DEBUG)
            .build();
        let with_headers = bench::builder(store).rate_limit_headers(true).build();
        let header = rt.block_on(bench::read_key(&keys));
        let metered_header = rt.block_on(bench::metered_key(&keys));
        let key = header.to_str().expect("keys are visible ASCII").to_owned();

        let db = TempSqlite::new("keygate-request-path");
        let (sqlite, sqlite_header, sqlite_metered_header) = rt.block_on(async {
            // No change feed: its first poll re-reads every cached key once,
            // whenever the runtime first drives it, which could land inside
            // a measurement; the bench is about the request path.
            let store = SqliteStore::open(db.path())
                .await
                .expect("open SQLite file")
                .without_change_feed();
            let sqlite = bench::builder(store).build();
            let header = bench::read_key(&sqlite).await;
            let metered = bench::metered_key(&sqlite).await;
            (sqlite, header, metered)
        });
        let optional = bench::builder(MemoryStore::new()).optional(true).build();
        Self {
            rt,
            keys,
            key,
            header,
            sqlite,
            sqlite_header,
            metered_header,
            sqlite_metered_header,
            optional,
            quiet_audit,
            with_headers,
            _db: db,
        }
    }

    fn request(&self) -> Request<Body> {
        request(Some(&self.header))
    }

    /// Sends one request and checks it got through: a variant that rejects
    /// (or a cold cache) would make its figure meaningless.
    fn check(&self, svc: &RouterIntoService<Body>, name: &str) {
        self.check_with(svc, name, Some(&self.header));
    }

    fn check_with(&self, svc: &RouterIntoService<Body>, name: &str, header: Option<&HeaderValue>) {
        let res = self.rt.block_on(call(svc.clone(), request(header)));
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{name} must admit the request"
        );
    }
}

fn variants(fx: &Fixture) -> Vec<Variant> {
    let keyed = |name, router| Variant {
        name,
        router,
        header: Some(fx.header.clone()),
    };
    vec![
        keyed("bare", app()),
        keyed(
            "tower_governor",
            app().layer(tower_governor::GovernorLayer::new(governor_config!())),
        ),
        keyed(
            "tower_http_validate",
            app().layer(bench::validate_header(fx.header.clone())),
        ),
        keyed("hand_written", app().layer(bench::hand_written(&fx.header))),
        keyed("keygate", app().layer(fx.keys.layer())),
        // Both with the quota on every admitted response.
        keyed(
            "tower_governor_headers",
            app().layer(tower_governor::GovernorLayer::new(
                governor_builder!()
                    .use_headers()
                    .finish()
                    .expect("a config"),
            )),
        ),
        keyed("keygate_headers", app().layer(fx.with_headers.layer())),
        Variant {
            name: "keygate_sqlite",
            router: app().layer(fx.sqlite.layer()),
            header: Some(fx.sqlite_header.clone()),
        },
        // Beside `keygate`: the same key with credits, which the memory
        // store's bank charges in a task per request.
        Variant {
            name: "keygate_metered",
            router: app().layer(fx.keys.layer()),
            header: Some(fx.metered_header.clone()),
        },
        // Beside `keygate_sqlite`: one SQLite write transaction per request.
        Variant {
            name: "keygate_sqlite_metered",
            router: app().layer(fx.sqlite.layer()),
            header: Some(fx.sqlite_metered_header.clone()),
        },
        Variant {
            name: "keygate_optional_no_key",
            router: app().layer(fx.optional.layer()),
            header: None,
        },
    ]
}

/// Each variant as a service, warmed just before it is handed out: one
/// request through it fills keygate's cache and governor's state, and checks
/// that it admits.
fn warmed(
    fx: &Fixture,
) -> impl Iterator<Item = (&'static str, RouterIntoService<Body>, Option<HeaderValue>)> + '_ {
    variants(fx).into_iter().map(|v| {
        let svc = service(v.router);
        fx.check_with(&svc, v.name, v.header.as_ref());
        (v.name, svc, v.header)
    })
}

fn request_path(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("request");
    for (name, svc, header) in warmed(&fx) {
        let queries = fx.sqlite.verifier().store_queries();
        group.bench_function(name, |b| {
            b.to_async(&fx.rt).iter_batched(
                || (svc.clone(), request(header.as_ref())),
                |(svc, req)| async move { black_box(call(svc, req).await.status()) },
                BatchSize::SmallInput,
            );
        });
        assert_eq!(
            fx.sqlite.verifier().store_queries(),
            queries,
            "{name}: a warm cache must not query the store"
        );
    }

    // What the audit event costs once a subscriber records it: formatted,
    // then thrown away, with a count to prove it was written at all.
    let svc = service(app().layer(fx.keys.layer()));
    let written = Arc::new(AtomicUsize::new(0));
    let sink = Arc::clone(&written);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || CountingSink(Arc::clone(&sink)))
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        fx.check(&svc, "keygate_audit_on");
        assert!(
            written.load(Ordering::Relaxed) > 0,
            "the audit event must reach the subscriber"
        );
        group.bench_function("keygate_audit_on", |b| {
            b.to_async(&fx.rt).iter_batched(
                || (svc.clone(), fx.request()),
                |(svc, req)| async move { black_box(call(svc, req).await.status()) },
                BatchSize::SmallInput,
            );
        });
        // What any INFO event costs under this subscriber (its time, level
        // and target are written whatever the fields), and what the audit
        // event's own fields add to that.
        group.bench_function("tracing_fmt_event_plain", |b| {
            b.iter(|| tracing::info!(target: "keygate::audit", "ok"));
        });
        let id = fx.key.get(11..21).unwrap_or_default();
        group.bench_function("tracing_fmt_event_audit_fields", |b| {
            b.iter(|| {
                tracing::info!(
                    target: "keygate::audit",
                    outcome = "ok",
                    key_id = black_box(id),
                    method = %Method::GET,
                    path = "/notes",
                    peer = None::<tracing::field::DisplayValue<std::net::IpAddr>>,
                    reminder = None::<&str>,
                    sunset = None::<tracing::field::DisplayValue<time::OffsetDateTime>>,
                );
            });
        });
        let quiet = service(app().layer(fx.quiet_audit.layer()));
        fx.check(&quiet, "keygate_audit_on_admitted_debug");
        group.bench_function("keygate_audit_on_admitted_debug", |b| {
            b.to_async(&fx.rt).iter_batched(
                || (quiet.clone(), fx.request()),
                |(svc, req)| async move { black_box(call(svc, req).await.status()) },
                BatchSize::SmallInput,
            );
        });
    });
    group.finish();

    // The same requests, timed as the fastest chunk of each sample: the
    // machine is shared, and other work only ever adds time, so the lower
    // envelope tells the variants apart where medians drown in noise.
    let mut group = c.benchmark_group("request_lower_envelope");
    for (name, svc, header) in warmed(&fx) {
        group.bench_function(name, |b| {
            b.to_async(&fx.rt)
                .iter_custom(|iters| fastest_chunk(svc.clone(), header.as_ref(), iters));
        });
    }
    group.finish();
}

/// Sends `iters` requests in chunks and returns the fastest chunk's time per
/// request, times `iters`. Requests are built before each chunk's clock starts.
async fn fastest_chunk(
    svc: RouterIntoService<Body>,
    header: Option<&HeaderValue>,
    iters: u64,
) -> Duration {
    const CHUNK: u64 = 100;
    let mut fastest = f64::INFINITY;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let inputs: Vec<_> = (0..n).map(|_| (svc.clone(), request(header))).collect();
        let start = Instant::now();
        for (svc, req) in inputs {
            black_box(call(svc, req).await.status());
        }
        #[allow(clippy::cast_precision_loss)] // chunks are small
        let per_request = start.elapsed().as_secs_f64() / n as f64;
        fastest = fastest.min(per_request);
        done += n;
    }
    #[allow(clippy::cast_precision_loss)] // criterion's iteration counts fit
    Duration::from_secs_f64(fastest * iters as f64)
}

fn pieces(c: &mut Criterion) {
    let fx = Fixture::new();
    let key = fx.key.as_str();
    let format = fx.keys.format().clone();
    let verifier = Arc::clone(fx.keys.verifier());
    let hasher = verifier.hasher().clone();
    let parsed = format.parse(key).expect("a key we issued parses");
    let id = parsed.id();
    let digest = hasher.digest(key);
    let entry = fx
        .rt
        .block_on(verifier.find(id))
        .expect("memory store answers")
        .expect("the key exists");

    let mut group = c.benchmark_group("pieces");
    group.bench_function("sha256_digest", |b| {
        b.iter(|| hasher.digest(black_box(key)));
    });
    // The digest covers `{env}_{id}{secret}` (47 bytes: one SHA-256 block).
    // For scale, what hashing the whole key cost before: this string is not
    // shaped like a key (one byte more), so it is hashed whole, 60 bytes,
    // two blocks, as the 59-byte key was.
    let whole_key = format!("{key}.");
    group.bench_function("sha256_digest_whole_key_two_blocks", |b| {
        b.iter(|| hasher.digest(black_box(&whole_key)));
    });
    group.bench_function("key_format_parse", |b| {
        b.iter(|| format.parse(black_box(key)).map(|p| p.id()));
    });
    group.bench_function("verifier_lookup_hit", |b| {
        let now = SystemClock.now();
        b.iter(|| match verifier.lookup(black_box(id), now) {
            Lookup::Hit(e) => e,
            _ => unreachable!("the cache is warm"),
        });
    });
    // The same lookup in a std HashMap, for scale (10 000 other keys in it).
    let mut map: HashMap<KeyId, Arc<CachedKey>> = (0..10_000u32)
        .map(|i| {
            let other: KeyId = format!("{i:0>10}").parse().expect("digits are base62");
            (other, Arc::clone(&entry))
        })
        .collect();
    map.insert(id, Arc::clone(&entry));
    group.bench_function("std_hashmap_get_arc", |b| {
        b.iter(|| map.get(&black_box(id)).map(Arc::clone));
    });
    group.bench_function("digest_ct_eq_and_policy", |b| {
        let now = SystemClock.now();
        b.iter(|| entry.check(black_box(&digest), now, None));
    });
    group.bench_function("system_clock_now", |b| {
        b.iter(|| SystemClock.now());
    });
    // For scale: the same instant without the calendar arithmetic.
    group.bench_function("std_system_time_now", |b| {
        b.iter(SystemTime::now);
    });
    let scopes = MethodScopes::default();
    group.bench_function("method_scope_check", |b| {
        b.iter(|| {
            scopes
                .required(black_box(&Method::GET))
                .is_some_and(|s| entry.info().scopes.allows(s))
        });
    });
    {
        let _in_runtime = fx.rt.enter();
        let limiter = GovernorLimiter::new();
        let one = Quotas::from(NEVER_REJECTS);
        group.bench_function("governor_limiter_check", |b| {
            b.iter(|| match limiter.check(black_box(id), &one) {
                Check::Ready(Ok(d)) => d.allowed,
                _ => unreachable!("governor decides at once"),
            });
        });
        // A key with a per-second and a per-day quota: all-or-nothing under
        // the family's lock instead of governor's lock-free cell.
        let two = NEVER_REJECTS.and(Quota::per_day(u32::MAX));
        group.bench_function("governor_limiter_check_two_quotas", |b| {
            b.iter(|| match limiter.check(black_box(id), &two) {
                Check::Ready(Ok(d)) => d.allowed,
                _ => unreachable!("governor decides at once"),
            });
        });
    }
    let config = governor_config!();
    let header = fx.header.clone();
    group.bench_function("tower_governor_extract_and_check", |b| {
        b.iter(|| {
            let k = black_box(&header)
                .to_str()
                .map(str::to_owned)
                .expect("ASCII");
            config.limiter().check_key(&k).is_ok()
        });
    });
    group.bench_function("extensions_insert_fourth", |b| {
        let info = Arc::clone(entry.info());
        b.iter_batched(
            || {
                // By the time the layer runs, axum's router has put three
                // entries in the extensions (`OriginalUri`, `MatchedPath`,
                // the URL params); they fill the smallest table, so the
                // key's info is a fourth that grows it, as here.
                let mut ext = http::Extensions::new();
                ext.insert(Instant::now());
                ext.insert(SystemTime::now());
                ext.insert(0u64);
                ext
            },
            |mut ext| {
                ext.insert(Arc::clone(&info));
                ext
            },
            BatchSize::SmallInput,
        );
    });
    let req = fx.request();
    group.bench_function("tracing_event_no_subscriber", |b| {
        b.iter(|| {
            tracing::info!(
                target: "keygate::audit",
                outcome = "ok",
                key_id = id.as_str(),
                method = %req.method(),
                path = req.uri().path(),
            );
        });
    });
    group.finish();
}

keygate_test_support::bench_main!(bench::settings(3); request_path, pieces);
