#![cfg(feature = "manage")]
//! Delegated management through the real admin router: a `keys:manage` key
//! can never create or change a key (itself included) into one more
//! powerful than itself, its children die with it, and the caps bind
//! everyone. The tests from "Attacks found by a review" on each failed
//! before their fix.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::connect_info::MockConnectInfo, routing::get};
use http::{Method, StatusCode};
use keygate::{
    ApiKey, Keygate,
    core::{
        FakeClock, GovernorLimiter, Grantor, IpNet, KeyFormat, KeyHasher, KeyId, KeyManager,
        KeyRecord, KeyStore, KeyUpdate, Limits, MemoryStore, NewKey, Owner, Quota, Quotas, Scope,
        Scopes,
    },
    manage::MANAGE_SCOPE,
};
use keygate_test_support::{
    Op, TestStore,
    key::{id_of, issue},
    reply::{Reply, json_request},
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Where every request comes from: the one address the delegating key is
/// allowlisted to.
const PEER: [u8; 4] = [203, 0, 113, 7];

struct Harness {
    app: Router,
    keys: Keygate,
    clock: FakeClock,
    limiter_clock: governor::clock::FakeRelativeClock,
    admin: String,
    /// `keys:manage` + `read` of `user:alice`, limited to 2/s, expiring in
    /// an hour, allowlisted to 203.0.113.7.
    manager: String,
}

impl Harness {
    async fn new() -> Self {
        Self::with(|b| b).await
    }

    async fn with(
        configure: impl FnOnce(keygate::KeygateBuilder) -> keygate::KeygateBuilder,
    ) -> Self {
        let clock = FakeClock::starting_now();
        let limiter_clock = governor::clock::FakeRelativeClock::default();
        let keys = configure(
            Keygate::builder(MemoryStore::new())
                .prefix("mbk")
                .clock(clock.clone())
                .rate_limiter(GovernorLimiter::with_clock(limiter_clock.clone())),
        )
        .build();
        let app = Router::new()
            .route(
                "/notes",
                get(|key: ApiKey| async move { format!("notes of {}", key.owner()) }),
            )
            .layer(keys.layer())
            .nest("/admin", keygate::manage::router(&keys))
            .layer(MockConnectInfo(SocketAddr::from((PEER, 5000))));
        let admin = issue(
            keys.manager(),
            NewKey::new(Owner::service("ops"), "ops admin").scopes([Scope::ADMIN]),
        )
        .await;
        let manager = issue(
            keys.manager(),
            NewKey::new(Owner::user("alice"), "alice's delegate")
                .scopes([Scope::new(MANAGE_SCOPE).unwrap(), Scope::READ])
                .rate_limit(Quota::per_second(2))
                .expires_in(Duration::from_secs(3600))
                .allowed_ips(["203.0.113.7/32".parse::<IpNet>().unwrap()]),
        )
        .await;
        Self {
            app,
            keys,
            clock,
            limiter_clock,
            admin,
            manager,
        }
    }

    /// One request, a second after the previous one, so a 2/s key is never
    /// refused for its quota.
    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        self.clock.advance(Duration::from_secs(1));
        self.limiter_clock.advance(Duration::from_secs(1));
        let body = body.map(|b| b.to_string());
        let req = json_request(method, path, Some(key), body.as_deref());
        Reply::read(self.app.clone().oneshot(req).await.unwrap()).await
    }

    async fn as_manager(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, &self.manager, body).await
    }

    async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, &self.admin, body).await
    }

    async fn notes(&self, key: &str) -> StatusCode {
        self.call(Method::GET, "/notes", key, None).await.status
    }

    async fn record(&self, key: &str) -> KeyRecord {
        let id: KeyId = id_of(key).parse().unwrap();
        self.keys.manager().get(id).await.unwrap().unwrap()
    }
}

/// A child the delegating key may create: narrower in every dimension.
fn bounded_child() -> Value {
    json!({
        "owner": "user:alice",
        "name": "child",
        "scopes": ["read"],
        "expires_in_seconds": 1800,
        "rate_limit": "1/s",
        "allowed_ips": ["203.0.113.7"],
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

#[tokio::test]
async fn a_manage_key_cannot_lift_its_own_restrictions() {
    let h = Harness::new().await;
    let me = id_of(&h.manager);
    let before = h.record(&h.manager).await;
    let path = format!("/admin/keys/{me}");

    // The attack from the issue, all at once.
    let reply = h
        .as_manager(
            Method::PATCH,
            &path,
            Some(json!({"rate_limit": "100000/s", "allowed_ips": [], "expires_at": null})),
        )
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::FORBIDDEN, "not_grantable"),
        ["allowed_ips", "expires_at", "rate_limit"]
    );
    // And one dimension at a time, including quieter ways to widen.
    let later = (before.expires_at.unwrap() + time::Duration::MINUTE)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (body, field) in [
        (json!({"rate_limit": "100000/s"}), "rate_limit"),
        (json!({"rate_limit": null}), "rate_limit"),
        (json!({"rate_limit": "120/min"}), "rate_limit"),
        (json!({"allowed_ips": []}), "allowed_ips"),
        (json!({"allowed_ips": ["203.0.113.0/24"]}), "allowed_ips[0]"),
        (json!({"expires_at": null}), "expires_at"),
        (json!({"expires_at": later}), "expires_at"),
        (json!({"metadata": {"plan": "enterprise"}}), "metadata.plan"),
    ] {
        let reply = h.as_manager(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(
            reply.problem_fields(StatusCode::FORBIDDEN, "not_grantable"),
            [field],
            "{body}"
        );
    }
    assert_eq!(h.record(&h.manager).await, before, "nothing changed");

    // Tightening itself is fine.
    let reply = h
        .as_manager(
            Method::PATCH,
            &path,
            Some(json!({"rate_limit": "1/s", "name": "tighter"})),
        )
        .await;
    assert_eq!(reply.expect(StatusCode::OK)["rate_limit"], "1/s");
}

#[tokio::test]
async fn a_manage_key_cannot_create_or_rotate_a_key_more_powerful_than_itself() {
    let h = Harness::new().await;
    for (body, code, fields) in [
        (
            with(bounded_child(), "expires_in_seconds", Value::Null),
            "not_grantable",
            vec!["expires_in_seconds"],
        ),
        (
            with(bounded_child(), "expires_in_seconds", json!(7200)),
            "not_grantable",
            vec!["expires_in_seconds"],
        ),
        (
            with(bounded_child(), "rate_limit", json!("100/s")),
            "not_grantable",
            vec!["rate_limit"],
        ),
        (
            with(bounded_child(), "rate_limit", Value::Null),
            "not_grantable",
            vec!["rate_limit"],
        ),
        (
            with(bounded_child(), "allowed_ips", json!(["0.0.0.0/0"])),
            "not_grantable",
            vec!["allowed_ips[0]"],
        ),
        (
            with(bounded_child(), "allowed_ips", json!([])),
            "not_grantable",
            vec!["allowed_ips"],
        ),
        (
            with(bounded_child(), "metadata", json!({"tier": "gold"})),
            "not_grantable",
            vec!["metadata.tier"],
        ),
        (
            with(bounded_child(), "scopes", json!(["read", "write"])),
            "insufficient_scope",
            vec!["scopes[1]"],
        ),
    ] {
        let reply = h
            .as_manager(Method::POST, "/admin/keys", Some(body.clone()))
            .await;
        assert_eq!(
            reply.problem_fields(StatusCode::FORBIDDEN, code),
            fields,
            "{body}"
        );
    }
    let listed = h
        .as_admin(Method::GET, "/admin/keys?owner=user:alice", None)
        .await;
    assert_eq!(
        listed.expect(StatusCode::OK)["keys"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no child was made"
    );

    // Within bounds: created, and usable from the allowlisted address.
    let reply = h
        .as_manager(Method::POST, "/admin/keys", Some(bounded_child()))
        .await;
    let child = reply.expect(StatusCode::CREATED)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(h.notes(&child).await, StatusCode::OK);

    // Rotating a key of its owner that is more powerful (made by an admin,
    // unlimited) would hand the new, equally powerful key to the caller.
    let sibling = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("alice"), "unlimited").scopes([Scope::READ]),
    )
    .await;
    let reply = h
        .as_manager(
            Method::POST,
            &format!("/admin/keys/{}/rotate", id_of(&sibling)),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::FORBIDDEN, "not_grantable"),
        ["allowed_ips", "expires_at", "rate_limit"]
    );
    assert_eq!(h.record(&sibling).await.superseded_by, None);
}

#[tokio::test]
async fn revoking_a_delegating_key_revokes_the_keys_it_made() {
    let h = Harness::new().await;
    let made = h
        .as_manager(
            Method::POST,
            "/admin/keys",
            Some(with(
                bounded_child(),
                "scopes",
                json!(["read", MANAGE_SCOPE]),
            )),
        )
        .await;
    let child = made.expect(StatusCode::CREATED)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The child delegates in turn.
    // (No later than its own expiry, as it must.)
    let body = with(bounded_child(), "expires_in_seconds", json!(900));
    let made = h
        .call(Method::POST, "/admin/keys", &child, Some(body))
        .await;
    let grandchild = made.expect(StatusCode::CREATED)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // A key the admin made for the same owner is nobody's child.
    let independent = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("alice"), "independent").scopes([Scope::READ]),
    )
    .await;
    for key in [&child, &grandchild, &independent] {
        assert_eq!(h.notes(key).await, StatusCode::OK);
    }

    let parent = id_of(&h.manager);
    h.as_admin(Method::DELETE, &format!("/admin/keys/{parent}"), None)
        .await
        .expect(StatusCode::OK);
    for key in [&h.manager, &child, &grandchild] {
        assert_eq!(h.notes(key).await, StatusCode::UNAUTHORIZED);
        assert!(h.record(key).await.is_revoked());
    }
    assert_eq!(h.notes(&independent).await, StatusCode::OK);
}

#[tokio::test]
async fn caps_bind_every_caller_and_name_the_field() {
    let h = Harness::with(|b| {
        b.manage_limits(Limits {
            max_keys_per_owner: 3,
            max_metadata_bytes: 64,
            max_allowed_ips: 2,
            max_rotation_grace: Duration::from_secs(3600),
            ..Limits::default()
        })
    })
    .await;
    let new = |name: &str| json!({"owner": "user:carol", "name": name, "scopes": ["read"]});
    let big = json!({"note": "x".repeat(100)});
    for (body, field) in [
        (with(new("big"), "metadata", big), "metadata"),
        (
            with(
                new("wide"),
                "allowed_ips",
                json!(["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
            ),
            "allowed_ips",
        ),
    ] {
        let reply = h.as_admin(Method::POST, "/admin/keys", Some(body)).await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            [field]
        );
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = h
            .as_admin(Method::POST, "/admin/keys", Some(new(&format!("k{i}"))))
            .await;
        ids.push(
            reply.expect(StatusCode::CREATED)["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let reply = h
        .as_admin(Method::POST, "/admin/keys", Some(new("one too many")))
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ["owner"]
    );
    let reply = h
        .as_admin(
            Method::POST,
            &format!("/admin/keys/{}/rotate", ids[0]),
            Some(json!({"grace_seconds": 7200})),
        )
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ["grace_seconds"]
    );
    let reply = h
        .as_admin(
            Method::PATCH,
            &format!("/admin/keys/{}", ids[0]),
            Some(json!({"metadata": {"note": "y".repeat(100)}})),
        )
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ["metadata"]
    );
    // Within the caps a rotation works, and a revocation makes room.
    h.as_admin(
        Method::POST,
        &format!("/admin/keys/{}/rotate", ids[0]),
        Some(json!({"grace_seconds": 3600})),
    )
    .await
    .expect(StatusCode::CREATED);
    // The old key counts until its grace ends: revoke it and one more.
    for id in &ids[..2] {
        h.as_admin(Method::DELETE, &format!("/admin/keys/{id}"), None)
            .await
            .expect(StatusCode::OK);
    }
    h.as_admin(Method::POST, "/admin/keys", Some(new("room again")))
        .await
        .expect(StatusCode::CREATED);
    // That was the last room.
    let reply = h
        .as_admin(Method::POST, "/admin/keys", Some(new("no room")))
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ["owner"]
    );
}

#[tokio::test]
async fn an_admin_still_grants_anything_within_the_caps() {
    let h = Harness::new().await;
    let me = id_of(&h.manager);
    // Lifting the delegating key's limits is an admin's call to make.
    let reply = h
        .as_admin(
            Method::PATCH,
            &format!("/admin/keys/{me}"),
            Some(json!({"rate_limit": "100000/s", "allowed_ips": [], "expires_at": null})),
        )
        .await;
    let view = reply.expect(StatusCode::OK);
    assert_eq!(view["rate_limit"], "100000/s");
    assert_eq!(view["expires_at"], Value::Null);
    let reply = h
        .as_admin(
            Method::POST,
            "/admin/keys",
            Some(json!({
                "owner": "user:alice",
                "name": "anything",
                "scopes": ["admin", "billing:write"],
                "metadata": {"plan": "enterprise"},
            })),
        )
        .await;
    let key = reply.expect(StatusCode::CREATED)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(h.record(&key).await.created_by, None);
}

// Attacks found by a review of the management path.

/// Guarantee: a `keys:manage` key's children die when it is revoked.
///
/// Attack: a child `C` (holding `keys:manage`) rotates a *sibling* key of
/// the same owner that no creator binds (here one the admin issued, no more
/// powerful than `C`). The rotation hands `C`'s holder a fresh plaintext
/// whose record has `created_by: None`: revoking `C`'s creator (and so `C`)
/// leaves that key working. `C`'s holder keeps access after the revocation
/// that was meant to cut it off (and the sibling's real holder is locked
/// out once the grace period ends). A delegating key may now rotate only
/// its own family and the keys descended from it.
#[tokio::test]
async fn a_child_cannot_rotate_a_sibling_out_of_its_creators_reach() {
    let h = Harness::with(|b| b).await;
    // A key of alice that the admin issued for some other integration.
    let sibling = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("alice"), "other integration")
            .scopes([Scope::READ])
            .rate_limit(Quota::per_second(1))
            .expires_in(Duration::from_secs(1800))
            .allowed_ips(["203.0.113.7/32".parse::<IpNet>().unwrap()]),
    )
    .await;
    // The delegate creates a child that may manage keys too.
    let child = h
        .call(
            Method::POST,
            "/admin/keys",
            &h.manager,
            Some(json!({
                "owner": "user:alice",
                "name": "child",
                "scopes": ["read", MANAGE_SCOPE],
                "expires_in_seconds": 1800,
                "rate_limit": "1/s",
                "allowed_ips": ["203.0.113.7"],
            })),
        )
        .await
        .expect(StatusCode::CREATED)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The child's holder tries to rotate the sibling to keep a plaintext.
    let refused = h
        .call(
            Method::POST,
            &format!("/admin/keys/{}/rotate", id_of(&sibling)),
            &child,
            Some(json!({ "grace_seconds": 0 })),
        )
        .await;
    let refused = refused.expect(StatusCode::FORBIDDEN);
    assert_eq!(refused["code"], "not_grantable");
    assert_eq!(refused["errors"][0]["field"], "id");
    // Nor its own creator.
    h.call(
        Method::POST,
        &format!("/admin/keys/{}/rotate", id_of(&h.manager)),
        &child,
        Some(json!({ "grace_seconds": 0 })),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    assert_eq!(
        h.notes(&sibling).await,
        StatusCode::OK,
        "the sibling is untouched"
    );
    // Its own key, yes: the successor stays within the creator's reach.
    let successor = h
        .call(
            Method::POST,
            &format!("/admin/keys/{}/rotate", id_of(&child)),
            &child,
            Some(json!({ "grace_seconds": 0 })),
        )
        .await
        .expect(StatusCode::CREATED)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The delegate is revoked: every key it (or its children) made must die.
    h.call(
        Method::DELETE,
        &format!("/admin/keys/{}", id_of(&h.manager)),
        &h.admin,
        None,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(h.notes(&child).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.notes(&successor).await,
        StatusCode::UNAUTHORIZED,
        "the child's rotated key dies with the delegate"
    );
}

/// Guarantee: the keys-per-owner cap cannot be bypassed (expired keys).
///
/// Attack: create keys that expire in a second (each fits, since expired
/// keys do not count), let them expire, then PATCH their expiry away.
/// `PATCH` never checks the cap, so the owner ends up with as many live
/// keys (each with its own rate-limit state) as it likes. Works for a
/// `keys:manage` key (bounded by its own expiry) and for `admin`. A revival
/// now counts against the cap like a new key.
#[tokio::test]
async fn expired_keys_revived_by_patch_stay_within_the_keys_per_owner_cap() {
    let h = Harness::with(|b| {
        b.manage_limits(Limits {
            max_keys_per_owner: 2,
            ..Limits::default()
        })
    })
    .await;
    let mut live = Vec::new();
    for i in 0..4 {
        let r = h
            .call(
                Method::POST,
                "/admin/keys",
                &h.admin,
                Some(json!({
                    "owner": "user:bob",
                    "name": format!("k{i}"),
                    "scopes": ["read"],
                    "expires_in_seconds": 1,
                })),
            )
            .await;
        let key = r.expect(StatusCode::CREATED)["key"]
            .as_str()
            .unwrap()
            .to_owned();
        // Every call advances the clock a second: it has expired now.
        h.clock.advance(Duration::from_secs(2));
        live.push(key);
    }
    let mut revived = 0;
    for key in &live {
        let answer = h
            .call(
                Method::PATCH,
                &format!("/admin/keys/{}", id_of(key)),
                &h.admin,
                Some(json!({ "expires_at": null })),
            )
            .await;
        if revived < 2 {
            answer.expect(StatusCode::OK);
            revived += 1;
        } else {
            let refused = answer.expect(StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(refused["errors"][0]["field"], "owner");
        }
    }
    let mut working = 0;
    for key in &live {
        if h.notes(key).await == StatusCode::OK {
            working += 1;
        }
    }
    assert!(
        working <= 2,
        "user:bob holds {working} live keys with max_keys_per_owner = 2"
    );
}

/// Guarantee: a `keys:manage` key can never change a key into one more
/// powerful than itself (TOCTOU between `update_as`'s check and the store
/// write).
///
/// Attack: two delegating keys of one owner, `wide_scopes` (read, write,
/// 1/s) and `fast` (read, 1000/s). Each sends a `PATCH` for the same target at once:
/// `wide_scopes` sets its scopes to read+write (fine against the target
/// *as read*, at 1/s), `fast` sets its quota to 1000/s (fine against the
/// target *as read*, with scopes read). The store merges both column-wise:
/// the target ends up read+write at 1000/s, more powerful than either key
/// that changed it. Over HTTP this is a timing race that an attacker
/// holding both keys can retry; the gate only makes it deterministic. Each
/// delegated change is now judged again as written, and taken back if the
/// key it leaves exceeds its grantor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_delegates_patching_at_once_cannot_make_a_key_stronger_than_either() {
    let inner = MemoryStore::new();
    // The first two updates wait for each other.
    let store = TestStore::new(inner.clone());
    let gate = Arc::new(tokio::sync::Barrier::new(2));
    store.before(Op::Update, move |call| {
        let gate = Arc::clone(&gate);
        Box::pin(async move {
            if call.number() < 2 {
                gate.wait().await;
            }
        })
    });
    let m = KeyManager::new(
        Arc::new(store),
        KeyFormat::new("t").unwrap(),
        KeyHasher::sha256(),
        Arc::new(FakeClock::starting_now()),
    );
    let manage = Scope::new(MANAGE_SCOPE).unwrap();
    let alice = || Owner::user("alice");
    let direct = KeyManager::new(
        Arc::new(inner.clone()),
        KeyFormat::new("t").unwrap(),
        KeyHasher::sha256(),
        Arc::new(FakeClock::starting_now()),
    );
    let wide_scopes = direct
        .create(
            NewKey::new(alice(), "wide scopes")
                .scopes([Scope::READ, Scope::WRITE, manage.clone()])
                .rate_limit(Quota::per_second(1)),
        )
        .await
        .unwrap()
        .record;
    let fast = direct
        .create(
            NewKey::new(alice(), "fast")
                .scopes([Scope::READ, manage.clone()])
                .rate_limit(Quota::per_second(1000)),
        )
        .await
        .unwrap()
        .record;
    let target = direct
        .create(
            NewKey::new(alice(), "target")
                .scopes([Scope::READ])
                .rate_limit(Quota::per_second(1)),
        )
        .await
        .unwrap()
        .record;
    let g1 = Grantor::new(&wide_scopes, None);
    let g2 = Grantor::new(&fast, None);
    let (m1, m2) = (m.clone(), m.clone());
    let id = target.id;
    let a = tokio::spawn(async move {
        m1.update_as(
            &g1,
            id,
            KeyUpdate {
                scopes: Some(Scopes::from([Scope::READ, Scope::WRITE])),
                ..KeyUpdate::default()
            },
        )
        .await
    });
    let b = tokio::spawn(async move {
        m2.update_as(
            &g2,
            id,
            KeyUpdate {
                rate_limit: Some(Some(Quotas::from(Quota::per_second(1000)))),
                ..KeyUpdate::default()
            },
        )
        .await
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let after = inner.find(id).await.unwrap().unwrap();
    let too_strong_for = |g: &KeyRecord| {
        keygate::core::may_grant(
            &keygate::core::KeySettings::of(g, None),
            &keygate::core::KeySettings::of(&after, None),
        )
        .is_err()
    };
    // At most one change stands, and the key is within the grantor of
    // whichever stood.
    assert!(a.is_err() || b.is_err(), "both changes stood: {after:?}");
    assert!(
        !(too_strong_for(&wide_scopes) && too_strong_for(&fast)),
        "both changes were accepted and the key is now {:?} at {:?}: more powerful than \
         either key that changed it",
        after.scopes,
        after.rate_limit
    );
}

/// Guarantee (availability of the delegation rule): a child's rotation
/// fails only if its creator is gone.
///
/// `is_gone` follows a rotation chain from the *family's first key* for at
/// most 64 links and then reports "gone". A delegating key that has been
/// rotated 64 times (e.g. a daily-rotated CI key, after two months) makes
/// every rotation of every key it created fail with `CreatorRevoked`, and
/// the freshly rotated child is revoked (the old one dies when its grace
/// ends): its children can no longer be rotated at all.
#[tokio::test]
async fn a_long_rotation_chain_of_the_creator_leaves_its_childrens_rotations_alone() {
    let m = KeyManager::new(
        Arc::new(MemoryStore::new()),
        KeyFormat::new("t").unwrap(),
        KeyHasher::sha256(),
        Arc::new(FakeClock::starting_now()),
    );
    let manage = Scope::new(MANAGE_SCOPE).unwrap();
    let mut parent = m
        .create(NewKey::new(Owner::user("a"), "parent").scopes([Scope::READ, manage]))
        .await
        .unwrap()
        .record;
    let child = m
        .create_as(
            &Grantor::new(&parent, None),
            NewKey::new(Owner::user("a"), "child").scopes([Scope::READ]),
        )
        .await
        .unwrap()
        .record;
    for _ in 0..64 {
        parent = m.rotate(parent.id, Duration::ZERO).await.unwrap().record;
    }
    assert!(!parent.is_revoked());
    let rotated = m.rotate(child.id, Duration::from_secs(60)).await;
    assert!(
        rotated.is_ok(),
        "the parent is alive, yet rotating its child fails: {rotated:?}"
    );
}
