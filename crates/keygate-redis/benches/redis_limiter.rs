//! Per-decision latency of the Redis limiter on loopback, beside the
//! in-process governor limiter in the same run.
//!
//! `KEYGATE_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p keygate-redis`
//! (without the variable only the local limiter is measured).

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keygate_core::{Check, Decision, GovernorLimiter, KeyId, Quota, Quotas, RateLimiter};
use keygate_redis::{FallbackPolicy, RedisLimiter, redis};
use keygate_test_support::{
    env,
    redis::{clean_up, unique_prefix},
};

/// Decisions issued at once in the concurrent case.
const CONCURRENT: usize = 64;

fn families() -> Vec<KeyId> {
    (0..1_000)
        .map(|i| format!("Bench{i:05}").parse().unwrap())
        .collect()
}

async fn decide(limiter: &impl RateLimiter, family: KeyId, quotas: &Quotas) -> Decision {
    match limiter.check(family, quotas) {
        Check::Ready(result) => result.unwrap(),
        Check::Pending(pending) => pending.await.unwrap(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Never rejects, so every decision does the same work.
    let quota = Quotas::from(Quota::per_second(1_000_000));
    let both = Quota::per_second(1_000_000).and(Quota::per_hour(1_000_000_000));
    let families = families();
    let mut group = c.benchmark_group("rate_limit_decision");

    let local = rt.block_on(async { GovernorLimiter::new() });
    let mut i = 0;
    group.bench_function("governor_local", |b| {
        b.iter(|| {
            i = (i + 1) % families.len();
            let Check::Ready(d) = local.check(families[i], &quota) else {
                unreachable!()
            };
            black_box(d.unwrap())
        });
    });
    let mut i = 0;
    group.bench_function("governor_local_two_quotas", |b| {
        b.iter(|| {
            i = (i + 1) % families.len();
            let Check::Ready(d) = local.check(families[i], &both) else {
                unreachable!()
            };
            black_box(d.unwrap())
        });
    });

    let Some(url) = env::configured(env::REDIS_URL_VAR) else {
        eprintln!("skipped the Redis benches: KEYGATE_TEST_REDIS_URL not set");
        group.finish();
        return;
    };
    let prefix = unique_prefix("keygate-bench", "limiter");
    let client = redis::Client::open(url).unwrap();
    let limiter = rt.block_on(async {
        let limiter = RedisLimiter::builder(client.clone())
            .key_prefix(&prefix)
            .timeout(Duration::from_secs(1))
            .fallback(FallbackPolicy::Reject)
            .build()
            .unwrap();
        limiter.ping().await.unwrap();
        limiter
    });

    // The floor: one PING round trip on a connection of the same kind.
    let ping_conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    group.bench_function("redis_ping_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = ping_conn.clone();
            async move {
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
                black_box(pong)
            }
        });
    });
    drop(ping_conn);

    let mut i = 0;
    group.bench_function("redis_loopback", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % families.len();
            let family = families[i];
            let (limiter, quota) = (&limiter, &quota);
            async move { black_box(decide(limiter, family, quota).await) }
        });
    });

    let mut i = 0;
    group.bench_function("redis_loopback_two_quotas", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % families.len();
            let (family, limiter, both) = (families[i], &limiter, &both);
            async move { black_box(decide(limiter, family, both).await) }
        });
    });

    // Many requests in flight on one multiplexed connection, as a busy node
    // has them: throughput rather than latency.
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    let mut i = 0;
    group.bench_function(format!("redis_loopback_{CONCURRENT}_concurrent"), |b| {
        b.to_async(&rt).iter(|| {
            i = (i + CONCURRENT) % families.len();
            let start = i;
            let (limiter, families, quota) = (&limiter, &families, &quota);
            async move {
                let mut set = tokio::task::JoinSet::new();
                for k in 0..CONCURRENT {
                    let (limiter, family, quota) = (
                        limiter.clone(),
                        families[(start + k) % families.len()],
                        quota.clone(),
                    );
                    set.spawn(async move { decide(&limiter, family, &quota).await });
                }
                while let Some(d) = set.join_next().await {
                    black_box(d.unwrap());
                }
            }
        });
    });
    group.finish();

    assert_eq!(
        limiter.stats().fallback_decisions,
        0,
        "{:?}",
        limiter.stats()
    );
    rt.block_on(clean_up(&client, &prefix));
}

criterion_group!(redis_limiter, benches);
criterion_main!(redis_limiter);
