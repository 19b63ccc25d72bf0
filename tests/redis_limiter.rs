//! keygate-redis's limiter behind the layer: the same statuses and
//! `RateLimit-*` / `Retry-After` headers as the in-process limiter, several
//! quotas on a key checked all-or-nothing in Redis, and the fallback
//! policies when Redis is away.
//!
//! The tests that need a server read `KEYGATE_TEST_REDIS_URL` (e.g.
//! `redis://127.0.0.1:6379`): skipped without it, failing when `CI=true`.
//! Every test writes under its own key prefix.

mod common;

use std::time::Duration;

use common::{TestApp, builder, issue_limited, key_id};
use keygate::core::{Gcra, Quota};
use keygate_redis::{
    FallbackPolicy, RedisLimiter,
    redis::{self, Client},
};
use keygate_test_support::redis::{clean_up, test_redis, unique_prefix};

fn redis_limiter(client: Client, prefix: &str, fallback: FallbackPolicy) -> RedisLimiter {
    RedisLimiter::builder(client)
        .key_prefix(prefix)
        // Generous: the test is about Redis's answers, on a busy machine
        // running a debug build.
        .timeout(Duration::from_secs(1))
        .fallback(fallback)
        .build()
        .unwrap()
}

/// What a client sees of one response's rate limiting.
fn seen(res: &common::Reply) -> (u16, Option<u64>, Option<u64>, Option<u64>, Option<u64>) {
    let n = |h| res.header(h).map(|v| v.parse().unwrap());
    (
        res.status.as_u16(),
        n("ratelimit-limit"),
        n("ratelimit-remaining"),
        n("ratelimit-reset"),
        n("retry-after"),
    )
}

#[tokio::test]
async fn redis_answers_as_governor_does_and_refusals_cost_nothing() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "layer");
    let limiter = redis_limiter(client.clone(), &prefix, FallbackPolicy::Reject);
    limiter.ping().await.unwrap();
    let shared = builder()
        .rate_limiter(limiter.clone())
        .rate_limit_headers(true)
        .build();
    let local = builder().rate_limit_headers(true).build();
    // Nothing refills within the test: one request per 20 s, and per 12 min.
    let (minute, hour) = (Quota::per_minute(3), Quota::per_hour(5));
    let both = minute.and(hour);
    let shared_key = issue_limited(&shared, both.clone()).await;
    let local_key = issue_limited(&local, both).await;
    let (shared_app, local_app) = (TestApp::new(&shared), TestApp::new(&local));

    for i in 0..6 {
        let from_redis = shared_app.get("/notes", &shared_key).await;
        let from_governor = local_app.get("/notes", &local_key).await;
        assert_eq!(
            seen(&from_redis),
            seen(&from_governor),
            "request {i}: {from_redis:?}"
        );
        let status = if i < 3 { 200 } else { 429 };
        assert_eq!(from_redis.status.as_u16(), status, "request {i}");
        if status == 429 {
            // The per-minute quota refused it, and says so.
            assert_eq!(from_redis.number("ratelimit-limit"), 3);
            assert_eq!(from_redis.code(), "rate_limited");
        }
    }
    assert_eq!(limiter.stats().redis_decisions, 6);
    assert_eq!(limiter.stats().fallback_decisions, 0);

    // In Redis, the hourly quota was charged for the three admitted
    // requests only: its debt is three emission intervals, less the time
    // the test took.
    let family = key_id(&shared, &shared_key);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let state: String = redis::cmd("GET")
        .arg(format!("{prefix}:{{{family}}}:{hour}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let debt: u64 = state.split_once(':').unwrap().1.parse().unwrap();
    let three = 3 * Gcra::new(hour).emission_interval();
    assert!(
        debt <= three && three - debt < 10_000_000_000,
        "hourly debt {debt} ns, want about {three} ns"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    clean_up(&client, &prefix).await;
}

#[tokio::test]
async fn with_redis_away_the_layer_follows_the_fallback_policy() {
    // No Redis needed: nothing listens on port 1.
    let closed = Client::open("redis://127.0.0.1:1/").unwrap();
    let both = Quota::per_hour(3).and(Quota::per_day(100));

    let local = redis_limiter(closed.clone(), "unused", FallbackPolicy::Local);
    let keys = builder().rate_limiter(local.clone()).build();
    let key = issue_limited(&keys, both.clone()).await;
    let app = TestApp::new(&keys);
    for _ in 0..3 {
        app.get("/notes", &key).await.assert_ok();
    }
    for _ in 0..3 {
        let res = app.get("/notes", &key).await;
        res.assert_problem(429, "rate_limited");
        assert!(res.number("retry-after") > 1_000);
    }
    assert_eq!(app.hits(), 3);
    assert_eq!(local.stats().redis_decisions, 0);

    let reject = redis_limiter(closed, "unused", FallbackPolicy::Reject);
    let keys = builder()
        .rate_limiter(reject)
        .unavailable_retry_after(Duration::from_secs(7))
        .build();
    let key = issue_limited(&keys, both).await;
    let app = TestApp::new(&keys);
    for _ in 0..3 {
        let res = app.get("/notes", &key).await;
        res.assert_problem(503, "unavailable");
        assert_eq!(res.number("retry-after"), 7);
    }
    assert_eq!(app.hits(), 0);
}
