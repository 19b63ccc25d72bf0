//! SQLite's change feed: two stores on separate pools over one file stand
//! for two processes sharing it (a server and the `keygate` CLI, say).
//! Needs no server.

use keygate_test_support::fixture;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use fixture::unique_suffix;
use keygate_core::{
    Invalidation, InvalidationFeed, KeyRecord, KeyStore, KeyUpdate, Owner, UsageDelta, usage_bucket,
};
use keygate_sqlx::SqliteStore;
use time::OffsetDateTime;

/// Deadline for a change to arrive; the feed polls every 20 ms here.
const WITHIN: Duration = Duration::from_secs(5);

/// The database file of one test, deleted when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("keygate-sqlite-feed-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    async fn store(&self) -> SqliteStore {
        SqliteStore::open(self.0.join("keygate.db"))
            .await
            .unwrap()
            .poll_changes_every(Duration::from_millis(20))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(key: &str) -> KeyRecord {
    fixture::record(key, &Owner::user("feed-test"), fixture::now_us())
}

async fn next(feed: &mut InvalidationFeed, within: Duration) -> Invalidation {
    match tokio::time::timeout(within, feed.recv()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!("the change feed ended"),
        Err(_) => panic!("no invalidation within {within:?}"),
    }
}

/// Subscribes, and waits until the feed is in effect (its first message is
/// `All`, sent once it knows where the log stands).
async fn polling(store: &SqliteStore) -> InvalidationFeed {
    let mut feed = store.subscribe().expect("a file-backed store has a feed");
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::All);
    feed
}

#[tokio::test]
async fn changes_made_by_another_process_reach_the_feed() {
    let db = TempDb::new();
    let (server, cli) = (db.store().await, db.store().await);
    let mut feed = polling(&server).await;

    let r = record("FeedKey001");
    cli.insert(&r).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(r.id));

    let started = Instant::now();
    cli.revoke(r.id, OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(r.id));
    let latency = started.elapsed();

    let rename = KeyUpdate {
        name: Some("renamed".to_owned()),
        ..KeyUpdate::default()
    };
    cli.update(r.id, &rename).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(r.id));
    // Each field an update can change, and a rotation, reach the feed.
    let changes = [
        KeyUpdate {
            scopes: Some(keygate_core::Scopes::parse_list("read").unwrap()),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            rate_limit: Some(None),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            allowed_ips: Some(Vec::new()),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            metadata: Some(keygate_core::Metadata::new()),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            expires_at: Some(None),
            ..KeyUpdate::default()
        },
    ];
    for change in &changes {
        cli.update(r.id, change).await.unwrap();
        assert_eq!(
            next(&mut feed, WITHIN).await,
            Invalidation::Key(r.id),
            "{change:?}"
        );
    }
    let live = record("FeedKey002");
    cli.insert(&live).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(live.id));
    let replacement = keygate_core::Replacement {
        id: "FeedKey003".parse().unwrap(),
        digest: live.digest,
        at: OffsetDateTime::now_utc(),
        grace_end: OffsetDateTime::now_utc(),
        default_expiry: None,
        max_expiry: None,
    };
    cli.rotate(live.id, &replacement).await.unwrap();
    let mut seen = [next(&mut feed, WITHIN).await, next(&mut feed, WITHIN).await];
    seen.sort_by_key(|i| format!("{i:?}"));
    let mut want = [
        Invalidation::Key(live.id),
        Invalidation::Key(replacement.id),
    ];
    want.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(seen, want);

    sqlx::query("DELETE FROM keygate_keys WHERE id = ?1")
        .bind(r.id.as_str())
        .execute(cli.pool())
        .await
        .unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(r.id));
    eprintln!("revocation reached the other store in {latency:?} (polling every 20 ms)");
}

#[tokio::test]
async fn usage_is_not_a_change() {
    let db = TempDb::new();
    let (server, cli) = (db.store().await, db.store().await);
    let (a, b) = (record("UsageKey01"), record("UsageKey02"));
    cli.insert(&a).await.unwrap();
    cli.insert(&b).await.unwrap();
    let mut feed = polling(&server).await;

    let now = OffsetDateTime::now_utc();
    let delta = UsageDelta {
        refused: Default::default(),
        key_id: a.id,
        family: a.family,
        bucket: usage_bucket(now),
        requests: 3,
        last_used_at: now,
    };
    cli.record_usage(&[delta]).await.unwrap();
    assert!(
        cli.find(a.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
    );
    // Then a real change: it is the first message, so usage sent none.
    cli.revoke(b.id, now).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(b.id));
}

#[tokio::test]
async fn changes_pruned_before_they_were_read_mean_all() {
    let db = TempDb::new();
    let (server, cli) = (db.store().await, db.store().await);
    let mut feed = polling(&server).await;

    // In one transaction, so the feed cannot read in between: two changes,
    // and the first one's log row gone, as pruning would leave it.
    let mut tx = cli.pool().begin().await.unwrap();
    for key in ["GapKey0001", "GapKey0002"] {
        sqlx::query(
            "INSERT INTO keygate_keys (id, family, owner, name, environment, digest, created_at) \
             VALUES (?1, ?1, 'user:gap', 'gap', 'live', zeroblob(32), 0)",
        )
        .bind(key)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM keygate_key_changes WHERE key_id = 'GapKey0001'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::All);

    // And it goes on from there.
    let r = record("AfterGap01");
    cli.insert(&r).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(r.id));
}

#[tokio::test]
async fn the_newest_changes_pruned_before_they_were_read_mean_all() {
    let db = TempDb::new();
    let (server, cli) = (db.store().await, db.store().await);
    let mut feed = polling(&server).await;

    // The revocation's log row is the newest, and gone before the feed
    // reads it (as when it was paused for longer than the retention).
    let r = record("PrunedLast");
    let mut tx = cli.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO keygate_keys (id, family, owner, name, environment, digest, created_at) \
         VALUES (?1, ?1, 'user:gap', 'gap', 'live', zeroblob(32), 0)",
    )
    .bind(r.id.as_str())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("DELETE FROM keygate_key_changes")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::All);
}

#[tokio::test]
async fn a_log_that_went_backwards_means_all() {
    let db = TempDb::new();
    let (server, cli) = (db.store().await, db.store().await);
    let mut feed = polling(&server).await;
    let first = record("Backwards1");
    cli.insert(&first).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(first.id));

    // As if the file were restored from a backup taken before that change.
    let mut tx = cli.pool().begin().await.unwrap();
    for sql in [
        "DELETE FROM keygate_key_changes",
        "UPDATE sqlite_sequence SET seq = 0 WHERE name = 'keygate_key_changes'",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::All);

    // It follows the log from where it now stands.
    let second = record("Backwards2");
    cli.insert(&second).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(second.id));
}

#[tokio::test]
async fn every_column_but_last_used_at_is_logged() {
    let db = TempDb::new();
    let store = db.store().await;
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('keygate_keys') ORDER BY cid")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let trigger: String = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'keygate_keys_updated'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let (_, listed) = trigger.split_once("UPDATE OF").unwrap();
    let (listed, _) = listed.split_once(" ON ").unwrap();
    let logged: Vec<&str> = listed.split(',').map(str::trim).collect();
    let want: Vec<&str> = columns
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "last_used_at")
        .collect();
    assert_eq!(
        logged, want,
        "a column added to keygate_keys must be added to the keygate_keys_updated trigger"
    );
}

#[tokio::test]
async fn in_memory_databases_and_opted_out_stores_have_no_feed() {
    let memory = SqliteStore::connect("sqlite::memory:").await.unwrap();
    assert!(memory.subscribe().is_none());
    let db = TempDb::new();
    assert!(db.store().await.without_change_feed().subscribe().is_none());
}

#[tokio::test]
async fn the_feed_ends_when_the_pool_closes() {
    let db = TempDb::new();
    let server = db.store().await;
    let mut feed = polling(&server).await;
    server.pool().close().await;
    let ended = tokio::time::timeout(WITHIN, feed.recv()).await;
    assert_eq!(ended, Ok(None), "the feed should end with its pool");
}

#[tokio::test]
async fn without_the_migration_the_feed_waits_and_recovers() {
    let db = TempDb::new();
    let path = db.0.join("keygate.db");
    // A database whose tables predate the change log: only 0001 and 0002.
    let server = db.store().await;
    for undo in [
        "DROP TRIGGER keygate_keys_inserted",
        "DROP TRIGGER keygate_keys_updated",
        "DROP TRIGGER keygate_keys_deleted",
        "DROP TABLE keygate_key_changes",
    ] {
        sqlx::query(undo).execute(server.pool()).await.unwrap();
    }
    sqlx::query("DELETE FROM keygate_migrations WHERE version = 3")
        .execute(server.pool())
        .await
        .unwrap();
    let mut feed = server.subscribe().unwrap();
    // Nothing to read yet: no message, and no panic.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), feed.recv())
            .await
            .is_err()
    );
    // `keygate migrate` runs (here: opening the file migrates it).
    let cli = SqliteStore::open(&path).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::All);
    let r = record("Migrated01");
    cli.insert(&r).await.unwrap();
    assert_eq!(next(&mut feed, WITHIN).await, Invalidation::Key(r.id));
}
