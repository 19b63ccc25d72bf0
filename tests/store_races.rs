#![cfg(feature = "manage")]
//! The management router over the real SQL stores, attacked two ways:
//!
//! * concurrent writes to one key (`PATCH` requests racing a `DELETE` or a rotation):
//!   a revocation, once answered, is never undone, a rotation's grace
//!   period is never wiped or extended, and no update is silently lost;
//! * extreme times and durations to every endpoint that takes one: a 422
//!   naming the field, never a 500 or a panic, and the key and its owner's
//!   listing keep working afterwards.
//!
//! Each test runs on SQLite (a temporary file) and on PostgreSQL (a fresh
//! schema of `KEYGATE_TEST_POSTGRES_URL`; without it the PostgreSQL half
//! says it is skipped, and fails when `CI=true`).

use std::{collections::BTreeSet, time::Duration};

use axum::{Router, body::Body, routing::get};
use http::{Method, Request, StatusCode};
use keygate::{
    ApiKey, Keygate,
    core::{KeyId, KeyRecord, KeyStore, NewKey, Owner, Scope, time::OffsetDateTime},
};
use keygate_sqlx::{PostgresStore, SqliteStore, sqlx};
use keygate_test_support::{
    Fixture,
    env::{POSTGRES_URL_VAR, postgres_url},
    fixture::unique_suffix,
    key::issue,
    reply::{Reply, json_request},
    sql::{drop_schema_later, postgres_options},
};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;

/// The notes service behind keygate's layer, the management router at
/// `/admin`, and a way to read the store directly.
struct Harness {
    app: Router,
    keys: Keygate,
    admin: String,
    find: Box<dyn Fn(KeyId) -> futures_find::Find + Send + Sync>,
    _cleanup: Fixture<()>,
}

/// `find` on the store, type-erased so one harness serves both backends.
mod futures_find {
    use std::{future::Future, pin::Pin};

    use keygate::core::KeyRecord;

    pub(crate) type Find = Pin<Box<dyn Future<Output = Option<KeyRecord>> + Send>>;
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Harness {
    /// `None` for PostgreSQL when it is not configured (outside CI).
    async fn open(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("keygate-races-{}", unique_suffix()));
                std::fs::create_dir_all(&dir).unwrap();
                let store = SqliteStore::open(dir.join("keygate.db")).await.unwrap();
                let cleanup = Fixture::new((), move || {
                    let _ = std::fs::remove_dir_all(&dir);
                });
                Some(Self::with(store, cleanup).await)
            }
            Backend::Postgres => {
                let url = postgres_url()?;
                let schema = format!("keygate_races_{}", unique_suffix());
                // A small pool: the server is shared with other test runs.
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(postgres_options(&url, "keygate_races"))
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach {POSTGRES_URL_VAR}: {e}"));
                let store = PostgresStore::new(pool)
                    .with_schema(schema.clone())
                    .unwrap();
                let cleanup = Fixture::new((), drop_schema_later(url, schema.clone()));
                store.migrate().await.unwrap();
                Some(Self::with(store, cleanup).await)
            }
        }
    }

    async fn with<S: KeyStore + Clone>(store: S, cleanup: Fixture<()>) -> Self {
        let keys = Keygate::builder(store.clone()).prefix("rac").build();
        let app = Router::new()
            .route(
                "/notes",
                get(|key: ApiKey| async move { format!("notes of {}", key.owner()) }),
            )
            .layer(keys.layer())
            .nest("/admin", keygate::manage::router(&keys));
        let admin = issue(
            keys.manager(),
            NewKey::new(Owner::service("ops"), "ops").scopes([Scope::ADMIN]),
        )
        .await;
        let find = Box::new(move |id: KeyId| -> futures_find::Find {
            let store = store.clone();
            Box::pin(async move { store.find(id).await.unwrap() })
        });
        Self {
            app,
            keys,
            admin,
            find,
            _cleanup: cleanup,
        }
    }

    /// A request as `key`, answered with its status and JSON body.
    fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> impl Future<Output = (StatusCode, Value)> + Send + 'static {
        let body = body.map(|b| b.to_string());
        let req = json_request(method, path, Some(key), body.as_deref());
        let app = self.app.clone();
        async move {
            let reply = Reply::read(app.oneshot(req).await.unwrap()).await;
            (reply.status, reply.json_or_null())
        }
    }

    fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> impl Future<Output = (StatusCode, Value)> + Send + 'static {
        self.call(method, path, &self.admin, body)
    }

    async fn notes(&self, key: &str) -> StatusCode {
        self.call(Method::GET, "/notes", key, None).await.0
    }

    /// A fresh key of `user:racer`, through the router: its plaintext and id.
    async fn issue(&self) -> (String, String) {
        let (status, body) = self
            .admin(
                Method::POST,
                "/admin/keys",
                Some(json!({"owner": "user:racer", "name": "raced", "scopes": ["read"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (str_of(&body["key"]), str_of(&body["id"]))
    }

    async fn record(&self, id: &str) -> KeyRecord {
        let id: KeyId = id.parse().unwrap();
        (self.find)(id).await.expect("the key exists")
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// Runs `f` as its own task, so the requests of one race run in parallel
/// on the multi-threaded runtime.
fn spawn<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::spawn(f)
}

// ---------------------------------------------------------------------------
// Item 3: concurrent writes.
// ---------------------------------------------------------------------------

const TRIALS: usize = 15;
const PATCHERS: usize = 6;

async fn patches_racing_a_revoke(backend: Backend) {
    let Some(h) = Harness::open(backend).await else {
        return;
    };
    for trial in 0..TRIALS {
        let (key, id) = h.issue().await;
        assert_eq!(h.notes(&key).await, StatusCode::OK);
        let path = format!("/admin/keys/{id}");
        let patches: Vec<_> = (0..PATCHERS)
            .map(|n| {
                spawn(h.admin(
                    Method::PATCH,
                    &path,
                    Some(json!({"name": format!("trial {trial} patch {n}")})),
                ))
            })
            .collect();
        let revoke = spawn(h.admin(Method::DELETE, &path, None));
        let (status, body) = revoke.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "revoked", "{body}");
        let mut landed = false;
        for patch in patches {
            let (status, body) = patch.await.unwrap();
            // A PATCH that reads the key after the revocation finds it gone.
            if status == StatusCode::NOT_FOUND {
                assert_eq!(body["code"], "revoked", "{body}");
            } else {
                assert_eq!(status, StatusCode::OK, "{body}");
                landed = true;
            }
        }
        // The DELETE answered success: the key must stay revoked, in the
        // store and at the layer, whatever the PATCHes did around it.
        let stored = h.record(&id).await;
        assert!(
            stored.revoked_at.is_some(),
            "{backend:?}, trial {trial}: a PATCH undid the revocation"
        );
        if landed {
            assert!(stored.name.starts_with(&format!("trial {trial} patch ")));
        }
        assert_eq!(
            h.notes(&key).await,
            StatusCode::UNAUTHORIZED,
            "{backend:?}, trial {trial}: the revoked key was accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patches_racing_a_revoke_never_undo_it_on_sqlite() {
    patches_racing_a_revoke(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patches_racing_a_revoke_never_undo_it_on_postgres() {
    patches_racing_a_revoke(Backend::Postgres).await;
}

async fn a_rotation_racing_a_revoke_and_a_patch(backend: Backend) {
    let Some(h) = Harness::open(backend).await else {
        return;
    };
    let grace = 3_600;
    let far = "2100-01-01T00:00:00Z";
    let (mut rotated, mut refused) = (0, 0);
    for trial in 0..TRIALS {
        let (key, id) = h.issue().await;
        let path = format!("/admin/keys/{id}");
        let before = OffsetDateTime::now_utc();
        let rotate = spawn(h.admin(
            Method::POST,
            &format!("{path}/rotate"),
            Some(json!({"grace_seconds": grace})),
        ));
        let patch = spawn(h.admin(
            Method::PATCH,
            &path,
            Some(json!({"name": format!("patched {trial}"), "expires_at": far})),
        ));
        let revoke = spawn(h.admin(Method::DELETE, &path, None));
        let (revoke_status, revoke_body) = revoke.await.unwrap();
        assert_eq!(revoke_status, StatusCode::OK, "{revoke_body}");
        let (patch_status, patch_body) = patch.await.unwrap();
        // A PATCH that reads the key after the revocation finds it gone
        // (404 `revoked`) and writes nothing.
        let patched = patch_status == StatusCode::OK;
        if !patched {
            assert_eq!(patch_status, StatusCode::NOT_FOUND, "{patch_body}");
            assert_eq!(patch_body["code"], "revoked", "{patch_body}");
        }
        let (rotate_status, rotate_body) = rotate.await.unwrap();
        let after = OffsetDateTime::now_utc();

        let old = h.record(&id).await;
        assert!(old.revoked_at.is_some(), "trial {trial}: revocation undone");
        if patched {
            assert_eq!(
                old.name,
                format!("patched {trial}"),
                "trial {trial}: patch lost"
            );
        }
        assert_eq!(h.notes(&key).await, StatusCode::UNAUTHORIZED);
        match rotate_status {
            StatusCode::CREATED => {
                rotated += 1;
                // The rotation happened before the revocation: its marks
                // stay, and the PATCH never moved the expiry past the grace
                // period's end, whichever came first.
                let new_id: KeyId = str_of(&rotate_body["id"]).parse().unwrap();
                assert_eq!(
                    old.superseded_by,
                    Some(new_id),
                    "trial {trial}: rotation wiped"
                );
                let expires = old.expires_at.expect("a grace expiry");
                let grace = time::Duration::seconds(grace);
                assert!(
                    expires >= before + grace - time::Duration::seconds(1)
                        && expires <= after + grace,
                    "trial {trial}: grace expiry {expires} wiped or extended"
                );
                let new_key = str_of(&rotate_body["key"]);
                assert_eq!(h.notes(&new_key).await, StatusCode::OK);
            }
            StatusCode::CONFLICT => {
                refused += 1;
                assert_eq!(rotate_body["code"], "not_rotatable", "{rotate_body}");
                assert_eq!(old.superseded_by, None);
                let expiry = old.expires_at.map(|t| t.format(&Rfc3339).unwrap());
                assert_eq!(expiry.as_deref(), patched.then_some(far));
            }
            other => panic!("trial {trial}: rotation answered {other}: {rotate_body}"),
        }
    }
    // Whatever the interleavings, no key was left behind by a refused
    // rotation: the owner has one key per trial plus one per rotation.
    let (status, list) = h
        .admin(Method::GET, "/admin/keys?owner=user:racer&limit=200", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["keys"].as_array().unwrap().len(),
        TRIALS + rotated,
        "{backend:?}: {rotated} rotated, {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_racing_a_revoke_and_a_patch_keeps_every_mark_on_sqlite() {
    a_rotation_racing_a_revoke_and_a_patch(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_racing_a_revoke_and_a_patch_keeps_every_mark_on_postgres() {
    a_rotation_racing_a_revoke_and_a_patch(Backend::Postgres).await;
}

async fn patches_of_different_fields(backend: Backend) {
    let Some(h) = Harness::open(backend).await else {
        return;
    };
    for trial in 0..TRIALS {
        let (key, id) = h.issue().await;
        let path = format!("/admin/keys/{id}");
        let bodies = [
            json!({"name": format!("renamed {trial}")}),
            json!({"scopes": ["read", "write"]}),
            json!({"metadata": {"trial": trial}}),
            json!({"rate_limit": "100/s"}),
            json!({"allowed_ips": ["0.0.0.0/0", "::/0"]}),
            json!({"expires_at": "2100-01-01T00:00:00Z"}),
        ];
        let patches: Vec<_> = bodies
            .into_iter()
            .map(|b| spawn(h.admin(Method::PATCH, &path, Some(b))))
            .collect();
        for p in patches {
            let (status, body) = p.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, now) = h.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{now}");
        assert_eq!(
            now["name"],
            format!("renamed {trial}"),
            "{backend:?}: {now}"
        );
        let scopes: BTreeSet<_> = now["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        assert_eq!(
            scopes,
            BTreeSet::from(["read".into(), "write".into()]),
            "{now}"
        );
        assert_eq!(now["metadata"], json!({"trial": trial}), "{now}");
        assert_eq!(now["rate_limit"], "100/s", "{now}");
        assert_eq!(now["allowed_ips"].as_array().unwrap().len(), 2, "{now}");
        assert_eq!(now["expires_at"], "2100-01-01T00:00:00Z", "{now}");
        assert!(!key.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_different_fields_all_survive_on_sqlite() {
    patches_of_different_fields(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_different_fields_all_survive_on_postgres() {
    patches_of_different_fields(Backend::Postgres).await;
}

// ---------------------------------------------------------------------------
// Item 4: extreme times.
// ---------------------------------------------------------------------------

/// RFC 3339 texts that parse but are out of keygate's range once in UTC.
const EXTREME_TIMES: [&str; 7] = [
    "0000-01-01T00:00:00+23:59",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59.999999999-00:01",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00+00:01",
    "0001-01-01T00:00:00-01:00",
];

/// Durations in seconds that overflow, or end past year 9999.
const EXTREME_SECONDS: [u64; 5] = [
    u64::MAX,
    i64::MAX as u64,
    1 << 53,
    // 8000 years: past 9999 from now.
    8_000 * 366 * 86_400,
    253_402_300_800,
];

fn assert_422(status: StatusCode, body: &Value, field: &str, what: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
    assert_eq!(body["code"], "invalid_request", "{what}: {body}");
    let fields: Vec<String> = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors: {body}"))
        .iter()
        .map(|e| str_of(&e["field"]))
        .collect();
    assert_eq!(fields, vec![field.to_owned()], "{what}: {body}");
}

async fn extreme_times(backend: Backend) {
    let Some(h) = Harness::open(backend).await else {
        return;
    };
    let (key, id) = h.issue().await;
    let path = format!("/admin/keys/{id}");
    // Each check runs as its own task: a panic in a handler (as sqlx's
    // encoder panics on such times) fails the test instead of hanging it.
    for t in EXTREME_TIMES {
        let (status, body) = spawn(h.admin(
            Method::PATCH,
            &path,
            Some(json!({"expires_at": t, "name": "moved"})),
        ))
        .await
        .unwrap();
        assert_422(status, &body, "expires_at", t);
        let since = t.replace('+', "%2B");
        let (status, body) =
            spawn(h.admin(Method::GET, &format!("{path}/usage?since={since}"), None))
                .await
                .unwrap();
        assert_422(status, &body, "since", t);
    }
    for secs in EXTREME_SECONDS {
        let (status, body) = spawn(h.admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"owner": "user:racer", "name": "far", "scopes": [],
                        "expires_in_seconds": secs})),
        ))
        .await
        .unwrap();
        assert_422(status, &body, "expires_in_seconds", &secs.to_string());
        let (status, body) = spawn(h.admin(
            Method::POST,
            &format!("{path}/rotate"),
            Some(json!({"grace_seconds": secs})),
        ))
        .await
        .unwrap();
        assert_422(status, &body, "grace_seconds", &secs.to_string());
    }
    // Cursors are only what the listing handed out: times of -9999 and
    // 9999 (in nanoseconds since 1970) are not.
    for nanos in ["-377705116800000000000", "253402300800000000000", "-1"] {
        let (status, body) = spawn(h.admin(
            Method::GET,
            &format!("/admin/keys?owner=user:racer&cursor={nanos}.{id}"),
            None,
        ))
        .await
        .unwrap();
        assert_422(status, &body, "cursor", nanos);
    }

    // Nothing was changed or created, the key still works, and its owner's
    // listing and the key itself still read.
    let stored = h.record(&id).await;
    assert_eq!(stored.expires_at, None);
    assert_eq!(stored.superseded_by, None);
    assert_eq!(stored.name, "raced");
    assert_eq!(h.notes(&key).await, StatusCode::OK);
    let (status, list) = h
        .admin(Method::GET, "/admin/keys?owner=user:racer", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "{list}");

    // The edges of the range are accepted, and read back as written.
    for (t, shown) in [
        ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("1970-01-01T00:00:00-00:01", "1970-01-01T00:01:00Z"),
    ] {
        let (status, body) = h
            .admin(Method::PATCH, &path, Some(json!({"expires_at": t})))
            .await;
        assert_eq!(status, StatusCode::OK, "{t}: {body}");
        assert_eq!(body["expires_at"], shown, "{t}: {body}");
        let (status, body) = h.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{t}: {body}");
        assert_eq!(body["expires_at"], shown, "{t}: {body}");
        let (status, list) = h
            .admin(Method::GET, "/admin/keys?owner=user:racer", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{t}: {list}");
        let (status, body) = h
            .admin(
                Method::GET,
                &format!("{path}/usage?since={t}").replace('+', "%2B"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{t}: {body}");
    }
    // Set far away, the key works; back to no expiry, it still does.
    h.admin(
        Method::PATCH,
        &path,
        Some(json!({"expires_at": "9999-12-31T23:59:59Z"})),
    )
    .await;
    assert_eq!(h.notes(&key).await, StatusCode::OK);
    let (status, body) = h
        .admin(Method::PATCH, &path, Some(json!({"expires_at": null})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.notes(&key).await, StatusCode::OK);
    // The library refuses them too, whoever calls it.
    let manager = h.keys.manager();
    for t in EXTREME_TIMES {
        let t = OffsetDateTime::parse(t, &Rfc3339).unwrap();
        let changes = keygate::core::KeyUpdate {
            expires_at: Some(Some(t)),
            ..Default::default()
        };
        assert!(matches!(
            manager.update(stored.id, changes).await,
            Err(keygate::core::ManageError::ExpiryOutOfRange)
        ));
        assert!(matches!(
            manager.usage(stored.family, t).await,
            Err(keygate::core::ManageError::TimeOutOfRange("since"))
        ));
    }
    for secs in EXTREME_SECONDS {
        let d = Duration::from_secs(secs);
        // Past the rotation-grace cap long before the calendar's end.
        assert!(matches!(
            manager.rotate(stored.id, d).await,
            Err(keygate::core::ManageError::ExpiryOutOfRange
                | keygate::core::ManageError::OverCap {
                    cap: keygate::core::Cap::RotationGrace,
                    ..
                })
        ));
        assert!(matches!(
            manager.expiring(d, 10).await,
            Err(keygate::core::ManageError::ExpiryOutOfRange)
        ));
    }
    assert_eq!(h.notes(&key).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_times_are_422s_naming_the_field_on_sqlite() {
    extreme_times(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_times_are_422s_naming_the_field_on_postgres() {
    extreme_times(Backend::Postgres).await;
}

/// A store the application fills itself may hold a time whose UTC form is
/// out of range. The layer admits such a key (it is in its grace period,
/// so the response would carry `Sunset`) without panicking.
#[tokio::test]
async fn a_far_sunset_in_a_hand_written_record_is_not_a_panic() {
    use keygate::core::{
        Environment, KeyHasher, MemoryStore, Metadata, Scopes, time::macros::datetime,
    };
    let store = MemoryStore::new();
    let keys = Keygate::builder(store.clone()).prefix("rac").build();
    let key = keys.format().generate(Environment::Live).unwrap();
    let record = KeyRecord {
        id: key.id(),
        family: key.id(),
        owner: Owner::user("hand"),
        name: "written by hand".into(),
        scopes: Scopes::parse_list("read").unwrap(),
        environment: Environment::Live,
        digest: KeyHasher::sha256().digest(key.expose_secret()),
        created_at: OffsetDateTime::now_utc(),
        // Year 10000 in UTC: `to_offset(UTC)` panics on it.
        expires_at: Some(datetime!(9999-12-31 23:59:59 -23:59)),
        revoked_at: None,
        rate_limit: None,
        allowed_ips: Vec::new(),
        metadata: Metadata::new(),
        last_used_at: None,
        superseded_by: Some("Successor1".parse().unwrap()),
        created_by: None,
        credit_account: None,
    };
    store.insert(&record).await.unwrap();
    let app = Router::new()
        .route("/notes", get(|| async { "notes" }))
        .layer(keys.layer());
    let req = Request::builder()
        .uri("/notes")
        .header("x-api-key", key.expose_secret())
        .body(Body::empty())
        .unwrap();
    let res = tokio::spawn(app.oneshot(req))
        .await
        .expect("no panic")
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("sunset").is_none());
}
