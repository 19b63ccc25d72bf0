//! Rejections through a router, keygate beside its peers in one run, and the
//! store queries each kind of rejection causes (issues 5.2 and 3).
//!
//! Group `rejections`: one `GET /notes` through an axum 0.8 router with a
//! trivial handler, on a current-thread tokio runtime, every request
//! rejected. Throughput is one request per iteration, so criterion reports
//! rejections per second. keygate (memory store) sees:
//!
//! * `keygate_missing` — no key at all (401);
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
};

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode},
    routing::RouterIntoService,
};
use criterion::{BatchSize, Criterion, Throughput};
use keygate::core::{Environment, MemoryStore, NewKey, Owner, Quota, Scope};
use keygate_test_support::{
    bench::{self, ApiKeyHeader, call, header, request},
    key::break_checksum,
};
use tower_governor::governor::GovernorConfigBuilder;

struct Case {
    name: &'static str,
    svc: RouterIntoService<Body>,
    header: Option<HeaderValue>,
    expect: StatusCode,
    keygate: bool,
}

#[allow(clippy::too_many_lines)] // one fixture, then one loop
fn rejections(c: &mut Criterion) {
    let rt = bench::runtime();
    let keys = bench::builder(MemoryStore::new()).build();
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
    let gate = bench::service(bench::app().layer(keys.layer()));

    let governor = GovernorConfigBuilder::default()
        .per_second(3600)
        .burst_size(1)
        .key_extractor(ApiKeyHeader)
        .finish()
        .expect("non-zero period and burst");

    let keygate = |name, key: &str, expect| Case {
        name,
        svc: gate.clone(),
        header: Some(header(key)),
        expect,
        keygate: true,
    };
    let cases = vec![
        keygate("keygate_admitted", &valid, StatusCode::OK),
        Case {
            name: "tower_http_validate_wrong_key",
            svc: bench::service(bench::app().layer(bench::validate_header(header(&valid)))),
            header: Some(header(&break_checksum(&valid))),
            expect: StatusCode::UNAUTHORIZED,
            keygate: false,
        },
        Case {
            name: "tower_governor_limited",
            svc: bench::service(bench::app().layer(tower_governor::GovernorLayer::new(governor))),
            header: Some(header(&valid)),
            expect: StatusCode::TOO_MANY_REQUESTS,
            keygate: false,
        },
        Case {
            header: None,
            ..keygate("keygate_missing", "", StatusCode::UNAUTHORIZED)
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
        let mut first = rt.block_on(call(case.svc.clone(), request(case.header.as_ref())));
        if case.expect == StatusCode::TOO_MANY_REQUESTS {
            // The first request spends the quota; the second is refused.
            first = rt.block_on(call(case.svc.clone(), request(case.header.as_ref())));
        }
        assert_eq!(first.status(), case.expect, "{}", case.name);
        let warm_up_queries = verifier.store_queries() - before_warm_up;

        let sent = AtomicU64::new(0);
        let before = verifier.store_queries();
        group.bench_function(case.name, |b| {
            b.to_async(&rt).iter_batched(
                || (case.svc.clone(), request(case.header.as_ref())),
                |(svc, req)| {
                    sent.fetch_add(1, Ordering::Relaxed);
                    async move { black_box(call(svc, req).await.status()) }
                },
                BatchSize::SmallInput,
            );
        });
        let queries = verifier.store_queries() - before;
        let status = rt
            .block_on(call(case.svc.clone(), request(case.header.as_ref())))
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

keygate_test_support::bench_main!(bench::settings(2).sample_size(50); rejections);
