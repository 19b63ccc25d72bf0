//! Usage credits through a real router: a metered key is admitted exactly
//! as often as its balance pays for, refused with 429 `usage_exceeded`
//! after, refilled on time, all-or-nothing with its rate limit, and refunded
//! when a request it paid for is refused or cancelled. On memory, SQLite and
//! PostgreSQL (`KEYGATE_TEST_POSTGRES_URL`).

mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use common::{Failure, Hits, Op, TestStore, bare, issue, keyed, routes, send};
use http::{Method, StatusCode};
use keygate::{
    ApiKey, Keygate,
    core::{
        CreditUpdate, DynKeyStore, FakeClock, KeyId, MemoryStore, NewKey, Owner, Quota, Refill,
        Scope,
    },
};
use keygate_test_support::{fixture::TempSqlite, sql};
use time::macros::datetime;

fn metered(credits: u64) -> NewKey {
    NewKey::new(Owner::user("metered"), "metered key")
        .scopes([Scope::READ, Scope::WRITE])
        .credits(credits)
}

fn app(keys: &Keygate) -> Router {
    routes(&Hits::default()).layer(keys.layer())
}

/// Fires `n` GETs at once and returns their answers.
async fn burst(router: &Router, key: &str, n: usize) -> Vec<common::Reply> {
    let sends = (0..n).map(|_| send(router, keyed(Method::GET, "/notes", key)));
    futures_util::future::join_all(sends).await
}

/// `n` credits admit exactly `n` of many concurrent requests, each seeing a
/// different balance, and refuse the rest with `usage_exceeded`.
async fn exactly_the_balance_is_admitted(store: Arc<dyn DynKeyStore>) {
    let keys = Keygate::builder_from_arc(store)
        .default_rate_limit(Quota::per_second(10_000))
        .build();
    let key = issue(&keys, metered(20)).await;
    let router = app(&keys);
    let replies = burst(&router, &key, 60).await;
    let admitted: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(admitted.len(), 20, "20 credits admit exactly 20 requests");
    let balances: BTreeSet<u64> = admitted
        .iter()
        .map(|r| r.number("x-credits-remaining"))
        .collect();
    assert_eq!(
        balances,
        (0..20).collect(),
        "every admitted request saw its own balance"
    );
    for refused in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code(), "usage_exceeded");
        assert_eq!(refused.number("x-credits-remaining"), 0);
        assert_eq!(refused.json()["credits_remaining"], 0);
        assert!(
            refused.header("retry-after").is_none(),
            "no refill: no time to come back"
        );
        assert!(refused.header("ratelimit-remaining").is_none());
    }
    let id = keys.format().parse(&key).unwrap().id();
    assert_eq!(
        keys.manager().credits(id).await.unwrap().unwrap().remaining,
        0
    );
}

#[tokio::test]
async fn memory_admits_exactly_the_balance_under_concurrency() {
    exactly_the_balance_is_admitted(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_admits_exactly_the_balance_under_concurrency() {
    let fixture = sql::sqlite().await.unwrap();
    exactly_the_balance_is_admitted(Arc::new(fixture.store.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_admits_exactly_the_balance_under_concurrency() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    exactly_the_balance_is_admitted(Arc::new(fixture.store.clone())).await;
}

/// Two layers over one PostgreSQL database, as two nodes: between them,
/// no more requests than the balance pays for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_postgres_never_admit_more_than_the_balance() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    let node = || {
        Keygate::builder(fixture.store.clone())
            .default_rate_limit(Quota::per_second(10_000))
            .build()
    };
    let (a, b) = (node(), node());
    let key = issue(&a, metered(30)).await;
    let (ra, rb) = (app(&a), app(&b));
    let (sa, sb) = tokio::join!(burst(&ra, &key, 40), burst(&rb, &key, 40));
    let admitted = sa
        .iter()
        .chain(&sb)
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        admitted, 30,
        "30 credits admit 30 requests across two nodes"
    );
}

#[tokio::test]
async fn an_exhausted_key_is_told_when_its_credits_refill() {
    let clock = FakeClock::new(datetime!(2030-05-17 23:59:50 UTC));
    let keys = Keygate::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let key = issue(&keys, metered(2).refill(Refill::daily(2).unwrap())).await;
    let router = app(&keys);
    for left in [1, 0] {
        let ok = send(&router, keyed(Method::GET, "/notes", &key)).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.number("x-credits-remaining"), left);
    }
    let refused = send(&router, keyed(Method::GET, "/notes", &key)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "usage_exceeded");
    assert_eq!(refused.number("retry-after"), 10, "midnight is 10 s away");
    assert_eq!(refused.json()["retry_after"], 10);
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("refill in 10 seconds"),
        "{}",
        refused.text()
    );
    // Midnight: whole again, even though the refusal is remembered.
    clock.advance(Duration::from_secs(10));
    let ok = send(&router, keyed(Method::GET, "/notes", &key)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.number("x-credits-remaining"), 1);
}

#[tokio::test]
async fn credits_and_the_rate_limit_are_all_or_nothing() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let key = issue(&keys, metered(1).rate_limit(Quota::per_hour(2))).await;
    let id = keys.format().parse(&key).unwrap().id();
    let router = app(&keys);
    let get = || send(&router, keyed(Method::GET, "/notes", &key));
    assert_eq!(get().await.status, StatusCode::OK);
    // No credits: refused without touching the quota (1 of 2 used).
    let broke = get().await;
    assert_eq!(broke.code(), "usage_exceeded");
    keys.manager()
        .update_credits(id, CreditUpdate::add(5))
        .await
        .unwrap();
    assert_eq!(
        get().await.status,
        StatusCode::OK,
        "the quota's 2nd request"
    );
    // The quota refuses: the request pays no credits.
    let limited = get().await;
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.header("x-credits-remaining").is_none());
    let balance = keys.manager().credits(id).await.unwrap().unwrap();
    assert_eq!(
        balance.remaining, 4,
        "5 topped up, 1 spent, the refusal refunded"
    );
    // A flood while limited costs nothing either, and never reaches the bank.
    for _ in 0..20 {
        assert_eq!(get().await.code(), "rate_limited");
    }
    assert_eq!(
        keys.manager().credits(id).await.unwrap().unwrap().remaining,
        4
    );
}

#[tokio::test]
async fn a_flood_from_an_exhausted_key_costs_no_store_round_trip_per_request() {
    let store = TestStore::memory();
    // A clock that stands still: the hint lasts a second, however slow
    // the machine running the test.
    let keys = Keygate::builder(store.clone())
        .clock(FakeClock::starting_now())
        .build();
    let key = issue(&keys, metered(1)).await;
    let router = app(&keys);
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .status,
        StatusCode::OK
    );
    let before = store.calls(Op::Credits);
    for _ in 0..200 {
        let r = send(&router, keyed(Method::GET, "/notes", &key)).await;
        assert_eq!(r.code(), "usage_exceeded");
    }
    // One refused charge teaches the layer.
    assert!(
        store.calls(Op::Credits) - before <= 1,
        "{} charges for 200 refusals",
        store.calls(Op::Credits) - before
    );
}

#[tokio::test]
async fn routes_declare_their_cost_and_nested_layers_charge_only_the_difference() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let key = issue(&keys, metered(12)).await;
    let id = keys.format().parse(&key).unwrap().id();
    // Costly routes under a layer of their own…
    let own = Router::new()
        .route("/report", get(|| async { "report" }))
        .route_layer(keys.layer().cost(5))
        .merge(
            Router::new()
                .route("/cheap", get(|| async { "cheap" }))
                .route_layer(keys.layer()),
        );
    let r = send(&own, keyed(Method::GET, "/report", &key)).await;
    assert_eq!(
        (r.status, r.number("x-credits-remaining")),
        (StatusCode::OK, 7)
    );
    let r = send(&own, keyed(Method::GET, "/report", &key)).await;
    assert_eq!(r.number("x-credits-remaining"), 2);
    let r = send(&own, keyed(Method::GET, "/report", &key)).await;
    assert_eq!(r.code(), "usage_exceeded");
    assert_eq!(
        (
            r.json()["credits_remaining"].clone(),
            r.json()["cost"].clone()
        ),
        (2.into(), 5.into())
    );
    let r = send(&own, keyed(Method::GET, "/cheap", &key)).await;
    assert_eq!(r.number("x-credits-remaining"), 1);

    // …or nested under a layer on the whole router: 5 in all, not 6.
    keys.manager()
        .update_credits(id, CreditUpdate::set(12))
        .await
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_in = Arc::clone(&seen);
    let nested = Router::new()
        .route(
            "/report",
            get(move |key: ApiKey| async move {
                *seen_in.lock().unwrap() = key.credits_remaining();
                "report"
            })
            .route_layer(keys.layer().cost(5)),
        )
        .route("/cheap", get(|| async { "cheap" }))
        .layer(keys.layer());
    let r = send(&nested, keyed(Method::GET, "/report", &key)).await;
    assert_eq!(
        (r.status, r.number("x-credits-remaining")),
        (StatusCode::OK, 7)
    );
    assert_eq!(
        *seen.lock().unwrap(),
        Some(7),
        "the handler sees the later balance"
    );
    let r = send(&nested, keyed(Method::GET, "/cheap", &key)).await;
    assert_eq!(r.number("x-credits-remaining"), 6);
    send(&nested, keyed(Method::GET, "/report", &key)).await;
    // 1 left: the outer layer takes it, the inner cannot get 4 more, and
    // the refused request is refunded whole.
    let r = send(&nested, keyed(Method::GET, "/report", &key)).await;
    assert_eq!(r.code(), "usage_exceeded");
    assert_eq!(
        keys.manager().credits(id).await.unwrap().unwrap().remaining,
        1
    );
}

#[tokio::test]
async fn keys_without_credits_are_not_charged_or_told_about_credits() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let key = issue(
        &keys,
        NewKey::new(Owner::user("free"), "free").scopes([Scope::READ]),
    )
    .await;
    let router = Router::new()
        .route("/report", get(|| async { "report" }))
        .route_layer(keys.layer().cost(1_000));
    for _ in 0..5 {
        let r = send(&router, keyed(Method::GET, "/report", &key)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("x-credits-remaining").is_none());
    }
    // Missing, malformed and unknown keys get their usual 401s.
    assert_eq!(
        send(&router, bare(Method::GET, "/report")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_bank_that_cannot_answer_is_a_503_never_a_free_request() {
    let store = TestStore::memory();
    let keys = Keygate::builder(store.clone()).build();
    let key = issue(&keys, metered(5)).await;
    let hits = Hits::default();
    let router = routes(&hits).layer(keys.layer());
    store.fail(Op::Credits, Failure::Unavailable);
    let r = send(&router, keyed(Method::GET, "/notes", &key)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "unavailable");
    assert!(!r.text().contains("test outage"), "no store detail leaks");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    store.heal();
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_while_it_pays_is_refunded() {
    let store = TestStore::memory();
    let keys = Keygate::builder(store.clone()).build();
    let key = issue(&keys, metered(3)).await;
    let id = keys.format().parse(&key).unwrap().id();
    let router = app(&keys);
    store.delay(Op::Credits, Duration::from_millis(200));
    // The client gives up while the charge is in flight.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        send(&router, keyed(Method::GET, "/notes", &key)),
    )
    .await;
    assert!(gave_up.is_err(), "the request was still paying");
    store.delay(Op::Credits, Duration::ZERO);
    let refunded = async {
        loop {
            let balance = keys.manager().credits(id).await.unwrap().unwrap();
            if balance.remaining == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refunded)
        .await
        .expect("the cancelled request's credit comes back");
}

#[tokio::test]
async fn a_metered_keys_children_spend_its_balance() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let parent = keys
        .manager()
        .create(metered(3).scopes([Scope::READ, Scope::WRITE, Scope::from_static("keys:manage")]))
        .await
        .unwrap();
    let grantor = keygate::core::Grantor::new(&parent.record, None);
    let child = keys
        .manager()
        .create_as(
            &grantor,
            NewKey::new(Owner::user("metered"), "child").scopes([Scope::READ]),
        )
        .await
        .unwrap();
    assert_eq!(child.record.credit_account, parent.record.credit_account);
    // A child asking for credits of its own would mint them: refused.
    let minted = keys
        .manager()
        .create_as(
            &grantor,
            NewKey::new(Owner::user("metered"), "rich").credits(1_000_000),
        )
        .await;
    assert!(minted.is_err(), "{minted:?}");
    let router = app(&keys);
    let (p, c) = (parent.key.expose_secret(), child.key.expose_secret());
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", c))
            .await
            .number("x-credits-remaining"),
        2
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", p))
            .await
            .number("x-credits-remaining"),
        1
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", c))
            .await
            .number("x-credits-remaining"),
        0
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", p)).await.code(),
        "usage_exceeded"
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", c)).await.code(),
        "usage_exceeded"
    );
}

#[tokio::test]
async fn a_restart_neither_refunds_nor_loses_credits() {
    let file = TempSqlite::new("keygate_credits_restart");
    let open = || async {
        let store = keygate_sqlx::SqliteStore::connect(&file.url())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Keygate::builder(store).build()
    };
    let first = open().await;
    let key = issue(&first, metered(5)).await;
    let router = app(&first);
    for left in [4, 3] {
        let r = send(&router, keyed(Method::GET, "/notes", &key)).await;
        assert_eq!(r.number("x-credits-remaining"), left);
    }
    drop(router);
    drop(first);
    let second = open().await;
    let router = app(&second);
    let r = send(&router, keyed(Method::GET, "/notes", &key)).await;
    assert_eq!(
        r.number("x-credits-remaining"),
        2,
        "the restart kept the balance"
    );
}

/// Metering an existing key through the manager takes effect on the next
/// request, and a top-up clears a remembered refusal at once.
#[tokio::test]
async fn metering_and_top_ups_take_effect_at_once() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let key = issue(
        &keys,
        NewKey::new(Owner::user("later"), "later").scopes([Scope::READ]),
    )
    .await;
    let id: KeyId = keys.format().parse(&key).unwrap().id();
    let router = app(&keys);
    assert!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .header("x-credits-remaining")
            .is_none()
    );
    keys.manager()
        .update_credits(id, CreditUpdate::set(1))
        .await
        .unwrap();
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .number("x-credits-remaining"),
        0
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .code(),
        "usage_exceeded"
    );
    keys.manager()
        .update_credits(id, CreditUpdate::add(1))
        .await
        .unwrap();
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .status,
        StatusCode::OK
    );
}

/// The key's hourly history counts its holder's refusals by reason beside
/// its admitted requests; forged secrets for its id add nothing.
#[tokio::test]
async fn usage_history_counts_refusals_by_reason() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let key = issue(
        &keys,
        NewKey::new(Owner::user("history"), "history")
            .scopes([Scope::READ])
            .credits(2)
            .rate_limit(Quota::per_hour(3)),
    )
    .await;
    let id = keys.format().parse(&key).unwrap().id();
    let router = app(&keys);
    let forged = common::forge(&key);
    let mut codes = Vec::new();
    for (method, key) in [
        (Method::GET, &key),
        (Method::POST, &key),
        (Method::GET, &key),
        (Method::GET, &key),
        (Method::GET, &forged),
    ] {
        let r = send(&router, keyed(method, "/notes", key)).await;
        codes.push(if r.status == StatusCode::OK {
            "ok".to_owned()
        } else {
            r.code()
        });
    }
    assert_eq!(
        codes,
        [
            "ok",
            "insufficient_scope",
            "ok",
            "usage_exceeded",
            "invalid_key"
        ]
    );
    keys.manager()
        .update_credits(id, CreditUpdate::add(10))
        .await
        .unwrap();
    // The quota's 3rd request, then its refusal.
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .code(),
        "rate_limited"
    );
    keys.manager().revoke(id).await.unwrap();
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", &key))
            .await
            .code(),
        "revoked_key"
    );
    keys.verifier().flush_usage().await.unwrap();
    let since = keygate::core::time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let history = keys.manager().usage(id, since).await.unwrap();
    let requests: u64 = history.iter().map(|b| b.requests).sum();
    let mut refused = keygate::core::Refusals::default();
    for b in &history {
        refused.add(&b.refused);
    }
    assert_eq!(requests, 3);
    assert_eq!(
        (
            refused.forbidden,
            refused.usage_exceeded,
            refused.rate_limited,
            refused.revoked,
            refused.expired
        ),
        (1, 1, 1, 1, 0),
        "{history:?}"
    );
}

/// Two nodes keeping balances in Redis (`KEYGATE_TEST_REDIS_URL`), each
/// with a bank of its own over one Redis, the keys in one shared store:
/// between them, exactly the balance is admitted, and every node's
/// manager reads the same balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_redis_credits_admit_exactly_the_balance() {
    let Some(banks) = keygate_test_support::redis::credit_banks().await else {
        return;
    };
    let store = MemoryStore::new();
    let node = |bank: &Arc<dyn keygate::core::CreditBank>| {
        Keygate::builder(store.clone())
            .credit_bank(Arc::clone(bank))
            .default_rate_limit(Quota::per_second(10_000))
            .build()
    };
    let (a, b) = (node(&banks.store.a), node(&banks.store.b));
    let key = issue(&a, metered(25)).await;
    let id = a.format().parse(&key).unwrap().id();
    let (ra, rb) = (app(&a), app(&b));
    let (sa, sb) = tokio::join!(burst(&ra, &key, 40), burst(&rb, &key, 40));
    let admitted: Vec<u64> = sa
        .iter()
        .chain(&sb)
        .filter(|r| r.status == StatusCode::OK)
        .map(|r| r.number("x-credits-remaining"))
        .collect();
    assert_eq!(
        admitted.len(),
        25,
        "25 credits admit 25 requests across two nodes"
    );
    assert_eq!(
        admitted.iter().copied().collect::<BTreeSet<_>>(),
        (0..25).collect(),
        "each admitted request saw its own balance"
    );
    assert_eq!(b.manager().credits(id).await.unwrap().unwrap().remaining, 0);
    b.manager()
        .update_credits(id, CreditUpdate::add(1))
        .await
        .unwrap();
    assert_eq!(a.manager().credits(id).await.unwrap().unwrap().remaining, 1);
}

/// Expiry is exact even when the bank takes time to answer: a key that
/// expires during its charge is refused, and the charge given back.
#[tokio::test]
async fn a_key_that_expires_while_the_bank_answers_is_refused_and_refunded() {
    let clock = FakeClock::starting_now();
    let store = TestStore::memory();
    let keys = Keygate::builder(store.clone()).clock(clock.clone()).build();
    let created = keys
        .manager()
        .create(metered(5).expires_in(Duration::from_secs(1)))
        .await
        .unwrap();
    // From now on every bank operation takes 600 ms.
    let lag = clock.clone();
    store.after(Op::Credits, move |_| {
        let clock = lag.clone();
        Box::pin(async move { clock.advance(Duration::from_millis(600)) })
    });
    let key = created.key.expose_secret();
    let router = app(&keys);
    // Asked at 0, answered at 600 ms.
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", key))
            .await
            .status,
        StatusCode::OK
    );
    // Asked at 600 ms, answered at 1 200 ms: expired meanwhile.
    let r = send(&router, keyed(Method::GET, "/notes", key)).await;
    assert_eq!(r.code(), "expired_key");
    let balance = keys
        .manager()
        .credits(created.record.id)
        .await
        .unwrap()
        .unwrap();
    // The refund is a bank operation too (another 600 ms): 5 − 1 admitted.
    assert_eq!(balance.remaining, 4, "the expired request paid nothing");
}

/// Metering a key later meters what it made and what replaced it, so a
/// delegated key is never less limited than its creator.
#[tokio::test]
async fn metering_a_key_later_meters_its_children_and_successors() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let parent = keys
        .manager()
        .create(
            NewKey::new(Owner::user("later"), "parent")
                .scopes([Scope::READ, Scope::from_static("keys:manage")]),
        )
        .await
        .unwrap();
    let grantor = keygate::core::Grantor::new(&parent.record, None);
    let child = keys
        .manager()
        .create_as(
            &grantor,
            NewKey::new(Owner::user("later"), "child").scopes([Scope::READ]),
        )
        .await
        .unwrap();
    let child_grantor = keygate::core::Grantor::new(&child.record, None);
    let grandchild = keys
        .manager()
        .create_as(
            &child_grantor,
            NewKey::new(Owner::user("later"), "grandchild").scopes([Scope::READ]),
        )
        .await
        .unwrap();
    assert_eq!(child.record.credit_account, None);
    // The parent is rotated, then its old key is metered.
    let rotated = keys
        .manager()
        .rotate(parent.record.id, Duration::from_secs(3600))
        .await
        .unwrap();
    keys.manager()
        .update_credits(parent.record.id, CreditUpdate::set(2))
        .await
        .unwrap();
    let account = Some(parent.record.family);
    for id in [rotated.record.id, child.record.id, grandchild.record.id] {
        let record = keys.manager().get(id).await.unwrap().unwrap();
        assert_eq!(
            record.credit_account, account,
            "{id} spends the parent's credits"
        );
    }
    let router = app(&keys);
    let (c, g) = (child.key.expose_secret(), grandchild.key.expose_secret());
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", c))
            .await
            .number("x-credits-remaining"),
        1
    );
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", g))
            .await
            .number("x-credits-remaining"),
        0
    );
    assert_eq!(
        send(
            &router,
            keyed(Method::GET, "/notes", rotated.key.expose_secret())
        )
        .await
        .code(),
        "usage_exceeded"
    );
}

/// A key that gave its children credits of their own while it was not
/// metered cannot keep them out of its balance once it is metered, and its
/// old key in a rotation's grace period is metered with it.
#[tokio::test]
async fn metering_reaches_self_credited_children_and_old_keys_in_their_grace_period() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let parent = keys
        .manager()
        .create(
            NewKey::new(Owner::user("escape"), "parent")
                .scopes([Scope::READ, Scope::from_static("keys:manage")]),
        )
        .await
        .unwrap();
    let grantor = keygate::core::Grantor::new(&parent.record, None);
    let rich = keys
        .manager()
        .create_as(
            &grantor,
            NewKey::new(Owner::user("escape"), "rich")
                .scopes([Scope::READ])
                .credits(keygate::core::MAX_CREDITS),
        )
        .await
        .unwrap();
    assert_eq!(rich.record.credit_account, Some(rich.record.family));
    let successor = keys
        .manager()
        .rotate(parent.record.id, Duration::from_secs(3600))
        .await
        .unwrap();
    // The admin meters the key in use now.
    keys.manager()
        .update_credits(successor.record.id, CreditUpdate::set(1))
        .await
        .unwrap();
    let router = app(&keys);
    let old = parent.key.expose_secret();
    assert_eq!(
        send(&router, keyed(Method::GET, "/notes", old))
            .await
            .number("x-credits-remaining"),
        0
    );
    let r = send(
        &router,
        keyed(Method::GET, "/notes", rich.key.expose_secret()),
    )
    .await;
    assert_eq!(r.code(), "usage_exceeded", "the child's own 10^15 is gone");
}

/// A request a nested layer refuses for scope gets back what the layer
/// further out charged.
#[tokio::test]
async fn a_nested_scope_refusal_is_refunded() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let key = issue(&keys, metered(3)).await;
    let id = keys.format().parse(&key).unwrap().id();
    let router = Router::new()
        .route(
            "/billing",
            get(|| async { "invoices" }).route_layer(
                keys.layer()
                    .require_scope(Scope::from_static("billing:read")),
            ),
        )
        .layer(keys.layer());
    let r = send(&router, keyed(Method::GET, "/billing", &key)).await;
    assert_eq!(r.code(), "insufficient_scope");
    assert_eq!(
        keys.manager().credits(id).await.unwrap().unwrap().remaining,
        3
    );
}

/// Under a nested costlier layer, a key that cannot pay the whole cost is
/// refused from memory after the first refusal: each later request costs
/// the outer layer's charge and its refund, not also a refused charge, and
/// the balance is left whole.
#[tokio::test]
async fn a_nested_costlier_layer_remembers_a_balance_too_low_for_it() {
    let store = TestStore::memory();
    let keys = Keygate::builder(store.clone())
        .clock(FakeClock::starting_now())
        .build();
    let key = issue(&keys, metered(5)).await;
    let id = keys.format().parse(&key).unwrap().id();
    let router = Router::new()
        .route(
            "/report",
            get(|| async { "report" }).route_layer(keys.layer().cost(10)),
        )
        .layer(keys.layer());
    let before = store.calls(Op::Credits);
    for _ in 0..50 {
        let r = send(&router, keyed(Method::GET, "/report", &key)).await;
        assert_eq!(r.code(), "usage_exceeded");
        assert_eq!(r.json()["credits_remaining"], 5);
    }
    let calls = store.calls(Op::Credits) - before;
    assert_eq!(calls, 3 + 49 * 2, "bank calls for 50 refusals");
    assert_eq!(
        keys.manager().credits(id).await.unwrap().unwrap().remaining,
        5
    );
}
