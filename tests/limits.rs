//! Rate limits through the layer: exact counts (alone and under
//! concurrency), the 429 and its headers, `RateLimit-*` on success, per-key
//! quotas over the default, what does not count, and limiters that answer
//! late or not at all.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, routing::get};
use common::{
    ScriptedLimiter, TestApp, builder, issue, issue_limited, issue_scoped, keyed, rejecting,
};
use http::{Method, StatusCode};
use keygate::core::{
    Check, GovernorLimiter, KeyId, NewKey, Owner, PendingCheck, Quota, Quotas, RateLimiter, Scope,
};

#[tokio::test]
async fn a_quota_admits_exactly_n_then_429() {
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(5)).await;
    let app = TestApp::new(&keys);

    for _ in 0..5 {
        app.get("/notes", &key).await.assert_ok();
    }
    for _ in 0..3 {
        let res = app.get("/notes", &key).await;
        let body = res.assert_problem(429, "rate_limited");
        // One request refills every 12 minutes.
        let retry = res.number("retry-after");
        assert!((719..=720).contains(&retry), "Retry-After {retry}");
        assert_eq!(body["retry_after"], retry);
        assert_eq!(res.number("ratelimit-limit"), 5);
        assert_eq!(res.number("ratelimit-remaining"), 0);
        assert_eq!(res.number("ratelimit-reset"), 3600);
        assert!(body["detail"].as_str().unwrap().contains('5'), "{body}");
    }
    assert_eq!(app.hits(), 5);
}

#[tokio::test]
async fn retry_after_is_rounded_up_and_never_zero() {
    for (retry_after, reset, want_retry, want_reset) in [
        (
            Duration::from_millis(1200),
            Duration::from_millis(2500),
            2,
            3,
        ),
        (Duration::from_millis(1), Duration::from_millis(1), 1, 1),
        (Duration::ZERO, Duration::from_secs(7), 1, 7),
        (Duration::from_secs(30), Duration::from_secs(60), 30, 60),
    ] {
        let keys = builder()
            .rate_limiter(ScriptedLimiter::always(rejecting(9, retry_after, reset)))
            .default_rate_limit(Quota::per_second(9))
            .build();
        let key = issue_scoped(&keys, [Scope::READ]).await;
        let res = TestApp::new(&keys).get("/notes", &key).await;
        let body = res.assert_problem(429, "rate_limited");
        assert_eq!(res.number("retry-after"), want_retry, "{retry_after:?}");
        assert_eq!(body["retry_after"], want_retry);
        assert_eq!(res.number("ratelimit-reset"), want_reset, "{reset:?}");
        assert_eq!(res.number("ratelimit-limit"), 9);
    }
}

#[tokio::test]
async fn ratelimit_headers_on_success_when_enabled() {
    let keys = builder().rate_limit_headers(true).build();
    let key = issue_limited(&keys, Quota::per_minute(5)).await;
    let app = TestApp::new(&keys);

    for remaining in (0..5).rev() {
        let res = app.get("/notes", &key).await;
        res.assert_ok();
        assert_eq!(res.number("ratelimit-limit"), 5);
        assert_eq!(res.number("ratelimit-remaining"), remaining);
        // Each used request takes 12 s to refill.
        assert_eq!(res.number("ratelimit-reset"), 12 * (5 - remaining));
        assert!(res.header("retry-after").is_none());
    }
    let res = app.get("/notes", &key).await;
    res.assert_problem(429, "rate_limited");
    let retry = res.number("retry-after");
    assert!((11..=12).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn no_ratelimit_headers_on_success_by_default() {
    let keys = builder().rate_limit_headers(false).build();
    let key = issue_limited(&keys, Quota::per_hour(1)).await;
    let app = TestApp::new(&keys);

    let res = app.get("/notes", &key).await;
    res.assert_ok();
    for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(res.header(name).is_none(), "{name} on a success");
    }
    // A 429 always carries them.
    let res = app.get("/notes", &key).await;
    res.assert_problem(429, "rate_limited");
    assert_eq!(res.number("ratelimit-limit"), 1);
}

#[tokio::test]
async fn keys_without_a_quota_are_not_limited() {
    let keys = builder().rate_limit_headers(true).build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    for _ in 0..100 {
        let res = app.get("/notes", &key).await;
        res.assert_ok();
        assert!(res.header("ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn the_default_quota_applies_to_keys_without_their_own() {
    let keys = builder()
        .default_rate_limit(Quota::per_hour(3))
        .rate_limit_headers(true)
        .build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    for _ in 0..3 {
        let res = app.get("/notes", &key).await;
        res.assert_ok();
        assert_eq!(res.number("ratelimit-limit"), 3);
    }
    app.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");
}

#[tokio::test]
async fn a_keys_own_quota_overrides_the_default() {
    let keys = builder()
        .default_rate_limit(Quota::per_hour(100))
        .rate_limit_headers(true)
        .build();
    let tight = issue_limited(&keys, Quota::per_hour(2)).await;
    let generous = issue_limited(&keys, Quota::per_hour(200)).await;
    let ordinary = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    for _ in 0..2 {
        let res = app.get("/notes", &tight).await;
        res.assert_ok();
        assert_eq!(res.number("ratelimit-limit"), 2);
    }
    let res = app.get("/notes", &tight).await;
    res.assert_problem(429, "rate_limited");
    assert_eq!(res.number("ratelimit-limit"), 2);

    for _ in 0..150 {
        app.get("/notes", &generous).await.assert_ok();
    }
    let res = app.get("/notes", &ordinary).await;
    assert_eq!(res.number("ratelimit-limit"), 100);
}

#[tokio::test]
async fn keys_have_separate_quotas() {
    let keys = builder().default_rate_limit(Quota::per_hour(1)).build();
    let a = issue_scoped(&keys, [Scope::READ]).await;
    let b = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    app.get("/notes", &a).await.assert_ok();
    app.get("/notes", &a)
        .await
        .assert_problem(429, "rate_limited");
    app.get("/notes", &b).await.assert_ok();
}

#[tokio::test]
async fn requests_refused_for_their_method_scope_use_no_quota() {
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(2)).await;
    let app = TestApp::new(&keys);

    for _ in 0..5 {
        app.send(keyed(Method::POST, "/notes", &key))
            .await
            .assert_problem(403, "insufficient_scope");
    }
    app.get("/notes", &key).await.assert_ok();
    app.get("/notes", &key).await.assert_ok();
    app.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");
}

#[tokio::test]
async fn requests_refused_before_the_limiter_use_no_quota() {
    let keys = builder()
        .environment(keygate::core::Environment::Live)
        .build();
    let key = issue_limited(&keys, Quota::per_hour(1)).await;
    let app = TestApp::new(&keys);

    // A forged key with the same id must not burn the owner's quota.
    let forged = common::forge(&key);
    for _ in 0..5 {
        app.get("/notes", &forged)
            .await
            .assert_unauthorized("invalid_key");
    }
    app.get("/notes", &key).await.assert_ok();
}

/// A route protected by `keys.layer().require_scope(..)` refuses a key
/// without the scope before the quota is touched, so probing a forbidden
/// route costs the key nothing.
#[tokio::test]
async fn requests_refused_by_a_layer_level_route_scope_use_no_quota() {
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(2)).await;
    let notes = Router::new()
        .route("/notes", get(|| async { "notes" }))
        .route_layer(keys.layer());
    let billing = Router::new()
        .route("/billing", get(|| async { "billing" }))
        .route_layer(
            keys.layer()
                .require_scope(keygate::core::Scope::from_static("billing:read")),
        );
    let app = notes.merge(billing);
    let get = |path: &'static str| {
        let app = app.clone();
        let key = key.clone();
        async move {
            let req = http::Request::get(path)
                .header("x-api-key", key)
                .body(axum::body::Body::empty())
                .unwrap();
            tower::ServiceExt::oneshot(app, req).await.unwrap().status()
        }
    };
    for _ in 0..3 {
        assert_eq!(get("/billing").await, 403);
    }
    assert_eq!(get("/notes").await, 200);
    assert_eq!(get("/notes").await, 200);
    assert_eq!(get("/notes").await, 429);
}

/// The standalone `require_scope` route layer runs after the outer layer
/// admitted (and counted) the request, as its docs say: refusals there are
/// counted like any request a handler refuses.
#[tokio::test]
async fn requests_refused_by_a_standalone_route_scope_are_counted() {
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(2)).await;
    let app = TestApp::new(&keys);

    app.get("/billing", &key)
        .await
        .assert_problem(403, "insufficient_scope");
    app.get("/notes", &key).await.assert_ok();
    app.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quota_is_exact_under_concurrency() {
    const QUOTA: u32 = 100;
    const TASKS: usize = 64;
    const EACH: usize = 5;
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(QUOTA)).await;
    let app = TestApp::new(&keys);
    let admitted = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (app, key) = (app.clone(), key.clone());
            let (admitted, limited) = (Arc::clone(&admitted), Arc::clone(&limited));
            tokio::spawn(async move {
                for _ in 0..EACH {
                    let res = app.get("/notes", &key).await;
                    match res.status {
                        StatusCode::OK => admitted.fetch_add(1, Ordering::SeqCst),
                        StatusCode::TOO_MANY_REQUESTS => limited.fetch_add(1, Ordering::SeqCst),
                        other => panic!("unexpected {other}: {res:?}"),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), QUOTA as usize);
    assert_eq!(
        limited.load(Ordering::SeqCst),
        TASKS * EACH - QUOTA as usize
    );
    assert_eq!(app.hits(), QUOTA as usize);
}

#[tokio::test]
async fn layers_of_one_keygate_share_the_quota() {
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(2)).await;
    let one = TestApp::new(&keys);
    let two = TestApp::new(&keys);

    one.get("/notes", &key).await.assert_ok();
    two.get("/notes", &key).await.assert_ok();
    one.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");
    two.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");
}

#[tokio::test]
async fn an_unavailable_limiter_is_503_not_401_or_429() {
    for limiter in [
        ScriptedLimiter::unavailable(),
        ScriptedLimiter::unavailable().pending(),
    ] {
        let keys = builder()
            .rate_limiter(limiter)
            .default_rate_limit(Quota::per_second(10))
            .unavailable_retry_after(Duration::from_millis(2500))
            .build();
        let key = issue_scoped(&keys, [Scope::READ]).await;
        let app = TestApp::new(&keys);

        let res = app.get("/notes", &key).await;
        let body = res.assert_problem(503, "unavailable");
        assert_eq!(res.number("retry-after"), 3);
        assert_eq!(body["retry_after"], 3);
        assert_eq!(app.hits(), 0);
    }
}

/// A limiter that answers through a future, as a remote one does, with
/// governor's decisions.
#[derive(Debug, Default)]
struct Remote(GovernorLimiter);

impl RateLimiter for Remote {
    fn check(&self, family: KeyId, quotas: &Quotas) -> Check {
        let Check::Ready(decision) = self.0.check(family, quotas) else {
            unreachable!("governor answers at once")
        };
        Check::Pending(PendingCheck::new(async move {
            tokio::task::yield_now().await;
            decision
        }))
    }
}

#[tokio::test]
async fn a_limiter_that_answers_later_is_exact_too() {
    let keys = builder()
        .rate_limiter(Remote::default())
        .rate_limit_headers(true)
        .build();
    let key = issue_limited(&keys, Quota::per_hour(3)).await;
    let app = TestApp::new(&keys);

    // The first request also waits for the store (a cache miss), then for
    // the limiter.
    for remaining in (0..3).rev() {
        let res = app.get("/notes", &key).await;
        res.assert_ok();
        assert_eq!(res.number("ratelimit-remaining"), remaining);
        assert_eq!(res.text(), "user:u1 limited");
    }
    let res = app.get("/notes", &key).await;
    res.assert_problem(429, "rate_limited");
    assert!(res.number("retry-after") >= 1);
    assert_eq!(app.hits(), 3);
}

#[tokio::test]
async fn the_limiter_is_asked_with_the_keys_quota() {
    let limiter = ScriptedLimiter::always(keygate::core::Decision {
        allowed: true,
        quota: Quota::per_day(7),
        remaining: 6,
        reset: Duration::from_secs(1),
        retry_after: Duration::ZERO,
    });
    let asked = Arc::clone(&limiter.asked);
    let keys = builder()
        .rate_limiter(limiter)
        .default_rate_limit(Quota::per_minute(60))
        .build();
    let own = issue(
        &keys,
        NewKey::new(Owner::user("u1"), "own")
            .scopes([Scope::READ])
            .rate_limit(Quota::per_day(7)),
    )
    .await;
    let default = issue_scoped(&keys, [Scope::READ]).await;
    let both = Quota::per_second(2).and(Quota::per_day(7));
    let several = issue(
        &keys,
        NewKey::new(Owner::user("u1"), "several")
            .scopes([Scope::READ])
            .rate_limit(both.clone()),
    )
    .await;
    let app = TestApp::new(&keys);

    app.get("/notes", &own).await.assert_ok();
    app.get("/notes", &default).await.assert_ok();
    app.get("/notes", &several).await.assert_ok();
    assert_eq!(
        *asked.lock().unwrap(),
        vec![Quota::per_day(7).into(), Quota::per_minute(60).into(), both]
    );
}

/// A builder whose governor limiter runs on a clock the test moves.
fn builder_on(clock: &governor::clock::FakeRelativeClock) -> keygate::KeygateBuilder {
    builder()
        .rate_limiter(GovernorLimiter::with_clock(clock.clone()))
        .rate_limit_headers(true)
}

#[tokio::test]
async fn several_quotas_on_a_key_are_all_or_nothing() {
    let clock = governor::clock::FakeRelativeClock::default();
    let keys = builder_on(&clock).build();
    // 2 per minute and 3 per hour.
    let both = Quota::per_minute(2).and(Quota::per_hour(3));
    let key = issue_limited(&keys, both).await;
    let app = TestApp::new(&keys);

    // The per-minute quota is the closer one, so its numbers are sent.
    for remaining in [1, 0] {
        let res = app.get("/notes", &key).await;
        res.assert_ok();
        assert_eq!(res.number("ratelimit-limit"), 2);
        assert_eq!(res.number("ratelimit-remaining"), remaining);
    }
    // Refused by the per-minute quota, and charged to neither.
    for _ in 0..5 {
        let res = app.get("/notes", &key).await;
        let body = res.assert_problem(429, "rate_limited");
        assert_eq!(res.number("ratelimit-limit"), 2);
        assert_eq!(res.number("retry-after"), 30);
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("2 requests per minute"), "{detail}");
    }
    // A minute later the per-minute quota is whole again; the hourly one
    // has one request left, as the five refusals cost nothing.
    clock.advance(Duration::from_secs(60));
    let res = app.get("/notes", &key).await;
    res.assert_ok();
    assert_eq!(res.number("ratelimit-limit"), 3);
    assert_eq!(res.number("ratelimit-remaining"), 0);
    // Now the hourly quota refuses, with its longer wait: its third
    // request's slot refills 20 minutes after the first two.
    let res = app.get("/notes", &key).await;
    let body = res.assert_problem(429, "rate_limited");
    assert_eq!(res.number("ratelimit-limit"), 3);
    assert_eq!(res.number("retry-after"), 20 * 60 - 60);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("3 requests per hour"), "{detail}");
    // That refusal cost the per-minute quota nothing either.
    clock.advance(Duration::from_secs(20 * 60 - 60));
    let res = app.get("/notes", &key).await;
    res.assert_ok();
    assert_eq!(app.hits(), 4);
}

#[tokio::test]
async fn a_default_of_several_quotas_applies_to_keys_without_their_own() {
    let clock = governor::clock::FakeRelativeClock::default();
    let keys = builder_on(&clock)
        .default_rate_limit(Quota::per_second(3).and(Quota::per_day(4)))
        .build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);
    for _ in 0..3 {
        app.get("/notes", &key).await.assert_ok();
    }
    app.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");
    clock.advance(Duration::from_secs(1));
    app.get("/notes", &key).await.assert_ok();
    let res = app.get("/notes", &key).await;
    res.assert_problem(429, "rate_limited");
    assert_eq!(res.number("ratelimit-limit"), 4);
    assert_eq!(app.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_quotas_are_exact_under_concurrency() {
    const TASKS: usize = 32;
    const EACH: usize = 8;
    let keys = builder().build();
    let key = issue_limited(&keys, Quota::per_hour(40).and(Quota::per_day(1_000))).await;
    let app = TestApp::new(&keys);
    let admitted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (app, key, admitted) = (app.clone(), key.clone(), Arc::clone(&admitted));
            tokio::spawn(async move {
                for _ in 0..EACH {
                    let res = app.get("/notes", &key).await;
                    match res.status {
                        StatusCode::OK => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        StatusCode::TOO_MANY_REQUESTS => {}
                        other => panic!("unexpected {other}: {res:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 40);
    assert_eq!(app.hits(), 40);
}

/// A remote limiter that takes `lag` of (fake) time to answer.
#[derive(Debug)]
struct Slow {
    limiter: GovernorLimiter,
    clock: keygate::core::FakeClock,
    lag: Duration,
}

impl RateLimiter for Slow {
    fn check(&self, family: KeyId, quotas: &Quotas) -> Check {
        let Check::Ready(decision) = self.limiter.check(family, quotas) else {
            unreachable!("governor answers at once")
        };
        let (clock, lag) = (self.clock.clone(), self.lag);
        Check::Pending(PendingCheck::new(async move {
            tokio::task::yield_now().await;
            clock.advance(lag);
            decision
        }))
    }
}

#[tokio::test]
async fn a_key_that_expires_while_a_remote_limiter_answers_is_refused() {
    let clock = keygate::core::FakeClock::starting_now();
    let keys = builder()
        .clock(clock.clone())
        .rate_limiter(Slow {
            limiter: GovernorLimiter::new(),
            clock: clock.clone(),
            lag: Duration::from_millis(300),
        })
        .default_rate_limit(Quota::per_hour(100))
        .build();
    let key = issue(
        &keys,
        NewKey::new(Owner::user("u1"), "brief")
            .scopes([Scope::READ])
            .expires_in(Duration::from_secs(1)),
    )
    .await;
    let app = TestApp::new(&keys);
    // 0 ms → answered at 300 ms; 400 ms → 700 ms: both within the second.
    app.get("/notes", &key).await.assert_ok();
    clock.advance(Duration::from_millis(100));
    app.get("/notes", &key).await.assert_ok();
    // Asked at 800 ms, answered at 1100 ms: the key expired meanwhile.
    clock.advance(Duration::from_millis(100));
    app.get("/notes", &key)
        .await
        .assert_unauthorized("expired_key");
    assert_eq!(app.hits(), 2);
}
