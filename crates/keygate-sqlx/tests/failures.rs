//! What the SQL stores do when things go wrong: rows keygate cannot read are
//! `Corrupt` (never a panic), an unreachable database is `Unavailable`
//! (never "no such key"), and migrations keep to their own table.

use keygate_test_support::{env, fixture, sql};

use std::{sync::Arc, time::Duration};

use keygate_core::{
    AuditAction, AuditEvent, AuditLog, AuditQuery, AuditStore, KeyId, KeyRecord, KeyStore,
    KeyUpdate, Owner, Page, Replacement, StoreError, UsageDelta,
};
use keygate_sqlx::{
    PostgresStore, SqliteStore,
    sqlx::{self, AssertSqlSafe, postgres::PgPoolOptions},
};
use time::macros::datetime;

fn record(key: &str) -> KeyRecord {
    KeyRecord {
        expires_at: Some(datetime!(2030-02-01 0:00 UTC)),
        ..fixture::record(key, &Owner::user("corrupt"), datetime!(2030-01-01 0:00 UTC))
    }
}

/// Damages one column of a stored record with `damage` (SQL run with the
/// key's id as its only parameter), then checks every read that returns the
/// row reports `Corrupt` naming that column.
async fn assert_reads_are_corrupt<S: KeyStore>(
    store: &S,
    damage: impl AsyncFn(&str, KeyId),
    cases: &[(&str, &str)],
) {
    for (i, (column, sql)) in cases.iter().enumerate() {
        let r = record(&format!("Corrupt{i:03}"));
        store.insert(&r).await.unwrap();
        damage(sql, r.id).await;
        let expect_corrupt = |what: &str, result: Result<(), StoreError>| match result {
            Err(StoreError::Corrupt(msg)) => {
                assert!(
                    msg.contains(column),
                    "{what} after damaging {column}: {msg}"
                );
            }
            other => panic!("{what} after damaging {column}: expected Corrupt, got {other:?}"),
        };
        if *column == "id" {
            assert_eq!(store.find(r.id).await.unwrap(), None);
        } else {
            expect_corrupt("find", store.find(r.id).await.map(drop));
        }
        if *column != "owner" {
            expect_corrupt(
                "list_by_owner",
                store
                    .list_by_owner(&r.owner, Page::default())
                    .await
                    .map(drop),
            );
        }
        expect_corrupt(
            "list_expiring",
            store
                .list_expiring(datetime!(2031-01-01 0:00 UTC), 10)
                .await
                .map(drop),
        );
        // Remove the damaged row so the next case's listings see only theirs.
        damage(
            "DELETE FROM keygate_keys WHERE id = $1 OR id = 'bad id'",
            r.id,
        )
        .await;
    }
}

#[tokio::test]
async fn sqlite_rows_it_cannot_read_are_corrupt() {
    let fixture = sql::sqlite().await.unwrap();
    let store = &fixture.store;
    let damage = async |sql: &str, id: KeyId| {
        let sql = sql.replace("$1", "?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .execute(store.pool())
            .await
            .unwrap();
    };
    assert_reads_are_corrupt(
        store,
        damage,
        &[
            (
                "owner",
                "UPDATE keygate_keys SET owner = 'nobody' WHERE id = $1",
            ),
            (
                "family",
                "UPDATE keygate_keys SET family = 'short' WHERE id = $1",
            ),
            (
                "scopes",
                r#"UPDATE keygate_keys SET scopes = '["NOT A SCOPE"]' WHERE id = $1"#,
            ),
            (
                "rate_limit",
                "UPDATE keygate_keys SET rate_limit = 'fast' WHERE id = $1",
            ),
            (
                "allowed_ips",
                r#"UPDATE keygate_keys SET allowed_ips = '["10.0.0.0/99"]' WHERE id = $1"#,
            ),
            (
                "superseded_by",
                "UPDATE keygate_keys SET superseded_by = 'x!' WHERE id = $1",
            ),
            (
                "last_used_at",
                "UPDATE keygate_keys SET last_used_at = 9223372036854775807 WHERE id = $1",
            ),
            ("id", "UPDATE keygate_keys SET id = 'bad id' WHERE id = $1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn postgres_rows_it_cannot_read_are_corrupt() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    let store = &fixture.store;
    let schema = store.schema().unwrap().to_owned();
    let damage = async |sql: &str, id: KeyId| {
        let sql = sql.replace("keygate_keys", &format!("\"{schema}\".keygate_keys"));
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .execute(store.pool())
            .await
            .unwrap();
    };
    assert_reads_are_corrupt(
        store,
        damage,
        &[
            (
                "owner",
                "UPDATE keygate_keys SET owner = 'nobody' WHERE id = $1",
            ),
            (
                "family",
                "UPDATE keygate_keys SET family = 'short' WHERE id = $1",
            ),
            (
                "scopes",
                "UPDATE keygate_keys SET scopes = '{NOT A SCOPE}' WHERE id = $1",
            ),
            (
                "rate_limit",
                "UPDATE keygate_keys SET rate_limit = 'fast' WHERE id = $1",
            ),
            (
                "superseded_by",
                "UPDATE keygate_keys SET superseded_by = 'x!' WHERE id = $1",
            ),
            // Times PostgreSQL holds but `time` cannot: sqlx's own decoder
            // panics on them (an overflowing `+`); keygate's reports them.
            (
                "created_at",
                "UPDATE keygate_keys SET created_at = 'infinity' WHERE id = $1",
            ),
            (
                "last_used_at",
                "UPDATE keygate_keys SET last_used_at = '294276-12-31 23:59:59+00' WHERE id = $1",
            ),
            (
                "created_at",
                "UPDATE keygate_keys SET created_at = '-infinity' WHERE id = $1",
            ),
            ("id", "UPDATE keygate_keys SET id = 'bad id' WHERE id = $1"),
        ],
    )
    .await;
}

/// Damages one column of a stored audit event with each `(column, sql)`
/// (`sql` names the table `keygate_audit`), then checks reading it back is
/// `Corrupt` naming that column, and that `cleanup` makes it readable again.
async fn assert_audit_reads_are_corrupt<S: AuditStore>(
    store: &S,
    run: impl AsyncFn(&str),
    cases: &[(&str, &str)],
) {
    for (column, sql) in cases {
        let event = AuditEvent::manage(
            datetime!(2030-01-01 0:00 UTC),
            AuditAction::Create,
            "AuditBad01".parse().unwrap(),
        );
        store.append_audit(&[event]).await.unwrap();
        run(sql).await;
        match store.query_audit(&AuditQuery::default()).await {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains(column), "after damaging {column}: {msg}");
                assert!(msg.contains("audit event"), "{msg}");
            }
            other => panic!("after damaging {column}: expected Corrupt, got {other:?}"),
        }
        run("DELETE FROM keygate_audit").await;
        assert!(
            store
                .query_audit(&AuditQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn sqlite_audit_rows_it_cannot_read_are_corrupt() {
    let fixture = sql::sqlite().await.unwrap();
    let store = &fixture.store;
    let run = async |sql: &str| {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(store.pool())
            .await
            .unwrap();
    };
    assert_audit_reads_are_corrupt(
        store,
        run,
        &[
            ("action", "UPDATE keygate_audit SET action = 'delete'"),
            ("key_id", "UPDATE keygate_audit SET key_id = 'x!'"),
            ("peer", "UPDATE keygate_audit SET peer = '10.0.0.0/8'"),
            ("at", "UPDATE keygate_audit SET at = 9223372036854775807"),
        ],
    )
    .await;
}

#[tokio::test]
async fn postgres_audit_rows_it_cannot_read_are_corrupt() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    let store = &fixture.store;
    let schema = store.schema().unwrap().to_owned();
    let run = async |sql: &str| {
        let sql = sql.replace("keygate_audit", &format!("\"{schema}\".keygate_audit"));
        sqlx::query(AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
    };
    assert_audit_reads_are_corrupt(
        store,
        run,
        &[
            ("action", "UPDATE keygate_audit SET action = 'delete'"),
            ("key_id", "UPDATE keygate_audit SET key_id = 'x!'"),
            // A network is not a client address.
            ("peer", "UPDATE keygate_audit SET peer = '10.0.0.0/8'"),
            ("at", "UPDATE keygate_audit SET at = 'infinity'"),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_postgres_audit_batch_is_written_whole_or_not_at_all() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    let store = &fixture.store;
    let at = datetime!(2030-01-01 0:00 UTC);
    let good = AuditEvent::manage(at, AuditAction::Create, "AuditGood1".parse().unwrap());
    // PostgreSQL text cannot hold NUL: the database refuses this event.
    let refused = AuditEvent {
        detail: Some("nul \0 byte".to_owned()),
        ..good.clone()
    };
    let result = store.append_audit(&[good.clone(), refused.clone()]).await;
    assert!(matches!(result, Err(StoreError::Rejected(_))), "{result:?}");
    assert!(
        store
            .query_audit(&AuditQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    store
        .append_audit(std::slice::from_ref(&good))
        .await
        .unwrap();
    assert_eq!(
        store.query_audit(&AuditQuery::default()).await.unwrap(),
        std::slice::from_ref(&good)
    );

    // Through an AuditLog, the refused event is lost alone: the others of
    // its batch are written one by one.
    let log = AuditLog::spawn(Arc::new(store.clone()), 16);
    let second = AuditEvent::manage(at, AuditAction::Revoke, "AuditGood2".parse().unwrap());
    log.record(refused);
    log.record(second.clone());
    log.flush().await;
    assert_eq!(log.failed(), 1);
    let stored = store.query_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.contains(&second));
}

async fn assert_unavailable(store: &(impl KeyStore + AuditStore)) {
    let r = record("Unreachabl");
    let unavailable = |what: &str, result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{what}: expected Unavailable, got {result:?}"
        );
    };
    unavailable("find", store.find(r.id).await.map(drop));
    unavailable("insert", store.insert(&r).await);
    let rename = KeyUpdate {
        name: Some("renamed".into()),
        ..KeyUpdate::default()
    };
    unavailable("update", store.update(r.id, &rename).await.map(drop));
    let replacement = Replacement {
        id: "Replacemnt".parse().unwrap(),
        digest: r.digest,
        at: r.created_at,
        grace_end: r.created_at,
        default_expiry: None,
        max_expiry: None,
    };
    unavailable("rotate", store.rotate(r.id, &replacement).await.map(drop));
    unavailable("revoke", store.revoke(r.id, r.created_at).await.map(drop));
    unavailable(
        "list_by_owner",
        store
            .list_by_owner(&r.owner, Page::default())
            .await
            .map(drop),
    );
    unavailable(
        "list_expiring",
        store.list_expiring(r.created_at, 1).await.map(drop),
    );
    let delta = UsageDelta {
        refused: Default::default(),
        key_id: r.id,
        family: r.id,
        bucket: r.created_at,
        requests: 1,
        last_used_at: r.created_at,
    };
    unavailable("record_usage", store.record_usage(&[delta]).await);
    unavailable("usage", store.usage(r.id, r.created_at).await.map(drop));
    let event = AuditEvent::manage(r.created_at, AuditAction::Create, r.id);
    unavailable("append_audit", store.append_audit(&[event]).await);
    unavailable(
        "query_audit",
        store.query_audit(&AuditQuery::default()).await.map(drop),
    );
}

#[tokio::test]
async fn a_closed_sqlite_pool_is_unavailable() {
    let fixture = sql::sqlite().await.unwrap();
    fixture.store.pool().close().await;
    assert_unavailable(&fixture.store).await;
}

#[tokio::test]
async fn a_value_postgres_cannot_keep_is_rejected_not_unavailable() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    let store = &fixture.store;
    let mut r = record("NulInMeta1");
    r.metadata.insert("note".into(), "a\u{0}b".into());
    match store.insert(&r).await {
        Err(StoreError::Rejected(why)) => assert!(why.contains("Unicode escape"), "{why}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // Nothing was written, and the store still works.
    assert_eq!(store.find(r.id).await.unwrap(), None);
    r.metadata.clear();
    store.insert(&r).await.unwrap();
    r.metadata.insert("note".into(), "a\u{0}b".into());
    let change = KeyUpdate {
        metadata: Some(r.metadata.clone()),
        ..KeyUpdate::default()
    };
    assert!(matches!(
        store.update(r.id, &change).await,
        Err(StoreError::Rejected(_))
    ));
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable() {
    // Port 1 on loopback: nothing listens there; no server needed.
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://keygate@127.0.0.1:1/none")
        .unwrap();
    assert_unavailable(&PostgresStore::new(pool)).await;
}

#[tokio::test]
async fn postgres_without_migrations_is_unavailable() {
    let Some(url) = env::postgres_url() else {
        return;
    };
    let pool = sql::postgres_pool(&url, "keygate_test").await;
    // A schema nobody created: every statement fails with "no such table".
    let store = PostgresStore::new(pool)
        .with_schema(sql::fresh_schema())
        .unwrap();
    assert_unavailable(&store).await;
}

#[tokio::test]
async fn sqlite_migrations_are_idempotent_and_keep_to_their_table() {
    let fixture = sql::sqlite().await.unwrap();
    let store = &fixture.store;
    store.migrate().await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        tables,
        [
            "keygate_audit",
            "keygate_credits",
            "keygate_key_changes",
            "keygate_keys",
            "keygate_migrations",
            "keygate_reminders",
            "keygate_usage",
            // SQLite's own, for keygate_key_changes' AUTOINCREMENT.
            "sqlite_sequence",
        ]
    );
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn postgres_migrations_are_idempotent_and_keep_to_their_schema() {
    let Some(fixture) = sql::postgres().await else {
        return;
    };
    let store = &fixture.store;
    store.migrate().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY table_name",
    )
    .bind(store.schema().unwrap())
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "keygate_audit",
            "keygate_credits",
            "keygate_keys",
            "keygate_migrations",
            "keygate_reminders",
            "keygate_usage"
        ]
    );
    // The migration connection's search_path did not leak into the pool.
    for _ in 0..4 {
        let path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(!path.contains(store.schema().unwrap()), "{path}");
    }
}

#[tokio::test]
async fn sqlite_open_creates_the_file_and_keeps_keys_across_restarts() {
    let dir = std::env::temp_dir().join(format!("keygate_test_open_{}", fixture::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.db");
    let r = record("Persisted1");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.insert(&r).await.unwrap();
        store.pool().close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.find(r.id).await.unwrap(), Some(r));
    store.pool().close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rotation that is refused (the key is revoked) ends its transaction
/// before it answers, so it holds neither the key's row (PostgreSQL) nor
/// the database's write lock (SQLite) afterwards, even while nothing else
/// of the store gets to run. (The stores now roll back explicitly rather
/// than leave it to the dropped transaction; these tests guard the result,
/// and also passed before that change.)
async fn refused_rotation(store: &impl KeyStore) {
    let r = record("Refused001");
    store.insert(&r).await.unwrap();
    store
        .revoke(r.id, datetime!(2030-01-02 0:00 UTC))
        .await
        .unwrap();
    let replacement = Replacement {
        id: "Replace001".parse().unwrap(),
        digest: r.digest,
        at: datetime!(2030-01-03 0:00 UTC),
        grace_end: datetime!(2030-01-04 0:00 UTC),
        default_expiry: None,
        max_expiry: None,
    };
    let refused = store.rotate(r.id, &replacement).await.unwrap();
    assert!(matches!(refused, keygate_core::Rotation::NotRotatable(_)));
}

/// Runs `check` on a thread and runtime of its own while this test's
/// (current-thread) runtime is blocked: nothing of the store's gets to run
/// in the background meanwhile.
fn from_elsewhere<F: Future<Output = ()> + Send + 'static>(check: F) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check);
    })
    .join()
    .expect("the check passed");
}

#[tokio::test]
async fn a_refused_rotation_leaves_no_lock_behind_on_sqlite() {
    use keygate_sqlx::sqlx::{Connection as _, SqliteConnection};

    let path = std::env::temp_dir().join(format!("keygate_lock_{}.db", fixture::unique_suffix()));
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    refused_rotation(&store).await;
    // Another writer, not waiting: the write lock must be free.
    from_elsewhere(async move {
        let mut other = SqliteConnection::connect(&format!("{url}?mode=rw"))
            .await
            .unwrap();
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the refused rotation still holds the database's write lock");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    });
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test]
async fn a_refused_rotation_leaves_no_lock_behind_on_postgres() {
    use keygate_sqlx::sqlx::{Connection as _, PgConnection};

    let Some(url) = env::postgres_url() else {
        return;
    };
    let schema = sql::fresh_schema();
    let _cleanup = fixture::Fixture::new((), sql::drop_schema_later(url.clone(), schema.clone()));
    let store = PostgresStore::new(sql::postgres_pool(&url, "keygate_test").await)
        .with_schema(schema.clone())
        .unwrap();
    store.migrate().await.unwrap();
    refused_rotation(&store).await;
    // Another session, not waiting: the row must not be locked.
    from_elsewhere(async move {
        let mut other = PgConnection::connect(&url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM \"{schema}\".keygate_keys WHERE id = 'Refused001' FOR UPDATE NOWAIT"
        )))
        .fetch_one(&mut other)
        .await
        .expect("the refused rotation still holds the key's row lock");
    });
}
