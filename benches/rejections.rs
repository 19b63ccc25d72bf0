//! Rejections through a router, keygate beside its peers in one run, and the
//! store queries each kind of rejection causes (issues 5.2 and 3).
//!
//! Group `rejections`: one `GET /notes` through an axum 0.8 router with a
//! trivial handler, on a current-thread tokio runtime, every request
//! rejected. Throughput is one request per iteration, so criterion reports
//! rejections per second. keygate (memory store) sees:
//!
//! * `keygate_malformed` — a key of the wrong length (401, no hashing);
//! * `keygate_bad_checksum` — a well-formed key whose checksum is wrong;
//! * `keygate_unknown_id` — a well-formed key whose id is not in the store,
//!   after one warm-up request put the id in the negative cache;
//! * `keygate_revoked` — a revoked key (cached as revoked);
//! * `keygate_rate_limited` — a key whose one-per-hour quota is used up (429).
//!
//! The peers: `tower_http_validate_wrong_key` (401 from
//! `ValidateRequestHeaderLayer::custom` comparing to a constant) and
//! `tower_governor_limited` (429, keyed by the `X-API-Key` value, burst used
//! up). `keygate_admitted` is a valid key on the same router, for scale.
//!
//! Around each keygate case the bench reads `Verifier::store_queries()` and
//! counts the requests it sent, then prints queries per request: the target
//! is 0 for malformed keys and bad checksums and at most one per unknown id
//! per negative-cache TTL (60 s by default).
//!
//! Run with `cargo bench --bench rejections`; results in `BENCHMARKS.md`.

use std::{
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Method, Request, Response, StatusCode},
    routing::{RouterIntoService, get},
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use keygate::{
    Keygate,
    core::{Environment, MemoryStore, NewKey, Owner, Quota, Scope},
};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};
use tower_governor::{GovernorError, governor::GovernorConfigBuilder, key_extractor::KeyExtractor};
use tower_http::validate_request::ValidateRequestHeaderLayer;

const HEADER: &str = "x-api-key";
const PATH: &str = "/notes";

async fn notes() -> &'static str {
    "notes"
}

fn service(router: Router) -> RouterIntoService<Body> {
    router.with_state(()).into_service()
}

fn request(header: &HeaderValue) -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri(PATH)
        .header(HEADER, header.clone())
        .body(Body::empty())
        .expect("valid request")
}

async fn call(mut svc: RouterIntoService<Body>, req: Request<Body>) -> Response<Body> {
    let ready = ServiceExt::<Request<Body>>::ready(&mut svc)
        .await
        .unwrap_or_else(|e| match e {});
    ready.call(req).await.unwrap_or_else(|e| match e {})
}

#[derive(Clone, Debug)]
struct ApiKeyHeader;

impl KeyExtractor for ApiKeyHeader {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, GovernorError> {
        req.headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("visible ASCII")
}

/// Replaces the last character (part of the checksum) with another base62
/// character, so only the checksum check can fail.
fn break_checksum(key: &str) -> String {
    let (body, last) = key.split_at(key.len() - 1);
    let other = if last == "A" { 'B' } else { 'A' };
    format!("{body}{other}")
}

struct Case {
    name: &'static str,
    svc: RouterIntoService<Body>,
    header: HeaderValue,
    expect: StatusCode,
    keygate: bool,
}

#[allow(clippy::too_many_lines)] // one fixture, then one loop
fn rejections(c: &mut Criterion) {
    let rt: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys = Keygate::builder(MemoryStore::new())
        .prefix("bench")
        .default_rate_limit(Quota::per_second(1_000_000_000))
        .build();
    let manager = keys.manager();
    let (valid, revoked, limited) = rt.block_on(async {
        let new = || NewKey::new(Owner::service("bench"), "bench").scopes([Scope::READ]);
        let valid = manager.create(new()).await.expect("create");
        let revoked = manager.create(new()).await.expect("create");
        manager.revoke(revoked.key.id()).await.expect("revoke");
        let limited = manager
            .create(new().rate_limit(Quota::per_hour(1)))
            .await
            .expect("create");
        (valid, revoked, limited)
    });
    let valid = valid.key.expose_secret().to_owned();
    let unknown = keys
        .format()
        .generate(Environment::Live)
        .expect("OS randomness");
    let gate = service(Router::new().route(PATH, get(notes)).layer(keys.layer()));

    let expected = header(&valid);
    #[allow(clippy::result_large_err)] // tower-http's error type
    let validate = ValidateRequestHeaderLayer::custom(move |req: &mut Request<Body>| {
        if req.headers().get(HEADER) == Some(&expected) {
            Ok(())
        } else {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            Err(res)
        }
    });
    let governor = GovernorConfigBuilder::default()
        .per_second(3600)
        .burst_size(1)
        .key_extractor(ApiKeyHeader)
        .finish()
        .expect("non-zero period and burst");

    let keygate = |name, key: &str, expect| Case {
        name,
        svc: gate.clone(),
        header: header(key),
        expect,
        keygate: true,
    };
    let cases = vec![
        keygate("keygate_admitted", &valid, StatusCode::OK),
        Case {
            name: "tower_http_validate_wrong_key",
            svc: service(Router::new().route(PATH, get(notes)).layer(validate)),
            header: header(&break_checksum(&valid)),
            expect: StatusCode::UNAUTHORIZED,
            keygate: false,
        },
        Case {
            name: "tower_governor_limited",
            svc: service(
                Router::new()
                    .route(PATH, get(notes))
                    .layer(tower_governor::GovernorLayer::new(governor)),
            ),
            header: header(&valid),
            expect: StatusCode::TOO_MANY_REQUESTS,
            keygate: false,
        },
        keygate(
            "keygate_malformed",
            "bench_live_not-a-key",
            StatusCode::UNAUTHORIZED,
        ),
        keygate(
            "keygate_bad_checksum",
            &break_checksum(&valid),
            StatusCode::UNAUTHORIZED,
        ),
        keygate(
            "keygate_unknown_id",
            unknown.expose_secret(),
            StatusCode::UNAUTHORIZED,
        ),
        keygate(
            "keygate_revoked",
            revoked.key.expose_secret(),
            StatusCode::UNAUTHORIZED,
        ),
        keygate(
            "keygate_rate_limited",
            limited.key.expose_secret(),
            StatusCode::TOO_MANY_REQUESTS,
        ),
    ];

    let verifier = keys.verifier();
    let mut report = Vec::new();
    let mut group = c.benchmark_group("rejections");
    group.throughput(Throughput::Elements(1));
    for case in &cases {
        // Warm-up request: fills caches (or uses up the quota) and is
        // counted apart from the timed requests.
        let before_warm_up = verifier.store_queries();
        let mut first = rt.block_on(call(case.svc.clone(), request(&case.header)));
        if case.expect == StatusCode::TOO_MANY_REQUESTS {
            // The first request spends the quota; the second is refused.
            first = rt.block_on(call(case.svc.clone(), request(&case.header)));
        }
        assert_eq!(first.status(), case.expect, "{}", case.name);
        let warm_up_queries = verifier.store_queries() - before_warm_up;

        let sent = AtomicU64::new(0);
        let before = verifier.store_queries();
        group.bench_function(case.name, |b| {
            b.to_async(&rt).iter_batched(
                || (case.svc.clone(), request(&case.header)),
                |(svc, req)| {
                    sent.fetch_add(1, Ordering::Relaxed);
                    async move { black_box(call(svc, req).await.status()) }
                },
                BatchSize::SmallInput,
            );
        });
        let queries = verifier.store_queries() - before;
        let status = rt
            .block_on(call(case.svc.clone(), request(&case.header)))
            .status();
        assert_eq!(status, case.expect, "{} after the run", case.name);
        if case.keygate {
            report.push((case.name, warm_up_queries, queries, sent.into_inner()));
        }
    }
    group.finish();

    println!("\nstore queries caused (Verifier::store_queries):");
    println!(
        "{:<24} {:>18} {:>14} {:>14} {:>12}",
        "case", "warm-up request", "timed queries", "timed requests", "per request"
    );
    for (name, warm_up, queries, sent) in report {
        #[allow(clippy::cast_precision_loss)] // counts are far below 2^52
        let per = queries as f64 / sent.max(1) as f64;
        println!("{name:<24} {warm_up:>18} {queries:>14} {sent:>14} {per:>12.6}");
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = rejections
}
criterion_main!(benches);
