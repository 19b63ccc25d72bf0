//! A flood of forged, well-formed keys with fresh ids (anyone can mint them:
//! the checksum is public) against a store with a connection pool of 10, as
//! PostgreSQL's default is. The flood cannot take the store's capacity from
//! real keys, and a lookup dropped mid-flight leaves nothing behind.

mod common;

use std::{
    future::{Future as _, poll_fn},
    pin::pin,
    task::Poll,
    time::{Duration, Instant},
};

use common::{AbsentLookups, Op, Reply, TestApp, issue_scoped};
use http::StatusCode;
use keygate::{
    Keygate,
    core::{CacheConfig, Environment, Scope},
};
use tokio::task::JoinHandle;

/// Waits until `done` holds, failing after 10 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}

/// `n` requests with freshly forged keys, each sent on its own task.
fn flood(keys: &Keygate, app: &TestApp, n: usize) -> Vec<JoinHandle<Reply>> {
    (0..n)
        .map(|_| {
            let forged = keys.format().generate(Environment::Live).unwrap();
            let forged = forged.expose_secret().to_owned();
            let app = app.clone();
            tokio::spawn(async move { app.get("/notes", &forged).await })
        })
        .collect()
}

/// `GET /notes` with the real key while a flood holds its lookups: it gets
/// its own query within 10 s, not one queued behind the flood's.
async fn get_beside_the_flood(app: &TestApp, real: &str) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), app.get("/notes", real))
        .await
        .expect("the real key's lookup must not queue behind the flood")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_ids_cannot_starve_real_keys_of_the_pool() {
    let (store, absent) = AbsentLookups::store(Some(10));
    let keys = Keygate::builder(store.clone()).build();
    let bound = CacheConfig::default().max_unknown_lookups;
    assert!(bound < 10, "the default leaves pool capacity to real keys");
    let app = TestApp::new(&keys);
    // Issued through keygate and never used: not cached, but known to exist.
    let real = issue_scoped(&keys, [Scope::READ]).await;
    assert_eq!(keys.verifier().cached_keys(), 0);

    // The forger's queries are as slow as can be: they hold their
    // connection until the test lets go.
    absent.hold_unknown();
    let flood = flood(&keys, &app, 2000);
    // Everything past the bound fails fast, without waiting for the store.
    until("the flood to be answered or parked", || {
        flood.iter().filter(|t| t.is_finished()).count() >= 2000 - bound
    })
    .await;
    assert_eq!(absent.unknown_lookups_now(), bound);

    // With the flood still holding its share of the pool, a real key that
    // was never cached gets its query, and gets in.
    let reply = get_beside_the_flood(&app, &real).await;
    reply.assert_ok();
    assert_eq!(reply.text(), "user:u1 test key");

    absent.release_unknown();
    let (mut busy, mut unknown) = (0, 0);
    for task in flood {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                reply.assert_problem(503, "unavailable");
                assert!(reply.number("retry-after") >= 1);
                busy += 1;
            }
            StatusCode::UNAUTHORIZED => {
                reply.assert_unauthorized("invalid_key");
                unknown += 1;
            }
            other => panic!("a forged key got {other}: {reply:?}"),
        }
    }
    assert_eq!((busy, unknown), (2000 - bound, bound));
    assert_eq!(absent.unknown_lookups_max(), bound);
    assert_eq!(keys.verifier().lookups_in_flight(), 0);
    assert_eq!(app.hits(), 1, "only the real key reached a handler");
}

/// A restarted process reads the ids of the live keys in its store at
/// start, so real keys it has not seen yet do not share the forgers' small
/// share of lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_knows_the_keys_already_in_its_store() {
    let (store, absent) = AbsentLookups::store(Some(10));
    let before_restart = Keygate::builder(store.clone()).build();
    let real = issue_scoped(&before_restart, [Scope::READ]).await;
    let real_id = before_restart.format().parse(&real).unwrap().id();
    drop(before_restart);

    let keys = Keygate::builder(store.clone()).build();
    until("the live ids to be preloaded", || {
        keys.verifier().knows(real_id)
    })
    .await;
    let app = TestApp::new(&keys);
    let bound = keys.verifier().config().max_unknown_lookups;
    absent.hold_unknown();
    let flood = flood(&keys, &app, bound * 10);
    until("the flood to hold every share", || {
        absent.unknown_lookups_now() == bound
    })
    .await;
    let reply = get_beside_the_flood(&app, &real).await;
    reply.assert_ok();

    absent.release_unknown();
    for task in flood {
        let status = task.await.unwrap().status;
        assert!(
            matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::SERVICE_UNAVAILABLE
            ),
            "{status}"
        );
    }
}

/// The honest limit: a real key this node has no reason to believe exists
/// (created by another node after this one started, whose announcement has
/// not arrived, and not yet looked up) competes with the forged ids for
/// their small share, and during such a flood may get 503 — never 401 —
/// until the flood's lookups free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_this_node_never_heard_of_gets_503_not_401_during_the_flood() {
    let (store, absent) = AbsentLookups::store(Some(10));
    // As if its preload had run before the key below was created elsewhere.
    let keys = Keygate::builder(store.clone())
        .cache(CacheConfig {
            preload_known_ids: false,
            ..CacheConfig::default()
        })
        .build();
    let app = TestApp::new(&keys);
    let elsewhere = Keygate::builder(store.clone()).build();
    let stranger = issue_scoped(&elsewhere, [Scope::READ]).await;
    let stranger_id = keys.format().parse(&stranger).unwrap().id();
    assert!(!keys.verifier().knows(stranger_id));
    let bound = keys.verifier().config().max_unknown_lookups;

    absent.hold_unknown();
    let flood = flood(&keys, &app, bound);
    until("the flood to hold every share", || {
        absent.unknown_lookups_now() == bound
    })
    .await;
    app.get("/notes", &stranger)
        .await
        .assert_problem(503, "unavailable");

    absent.release_unknown();
    for task in flood {
        task.await.unwrap().assert_unauthorized("invalid_key");
    }
    app.get("/notes", &stranger).await.assert_ok();
}

#[tokio::test]
async fn requests_dropped_mid_lookup_leave_nothing_behind() {
    let (store, absent) = AbsentLookups::store(None);
    let config = CacheConfig {
        max_unknown_lookups: 5000,
        ..CacheConfig::default()
    };
    let keys = Keygate::builder(store.clone()).cache(config).build();
    let app = TestApp::new(&keys);
    absent.hold_unknown();
    // Each request is polled until its lookup waits on the store, then
    // dropped, as hyper drops it on a client reset or HTTP/2 RST_STREAM and
    // a timeout layer does when its deadline passes.
    for _ in 0..3000 {
        let forged = keys.format().generate(Environment::Live).unwrap();
        let mut request = pin!(app.get("/notes", forged.expose_secret()));
        let waiting = tokio::task::unconstrained(poll_fn(|cx| {
            Poll::Ready(request.as_mut().poll(cx).is_pending())
        }))
        .await;
        assert!(waiting, "the store never answers");
    }
    assert_eq!(store.calls(Op::Find), 3000);
    assert_eq!(keys.verifier().lookups_in_flight(), 0);
    assert_eq!(
        absent.unknown_lookups_now(),
        0,
        "the store queries went too"
    );
}
