//! Black-box tests of `examples/dual-auth` through its real router:
//! every kind of caller on every kind of route, people managing only their
//! own keys, and browsers calling cross-origin.

// `main` and the printing helpers are for `cargo run`, not for the tests.
#[allow(dead_code)]
#[path = "../examples/dual-auth/src/main.rs"]
mod dual_auth;

use axum::{Router, body::Body};
use dual_auth::{
    app::{AppState, BROWSER_ORIGINS, app, build_keygate},
    tokens::{Claims, ISSUER},
};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use keygate::core::{Environment, NewKey, Owner, Scope, Scopes};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &[u8] = b"a test secret of at least 32 bytes, not for production";

/// The service under test, and its keygate to issue keys with.
struct World {
    app: Router,
    state: AppState,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }
}

fn world() -> World {
    let state = AppState::new(build_keygate(), SECRET);
    World {
        app: app(state.clone()),
        state,
    }
}

impl World {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A key issued directly (as an operator would), plaintext.
    async fn issue(&self, owner: Owner, scopes: impl Into<Scopes>) -> String {
        self.state
            .keys
            .manager()
            .create(NewKey::new(owner, "issued by the test").scopes(scopes))
            .await
            .expect("create key")
            .key
            .expose_secret()
            .to_owned()
    }

    /// A well-formed key of this service that was never issued.
    fn unknown_key(&self) -> String {
        self.state
            .keys
            .format()
            .generate(Environment::Live)
            .expect("randomness")
            .expose_secret()
            .to_owned()
    }

    /// Signs in through `POST /login`.
    async fn login(&self, user: &str) -> String {
        let res = self
            .send(json_request(
                Method::POST,
                "/login",
                &[],
                &json!({ "username": user, "password": format!("{user}-password") }),
            ))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        res.body["access_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }
}

/// A JWT for `sub`, signed with `secret`, expiring `exp_offset` seconds
/// from now (negative: in the past).
fn token(secret: &[u8], sub: &str, exp_offset: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: sub.to_owned(),
        iss: ISSUER.to_owned(),
        iat: now - 7200,
        exp: now.saturating_add_signed(exp_offset),
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn api_key(key: &str) -> (&'static str, String) {
    ("x-api-key", key.to_owned())
}

fn request(method: Method, path: &str, headers: &[(&str, String)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        b = b.header(*name, value);
    }
    b.body(Body::empty()).expect("request")
}

fn json_request(
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        b = b.header(*name, value);
    }
    b.body(Body::from(body.to_string())).expect("request")
}

// ---- who may call what ----

#[tokio::test]
async fn every_caller_on_every_kind_of_route() {
    let w = world();
    let person = w.login("alice").await;
    let key = w.issue(Owner::service("nightly"), [Scope::READ]).await;
    let unknown = w.unknown_key();
    let expired = token(SECRET, "alice", -3600);
    let forged = token(b"someone else's secret, also 32 bytes long", "alice", 600);

    let callers: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("nobody", vec![]),
        ("person", vec![bearer(&person)]),
        ("key", vec![api_key(&key)]),
        ("key as bearer", vec![bearer(&key)]),
        ("invalid key", vec![api_key(&unknown)]),
        ("malformed key", vec![api_key("dual_live_nope")]),
        (
            "person + invalid key",
            vec![bearer(&person), api_key(&unknown)],
        ),
        ("person + valid key", vec![bearer(&person), api_key(&key)]),
        ("expired JWT", vec![bearer(&expired)]),
        ("forged JWT", vec![bearer(&forged)]),
        ("garbage JWT", vec![bearer("eyJ.not.a-token")]),
    ];
    // (status, code) on: people only, either, keys only.
    type Outcome = (u16, Option<&'static str>);
    let expected: [(&str, [Outcome; 3]); 11] = [
        (
            "nobody",
            [
                (401, Some("missing_credentials")),
                (401, Some("missing_credentials")),
                (401, Some("missing_key")),
            ],
        ),
        (
            "person",
            [(200, None), (200, None), (401, Some("missing_key"))],
        ),
        (
            "key",
            [(403, Some("people_only")), (200, None), (200, None)],
        ),
        (
            "key as bearer",
            [(403, Some("people_only")), (200, None), (200, None)],
        ),
        ("invalid key", [(401, Some("invalid_key")); 3]),
        ("malformed key", [(401, Some("malformed_key")); 3]),
        ("person + invalid key", [(401, Some("invalid_key")); 3]),
        (
            "person + valid key",
            [(400, Some("ambiguous_credentials")); 3],
        ),
        (
            "expired JWT",
            [
                (401, Some("expired_token")),
                (401, Some("expired_token")),
                (401, Some("missing_key")),
            ],
        ),
        (
            "forged JWT",
            [
                (401, Some("invalid_token")),
                (401, Some("invalid_token")),
                (401, Some("missing_key")),
            ],
        ),
        (
            "garbage JWT",
            [
                (401, Some("invalid_token")),
                (401, Some("invalid_token")),
                (401, Some("missing_key")),
            ],
        ),
    ];
    assert_eq!(callers.len(), expected.len());

    let mut wrong = Vec::new();
    for ((name, headers), (expected_name, outcomes)) in callers.iter().zip(&expected) {
        assert_eq!(name, expected_name);
        for (path, (status, code)) in ["/me", "/reports", "/export"].iter().zip(outcomes) {
            let res = w.send(request(Method::GET, path, headers)).await;
            let got = (res.status.as_u16(), res.code());
            if got != (*status, *code) {
                wrong.push(format!(
                    "{name} on {path}: expected {status} {code:?}, got {} {:?}",
                    got.0, got.1
                ));
            }
            if res.status == StatusCode::UNAUTHORIZED {
                assert!(
                    res.headers.contains_key(header::WWW_AUTHENTICATE),
                    "{name} on {path}: a 401 says how to authenticate"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn either_route_tells_the_handler_who_is_calling() {
    let w = world();
    let person = w.login("alice").await;
    let key = w.issue(Owner::service("nightly"), [Scope::READ]).await;
    let key_id = w.state.keys.format().parse(&key).expect("a key").id();

    let res = w
        .send(request(Method::GET, "/reports", &[bearer(&person)]))
        .await;
    assert_eq!(res.body, json!({ "caller": "person", "user_id": "alice" }));

    let res = w
        .send(request(Method::GET, "/reports", &[api_key(&key)]))
        .await;
    assert_eq!(
        res.body,
        json!({ "caller": "key", "key_id": key_id.to_string(), "owner": "service:nightly" })
    );

    let res = w
        .send(request(Method::GET, "/me", &[bearer(&person)]))
        .await;
    assert_eq!(res.body, json!({ "user_id": "alice" }));
}

#[tokio::test]
async fn a_key_on_shared_routes_still_needs_its_methods_scope() {
    let w = world();
    let manage_only = w
        .issue(Owner::user("alice"), [Scope::from_static("keys:manage")])
        .await;
    let res = w
        .send(request(Method::GET, "/reports", &[api_key(&manage_only)]))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.code(), Some("insufficient_scope"));
}

#[tokio::test]
async fn a_revoked_key_sinks_a_valid_jwt() {
    let w = world();
    let person = w.login("alice").await;
    let key = w.issue(Owner::user("alice"), [Scope::READ]).await;
    let id = w.state.keys.format().parse(&key).expect("a key").id();
    w.state.keys.manager().revoke(id).await.expect("revoke");
    for path in ["/me", "/reports", "/me/keys"] {
        let res = w
            .send(request(
                Method::GET,
                path,
                &[bearer(&person), api_key(&key)],
            ))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(res.code(), Some("revoked_key"), "{path}");
    }
}

#[tokio::test]
async fn login_refuses_wrong_passwords_and_does_not_cache_tokens() {
    let w = world();
    for (user, password) in [("alice", "bob-password"), ("mallory", "x"), ("alice", "")] {
        let res = w
            .send(json_request(
                Method::POST,
                "/login",
                &[],
                &json!({ "username": user, "password": password }),
            ))
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{user}/{password}");
        assert_eq!(res.code(), Some("invalid_credentials"));
    }
    let res = w
        .send(json_request(
            Method::POST,
            "/login",
            &[],
            &json!({ "username": "bob", "password": "bob-password" }),
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.body["token_type"], "Bearer");
    assert_eq!(res.body["expires_in"], 900);
}

// ---- people manage their own keys ----

async fn create(w: &World, auth: (&'static str, String), body: Value) -> Reply {
    w.send(json_request(Method::POST, "/me/keys", &[auth], &body))
        .await
}

async fn list(w: &World, auth: (&'static str, String)) -> Reply {
    w.send(request(Method::GET, "/me/keys", &[auth])).await
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["keys"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|k| k["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_person_creates_lists_rotates_and_revokes_their_keys() {
    let w = world();
    let alice = w.login("alice").await;

    let res = create(
        &w,
        bearer(&alice),
        json!({ "name": "laptop", "scopes": ["read", "write"], "expires_in_seconds": 30 * 86_400 }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.body["scopes"], json!(["read", "write"]));
    assert!(res.body["expires_at"].is_string());
    let key = res.body["key"]
        .as_str()
        .expect("the plaintext, once")
        .to_owned();
    let id = res.body["id"].as_str().expect("an id").to_owned();

    // The new key works, as alice.
    let used = w
        .send(request(Method::GET, "/reports", &[api_key(&key)]))
        .await;
    assert_eq!(used.status, StatusCode::OK);
    assert_eq!(used.body["owner"], "user:alice");

    // The listing shows it, without secrets.
    let listed = list(&w, bearer(&alice)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(ids(&listed), [id.as_str()]);
    let text = listed.body.to_string();
    assert!(!text.contains(&key), "the key is shown only once");
    for field in ["key", "digest", "secret"] {
        assert!(
            listed.body["keys"][0].get(field).is_none(),
            "no `{field}` in listings"
        );
    }

    // Rotation: a new key; the old one works through the grace period.
    let rotated = w
        .send(json_request(
            Method::POST,
            &format!("/me/keys/{id}/rotate"),
            &[bearer(&alice)],
            &json!({ "grace_seconds": 600 }),
        ))
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let new_key = rotated.body["key"].as_str().expect("a new key").to_owned();
    let new_id = rotated.body["id"].as_str().expect("an id").to_owned();
    assert_eq!(rotated.body["scopes"], json!(["read", "write"]));
    for k in [&key, &new_key] {
        let res = w
            .send(request(Method::GET, "/reports", &[api_key(k)]))
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let listed = list(&w, bearer(&alice)).await;
    let old = listed.body["keys"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("the old key is listed")
        .clone();
    assert_eq!(old["superseded_by"], new_id.as_str());

    // Rotating it again is a conflict; the new one can be revoked.
    let again = w
        .send(json_request(
            Method::POST,
            &format!("/me/keys/{id}/rotate"),
            &[bearer(&alice)],
            &json!({ "grace_seconds": 0 }),
        ))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let revoked = w
        .send(request(
            Method::DELETE,
            &format!("/me/keys/{new_id}"),
            &[bearer(&alice)],
        ))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.body["revoked_at"].is_string());
    let res = w
        .send(request(Method::GET, "/reports", &[api_key(&new_key)]))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), Some("revoked_key"));
}

#[tokio::test]
async fn nobody_sees_or_touches_another_persons_keys() {
    let w = world();
    let alice = w.login("alice").await;
    let bob = w.login("bob").await;
    let res = create(
        &w,
        bearer(&alice),
        json!({ "name": "alice's", "scopes": ["read"] }),
    )
    .await;
    let alice_key = res.body["key"].as_str().expect("a key").to_owned();
    let alice_id = res.body["id"].as_str().expect("an id").to_owned();
    let res = create(&w, bearer(&bob), json!({ "name": "bob's", "scopes": [] })).await;
    let bob_id = res.body["id"].as_str().expect("an id").to_owned();

    assert_eq!(ids(&list(&w, bearer(&alice)).await), [alice_id.as_str()]);
    assert_eq!(ids(&list(&w, bearer(&bob)).await), [bob_id.as_str()]);

    // Bob's attempts on alice's key look exactly like attempts on a key
    // that does not exist.
    let attempts = [
        (Method::GET, format!("/me/keys/{alice_id}")),
        (Method::DELETE, format!("/me/keys/{alice_id}")),
        (Method::POST, format!("/me/keys/{alice_id}/rotate")),
        (Method::DELETE, "/me/keys/0000000000".to_owned()),
        (Method::DELETE, "/me/keys/not-an-id".to_owned()),
    ];
    let grace = json!({ "grace_seconds": 0 });
    for (method, path) in attempts {
        let res = w
            .send(json_request(method.clone(), &path, &[bearer(&bob)], &grace))
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(res.body["code"], "not_found");
    }
    // Alice's key is untouched.
    let res = w
        .send(request(Method::GET, "/reports", &[api_key(&alice_key)]))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(ids(&list(&w, bearer(&alice)).await), [alice_id.as_str()]);
}

#[tokio::test]
async fn a_person_grants_only_the_allowed_scopes() {
    let w = world();
    let alice = w.login("alice").await;
    for scope in ["admin", "delete", "billing:read"] {
        let res = create(
            &w,
            bearer(&alice),
            json!({ "name": "greedy", "scopes": ["read", scope] }),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{scope}");
        assert_eq!(res.code(), Some("insufficient_scope"));
        assert_eq!(res.body["required_scope"], scope);
    }
    let res = create(
        &w,
        bearer(&alice),
        json!({ "name": "greedy", "scopes": ["NOT A SCOPE"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let res = create(
        &w,
        bearer(&alice),
        json!({ "name": "ci", "scopes": ["read", "keys:manage"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body["owner"], "user:alice");
    // Nothing refused was created.
    assert_eq!(ids(&list(&w, bearer(&alice)).await).len(), 1);
}

#[tokio::test]
async fn api_keys_manage_keys_only_with_keys_manage_and_only_their_owners() {
    let w = world();
    let alice = w.login("alice").await;
    let bob = w.login("bob").await;
    let plain = w
        .issue(Owner::user("alice"), [Scope::READ, Scope::WRITE])
        .await;
    let manager = w
        .issue(
            Owner::user("alice"),
            [Scope::READ, Scope::from_static("keys:manage")],
        )
        .await;
    let res = create(&w, bearer(&bob), json!({ "name": "bob's", "scopes": [] })).await;
    let bob_id = res.body["id"].as_str().expect("an id").to_owned();

    // Without `keys:manage`: refused on every management route.
    let res = list(&w, api_key(&plain)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.code(), Some("insufficient_scope"));
    assert_eq!(res.body["required_scope"], "keys:manage");
    let res = create(
        &w,
        api_key(&plain),
        json!({ "name": "sneaky", "scopes": [] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = w
        .send(request(
            Method::DELETE,
            &format!("/me/keys/{bob_id}"),
            &[api_key(&plain)],
        ))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // With it: alice's keys, and only hers.
    let res = list(&w, api_key(&manager)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(ids(&res).len(), 2);
    assert!(!ids(&res).contains(&bob_id));
    for (method, path) in [
        (Method::DELETE, format!("/me/keys/{bob_id}")),
        (Method::POST, format!("/me/keys/{bob_id}/rotate")),
    ] {
        let res = w
            .send(json_request(
                method.clone(),
                &path,
                &[api_key(&manager)],
                &json!({ "grace_seconds": 0 }),
            ))
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
    }

    // It grants what it holds (keygate's rule), never more.
    let res = create(
        &w,
        api_key(&manager),
        json!({ "name": "child", "scopes": ["read"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let child = res.body["key"].as_str().expect("a key").to_owned();
    let res = w
        .send(request(Method::GET, "/reports", &[api_key(&child)]))
        .await;
    assert_eq!(res.body["owner"], "user:alice");
    for scope in ["write", "admin"] {
        let res = create(
            &w,
            api_key(&manager),
            json!({ "name": "escalation", "scopes": [scope] }),
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{scope}");
        assert_eq!(res.code(), Some("insufficient_scope"));
    }

    // A person plus a key is still two identities.
    let res = list(&w, api_key(&manager)).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = w
        .send(request(
            Method::GET,
            "/me/keys",
            &[bearer(&alice), api_key(&manager)],
        ))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.code(), Some("ambiguous_credentials"));

    // An invalid key is refused before anything else.
    let res = list(&w, api_key(&w.unknown_key())).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), Some("invalid_key"));
}

#[tokio::test]
async fn a_key_cannot_make_a_key_that_outlives_or_outlasts_it() {
    let w = world();
    let manager = w
        .state
        .keys
        .manager()
        .create(
            NewKey::new(Owner::user("alice"), "expiring manager")
                .scopes([Scope::READ, Scope::from_static("keys:manage")])
                .expires_in(std::time::Duration::from_secs(2 * 86_400)),
        )
        .await
        .expect("create key")
        .key
        .expose_secret()
        .to_owned();
    // No expiry, or a later one: more than the key itself has.
    for body in [
        json!({ "name": "forever", "scopes": ["read"] }),
        json!({ "name": "later", "scopes": ["read"], "expires_in_seconds": 3 * 86_400 }),
    ] {
        let res = create(&w, api_key(&manager), body.clone()).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(res.code(), Some("not_grantable"), "{}", res.body);
    }
    let res = create(
        &w,
        api_key(&manager),
        json!({ "name": "sooner", "scopes": ["read"], "expires_in_seconds": 86_400 }),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let child = res.body["key"].as_str().expect("a key").to_owned();
    // And it dies with the key that made it.
    let id = manager.splitn(3, '_').nth(2).expect("an id")[..10]
        .parse()
        .expect("an id");
    w.state.keys.manager().revoke(id).await.expect("revoke");
    let res = w
        .send(request(Method::GET, "/reports", &[api_key(&child)]))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

// ---- browsers ----

fn preflight(path: &str, origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn cors_preflights_are_answered_without_a_key() {
    let w = world();
    let origin = BROWSER_ORIGINS[0];
    // `/export` requires a key: were keygate outside CORS, this would be a 401.
    for (path, method, headers) in [
        ("/export", "GET", "x-api-key"),
        ("/reports", "GET", "authorization"),
        ("/me/keys", "POST", "authorization,content-type"),
        ("/me/keys/Ab3Cd5Ef7G", "DELETE", "x-api-key"),
    ] {
        let res = w.send(preflight(path, origin, method, headers)).await;
        assert!(
            res.status == StatusCode::OK || res.status == StatusCode::NO_CONTENT,
            "{path}: {}",
            res.status
        );
        assert_eq!(res.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert!(!res.headers.contains_key(header::WWW_AUTHENTICATE));
        let allowed = res.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii");
        for h in headers.split(',') {
            assert!(allowed.contains(h), "{path}: {h} not in {allowed}");
        }
        let methods = res.headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .expect("ascii");
        assert!(methods.contains(method), "{path}: {methods}");
    }
}

#[tokio::test]
async fn cross_origin_calls_with_a_key_succeed_and_refusals_are_readable() {
    let w = world();
    let origin = BROWSER_ORIGINS[1];
    let key = w.issue(Owner::service("web"), [Scope::READ]).await;

    let res = w
        .send(request(
            Method::GET,
            "/export",
            &[("origin", origin.to_owned()), api_key(&key)],
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    assert_eq!(res.body["exported_for"], "service:web");

    // keygate's 401 carries the CORS headers too, so the page can read why.
    let res = w
        .send(request(
            Method::GET,
            "/export",
            &[("origin", origin.to_owned()), api_key(&w.unknown_key())],
        ))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    let exposed = res.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .expect("ascii");
    assert!(exposed.contains("www-authenticate"), "{exposed}");
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let w = world();
    let res = w
        .send(preflight(
            "/export",
            "https://evil.example",
            "GET",
            "x-api-key",
        ))
        .await;
    assert!(
        !res.headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    assert_ne!(res.status, StatusCode::UNAUTHORIZED);
}
