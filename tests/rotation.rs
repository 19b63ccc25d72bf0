//! Rotation with a grace period, under load: clients calling with the old
//! key see no failure while the grace period lasts and only 401s after it;
//! responses during the grace period carry `Sunset` and `Deprecation`; the
//! new key inherits the old one's quota state.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, routing::get};
use http::{Request, StatusCode};
use keygate::{
    Keygate,
    core::{FakeClock, MemoryStore, NewKey, Owner, Quota, Scope},
};
use tower::ServiceExt;

fn app(keys: &Keygate) -> Router {
    Router::new()
        .route("/notes", get(|| async { "notes" }))
        .layer(keys.layer())
}

async fn call(app: &Router, key: &str) -> http::Response<Body> {
    let req = Request::get("/notes")
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

/// Waits until `ok` reaches `target`; fails at once if a request failed,
/// and after 30 s rather than hang if requests stop succeeding.
async fn wait_for(ok: &AtomicUsize, target: usize, failed: &AtomicUsize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ok.load(Ordering::SeqCst) < target {
        assert_eq!(failed.load(Ordering::SeqCst), 0, "a request failed");
        assert!(
            std::time::Instant::now() < deadline,
            "clients stopped making progress"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_switch_keys_without_a_failed_request() {
    let clock = FakeClock::starting_now();
    let keys = Keygate::builder(MemoryStore::new())
        .prefix("rot")
        .clock(clock.clone())
        .build();
    let old = keys
        .manager()
        .create(NewKey::new(Owner::service("ci"), "deploy").scopes([Scope::READ]))
        .await
        .unwrap();
    let old_key = old.key.expose_secret().to_owned();
    let app = app(&keys);

    // Clients hammer the old key before, during and after the rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, key) = (app.clone(), old_key.clone());
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let res = call(&app, &key).await;
                    if res.status() == StatusCode::OK {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    wait_for(&ok, 200, &failed).await;
    let new = keys
        .manager()
        .rotate(old.record.id, Duration::from_secs(3600))
        .await
        .unwrap();
    // Time passes inside the grace period while clients keep calling.
    let before = ok.load(Ordering::SeqCst);
    for _ in 0..59 {
        clock.advance(Duration::from_secs(60));
        let target = ok.load(Ordering::SeqCst) + 20;
        wait_for(&ok, target, &failed).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert!(ok.load(Ordering::SeqCst) > before + 1000);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "a request failed during the grace period"
    );

    // During the grace period the old key's responses say when it sunsets.
    let res = call(&app, &old_key).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sunset = res.headers()["sunset"].to_str().unwrap().to_owned();
    assert!(sunset.ends_with(" GMT"), "{sunset}");
    assert!(
        res.headers()["deprecation"]
            .to_str()
            .unwrap()
            .starts_with('@')
    );
    // The new key works and carries no reminder.
    let res = call(&app, new.key.expose_secret()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("sunset").is_none());

    // After the grace period: only 401s for the old key, 200s for the new.
    clock.advance(Duration::from_secs(61));
    for _ in 0..50 {
        let res = call(&app, &old_key).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "expired_key");
        assert_eq!(
            call(&app, new.key.expose_secret()).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_rotation_is_not_a_fresh_quota() {
    let keys = Keygate::builder(MemoryStore::new()).prefix("rot").build();
    let old = keys
        .manager()
        .create(
            NewKey::new(Owner::service("ci"), "deploy")
                .scopes([Scope::READ])
                .rate_limit(Quota::per_hour(4)),
        )
        .await
        .unwrap();
    let app = app(&keys);
    for _ in 0..3 {
        assert_eq!(
            call(&app, old.key.expose_secret()).await.status(),
            StatusCode::OK
        );
    }
    let new = keys
        .manager()
        .rotate(old.record.id, Duration::from_secs(60))
        .await
        .unwrap();
    // One request left in the family's quota, whichever key spends it.
    assert_eq!(
        call(&app, new.key.expose_secret()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&app, new.key.expose_secret()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(&app, old.key.expose_secret()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn keys_near_expiry_carry_reminders() {
    let clock = FakeClock::starting_now();
    let keys = Keygate::builder(MemoryStore::new())
        .prefix("rot")
        .clock(clock.clone())
        .expiry_warning(Duration::from_secs(7 * 86_400))
        .build();
    let key = keys
        .manager()
        .create(
            NewKey::new(Owner::service("ci"), "deploy")
                .scopes([Scope::READ])
                .expires_in(Duration::from_secs(30 * 86_400)),
        )
        .await
        .unwrap();
    let app = app(&keys);
    let res = call(&app, key.key.expose_secret()).await;
    assert!(
        res.headers().get("sunset").is_none(),
        "30 days out: no reminder yet"
    );
    clock.advance(Duration::from_secs(24 * 86_400));
    let res = call(&app, key.key.expose_secret()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let expires = key.record.expires_at.unwrap();
    assert_eq!(
        res.headers()["deprecation"].to_str().unwrap(),
        format!("@{}", expires.unix_timestamp())
    );
    let sunset = res.headers()["sunset"].to_str().unwrap();
    let parsed = keygate::core::time::PrimitiveDateTime::parse(
        sunset.trim_end_matches(" GMT"),
        keygate::core::time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second]"
        ),
    )
    .unwrap()
    .assume_utc();
    assert_eq!(parsed.unix_timestamp(), expires.unix_timestamp());
}
