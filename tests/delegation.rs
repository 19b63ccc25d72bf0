#![cfg(feature = "manage")]
//! Delegated management through the real admin router: a `keys:manage` key
//! can never create or change a key (itself included) into one more
//! powerful than itself, its children die with it, and the caps bind
//! everyone.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::connect_info::MockConnectInfo, routing::get};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use keygate::{
    ApiKey, Keygate,
    core::{
        FakeClock, GovernorLimiter, IpNet, KeyId, KeyRecord, Limits, MemoryStore, NewKey, Owner,
        Quota, Scope,
    },
    manage::MANAGE_SCOPE,
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
            &keys,
            NewKey::new(Owner::service("ops"), "ops admin").scopes([Scope::ADMIN]),
        )
        .await;
        let manager = issue(
            &keys,
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
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", key);
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, text, json }
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

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    text: String,
    json: Value,
}

impl Reply {
    #[track_caller]
    fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        &self.json
    }

    /// Asserts a problem with this status and code; returns its fields.
    #[track_caller]
    fn problem(&self, status: StatusCode, code: &str) -> Vec<String> {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json["code"], code, "{}", self.text);
        let mut fields: Vec<String> = self.json["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect();
        fields.sort();
        fields
    }
}

async fn issue(keys: &Keygate, new: NewKey) -> String {
    keys.manager()
        .create(new)
        .await
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

fn id_of(key: &str) -> String {
    key.splitn(3, '_').nth(2).unwrap()[..10].to_owned()
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
        reply.problem(StatusCode::FORBIDDEN, "not_grantable"),
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
            reply.problem(StatusCode::FORBIDDEN, "not_grantable"),
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
        assert_eq!(reply.problem(StatusCode::FORBIDDEN, code), fields, "{body}");
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
        &h.keys,
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
        reply.problem(StatusCode::FORBIDDEN, "not_grantable"),
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
        &h.keys,
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
            reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
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
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
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
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
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
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
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
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
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
