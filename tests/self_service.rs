#![cfg(feature = "manage")]
//! The management router behind an application's own sign-in
//! (`keygate::manage::self_service`), driven over HTTP with two kinds of
//! sign-in: a JWT checked on the spot by the identify function, and a
//! session cookie looked up by the application's own middleware (the
//! session fallback: an in-memory session store), which hands keygate an
//! `Identity` in the request's extensions.
//!
//! Each drives the whole life of a key (create, list, rotate, revoke) and
//! every way a person might reach someone else's keys or a key more
//! powerful than the service allows.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::request::Parts,
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use http::{Method, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use keygate::{
    ApiKey, Keygate, MethodScopes,
    core::{
        AuditAction, AuditLog, AuditQuery, AuditStore, Environment, MemoryStore, NewKey, Owner,
        Scope,
    },
    manage::{self, AuthScheme, Identity, SelfService},
};
use keygate_test_support::{key::issue, reply::Reply};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &[u8] = b"a test secret of at least 32 bytes, not for production";

/// How people sign in to the service under test.
enum SignIn {
    /// `Authorization: Bearer <JWT>`, checked by the identify function.
    Jwt,
    /// `Cookie: session=<id>`, looked up by the application's middleware.
    Session(Arc<Sessions>),
}

/// The service under test: a notes API behind keygate's layer (to try the
/// keys people make), and the self-service router at `/me`.
struct World {
    app: Router,
    keys: Keygate,
    store: MemoryStore,
    audit: AuditLog,
    sign_in: SignIn,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    operator: bool,
}

/// The JWT check: a person, an operator, or nobody.
fn from_jwt(parts: &Parts) -> Option<Identity> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(SECRET), &validation)
            .ok()?
            .claims;
    let owner = Owner::user(claims.sub);
    Some(if claims.operator {
        Identity::operator(owner)
    } else {
        Identity::person(owner)
    })
}

fn jwt(user: &str, secret: &[u8]) -> String {
    let claims = Claims {
        sub: user.to_owned(),
        exp: jsonwebtoken::get_current_timestamp() + 600,
        operator: user == "ops",
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

/// A small in-memory session store: session id → (user, operator).
#[derive(Default)]
struct Sessions(Mutex<HashMap<String, (String, bool)>>);

impl Sessions {
    fn login(&self, keys: &Keygate, user: &str) -> String {
        // Any CSPRNG output will do for a session id.
        let id = keys
            .format()
            .generate(Environment::Test)
            .expect("randomness")
            .expose_secret()
            .replace('_', "");
        let mut sessions = self.0.lock().expect("not poisoned");
        sessions.insert(id.clone(), (user.to_owned(), user == "ops"));
        id
    }

    async fn find(&self, id: &str) -> Option<(String, bool)> {
        // A real store answers over the network.
        tokio::task::yield_now().await;
        self.0.lock().expect("not poisoned").get(id).cloned()
    }
}

/// The application's own session middleware: whoever the cookie names
/// goes into the request's extensions as an `Identity`.
async fn session_layer(
    State(sessions): State<Arc<Sessions>>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("session="))
        .map(str::to_owned);
    if let Some(id) = id
        && let Some((user, operator)) = sessions.find(&id).await
    {
        let owner = Owner::user(user);
        req.extensions_mut().insert(if operator {
            Identity::operator(owner)
        } else {
            Identity::person(owner)
        });
    }
    next.run(req).await
}

impl World {
    fn new(jwt: bool) -> Self {
        let store = MemoryStore::new();
        let audit = AuditLog::spawn(Arc::new(store.clone()), 64);
        let keys = Keygate::builder(store.clone())
            .prefix("mbk")
            .audit_log(audit.clone())
            .build();
        let notes = Router::new()
            .route(
                "/notes",
                get(|key: ApiKey| async move { format!("notes of {}", key.owner()) }),
            )
            .route_layer(keys.layer());
        let (me, sign_in) = if jwt {
            let config = SelfService::new(from_jwt)
                .grantable_scopes([Scope::READ, Scope::WRITE])
                .auth_scheme(AuthScheme::bearer().bearer_format("JWT"));
            (manage::self_service(&keys, config), SignIn::Jwt)
        } else {
            let sessions = Arc::new(Sessions::default());
            let config = SelfService::from_extension().auth_scheme(
                AuthScheme::cookie("session").description("The cookie `POST /login` sets"),
            );
            let me = manage::self_service(&keys, config).route_layer(
                middleware::from_fn_with_state(Arc::clone(&sessions), session_layer),
            );
            (me, SignIn::Session(sessions))
        };
        Self {
            app: notes.nest("/me", me),
            keys,
            store,
            audit,
            sign_in,
        }
    }

    /// The credential `user` signs in with.
    fn login(&self, user: &str) -> (header::HeaderName, String) {
        match &self.sign_in {
            SignIn::Jwt => (
                header::AUTHORIZATION,
                format!("Bearer {}", jwt(user, SECRET)),
            ),
            SignIn::Session(sessions) => (
                header::COOKIE,
                format!("theme=dark; session={}", sessions.login(&self.keys, user)),
            ),
        }
    }

    /// A credential that looks right and is not: a JWT signed with another
    /// secret, a session id nobody was given.
    fn forged(&self) -> (header::HeaderName, String) {
        match &self.sign_in {
            SignIn::Jwt => (
                header::AUTHORIZATION,
                format!(
                    "Bearer {}",
                    jwt("alice", b"someone else's secret, also 32 bytes long")
                ),
            ),
            SignIn::Session(_) => (header::COOKIE, "session=0123456789abcdef".to_owned()),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        who: Option<&(header::HeaderName, String)>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some((name, value)) = who {
            req = req.header(name, value);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req.body(axum::body::Body::from(body)).expect("request");
        Reply::read(self.app.clone().oneshot(req).await.expect("infallible")).await
    }

    async fn notes(&self, key: &str) -> StatusCode {
        let req = http::Request::get("/notes")
            .header("x-api-key", key)
            .body(axum::body::Body::empty())
            .expect("request");
        self.app
            .clone()
            .oneshot(req)
            .await
            .expect("infallible")
            .status()
    }
}

fn ids(list: &Value) -> BTreeSet<String> {
    list["keys"]
        .as_array()
        .expect("a list of keys")
        .iter()
        .map(|k| k["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// The whole life of a key, for a person signed in with `w`'s sign-in:
/// create, list (their own only), rotate, revoke.
async fn life_of_a_key(w: &World) {
    let alice = w.login("alice");
    let bob = w.login("bob");

    // Create: no `owner`, so the person's own.
    let made = w
        .call(
            Method::POST,
            "/me/keys",
            Some(&alice),
            Some(json!({"name": "laptop", "scopes": ["read", "write"]})),
        )
        .await;
    let made = made.expect(StatusCode::CREATED);
    assert_eq!(made["owner"], "user:alice");
    let key = str_of(&made["key"]);
    let id = str_of(&made["id"]);
    assert_eq!(w.notes(&key).await, StatusCode::OK);
    let theirs = w
        .call(
            Method::POST,
            "/me/keys",
            Some(&bob),
            Some(json!({"name": "bob's", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);

    // List: hers only, never the key itself.
    let list = w.call(Method::GET, "/me/keys", Some(&alice), None).await;
    assert_eq!(list.header("cache-control"), Some("no-store"));
    let list = list.expect(StatusCode::OK);
    assert_eq!(ids(&list), BTreeSet::from([id.clone()]));
    assert!(!list.to_string().contains(&key));
    let bobs = w
        .call(Method::GET, "/me/keys", Some(&bob), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&bobs), BTreeSet::from([str_of(&theirs["id"])]));

    // Rotate: a new key; the old one works through the grace period.
    let rotated = w
        .call(
            Method::POST,
            &format!("/me/keys/{id}/rotate"),
            Some(&alice),
            Some(json!({"grace_seconds": 600})),
        )
        .await
        .expect(StatusCode::CREATED);
    let new_key = str_of(&rotated["key"]);
    let new_id = str_of(&rotated["id"]);
    assert_eq!(rotated["scopes"], json!(["read", "write"]));
    for k in [&key, &new_key] {
        assert_eq!(w.notes(k).await, StatusCode::OK);
    }

    // Revoke: refused at once.
    let revoked = w
        .call(
            Method::DELETE,
            &format!("/me/keys/{new_id}"),
            Some(&alice),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(w.notes(&new_key).await, StatusCode::UNAUTHORIZED);

    // The audit trail names the person, not a key.
    w.audit.flush().await;
    for key_id in [&id, &new_id] {
        let events = w
            .store
            .query_audit(&AuditQuery {
                key_id: Some(key_id.parse().expect("an id")),
                ..AuditQuery::default()
            })
            .await
            .expect("audit");
        let changes: Vec<_> = events
            .iter()
            .filter(|e| e.action != AuditAction::Authenticate)
            .collect();
        assert!(!changes.is_empty());
        assert!(
            changes
                .iter()
                .all(|e| e.actor.as_deref() == Some("user:alice")),
            "{changes:?}"
        );
    }
}

/// Everything that is not signed in, or signed in wrongly, is a 401 before
/// anything is read or written.
async fn not_signed_in(w: &World, challenge: Option<&str>) {
    let forged = w.forged();
    for who in [None, Some(&forged)] {
        for (method, path, body) in [
            (Method::GET, "/me/keys", None),
            (
                Method::POST,
                "/me/keys",
                Some(json!({"name": "x", "scopes": ["read"]})),
            ),
            (Method::DELETE, "/me/keys/Ab3Cd5Ef7G", None),
            (Method::GET, "/me/openapi.json", None),
        ] {
            let res = w.call(method.clone(), path, who, body).await;
            res.problem(StatusCode::UNAUTHORIZED, "not_signed_in");
            assert_eq!(res.header("www-authenticate"), challenge, "{method} {path}");
        }
    }
    // Nothing was made.
    let ops = w.login("ops");
    let all = w
        .call(Method::GET, "/me/keys", Some(&ops), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&all), BTreeSet::new());
}

/// Bob tries every way to reach alice's keys, and alice every way to make a
/// key more powerful than the service lets people grant.
async fn attacks(w: &World) {
    let alice = w.login("alice");
    let bob = w.login("bob");
    let mut alice_ids = Vec::new();
    let mut alice_keys = Vec::new();
    for name in ["one", "two", "three"] {
        let made = w
            .call(
                Method::POST,
                "/me/keys",
                Some(&alice),
                Some(json!({"name": name, "scopes": ["read"]})),
            )
            .await
            .expect(StatusCode::CREATED);
        alice_ids.push(str_of(&made["id"]));
        alice_keys.push(str_of(&made["key"]));
    }
    let bob_id = str_of(
        &w.call(
            Method::POST,
            "/me/keys",
            Some(&bob),
            Some(json!({"name": "bob's", "scopes": []})),
        )
        .await
        .expect(StatusCode::CREATED)["id"],
    );

    // Another owner in the body, or in the query: 403, nothing made.
    w.call(
        Method::POST,
        "/me/keys",
        Some(&bob),
        Some(json!({"owner": "user:alice", "name": "mine now", "scopes": ["read"]})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "owner_not_allowed");
    w.call(Method::GET, "/me/keys?owner=user%3Aalice", Some(&bob), None)
        .await
        .problem(StatusCode::FORBIDDEN, "owner_not_allowed");

    // Another person's key id in the path: exactly like no such key.
    let a = &alice_ids[0];
    for (method, path, body) in [
        (Method::GET, format!("/me/keys/{a}"), None),
        (
            Method::PATCH,
            format!("/me/keys/{a}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/me/keys/{a}"), None),
        (
            Method::POST,
            format!("/me/keys/{a}/rotate"),
            Some(json!({"grace_seconds": 0})),
        ),
        (Method::GET, format!("/me/keys/{a}/usage"), None),
    ] {
        w.call(method, &path, Some(&bob), body)
            .await
            .problem(StatusCode::NOT_FOUND, "not_found");
    }
    for key in &alice_keys {
        assert_eq!(
            w.notes(key).await,
            StatusCode::OK,
            "alice's keys still work"
        );
    }

    // A cursor from alice's listing positions bob in his own list, nothing
    // more.
    let page = w
        .call(Method::GET, "/me/keys?limit=1", Some(&alice), None)
        .await
        .expect(StatusCode::OK);
    let cursor = str_of(&page["next_cursor"]);
    for c in [cursor.clone(), format!("{}.{a}", u64::MAX / 4)] {
        let res = w
            .call(
                Method::GET,
                &format!("/me/keys?cursor={c}"),
                Some(&bob),
                None,
            )
            .await
            .expect(StatusCode::OK);
        assert!(
            ids(&res).is_subset(&BTreeSet::from([bob_id.clone()])),
            "{res}"
        );
    }
    // Her own cursor pages through her own keys.
    let rest = w
        .call(
            Method::GET,
            &format!("/me/keys?cursor={cursor}"),
            Some(&alice),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&rest).len(), 2);
    assert!(ids(&rest).iter().all(|id| alice_ids.contains(id)));

    // More than people may grant: scopes outside the ceiling (`admin`
    // above all), metadata, a key made to outgrow the ceiling.
    for scope in ["admin", "keys:manage", "billing:read"] {
        let res = w
            .call(
                Method::POST,
                "/me/keys",
                Some(&alice),
                Some(json!({"name": "greedy", "scopes": ["read", scope]})),
            )
            .await;
        res.problem(StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(res.json()["required_scope"], scope);
        assert_eq!(res.fields(), vec!["scopes[1]"]);
    }
    w.call(
        Method::POST,
        "/me/keys",
        Some(&alice),
        Some(json!({"name": "tenant", "scopes": ["read"], "metadata": {"tenant": "acme"}})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "not_grantable");
    w.call(
        Method::PATCH,
        &format!("/me/keys/{a}"),
        Some(&alice),
        Some(json!({"scopes": ["read", "admin"]})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    // A key an operator gave her beyond the ceiling: she may revoke it, not
    // rotate it into a fresh one.
    let beyond = issue(
        w.keys.manager(),
        NewKey::new(Owner::user("alice"), "from ops").scopes([Scope::from_static("billing:read")]),
    )
    .await;
    let beyond_id = beyond.split('_').nth(2).expect("an id")[..10].to_owned();
    w.call(
        Method::POST,
        &format!("/me/keys/{beyond_id}/rotate"),
        Some(&alice),
        Some(json!({"grace_seconds": 0})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    w.call(
        Method::DELETE,
        &format!("/me/keys/{beyond_id}"),
        Some(&alice),
        None,
    )
    .await
    .expect(StatusCode::OK);
    // Nothing refused was made.
    let mine = w
        .call(Method::GET, "/me/keys?status=active", Some(&alice), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&mine).len(), 3);
}

/// An operator sees and manages everyone's keys, and names owners.
async fn operator(w: &World) {
    let alice = w.login("alice");
    let ops = w.login("ops");
    let hers = w
        .call(
            Method::POST,
            "/me/keys",
            Some(&alice),
            Some(json!({"name": "hers", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let made = w
        .call(
            Method::POST,
            "/me/keys",
            Some(&ops),
            Some(json!({"owner": "service:billing", "name": "billing", "scopes": ["admin"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let all = w
        .call(Method::GET, "/me/keys", Some(&ops), None)
        .await
        .expect(StatusCode::OK);
    assert!(ids(&all).contains(&str_of(&hers["id"])));
    assert!(ids(&all).contains(&str_of(&made["id"])));
    let only = w
        .call(Method::GET, "/me/keys?owner=user%3Aalice", Some(&ops), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ids(&only), BTreeSet::from([str_of(&hers["id"])]));
    w.call(
        Method::DELETE,
        &format!("/me/keys/{}", str_of(&hers["id"])),
        Some(&ops),
        None,
    )
    .await
    .expect(StatusCode::OK);
    // And what an operator made, a person cannot see.
    w.call(
        Method::GET,
        &format!("/me/keys/{}", str_of(&made["id"])),
        Some(&alice),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_jwt_user_creates_lists_rotates_and_revokes_only_their_own_keys() {
    life_of_a_key(&World::new(true)).await;
}

#[tokio::test]
async fn a_session_cookie_user_creates_lists_rotates_and_revokes_only_their_own_keys() {
    life_of_a_key(&World::new(false)).await;
}

#[tokio::test]
async fn without_a_valid_jwt_every_route_is_a_401_with_a_bearer_challenge() {
    not_signed_in(&World::new(true), Some("Bearer")).await;
}

#[tokio::test]
async fn without_a_valid_session_every_route_is_a_401() {
    not_signed_in(&World::new(false), None).await;
}

#[tokio::test]
async fn a_jwt_user_cannot_reach_another_persons_keys_or_grant_beyond_the_ceiling() {
    attacks(&World::new(true)).await;
}

#[tokio::test]
async fn a_session_user_cannot_reach_another_persons_keys_or_grant_beyond_the_ceiling() {
    attacks(&World::new(false)).await;
}

#[tokio::test]
async fn a_jwt_operator_sees_and_manages_everyones_keys() {
    operator(&World::new(true)).await;
}

#[tokio::test]
async fn a_session_operator_sees_and_manages_everyones_keys() {
    operator(&World::new(false)).await;
}

#[tokio::test]
async fn the_document_is_the_key_routers_with_the_applications_sign_in() {
    let bearer = World::new(true);
    let cookie = World::new(false);
    let jwt_doc = bearer
        .call(
            Method::GET,
            "/me/openapi.json",
            Some(&bearer.login("alice")),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let cookie_doc = cookie
        .call(
            Method::GET,
            "/me/openapi.json",
            Some(&cookie.login("alice")),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        jwt_doc["components"]["securitySchemes"],
        json!({"sign_in": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}})
    );
    assert_eq!(
        cookie_doc["components"]["securitySchemes"],
        json!({"sign_in": {"type": "apiKey", "in": "cookie", "name": "session",
            "description": "The cookie `POST /login` sets"}})
    );
    assert_eq!(jwt_doc["security"], json!([{"sign_in": []}]));
    assert_eq!(jwt_doc["servers"], json!([{"url": "/me"}]));

    // The same operations and schemas as the API-key router's document.
    let keys = Keygate::builder(MemoryStore::new()).prefix("mbk").build();
    let admin = issue(
        keys.manager(),
        NewKey::new(Owner::service("ops"), "admin").scopes([Scope::ADMIN]),
    )
    .await;
    let app: Router = Router::new().nest("/admin", manage::router(&keys));
    let req = http::Request::get("/admin/openapi.json")
        .header("x-api-key", admin)
        .body(axum::body::Body::empty())
        .expect("request");
    let key_doc = Reply::read(app.oneshot(req).await.expect("infallible"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        jwt_doc["components"]["schemas"],
        key_doc["components"]["schemas"]
    );
    let ops = |doc: &Value| -> Vec<(String, Vec<String>)> {
        doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .map(|(path, item)| {
                let methods = item.as_object().expect("an item").keys().cloned().collect();
                (path.clone(), methods)
            })
            .collect()
    };
    assert_eq!(ops(&jwt_doc), ops(&key_doc));
    // Its 401 is the router's own.
    assert!(
        jwt_doc["paths"]["/keys"]["get"]["responses"]["401"]["description"]
            .as_str()
            .expect("a description")
            .contains("not_signed_in")
    );
}

#[tokio::test]
async fn an_api_key_identified_by_the_application_is_judged_as_by_the_key_router() {
    // A service where machines share the route: its identify function
    // hands over the key keygate's (optional) layer admitted.
    let store = MemoryStore::new();
    let keys = Keygate::builder(store).prefix("mbk").build();
    let config = SelfService::new(|parts: &Parts| {
        parts
            .extensions
            .get::<ApiKey>()
            .cloned()
            .map(Identity::api_key)
            .or_else(|| from_jwt(parts))
    });
    let app: Router = Router::new().nest(
        "/me",
        // The router checks what a key may manage; the layer only
        // authenticates.
        manage::self_service(&keys, config).route_layer(
            keys.layer()
                .optional(true)
                .method_scopes(MethodScopes::none()),
        ),
    );
    let plain = issue(
        keys.manager(),
        NewKey::new(Owner::user("carol"), "plain").scopes([Scope::READ]),
    )
    .await;
    let manager = issue(
        keys.manager(),
        NewKey::new(Owner::user("carol"), "manager")
            .scopes([Scope::READ, Scope::from_static("keys:manage")])
            .expires_in(Duration::from_secs(3600)),
    )
    .await;
    let send = |key: &str, body: Value| {
        let req = http::Request::post("/me/keys")
            .header("x-api-key", key)
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .expect("request");
        let app = app.clone();
        async move { Reply::read(app.oneshot(req).await.expect("infallible")).await }
    };
    send(&plain, json!({"name": "x", "scopes": []}))
        .await
        .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    // Held to itself, not to the people's ceiling: no `write`, no longer
    // life than its own.
    send(&manager, json!({"name": "x", "scopes": ["write"]}))
        .await
        .problem(StatusCode::FORBIDDEN, "insufficient_scope");
    send(&manager, json!({"name": "x", "scopes": ["read"]}))
        .await
        .problem(StatusCode::FORBIDDEN, "not_grantable");
    let made = send(
        &manager,
        json!({"name": "x", "scopes": ["read"], "expires_in_seconds": 60}),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(made["owner"], "user:carol");
}

#[test]
#[should_panic(expected = "people may not grant `admin`")]
fn people_are_never_configured_to_grant_admin() {
    let _ = SelfService::from_extension().grantable_scopes([Scope::READ, Scope::ADMIN]);
}

/// A page on another site can make a signed-in person's browser send a
/// form (`text/plain`, `application/x-www-form-urlencoded`,
/// `multipart/form-data`) or a `no-cors` fetch of an untyped body, cookie
/// included when the cookie allows it: none of them may create or change a
/// key (CSRF).
#[tokio::test]
async fn cross_site_bodies_that_are_not_declared_json_change_nothing() {
    let w = World::new(false);
    let (name, cookie) = w.login("alice");
    let created = w
        .call(
            Method::POST,
            "/me/keys",
            Some(&(name.clone(), cookie.clone())),
            Some(serde_json::json!({ "name": "mine", "scopes": ["read"] })),
        )
        .await;
    created.expect(StatusCode::CREATED);
    let id = str_of(&created.json()["id"]);
    let payload = r#"{"name":"planted","scopes":["read","write"]}"#;
    for (method, path, content_type) in [
        (Method::POST, "/me/keys".to_owned(), Some("text/plain")),
        (
            Method::POST,
            "/me/keys".to_owned(),
            Some("text/plain;charset=UTF-8"),
        ),
        (
            Method::POST,
            "/me/keys".to_owned(),
            Some("application/x-www-form-urlencoded"),
        ),
        (
            Method::POST,
            "/me/keys".to_owned(),
            Some("multipart/form-data; boundary=x"),
        ),
        (Method::POST, "/me/keys".to_owned(), None),
        (Method::PATCH, format!("/me/keys/{id}"), Some("text/plain")),
        (
            Method::POST,
            format!("/me/keys/{id}/rotate"),
            Some("text/plain"),
        ),
    ] {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&path)
            .header(&name, &cookie);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(axum::body::Body::from(payload)).expect("request");
        let reply = Reply::read(w.app.clone().oneshot(req).await.expect("infallible")).await;
        reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        let _ = method;
    }
    let list = w
        .call(Method::GET, "/me/keys", Some(&(name, cookie)), None)
        .await;
    let listed = list.expect(StatusCode::OK);
    assert_eq!(
        ids(&listed),
        BTreeSet::from([id]),
        "nothing planted, nothing rotated"
    );
    // `application/*+json` is JSON.
    let vendor = w.login("bob");
    let req = http::Request::post("/me/keys")
        .header(&vendor.0, &vendor.1)
        .header(header::CONTENT_TYPE, "application/vnd.api+json")
        .body(axum::body::Body::from(r#"{"name":"ok","scopes":["read"]}"#))
        .expect("request");
    let reply = Reply::read(w.app.clone().oneshot(req).await.expect("infallible")).await;
    reply.expect(StatusCode::CREATED);
}
