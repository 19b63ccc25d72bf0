//! A flood of refused requests against a server whose audit trail is
//! persisted in SQLite: it cannot push out a management event, and it costs
//! the table a bounded number of rows, summarised.

mod common;

use std::{sync::Arc, time::Duration};

use common::{TestApp, issue_scoped};
use keygate::{
    Keygate,
    core::{
        AuditAction, AuditConfig, AuditLog, AuditQuery, AuditStore, Environment, FakeClock, Scope,
    },
};
use keygate_sqlx::SqliteStore;

#[tokio::test]
async fn refusals_cannot_crowd_out_management_events_and_are_persisted_at_a_bounded_rate() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let config = AuditConfig::with_capacity(64).rejections_per_reason(5, Duration::from_secs(1));
    let log = AuditLog::spawn_with(Arc::new(store.clone()), config);
    let clock = FakeClock::starting_now();
    let keys = Keygate::builder(store.clone())
        .clock(clock.clone())
        .audit_log(log.clone())
        .build();
    let app = TestApp::new(&keys);
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let id = common::key_id(&keys, &key);

    // Two thousand refusals of two kinds within one second (the fake clock
    // stands still): unthinned, they would fill the queue of 64 thirty
    // times over...
    for i in 0..1000 {
        let typo = common::typo(&key);
        app.get("/notes", &typo)
            .await
            .assert_unauthorized("malformed_key");
        let forged = keys.format().generate(Environment::Live).unwrap();
        app.get("/notes", forged.expose_secret())
            .await
            .assert_unauthorized("invalid_key");
        if i == 500 {
            // ...and a revocation in the middle of it is kept all the same.
            keys.manager().revoke(id).await.unwrap();
        }
    }
    clock.advance(Duration::from_secs(1));
    app.get("/notes", &key)
        .await
        .assert_unauthorized("revoked_key");
    log.flush().await;

    let trail = store
        .query_audit(&AuditQuery {
            limit: 10_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let revokes = trail
        .iter()
        .filter(|e| e.action == AuditAction::Revoke && e.key_id == Some(id))
        .count();
    assert_eq!(revokes, 1, "the management event survived the flood");
    let with = |detail: &str| {
        trail
            .iter()
            .filter(|e| e.detail.as_deref() == Some(detail))
            .count()
    };
    assert_eq!(with("checksum"), 5);
    assert_eq!(with("unknown_key"), 5);
    assert_eq!(with("revoked"), 1);
    assert_eq!(with("checksum; 995 more not recorded"), 1);
    assert_eq!(with("unknown_key; 995 more not recorded"), 1);
    assert_eq!(log.suppressed(), 2 * 995);
    assert_eq!(log.dropped(), 0, "thinning keeps the queue from filling");
}
