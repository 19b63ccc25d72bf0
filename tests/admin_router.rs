#![cfg(feature = "manage")]
//! The management router (`keygate::manage::router`) driven over HTTP: the
//! whole life of a key, owner scoping, field-level 422s, store outages and
//! the OpenAPI document.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use http::{Method, StatusCode, header};
use keygate::{
    ApiKey, Keygate,
    core::{
        AuditAction, AuditLog, AuditQuery, AuditStore, FakeClock, MemoryStore, NewKey, Owner, Scope,
    },
    manage::MANAGE_SCOPE,
};
use keygate_test_support::{
    Failure, Op, TestStore,
    key::{id_of, issue},
    reply::{Reply, json_request},
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The service under test: a notes API behind keygate's layer, and the
/// management router mounted at `/admin`.
struct Harness {
    app: Router,
    keys: Keygate,
    clock: FakeClock,
    store: TestStore,
    /// An `admin` key of `service:ops`.
    admin: String,
}

impl Harness {
    async fn new() -> Self {
        Self::with(|b| b).await
    }

    async fn with(
        configure: impl FnOnce(keygate::KeygateBuilder) -> keygate::KeygateBuilder,
    ) -> Self {
        let store = TestStore::memory();
        let clock = FakeClock::starting_now();
        let keys = configure(
            Keygate::builder(store.clone())
                .prefix("mbk")
                .clock(clock.clone()),
        )
        .build();
        let app = Router::new()
            .route(
                "/notes",
                get(|key: ApiKey| async move { format!("notes of {}", key.owner()) })
                    .post(|| async { "created" }),
            )
            .layer(keys.layer())
            .nest("/admin", keygate::manage::router(&keys));
        let admin = issue(
            keys.manager(),
            NewKey::new(Owner::service("ops"), "ops admin").scopes([Scope::ADMIN]),
        )
        .await;
        Self {
            app,
            keys,
            clock,
            store,
            admin,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let req = json_request(method, path, key, body);
        Reply::read(self.app.clone().oneshot(req).await.unwrap()).await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.call(method, path, Some(&self.admin), body.as_deref())
            .await
    }

    async fn notes(&self, key: &str) -> StatusCode {
        self.call(Method::GET, "/notes", Some(key), None)
            .await
            .status
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

#[tokio::test]
async fn several_quotas_set_over_http_are_enforced_at_once() {
    let h = Harness::new().await;
    let created = h
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"owner": "user:alice", "name": "ci", "scopes": ["read"]})),
        )
        .await;
    let created = created.expect(StatusCode::CREATED).clone();
    let (key, id) = (str_of(&created["key"]), str_of(&created["id"]));
    assert!(created["rate_limit"].is_null());
    let patched = h
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(json!({"rate_limit": "2/h,100/d"})),
        )
        .await;
    assert_eq!(patched.expect(StatusCode::OK)["rate_limit"], "2/h,100/d");
    assert_eq!(h.notes(&key).await, StatusCode::OK);
    assert_eq!(h.notes(&key).await, StatusCode::OK);
    // Refused by the hourly quota (one request every 30 minutes), which
    // the 429 names.
    let refused = h.call(Method::GET, "/notes", Some(&key), None).await;
    let problem = refused.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("2 requests per hour"), "{detail}");
    let retry: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_790..=1_800).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn a_key_lives_its_whole_life_through_the_router() {
    let store = MemoryStore::new();
    let audit = AuditLog::spawn(Arc::new(store.clone()), 64);
    let h = Harness::with(|b| b.audit_log(audit.clone())).await;

    // Create.
    let created = h
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({
                "owner": "user:alice",
                "name": "laptop",
                "scopes": ["read"],
                "expires_in_seconds": 86_400 * 30,
                "rate_limit": "100000/d, 100/s",
                "allowed_ips": [],
                "metadata": {"plan": "pro"}
            })),
        )
        .await;
    let body = created.expect(StatusCode::CREATED).clone();
    assert_eq!(created.headers[header::CACHE_CONTROL], "no-store");
    let key = str_of(&body["key"]);
    let id = str_of(&body["id"]);
    assert!(key.starts_with("mbk_live_"));
    assert_eq!(id, id_of(&key));
    assert_eq!(body["prefix"], format!("mbk_live_{id}"));
    assert_eq!(body["owner"], "user:alice");
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(body["environment"], "live");
    assert_eq!(body["status"], "active");
    assert_eq!(body["rate_limit"], "100/s,100000/d");
    assert_eq!(body["metadata"], json!({"plan": "pro"}));
    assert!(body["expires_at"].is_string());
    assert!(body["revoked_at"].is_null());
    assert!(body.get("digest").is_none());

    // Use it.
    assert_eq!(h.notes(&key).await, StatusCode::OK);

    // List: no secrets, no digests.
    let list = h
        .admin(Method::GET, "/admin/keys?owner=user%3Aalice", None)
        .await;
    let listed = list.expect(StatusCode::OK);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["keys"][0]["id"], id);
    assert!(listed["next_cursor"].is_null());
    assert!(!list.text().contains(&key[9..]), "the list leaks the key");
    assert!(listed["keys"][0].get("key").is_none());
    assert!(listed["keys"][0].get("digest").is_none());

    // Get.
    let got = h
        .admin(Method::GET, &format!("/admin/keys/{id}"), None)
        .await;
    assert_eq!(got.expect(StatusCode::OK)["name"], "laptop");
    assert!(!got.text().contains(&key[9..]));

    // Patch: takes effect on the layer at once.
    assert_eq!(
        h.call(Method::POST, "/notes", Some(&key), None)
            .await
            .status,
        StatusCode::FORBIDDEN,
        "a read key may not POST"
    );
    let patched = h
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(json!({"name": "work laptop", "scopes": ["read", "write"], "rate_limit": null})),
        )
        .await;
    let patched = patched.expect(StatusCode::OK);
    assert_eq!(patched["name"], "work laptop");
    assert_eq!(patched["scopes"], json!(["read", "write"]));
    assert!(patched["rate_limit"].is_null());
    assert_eq!(
        patched["metadata"],
        json!({"plan": "pro"}),
        "untouched fields stay"
    );
    assert_eq!(
        h.call(Method::POST, "/notes", Some(&key), None)
            .await
            .status,
        StatusCode::OK
    );

    // Rotate: both keys work during the grace period.
    let rotated = h
        .admin(
            Method::POST,
            &format!("/admin/keys/{id}/rotate"),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    let rotated = rotated.expect(StatusCode::CREATED).clone();
    let new_key = str_of(&rotated["key"]);
    let new_id = str_of(&rotated["id"]);
    assert_ne!(new_id, id);
    assert_eq!(rotated["family"], id);
    assert_eq!(rotated["name"], "work laptop");
    let old = h
        .admin(Method::GET, &format!("/admin/keys/{id}"), None)
        .await;
    let old = old.expect(StatusCode::OK);
    assert_eq!(old["superseded_by"], new_id);
    assert_eq!(old["status"], "superseded");
    assert_eq!(h.notes(&key).await, StatusCode::OK);
    assert_eq!(h.notes(&new_key).await, StatusCode::OK);

    // After the grace period only the new key works.
    h.clock.advance(Duration::from_secs(3601));
    let expired = h.call(Method::GET, "/notes", Some(&key), None).await;
    expired.problem(StatusCode::UNAUTHORIZED, "expired_key");
    assert_eq!(h.notes(&new_key).await, StatusCode::OK);
    let old = h
        .admin(Method::GET, &format!("/admin/keys/{id}"), None)
        .await;
    assert_eq!(old.expect(StatusCode::OK)["status"], "expired");

    // An expired, rotated key cannot be rotated again.
    h.admin(
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": 0})),
    )
    .await
    .problem(StatusCode::CONFLICT, "not_rotatable");

    // Usage of the family: every request above, old key and new.
    h.keys.flush_usage().await.unwrap();
    let usage = h
        .admin(Method::GET, &format!("/admin/keys/{new_id}/usage"), None)
        .await;
    let usage = usage.expect(StatusCode::OK);
    assert_eq!(usage["family"], id);
    let total: u64 = usage["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    // GET, POST and GET with the old key, two GETs with the new one; refused
    // requests are not counted.
    assert_eq!(total, 5, "{usage}");
    let list = h
        .admin(Method::GET, "/admin/keys?owner=user:alice", None)
        .await;
    assert!(list.expect(StatusCode::OK)["keys"][0]["last_used_at"].is_string());

    // Revoke: 200 with the record, the key is refused at once, and
    // revoking again keeps the first time.
    let revoked = h
        .admin(Method::DELETE, &format!("/admin/keys/{new_id}"), None)
        .await;
    let revoked = revoked.expect(StatusCode::OK).clone();
    assert_eq!(revoked["status"], "revoked");
    let revoked_at = revoked["revoked_at"].clone();
    assert!(revoked_at.is_string());
    h.call(Method::GET, "/notes", Some(&new_key), None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "revoked_key");
    h.clock.advance(Duration::from_secs(60));
    let again = h
        .admin(Method::DELETE, &format!("/admin/keys/{new_id}"), None)
        .await;
    assert_eq!(again.expect(StatusCode::OK)["revoked_at"], revoked_at);

    // Unknown and malformed ids are 404s in the API's problem shape.
    for path in [
        "/admin/keys/ZZZZZZZZZZ",
        "/admin/keys/nope",
        "/admin/keys/ZZZZZZZZZZ/usage",
    ] {
        h.admin(Method::GET, path, None)
            .await
            .problem(StatusCode::NOT_FOUND, "not_found");
    }

    // The audit trail names the admin key as the actor of every change.
    audit.flush().await;
    let events = store
        .query_audit(&AuditQuery {
            key_id: Some(id.parse().unwrap()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.action != AuditAction::Authenticate)
        .collect();
    let actions: Vec<AuditAction> = changes.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::Rotate,
            AuditAction::Update,
            AuditAction::Create
        ]
    );
    let actor = format!("key:{}", id_of(&h.admin));
    assert!(
        changes
            .iter()
            .all(|e| e.actor.as_deref() == Some(actor.as_str()))
    );
}

#[tokio::test]
async fn a_manage_key_manages_only_its_owners_keys_and_no_more_than_it_may() {
    let h = Harness::new().await;
    let manage = Scope::new(MANAGE_SCOPE).unwrap();
    let alice_mgr = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("alice"), "alice's manager").scopes([manage.clone(), Scope::READ]),
    )
    .await;
    let alice_admin_key = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("alice"), "alice's admin").scopes([Scope::ADMIN]),
    )
    .await;
    let bob_key = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("bob"), "bob's").scopes([Scope::READ]),
    )
    .await;
    let call = |method: Method, path: String, body: Option<Value>| {
        let h = &h;
        let alice_mgr = alice_mgr.clone();
        async move {
            let body = body.map(|b| b.to_string());
            h.call(method, &path, Some(&alice_mgr), body.as_deref())
                .await
        }
    };

    // Listing: its own owner by default, never another's.
    let own = call(Method::GET, "/admin/keys".into(), None).await;
    let ids: BTreeSet<String> = own.expect(StatusCode::OK)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_of(&k["id"]))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            id_of(&alice_mgr).to_owned(),
            id_of(&alice_admin_key).to_owned()
        ])
    );
    let theirs = call(Method::GET, "/admin/keys?owner=user:bob".into(), None).await;
    theirs.problem(StatusCode::FORBIDDEN, "owner_not_allowed");
    assert_eq!(theirs.fields(), vec!["owner"]);

    // Another owner's key does not exist, whatever is done to it.
    let bob = id_of(&bob_key);
    for (method, path, body) in [
        (Method::GET, format!("/admin/keys/{bob}"), None),
        (Method::GET, format!("/admin/keys/{bob}/usage"), None),
        (
            Method::PATCH,
            format!("/admin/keys/{bob}"),
            Some(json!({"name": "mine"})),
        ),
        (Method::DELETE, format!("/admin/keys/{bob}"), None),
        (
            Method::POST,
            format!("/admin/keys/{bob}/rotate"),
            Some(json!({"grace_seconds": 0})),
        ),
    ] {
        let body_again = body.clone();
        let reply = call(method.clone(), path.clone(), body).await;
        reply.problem(StatusCode::NOT_FOUND, "not_found");
        // Exactly what an id that exists nowhere gets.
        let nowhere = call(method, path.replace(bob, "ZZZZZZZZZZ"), body_again).await;
        assert_eq!(
            nowhere.json_or_null()["detail"],
            reply.json_or_null()["detail"]
        );
    }
    assert_eq!(
        h.notes(&bob_key).await,
        StatusCode::OK,
        "bob's key is untouched"
    );
    let bob_record = h
        .keys
        .manager()
        .get(bob.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_record.name, "bob's");

    // Creating: own owner only, and only scopes the manager holds.
    call(
        Method::POST,
        "/admin/keys".into(),
        Some(json!({"owner": "user:bob", "name": "x", "scopes": []})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "owner_not_allowed");
    let minted_admin = call(
        Method::POST,
        "/admin/keys".into(),
        Some(json!({"owner": "user:alice", "name": "x", "scopes": ["read", "admin"]})),
    )
    .await;
    let p = minted_admin.problem(StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(p["required_scope"], "admin");
    assert_eq!(minted_admin.fields(), vec!["scopes[1]"]);
    let lacking = call(
        Method::POST,
        "/admin/keys".into(),
        Some(json!({"owner": "user:alice", "name": "x", "scopes": ["write", "billing:read"]})),
    )
    .await;
    lacking.problem(StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(lacking.fields(), vec!["scopes[0]", "scopes[1]"]);
    let ok = call(
        Method::POST,
        "/admin/keys".into(),
        Some(json!({"owner": "user:alice", "name": "reader", "scopes": ["read", MANAGE_SCOPE]})),
    )
    .await;
    let reader = ok.expect(StatusCode::CREATED).clone();
    assert_eq!(reader["owner"], "user:alice");

    // Changing: no scope it lacks, and nothing about a stronger key.
    let reader_id = str_of(&reader["id"]);
    call(
        Method::PATCH,
        format!("/admin/keys/{reader_id}"),
        Some(json!({"scopes": ["read", "write"]})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    call(
        Method::PATCH,
        format!("/admin/keys/{reader_id}"),
        Some(json!({"scopes": ["read"], "allowed_ips": ["10.0.0.0/8"]})),
    )
    .await
    .expect(StatusCode::OK);
    let strong = id_of(&alice_admin_key);
    call(
        Method::PATCH,
        format!("/admin/keys/{strong}"),
        Some(json!({"name": "weaker?"})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    call(
        Method::POST,
        format!("/admin/keys/{strong}/rotate"),
        Some(json!({"grace_seconds": 0})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    // …but it can see it, and revoke it.
    call(Method::GET, format!("/admin/keys/{strong}"), None)
        .await
        .expect(StatusCode::OK);
    call(Method::DELETE, format!("/admin/keys/{strong}"), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(h.notes(&alice_admin_key).await, StatusCode::UNAUTHORIZED);

    // A key with neither `admin` nor `keys:manage` manages nothing; no key
    // is the layer's 401.
    let plain = h
        .call(Method::GET, "/admin/keys", Some(&bob_key), None)
        .await;
    let p = plain.problem(StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(p["required_scope"], MANAGE_SCOPE);
    h.call(Method::GET, "/admin/keys", None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing_key");
    h.call(Method::GET, "/admin/openapi.json", Some(&bob_key), None)
        .await
        .problem(StatusCode::FORBIDDEN, "insufficient_scope");
}

#[tokio::test]
async fn a_test_key_cannot_reach_for_live_keys() {
    let h = Harness::new().await;
    let manage = Scope::new(MANAGE_SCOPE).unwrap();
    let test_mgr = issue(
        h.keys.manager(),
        NewKey::new(Owner::service("ci"), "ci manager")
            .scopes([manage, Scope::READ])
            .environment(keygate::core::Environment::Test),
    )
    .await;
    let live = issue(
        h.keys.manager(),
        NewKey::new(Owner::service("ci"), "deploy").scopes([Scope::READ]),
    )
    .await;
    let post = |body: Value| {
        let h = &h;
        let key = test_mgr.clone();
        async move {
            h.call(
                Method::POST,
                "/admin/keys",
                Some(&key),
                Some(&body.to_string()),
            )
            .await
        }
    };
    let denied =
        post(json!({"owner": "service:ci", "name": "x", "scopes": [], "environment": "live"}))
            .await;
    denied.problem(StatusCode::FORBIDDEN, "environment_not_allowed");
    assert_eq!(denied.fields(), vec!["environment"]);
    // Without `environment`, a key of the caller's own environment.
    let made = post(json!({"owner": "service:ci", "name": "x", "scopes": ["read"]})).await;
    let made = made.expect(StatusCode::CREATED);
    assert_eq!(made["environment"], "test");
    assert!(str_of(&made["key"]).starts_with("mbk_test_"));
    // Rotating a live key would mint one.
    h.call(
        Method::POST,
        &format!("/admin/keys/{}/rotate", id_of(&live)),
        Some(&test_mgr),
        Some(r#"{"grace_seconds": 0}"#),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "environment_not_allowed");
}

#[tokio::test]
async fn listing_pages_through_every_key_once() {
    let h = Harness::new().await;
    let mut made = BTreeSet::new();
    for i in 0..5 {
        let key = issue(
            h.keys.manager(),
            NewKey::new(Owner::user("carol"), format!("k{i}")),
        )
        .await;
        made.insert(id_of(&key).to_owned());
        h.clock.advance(Duration::from_secs(1));
    }
    let mut seen = Vec::new();
    let mut path = "/admin/keys?owner=user:carol&limit=2".to_owned();
    loop {
        let page = h.admin(Method::GET, &path, None).await;
        let page = page.expect(StatusCode::OK).clone();
        let keys = page["keys"].as_array().unwrap();
        assert!(keys.len() <= 2);
        seen.extend(keys.iter().map(|k| str_of(&k["id"])));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/admin/keys?owner=user:carol&limit=2&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), made);
    let newest = h
        .admin(Method::GET, "/admin/keys?owner=user:carol&limit=1", None)
        .await;
    assert_eq!(newest.expect(StatusCode::OK)["keys"][0]["name"], "k4");
}

#[tokio::test]
async fn invalid_input_is_a_422_naming_every_bad_field() {
    let h = Harness::new().await;
    let target = issue(h.keys.manager(), NewKey::new(Owner::user("dave"), "target")).await;
    let id = id_of(&target);
    let keys = "/admin/keys".to_owned();
    let one = format!("/admin/keys/{id}");
    let rotate = format!("/admin/keys/{id}/rotate");
    let valid = json!({"owner": "user:dave", "name": "n", "scopes": ["read"]});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let cases: Vec<(Method, String, String, Vec<&str>)> = vec![
        (Method::POST, keys.clone(), "{".into(), vec!["body"]),
        (Method::POST, keys.clone(), "[1, 2]".into(), vec!["body"]),
        (Method::POST, keys.clone(), "not json".into(), vec!["body"]),
        (
            Method::POST,
            keys.clone(),
            String::new(),
            // No owner: the caller's own.
            vec!["name", "scopes"],
        ),
        (
            Method::POST,
            keys.clone(),
            json!({"owner": 7, "name": "", "scopes": "read"}).to_string(),
            vec!["owner", "name", "scopes"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("owner", json!("team:x")),
            vec!["owner"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("owner", json!("user:")),
            vec!["owner"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("name", json!("   ")),
            vec!["name"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("name", json!("x".repeat(201))),
            vec!["name"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("scopes", json!(["read", "Billing", ""])),
            vec!["scopes[1]", "scopes[2]"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("rate_limit", json!("fast")),
            vec!["rate_limit"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("rate_limit", json!("0/s")),
            vec!["rate_limit"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("rate_limit", json!(10)),
            vec!["rate_limit"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("rate_limit", json!("10/s,,10/d")),
            vec!["rate_limit"],
        ),
        (
            Method::POST,
            keys.clone(),
            with(
                "allowed_ips",
                json!(["10.0.0.0/8", "10.0.0.0/99", "example.com"]),
            ),
            vec!["allowed_ips[1]", "allowed_ips[2]"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("allowed_ips", json!("10.0.0.0/8")),
            vec!["allowed_ips"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("expires_in_seconds", json!(0)),
            vec!["expires_in_seconds"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("expires_in_seconds", json!(-60)),
            vec!["expires_in_seconds"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("expires_in_seconds", json!(1.5)),
            vec!["expires_in_seconds"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("expires_in_seconds", json!("60")),
            vec!["expires_in_seconds"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("expires_in_seconds", json!(u64::MAX)),
            vec!["expires_in_seconds"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("metadata", json!([1])),
            vec!["metadata"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("environment", json!("prod")),
            vec!["environment"],
        ),
        (
            Method::POST,
            keys.clone(),
            with("scope", json!(["read"])),
            vec!["scope"],
        ),
        (Method::PATCH, one.clone(), "{".into(), vec!["body"]),
        (
            Method::PATCH,
            one.clone(),
            json!({"name": ""}).to_string(),
            vec!["name"],
        ),
        (
            Method::PATCH,
            one.clone(),
            json!({"name": null}).to_string(),
            vec!["name"],
        ),
        (
            Method::PATCH,
            one.clone(),
            json!({"scopes": ["ok", "NO"]}).to_string(),
            vec!["scopes[1]"],
        ),
        (
            Method::PATCH,
            one.clone(),
            json!({"expires_at": "tomorrow"}).to_string(),
            vec!["expires_at"],
        ),
        (
            Method::PATCH,
            one.clone(),
            json!({"rate_limit": "1/fortnight"}).to_string(),
            vec!["rate_limit"],
        ),
        (
            Method::PATCH,
            one.clone(),
            json!({"allowed_ips": ["::1/129"]}).to_string(),
            vec!["allowed_ips[0]"],
        ),
        (
            Method::PATCH,
            one.clone(),
            json!({"owner": "user:eve", "environment": "test"}).to_string(),
            vec!["owner", "environment"],
        ),
        (
            Method::POST,
            rotate.clone(),
            String::new(),
            vec!["grace_seconds"],
        ),
        (
            Method::POST,
            rotate.clone(),
            json!({"grace_seconds": -1}).to_string(),
            vec!["grace_seconds"],
        ),
        (
            Method::POST,
            rotate.clone(),
            json!({"grace_seconds": "1h"}).to_string(),
            vec!["grace_seconds"],
        ),
        (
            Method::POST,
            rotate.clone(),
            json!({"grace_seconds": u64::MAX}).to_string(),
            vec!["grace_seconds"],
        ),
        (
            Method::POST,
            rotate.clone(),
            json!({"grace": 5}).to_string(),
            vec!["grace_seconds", "grace"],
        ),
        (
            Method::GET,
            format!("{keys}?limit=0"),
            String::new(),
            vec!["limit"],
        ),
        (
            Method::GET,
            format!("{keys}?limit=abc"),
            String::new(),
            vec!["limit"],
        ),
        (
            Method::GET,
            format!("{keys}?limit=5000"),
            String::new(),
            vec!["limit"],
        ),
        (
            Method::GET,
            format!("{keys}?cursor=zzz"),
            String::new(),
            vec!["cursor"],
        ),
        (
            Method::GET,
            format!("{keys}?owner=dave"),
            String::new(),
            vec!["owner"],
        ),
        (
            Method::GET,
            format!("{one}/usage?since=yesterday"),
            String::new(),
            vec!["since"],
        ),
    ];
    for (method, path, body, fields) in cases {
        let reply = h
            .call(method.clone(), &path, Some(&h.admin), Some(&body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}: {}",
            reply.text()
        );
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert_eq!(reply.json_or_null()["title"], "Unprocessable Entity");
        assert_eq!(reply.fields(), fields, "{method} {path} {body}");
        for error in reply.json_or_null()["errors"].as_array().unwrap() {
            assert!(
                error["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{error}"
            );
        }
    }
    // Nothing was created or changed by any of that.
    let record = h
        .keys
        .manager()
        .get(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.name, "target");
    assert!(record.superseded_by.is_none());
    let dave = h
        .admin(Method::GET, "/admin/keys?owner=user:dave", None)
        .await;
    assert_eq!(
        dave.expect(StatusCode::OK)["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_value_the_store_refuses_is_a_422_not_a_503() {
    let h = Harness::new().await;
    for op in Op::KEY_WRITES {
        h.store.fail(op, Failure::Rejected);
    }
    let reply = h
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"owner": "user:x", "name": "x", "scopes": [],
                        "metadata": {"note": "a\u{0}b"}})),
        )
        .await;
    let p = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(p["errors"][0]["field"], "body");
    let message = p["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("cannot keep a value"), "{message}");
    assert!(
        !reply.text().contains("Unicode escape"),
        "the database's message stays in the server log: {}",
        reply.text()
    );
}

#[tokio::test]
async fn a_store_outage_is_a_503_with_retry_after() {
    let h = Harness::with(|b| b.unavailable_retry_after(Duration::from_millis(2500))).await;
    // Warm the layer's cache so the admin key itself still authenticates.
    h.admin(Method::GET, "/admin/keys", None)
        .await
        .expect(StatusCode::OK);
    h.store.fail_all(Failure::Unavailable);
    for (method, path, body) in [
        (Method::GET, "/admin/keys".to_owned(), None),
        (
            Method::GET,
            format!("/admin/keys/{}", id_of(&h.admin)),
            None,
        ),
        (
            Method::POST,
            "/admin/keys".to_owned(),
            Some(json!({"owner": "user:x", "name": "x", "scopes": []})),
        ),
    ] {
        let reply = h.admin(method, &path, body).await;
        let p = reply.problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(p["retry_after"], 3);
        assert_eq!(reply.headers[header::RETRY_AFTER], "3");
    }
    h.store.heal();
    h.admin(Method::GET, "/admin/keys", None)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_the_router_serves() {
    // (method, path relative to the mount point): what the router serves.
    const ROUTES: &[(&str, &str)] = &[
        ("get", "/keys"),
        ("post", "/keys"),
        ("get", "/keys/{id}"),
        ("patch", "/keys/{id}"),
        ("delete", "/keys/{id}"),
        ("post", "/keys/{id}/rotate"),
        ("get", "/keys/{id}/usage"),
        ("get", "/keys/{id}/credits"),
        ("patch", "/keys/{id}/credits"),
        ("get", "/openapi.json"),
    ];
    let h = Harness::new().await;
    let reply = h.admin(Method::GET, "/admin/openapi.json", None).await;
    let doc = reply.expect(StatusCode::OK).clone();
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(doc["servers"][0]["url"], "/admin");
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        json!({"type": "apiKey", "in": "header", "name": "x-api-key"})
    );
    assert_eq!(doc["security"], json!([{"api_key": []}]));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let responses = op["responses"].as_object().unwrap();
            for status in ["401", "403", "429", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Every listed route is really served: the router answers it itself
    // (JSON, not an empty 404 or 405 from routing).
    let id = id_of(&h.admin);
    for (method, path) in ROUTES {
        let method: Method = method.to_uppercase().parse().unwrap();
        let path = format!("/admin{}", path.replace("{id}", "ZZZZZZZZZZ"));
        let reply = h
            .call(method.clone(), &path, Some(&h.admin), Some("{}"))
            .await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            reply.json_or_null().is_object(),
            "{method} {path}: {}",
            reply.text()
        );
        let path = path.replace("ZZZZZZZZZZ", id);
        if method == Method::GET {
            h.call(method.clone(), &path, Some(&h.admin), None)
                .await
                .expect(StatusCode::OK);
        }
    }

    // The schemas a client generator needs are there, by readable names.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "CreateKey",
        "UpdateKey",
        "RotateKey",
        "Key",
        "CreatedKey",
        "KeyList",
        "Usage",
        "Problem",
        "FieldError",
        "Credits",
        "UpdateCredits",
        "Refill",
    ] {
        assert!(
            schemas.contains_key(name),
            "no schema {name}: {:?}",
            schemas.keys()
        );
    }
    let create = &schemas["CreateKey"];
    let required: BTreeSet<&str> = create["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // `owner` defaults to the caller's own.
    assert_eq!(required, BTreeSet::from(["name", "scopes"]));

    // The document is behind the same authorization as the rest.
    h.call(Method::GET, "/admin/openapi.json", None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing_key");
}
