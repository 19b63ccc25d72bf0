//! Cross-node invalidation over PostgreSQL LISTEN/NOTIFY: two stores on
//! separate pools stand for two nodes sharing one database.
//!
//! Needs `KEYGATE_TEST_POSTGRES_URL`; without it each test prints
//! `skipped <test>: …` and passes (outside CI).

use std::time::{Duration, Instant};

use keygate_core::{Invalidation, InvalidationFeed, KeyRecord, KeyStore, KeyUpdate, Owner};
use keygate_sqlx::{PostgresStore, sqlx};
use keygate_test_support::{
    env::postgres_url,
    fixture::{self, Fixture, unique_suffix},
    sql::{drop_schema_later, fresh_schema, postgres_pool},
};
use time::OffsetDateTime;

/// Node A publishes, node B listens. `b_app` is B's `application_name`.
struct Nodes {
    a: PostgresStore,
    b: PostgresStore,
    b_app: String,
}

async fn two_nodes() -> Option<Fixture<Nodes>> {
    let url = postgres_url()?;
    let schema = fresh_schema();
    let b_app = format!("keygate_test_b_{}", unique_suffix());
    let a = PostgresStore::new(postgres_pool(&url, "keygate_test_a").await)
        .with_schema(schema.clone())
        .unwrap();
    let b = PostgresStore::new(postgres_pool(&url, &b_app).await)
        .with_schema(schema.clone())
        .unwrap();
    let fixture = Fixture::new(Nodes { a, b, b_app }, drop_schema_later(url, schema));
    fixture.store.a.migrate().await.unwrap();
    fixture.store.b.migrate().await.unwrap();
    Some(fixture)
}

fn record(key: &str) -> KeyRecord {
    fixture::record(key, &Owner::user("node-test"), now())
}

fn now() -> OffsetDateTime {
    fixture::now_us()
}

/// The next message, failing the test if none comes in time.
async fn next(feed: &mut InvalidationFeed, within: Duration) -> Invalidation {
    match tokio::time::timeout(within, feed.recv()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!("the invalidation feed ended"),
        Err(_) => panic!("no invalidation within {within:?}"),
    }
}

/// Skips messages until `want` arrives.
async fn wait_for(feed: &mut InvalidationFeed, want: Invalidation, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if next(feed, left).await == want {
            return;
        }
    }
}

/// Subscribes, and waits until the listener is in effect (its first message
/// is `All`, sent once LISTEN has taken effect).
async fn listening(store: &PostgresStore) -> InvalidationFeed {
    let mut feed = store.subscribe().expect("PostgresStore offers a feed");
    assert_eq!(
        next(&mut feed, Duration::from_secs(10)).await,
        Invalidation::All
    );
    feed
}

#[tokio::test]
async fn revocations_reach_the_other_node_quickly() {
    let Some(nodes) = two_nodes().await else {
        return;
    };
    let Nodes { a, b, .. } = &nodes.store;
    let mut feed = listening(b).await;
    let mut latencies = Vec::with_capacity(200);
    for i in 0..200 {
        let r = record(&format!("Lat{i:07}"));
        a.insert(&r).await.unwrap();
        wait_for(&mut feed, Invalidation::Key(r.id), Duration::from_secs(5)).await;
        let start = Instant::now();
        a.revoke(r.id, now()).await.unwrap().unwrap();
        wait_for(&mut feed, Invalidation::Key(r.id), Duration::from_secs(5)).await;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "invalidation propagation, {} revocations (revoke call → other node's feed): \
         p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() - 1],
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}

#[tokio::test]
async fn updates_and_inserts_are_published_too() {
    let Some(nodes) = two_nodes().await else {
        return;
    };
    let Nodes { a, b, .. } = &nodes.store;
    let mut feed = listening(b).await;
    let r = record("Published1");
    a.insert(&r).await.unwrap();
    assert_eq!(
        next(&mut feed, Duration::from_secs(5)).await,
        Invalidation::Key(r.id)
    );
    let rename = KeyUpdate {
        name: Some("renamed".into()),
        ..KeyUpdate::default()
    };
    a.update(r.id, &rename).await.unwrap();
    assert_eq!(
        next(&mut feed, Duration::from_secs(5)).await,
        Invalidation::Key(r.id)
    );
    // Nothing is published for what did not change anything.
    assert!(a.update(record("NotThere01").id, &rename).await.is_err());
    assert_eq!(
        a.revoke(record("NotThere01").id, now()).await.unwrap(),
        None
    );
    a.revoke(r.id, now()).await.unwrap().unwrap();
    assert_eq!(
        next(&mut feed, Duration::from_secs(5)).await,
        Invalidation::Key(r.id)
    );
}

#[tokio::test]
async fn a_lost_listener_reconnects_and_says_all() {
    let Some(nodes) = two_nodes().await else {
        return;
    };
    let Nodes { a, b, b_app } = &nodes.store;
    let mut feed = listening(b).await;
    let before = record("BeforeKill");
    a.insert(&before).await.unwrap();
    wait_for(
        &mut feed,
        Invalidation::Key(before.id),
        Duration::from_secs(5),
    )
    .await;

    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1 AND query ILIKE 'LISTEN%' AND strpos(query, $2) > 0",
    )
    .bind(b_app)
    .bind(b.channel())
    .fetch_one(a.pool())
    .await
    .unwrap();
    assert_eq!(killed, 1, "exactly the listener's backend is terminated");
    let start = Instant::now();
    wait_for(&mut feed, Invalidation::All, Duration::from_secs(10)).await;
    eprintln!("listener back after {:?}", start.elapsed());

    let after = record("AfterKill1");
    a.insert(&after).await.unwrap();
    a.revoke(after.id, now()).await.unwrap().unwrap();
    wait_for(
        &mut feed,
        Invalidation::Key(after.id),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn a_slow_consumer_gets_all_instead_of_an_unbounded_backlog() {
    let Some(nodes) = two_nodes().await else {
        return;
    };
    let Nodes { a, b, .. } = &nodes.store;
    let mut feed = listening(b).await;
    // 1100 distinct notifications in one transaction, while nobody reads.
    sqlx::query(
        "SELECT pg_notify($1, 'N' || lpad(i::text, 9, '0')) FROM generate_series(1, 1100) AS i",
    )
    .bind(b.channel())
    .execute(a.pool())
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut messages = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), feed.recv()).await {
        messages.push(msg);
    }
    let all_at = messages
        .iter()
        .position(|m| *m == Invalidation::All)
        .unwrap_or_else(|| panic!("no All among {} messages", messages.len()));
    assert_eq!(all_at, 1024, "the feed held 1024 keys, then said All");
    assert!(
        messages[..all_at]
            .iter()
            .zip(1..)
            .all(|(m, i)| *m == Invalidation::Key(format!("N{i:09}").parse().unwrap()))
    );

    let r = record("AfterFlood");
    a.insert(&r).await.unwrap();
    wait_for(&mut feed, Invalidation::Key(r.id), Duration::from_secs(5)).await;
}

#[tokio::test]
async fn schemas_do_not_hear_each_other() {
    let (Some(x), Some(y)) = (two_nodes().await, two_nodes().await) else {
        return;
    };
    assert_ne!(x.store.a.channel(), y.store.a.channel());
    let mut x_feed = listening(&x.store.b).await;
    let mut y_feed = listening(&y.store.b).await;
    let r = record("OnlyInX001");
    x.store.a.insert(&r).await.unwrap();
    x.store.a.revoke(r.id, now()).await.unwrap().unwrap();
    wait_for(&mut x_feed, Invalidation::Key(r.id), Duration::from_secs(5)).await;
    let heard = tokio::time::timeout(Duration::from_millis(300), y_feed.recv()).await;
    assert!(heard.is_err(), "schema y heard {heard:?}");
    assert_eq!(y.store.a.find(r.id).await.unwrap(), None);
}

#[tokio::test]
async fn the_feed_ends_when_the_pool_closes() {
    let Some(nodes) = two_nodes().await else {
        return;
    };
    let mut feed = listening(&nodes.store.b).await;
    nodes.store.b.pool().close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
    assert_eq!(end, Ok(None));
}
