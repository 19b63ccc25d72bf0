//! A key whose expiry is far out, written with an offset that puts it past
//! year 9999 in UTC. The key manager refuses such times; a store written
//! behind keygate's back may still hold one. With `Sunset` warnings for
//! every expiring key, the layer turned the expiry into UTC for the header
//! and panicked; now it answers, without the header it cannot write.

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode};
use keygate::{
    Keygate,
    core::{
        KeyStore, KeyUpdate, ManageError, MemoryStore, NewKey, Owner, Scope, time::macros::datetime,
    },
};
use tower::ServiceExt;

#[tokio::test]
async fn an_expiry_past_year_9999_in_utc_does_not_panic_the_layer() {
    let store = MemoryStore::new();
    let keys = Keygate::builder(store.clone())
        .expiry_warning(Duration::MAX)
        .build();
    let created = keys
        .manager()
        .create(NewKey::new(Owner::user("u1"), "far").scopes([Scope::READ]))
        .await
        .unwrap();
    let far = KeyUpdate {
        expires_at: Some(Some(datetime!(9999-12-31 23:59:59 -23:59))),
        ..KeyUpdate::default()
    };
    assert!(matches!(
        keys.manager().update(created.record.id, far.clone()).await,
        Err(ManageError::ExpiryOutOfRange)
    ));
    // Behind keygate's back, straight into the store.
    store.update(created.record.id, &far).await.unwrap();
    keys.verifier().invalidate(created.record.id);
    let app = Router::new()
        .route("/notes", get(|| async { "notes" }))
        .layer(keys.layer());
    let req = Request::get("/notes")
        .header("x-api-key", created.key.expose_secret())
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("sunset").is_none());
}
