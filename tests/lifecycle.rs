//! A key's life as clients see it: expiry exact to the clock (a fake one),
//! revocation and updates effective on the very next request, store outages
//! answered with 503 (never 401) and survived by cached keys until
//! `max_stale`, and usage written back to the store.

mod common;

use std::time::Duration;

use common::{Failure, Op, TestApp, TestStore, builder, forge, issue, issue_scoped, key_id, keyed};
use http::Method;
use keygate::{
    Keygate,
    core::{
        CacheConfig, Environment, FakeClock, KeyUpdate, NewKey, Owner, Quota, Scope, Scopes,
        time::macros::datetime,
    },
};

const T0: keygate::core::time::OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

/// A fake clock at [`T0`], a `Keygate` on it, and a `read` key of `user:u1`
/// named `name` that expires `secs` seconds after `T0`.
async fn expiring_key(name: &str, secs: u64) -> (FakeClock, Keygate, String) {
    let clock = FakeClock::new(T0);
    let keys = builder().clock(clock.clone()).build();
    let key = issue(
        &keys,
        NewKey::new(Owner::user("u1"), name)
            .scopes([Scope::READ])
            .expires_in(Duration::from_secs(secs)),
    )
    .await;
    (clock, keys, key)
}

#[tokio::test]
async fn expiry_is_exact_to_the_clock() {
    let clock = FakeClock::new(T0);
    let keys = builder().clock(clock.clone()).build();
    let created = keys
        .manager()
        .create(
            NewKey::new(Owner::user("u1"), "one minute")
                .scopes([Scope::READ])
                .expires_in(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let expires_at = T0 + Duration::from_secs(60);
    assert_eq!(
        created.record.created_at, T0,
        "the manager uses the same clock"
    );
    assert_eq!(created.record.expires_at, Some(expires_at));
    let key = created.key.expose_secret();
    let app = TestApp::new(&keys);

    app.get("/notes", key).await.assert_ok();
    // Still within the cache's TTL: the cached entry is checked against the
    // clock, not trusted as "valid".
    clock.set(expires_at - Duration::from_nanos(1));
    app.get("/notes", key).await.assert_ok();
    clock.set(expires_at);
    app.get("/notes", key)
        .await
        .assert_unauthorized("expired_key");
    clock.advance(Duration::from_secs(3600));
    app.get("/notes", key)
        .await
        .assert_unauthorized("expired_key");
    assert_eq!(app.hits(), 2);
}

#[tokio::test]
async fn expiry_is_exact_across_cache_reloads() {
    let (clock, keys, key) = expiring_key("one day", 86_400).await;
    let expires_at = T0 + Duration::from_secs(86_400);
    let app = TestApp::new(&keys);

    app.get("/notes", &key).await.assert_ok();
    // Far past the cache's TTL and max_stale: the entry is read again.
    clock.set(expires_at - Duration::from_nanos(1));
    app.get("/notes", &key).await.assert_ok();
    clock.set(expires_at);
    app.get("/notes", &key)
        .await
        .assert_unauthorized("expired_key");
}

#[tokio::test]
async fn a_key_first_seen_after_its_expiry_is_expired() {
    let (clock, keys, key) = expiring_key("short", 10).await;
    clock.advance(Duration::from_secs(10));
    TestApp::new(&keys)
        .get("/notes", &key)
        .await
        .assert_unauthorized("expired_key");
}

#[tokio::test]
async fn the_handler_sees_when_the_key_expires() {
    let (_clock, keys, key) = expiring_key("short", 10).await;
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|k: keygate::ApiKey| async move {
                k.expires_at()
                    .map(keygate::core::time::OffsetDateTime::unix_timestamp)
                    .unwrap_or_default()
                    .to_string()
            }),
        )
        .layer(keys.layer());
    let res = common::send(&app, keyed(Method::GET, "/", &key)).await;
    assert_eq!(res.text(), (T0.unix_timestamp() + 10).to_string());
}

#[tokio::test]
async fn revocation_is_effective_on_the_very_next_request() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);
    let other_router = TestApp::new(&keys);

    // Warm the cache on both routers.
    app.get("/notes", &key).await.assert_ok();
    other_router.get("/notes", &key).await.assert_ok();
    let revoked = keys.manager().revoke(key_id(&keys, &key)).await.unwrap();
    assert!(revoked.revoked_at.is_some());

    for _ in 0..3 {
        app.get("/notes", &key)
            .await
            .assert_unauthorized("revoked_key");
        other_router
            .get("/notes", &key)
            .await
            .assert_unauthorized("revoked_key");
    }
    assert_eq!(app.hits() + other_router.hits(), 2);
}

#[tokio::test]
async fn a_forged_copy_of_a_revoked_key_learns_nothing() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    keys.manager().revoke(key_id(&keys, &key)).await.unwrap();
    let app = TestApp::new(&keys);

    // Only the holder of the real key learns that it is revoked.
    app.get("/notes", &forge(&key))
        .await
        .assert_unauthorized("invalid_key");
    app.get("/notes", &key)
        .await
        .assert_unauthorized("revoked_key");
}

#[tokio::test]
async fn updates_are_effective_on_the_very_next_request() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let id = key_id(&keys, &key);
    let app = TestApp::new(&keys);

    app.send(keyed(Method::POST, "/notes", &key))
        .await
        .assert_problem(403, "insufficient_scope");
    keys.manager()
        .update(
            id,
            KeyUpdate {
                scopes: Some(Scopes::from([Scope::READ, Scope::WRITE])),
                rate_limit: Some(Some(Quota::per_hour(2).into())),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    app.send(keyed(Method::POST, "/notes", &key))
        .await
        .assert_ok();
    app.get("/notes", &key).await.assert_ok();
    app.get("/notes", &key)
        .await
        .assert_problem(429, "rate_limited");

    keys.manager()
        .update(
            id,
            KeyUpdate {
                allowed_ips: Some(vec!["10.0.0.0/8".parse().unwrap()]),
                rate_limit: Some(None),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    app.get("/notes", &key)
        .await
        .assert_problem(403, "ip_not_allowed");
}

/// A keygate over a store that can fail, on a fake clock; cache entries
/// are re-read after 5 minutes and served through outages for 15.
async fn outage_setup() -> (Keygate, TestStore, FakeClock, String, String) {
    let store = TestStore::memory();
    let clock = FakeClock::new(T0);
    let keys = Keygate::builder(store.clone())
        .clock(clock.clone())
        .cache(CacheConfig {
            ttl: Duration::from_secs(5 * 60),
            max_stale: Duration::from_secs(15 * 60),
            ..CacheConfig::default()
        })
        .build();
    let warm = issue_scoped(&keys, [Scope::READ]).await;
    let cold = issue_scoped(&keys, [Scope::READ]).await;
    (keys, store, clock, warm, cold)
}

#[tokio::test]
async fn a_store_outage_is_503_never_401() {
    let (keys, store, _clock, warm, cold) = outage_setup().await;
    let app = TestApp::new(&keys);
    let stranger = keys.format().generate(Environment::Live).unwrap();
    app.get("/notes", &warm).await.assert_ok();

    store.fail(Op::Find, Failure::Unavailable);
    // A cached key keeps working.
    app.get("/notes", &warm).await.assert_ok();
    // Keys the cache does not know cannot be vouched for either way.
    for key in [cold.as_str(), stranger.expose_secret()] {
        let res = app.get("/notes", key).await;
        let body = res.assert_problem(503, "unavailable");
        assert_eq!(res.number("retry-after"), 1);
        assert_eq!(body["retry_after"], 1);
    }
    // Failures are not cached: every request asks again.
    let before = store.calls(Op::Find);
    app.get("/notes", &cold)
        .await
        .assert_problem(503, "unavailable");
    assert_eq!(store.calls(Op::Find), before + 1);

    store.heal();
    app.get("/notes", &cold).await.assert_ok();
    app.get("/notes", stranger.expose_secret())
        .await
        .assert_unauthorized("invalid_key");
}

#[tokio::test]
async fn a_store_returning_garbage_is_503_too() {
    let (keys, store, _clock, _warm, cold) = outage_setup().await;
    let app = TestApp::new(&keys);

    store.fail(Op::Find, Failure::Corrupt);
    app.get("/notes", &cold)
        .await
        .assert_problem(503, "unavailable");
    store.heal();
    app.get("/notes", &cold).await.assert_ok();
}

#[tokio::test]
async fn the_retry_after_of_an_outage_is_configurable_and_rounded_up() {
    let store = TestStore::memory();
    let keys = Keygate::builder(store.clone())
        .unavailable_retry_after(Duration::from_millis(2100))
        .build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    store.fail(Op::Find, Failure::Unavailable);
    let res = TestApp::new(&keys).get("/notes", &key).await;
    res.assert_problem(503, "unavailable");
    assert_eq!(res.number("retry-after"), 3);
}

#[tokio::test]
async fn cached_keys_serve_through_an_outage_until_max_stale() {
    let (keys, store, clock, warm, _cold) = outage_setup().await;
    let app = TestApp::new(&keys);
    app.get("/notes", &warm).await.assert_ok();

    store.fail(Op::Find, Failure::Unavailable);
    // Past the TTL (5 min): served while a refresh is attempted.
    clock.advance(Duration::from_secs(10 * 60));
    app.get("/notes", &warm).await.assert_ok();
    tokio::task::yield_now().await;
    app.get("/notes", &warm).await.assert_ok();
    // Past max_stale (15 min): no longer vouched for, and still not a 401.
    clock.advance(Duration::from_secs(6 * 60));
    app.get("/notes", &warm)
        .await
        .assert_problem(503, "unavailable");

    store.heal();
    app.get("/notes", &warm).await.assert_ok();
}

#[tokio::test]
async fn admitted_requests_are_counted_and_written_back() {
    let clock = FakeClock::new(T0 + Duration::from_secs(1800));
    let keys = builder().clock(clock.clone()).build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let id = key_id(&keys, &key);
    let app = TestApp::new(&keys);

    for _ in 0..3 {
        app.get("/notes", &key).await.assert_ok();
    }
    for _ in 0..2 {
        app.send(keyed(Method::POST, "/notes", &key))
            .await
            .assert_problem(403, "insufficient_scope");
    }
    keys.flush_usage().await.unwrap();

    let usage = keys.manager().usage(id, T0).await.unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].bucket, T0, "hourly buckets");
    assert_eq!(usage[0].requests, 3, "refused requests are not usage");
    let record = keys.manager().get(id).await.unwrap().unwrap();
    assert_eq!(record.last_used_at, Some(T0 + Duration::from_secs(1800)));

    // Nothing is counted twice.
    keys.flush_usage().await.unwrap();
    let usage = keys.manager().usage(id, T0).await.unwrap();
    assert_eq!(usage[0].requests, 3);
}
