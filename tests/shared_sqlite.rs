//! A server and another process (the `keygate` CLI, say) sharing one SQLite
//! file: what the other process changes reaches the server's cache through
//! the store's change feed, without waiting for the cache entry to expire.
//! Two stores on separate pools stand for the two processes. Needs no
//! server.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{TestApp, key_id};
use keygate::{
    Keygate,
    core::{KeyHasher, KeyManager, NewKey, Owner, Scope, SystemClock},
};
use keygate_sqlx::SqliteStore;

#[tokio::test]
async fn a_key_revoked_by_another_process_is_refused_within_the_poll_interval() {
    let dir = std::env::temp_dir().join(format!(
        "keygate-shared-sqlite-{}-{}",
        std::process::id(),
        line!()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keygate.db");
    let server_store = SqliteStore::open(&path)
        .await
        .unwrap()
        .poll_changes_every(Duration::from_millis(50));
    let keys = Keygate::builder(server_store).prefix("shr").build();
    let app = TestApp::new(&keys);
    let key = common::issue(
        &keys,
        NewKey::new(Owner::user("u1"), "shared").scopes([Scope::READ]),
    )
    .await;
    // Cached now, with the default five-minute TTL.
    app.get("/notes", &key).await.assert_ok();

    let cli = KeyManager::new(
        Arc::new(SqliteStore::open(&path).await.unwrap()),
        keys.format().clone(),
        KeyHasher::sha256(),
        Arc::new(SystemClock),
    );
    let started = Instant::now();
    cli.revoke(key_id(&keys, &key)).await.unwrap();
    loop {
        let res = app.get("/notes", &key).await;
        if res.status == 401 {
            res.assert_unauthorized("revoked_key");
            break;
        }
        res.assert_ok();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the revoked key still works after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "refused {:?} after the other process revoked it (polling every 50 ms)",
        started.elapsed()
    );
    keys.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
