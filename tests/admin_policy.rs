#![cfg(feature = "manage")]
//! The management router's listing filters, lifetime policy, revoked keys
//! and OpenAPI bounds, driven over HTTP through the real router; and, with
//! the `docs` feature, its docs page.

use std::time::Duration;

use axum::{Router, routing::get};
use http::{Method, StatusCode};
use keygate::{
    ApiKey, Keygate,
    core::{FakeClock, Limits, MemoryStore, NewKey, Owner, Scope},
    manage::MANAGE_SCOPE,
};
use keygate_test_support::{
    key::{id_of, issue},
    reply::{Reply, json_request},
};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tower::ServiceExt;

const DAY: Duration = Duration::from_secs(86_400);

struct Harness {
    app: Router,
    keys: Keygate,
    clock: FakeClock,
    /// An `admin` key of `service:ops`.
    admin: String,
}

impl Harness {
    async fn with(
        configure: impl FnOnce(keygate::KeygateBuilder) -> keygate::KeygateBuilder,
    ) -> Self {
        let clock = FakeClock::starting_now();
        let keys = configure(
            Keygate::builder(MemoryStore::new())
                .prefix("mbk")
                .clock(clock.clone()),
        )
        .build();
        let admin_router = keygate::manage::router(&keys);
        #[cfg(feature = "docs")]
        let admin_router = admin_router.merge(keygate::manage::docs(&keys));
        let app = Router::new()
            .route(
                "/notes",
                get(|key: ApiKey| async move { format!("notes of {}", key.owner()) }),
            )
            .layer(keys.layer())
            .nest("/admin", admin_router);
        // Made before any lifetime policy: it outlives the tests' clock.
        let admin = issue(
            &keys.manager().clone().with_limits(Limits::default()),
            NewKey::new(Owner::service("ops"), "ops admin").scopes([Scope::ADMIN]),
        )
        .await;
        clock.advance(Duration::from_secs(1));
        Self {
            app,
            keys,
            clock,
            admin,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map(|b| b.to_string());
        let req = json_request(method, path, key, body.as_deref());
        Reply::read(self.app.clone().oneshot(req).await.unwrap()).await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.admin), body).await
    }

    /// Creates a key as admin and returns its answer.
    async fn create(&self, body: Value) -> Value {
        self.admin(Method::POST, "/admin/keys", Some(body))
            .await
            .expect(StatusCode::CREATED)
    }

    /// The ids a listing answers, in order.
    async fn ids(&self, key: &str, query: &str) -> Vec<String> {
        let reply = self
            .call(Method::GET, &format!("/admin/keys{query}"), Some(key), None)
            .await;
        ids(&reply.expect(StatusCode::OK))
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

fn refs(v: &[String]) -> Vec<&String> {
    v.iter().collect()
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Days between a key's creation and expiry, as answered.
fn lifetime_days(key: &Value) -> i64 {
    (time_of(&key["expires_at"]) - time_of(&key["created_at"])).whole_days()
}

/// An admin lists every owner's keys by status and environment; `expiring`
/// is the service's expiry-warning window. A `keys:manage` key sees only its
/// own owner's keys whatever filters, owner or cursor it sends.
#[tokio::test]
async fn listing_filters_by_state_and_a_delegate_cannot_widen_its_view() {
    let h = Harness::with(|b| b.expiry_warning(2 * DAY)).await;
    let make = |owner: &str, name: &str, extra: Value| {
        let mut body = json!({"owner": owner, "name": name, "scopes": ["read"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let alice_live = str_of(&h.create(make("user:alice", "live", json!({}))).await["id"]);
    h.clock.advance(Duration::from_secs(1));
    let alice_test = str_of(
        &h.create(make("user:alice", "test", json!({"environment": "test"})))
            .await["id"],
    );
    h.clock.advance(Duration::from_secs(1));
    let alice_soon = str_of(
        &h.create(make(
            "user:alice",
            "soon",
            json!({"expires_in_seconds": 86_400}),
        ))
        .await["id"],
    );
    h.clock.advance(Duration::from_secs(1));
    let alice_later = str_of(
        &h.create(make(
            "user:alice",
            "later",
            json!({"expires_in_seconds": 3 * 86_400}),
        ))
        .await["id"],
    );
    h.clock.advance(Duration::from_secs(1));
    let bob_soon = str_of(
        &h.create(make(
            "user:bob",
            "bob soon",
            json!({"expires_in_seconds": 3_600}),
        ))
        .await["id"],
    );
    h.clock.advance(Duration::from_secs(1));
    let bob_revoked = str_of(&h.create(make("user:bob", "bob gone", json!({}))).await["id"]);
    h.admin(Method::DELETE, &format!("/admin/keys/{bob_revoked}"), None)
        .await
        .expect(StatusCode::OK);
    let ops = id_of(&h.admin).to_owned();

    // The operator's view: every key, newest first, then each state.
    let all = h.ids(&h.admin, "").await;
    assert_eq!(
        refs(&all),
        [
            &bob_revoked,
            &bob_soon,
            &alice_later,
            &alice_soon,
            &alice_test,
            &alice_live,
            &ops
        ]
    );
    assert_eq!(
        refs(&h.ids(&h.admin, "?status=expiring").await),
        [&bob_soon, &alice_soon],
        "expiring: within the service's 2-day warning window, not the 3-day key"
    );
    assert_eq!(
        refs(&h.ids(&h.admin, "?status=revoked").await),
        [&bob_revoked]
    );
    assert_eq!(
        refs(&h.ids(&h.admin, "?environment=test").await),
        [&alice_test]
    );
    assert_eq!(
        refs(&h.ids(&h.admin, "?owner=user:bob&status=active").await),
        [&bob_soon]
    );
    h.clock.advance(2 * 3_600 * Duration::from_secs(1));
    assert_eq!(refs(&h.ids(&h.admin, "?status=expired").await), [&bob_soon]);

    // A delegate of alice: the same filters, only alice's keys.
    let delegate = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("alice"), "alice manager")
            .scopes([Scope::READ, Scope::from_static(MANAGE_SCOPE)]),
    )
    .await;
    let mine = id_of(&delegate).to_owned();
    assert_eq!(
        refs(&h.ids(&delegate, "").await),
        [&mine, &alice_later, &alice_soon, &alice_test, &alice_live]
    );
    assert_eq!(
        refs(&h.ids(&delegate, "?status=expiring").await),
        [&alice_soon]
    );
    assert!(h.ids(&delegate, "?status=revoked").await.is_empty());
    assert!(h.ids(&delegate, "?status=expired").await.is_empty());
    assert_eq!(
        refs(&h.ids(&delegate, "?environment=test").await),
        [&alice_test]
    );
    // Naming another owner, with or without filters, is refused.
    for query in [
        "?owner=user:bob",
        "?owner=user:bob&status=revoked",
        "?owner=service:ops&environment=live",
        "?status=active&owner=user%3Abob",
    ] {
        h.call(
            Method::GET,
            &format!("/admin/keys{query}"),
            Some(&delegate),
            None,
        )
        .await
        .problem(StatusCode::FORBIDDEN, "owner_not_allowed");
    }
    // Paging one key at a time never reaches another owner's keys, even
    // with a cursor taken from the operator's listing.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let page = h
            .call(
                Method::GET,
                &format!("/admin/keys{query}"),
                Some(&delegate),
                None,
            )
            .await
            .expect(StatusCode::OK);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(!seen.contains(&bob_soon) && !seen.contains(&bob_revoked) && !seen.contains(&ops));
    let operator_page = h
        .admin(Method::GET, "/admin/keys?limit=1", None)
        .await
        .expect(StatusCode::OK);
    let cursor = str_of(&operator_page["next_cursor"]);
    let after = h
        .ids(&delegate, &format!("?cursor={cursor}&status=active"))
        .await;
    assert!(
        after
            .iter()
            .all(|id| [&mine, &alice_later, &alice_soon, &alice_test, &alice_live].contains(&id))
    );

    // Bad filters are 422s naming the parameter.
    for (query, field) in [
        ("?status=superseded", "status"),
        ("?status=", "status"),
        ("?environment=prod", "environment"),
        ("?owner=", "owner"),
        ("?cursor=", "cursor"),
    ] {
        let reply = h
            .admin(Method::GET, &format!("/admin/keys{query}"), None)
            .await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            [field],
            "{query}"
        );
    }
}

/// `default_key_lifetime` and `max_key_lifetime` through the router: every
/// create, change and rotation obeys them, whoever asks, and huge, negative,
/// fractional and overflowing values are 422s that store nothing.
#[tokio::test]
async fn the_lifetime_policy_holds_through_the_router() {
    let h = Harness::with(|b| b.default_key_lifetime(30 * DAY).max_key_lifetime(90 * DAY)).await;
    // A key made before the policy (through a manager without it).
    let legacy = h
        .keys
        .manager()
        .clone()
        .with_limits(Limits::default())
        .create(NewKey::new(Owner::user("a"), "legacy").scopes([Scope::READ]))
        .await
        .unwrap()
        .record;
    assert_eq!(legacy.expires_at, None);
    let body = |extra: Value| {
        let mut b = json!({"owner": "user:a", "name": "k", "scopes": ["read"]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };

    let plain = h.create(body(json!({}))).await;
    assert_eq!(lifetime_days(&plain), 30);
    assert_eq!(
        lifetime_days(&h.create(body(json!({"expires_in_seconds": null}))).await),
        30
    );
    let longest = h
        .create(body(json!({"expires_in_seconds": 90 * 86_400})))
        .await;
    assert_eq!(lifetime_days(&longest), 90);
    let before = h.ids(&h.admin, "?owner=user:a").await.len();
    for bad in [
        json!(90 * 86_400 + 1),
        json!(u64::MAX),
        json!(1e30),
        json!(-1),
        json!(0),
        json!(1.5),
        json!("7776000"),
    ] {
        let reply = h
            .admin(
                Method::POST,
                "/admin/keys",
                Some(body(json!({"expires_in_seconds": bad}))),
            )
            .await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ["expires_in_seconds"],
            "{bad}"
        );
    }
    assert_eq!(
        h.ids(&h.admin, "?owner=user:a").await.len(),
        before,
        "a refused key is not stored"
    );

    // A delegate's keys get the default too.
    let delegate = issue(
        h.keys.manager(),
        NewKey::new(Owner::user("a"), "delegate")
            .scopes([Scope::READ, Scope::from_static(MANAGE_SCOPE)]),
    )
    .await;
    let child = h
        .call(
            Method::POST,
            "/admin/keys",
            Some(&delegate),
            Some(body(json!({}))),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(lifetime_days(&child), 30);

    // Changes: counted from creation, however late; never no expiry.
    let id = str_of(&plain["id"]);
    let created = time_of(&plain["created_at"]);
    h.clock.advance(60 * DAY);
    let at = |t: OffsetDateTime| json!({"expires_at": t.format(&Rfc3339).unwrap()});
    let latest = created + time::Duration::days(90);
    for refused in [
        at(latest + time::Duration::seconds(1)),
        json!({"expires_at": null}),
        json!({"expires_at": "9999-12-31T23:59:59Z"}),
    ] {
        let reply = h
            .admin(
                Method::PATCH,
                &format!("/admin/keys/{id}"),
                Some(refused.clone()),
            )
            .await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ["expires_at"],
            "{refused}"
        );
    }
    let ok = h
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(at(latest)),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(time_of(&ok["expires_at"]), latest);
    // An expiry in the past ends the key now: allowed.
    let past = created + time::Duration::days(1);
    h.admin(Method::PATCH, &format!("/admin/keys/{id}"), Some(at(past)))
        .await
        .expect(StatusCode::OK);

    // Rotation chains keep the first key's end; a pre-policy key's
    // successor gets the default instead of no expiry.
    let mut current = str_of(&longest["id"]);
    let end = time_of(&longest["expires_at"]);
    for _ in 0..3 {
        let rotated = h
            .admin(
                Method::POST,
                &format!("/admin/keys/{current}/rotate"),
                Some(json!({"grace_seconds": 0})),
            )
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(time_of(&rotated["expires_at"]), end);
        current = str_of(&rotated["id"]);
        h.clock.advance(DAY);
    }
    let successor = h
        .admin(
            Method::POST,
            &format!("/admin/keys/{}/rotate", legacy.id),
            Some(json!({"grace_seconds": 60})),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(lifetime_days(&successor), 30);

    // The document states the bounds.
    let doc = h
        .admin(Method::GET, "/admin/openapi.json", None)
        .await
        .expect(StatusCode::OK);
    let props = &doc["components"]["schemas"]["CreateKey"]["properties"];
    assert_eq!(props["expires_in_seconds"]["maximum"], 90 * 86_400);
    assert_eq!(props["expires_in_seconds"]["minimum"], 1);
    assert!(
        str_of(&props["expires_in_seconds"]["description"]).contains("2592000 seconds (30 days)")
    );
    let grace = &doc["components"]["schemas"]["RotateKey"]["properties"]["grace_seconds"];
    assert_eq!(grace["maximum"], 30 * 86_400);
    let expires_at = &doc["components"]["schemas"]["UpdateKey"]["properties"]["expires_at"];
    assert!(str_of(&expires_at["description"]).contains("7776000 seconds"));
}

/// After a `DELETE` answered success, the key is gone from the routes on
/// it (404 `revoked`, with its record), as HTTP clients and schemathesis
/// expect; listings with `status=revoked` still show it, and `DELETE` stays
/// idempotent.
#[tokio::test]
async fn a_revoked_key_is_gone_from_the_routes_on_it() {
    let h = Harness::with(|b| b).await;
    let created = h
        .create(json!({"owner": "user:a", "name": "k", "scopes": ["read"]}))
        .await;
    let id = str_of(&created["id"]);
    let path = format!("/admin/keys/{id}");
    let revoked = h
        .admin(Method::DELETE, &path, None)
        .await
        .expect(StatusCode::OK);
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"name": "again"}))),
        (Method::GET, format!("{path}/usage"), None),
    ] {
        let reply = h.admin(method.clone(), &path, body).await;
        let problem = reply.problem(StatusCode::NOT_FOUND, "revoked");
        assert_eq!(problem["key"]["id"], id.as_str(), "{method} {path}");
        assert_eq!(problem["key"]["status"], "revoked");
    }
    h.admin(
        Method::POST,
        &format!("{path}/rotate"),
        Some(json!({"grace_seconds": 0})),
    )
    .await
    .problem(StatusCode::CONFLICT, "not_rotatable");
    let again = h
        .admin(Method::DELETE, &path, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    assert_eq!(refs(&h.ids(&h.admin, "?status=revoked").await), [&id]);
    // The rename did not happen.
    let listed = h
        .admin(Method::GET, "/admin/keys?status=revoked", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["keys"][0]["name"], "k");
}

/// The document carries what the server enforces, so a generated client
/// (or schemathesis) is refused nothing it was promised: the patterns,
/// caps, `additionalProperties: false`, `null` where it is read as absent,
/// and an optional `PATCH` body; and the server takes what the document
/// promises (an empty `PATCH`, `60.0` as a whole number, `null` metadata).
#[tokio::test]
async fn the_document_states_the_bounds_the_server_enforces() {
    let h = Harness::with(|b| b).await;
    let doc = h
        .admin(Method::GET, "/admin/openapi.json", None)
        .await
        .expect(StatusCode::OK);
    let schemas = &doc["components"]["schemas"];
    for schema in ["CreateKey", "UpdateKey", "RotateKey"] {
        assert_eq!(schemas[schema]["additionalProperties"], false, "{schema}");
    }
    let create = &schemas["CreateKey"]["properties"];
    for field in ["owner", "name", "rate_limit"] {
        assert!(create[field]["pattern"].is_string(), "{field}");
    }
    assert!(create["scopes"]["items"]["pattern"].is_string());
    assert!(create["allowed_ips"]["items"]["pattern"].is_string());
    assert_eq!(create["allowed_ips"]["maxItems"], 64);
    assert_eq!(create["metadata"]["type"], json!(["object", "null"]));
    assert_eq!(create["allowed_ips"]["type"], json!(["array", "null"]));
    assert_eq!(
        create["expires_in_seconds"]["maximum"],
        100_u64 * 365 * 86_400,
        "no maximum lifetime: 100 years, so no expiry passes year 9999"
    );
    assert_eq!(
        doc["paths"]["/keys/{id}"]["patch"]["requestBody"]["required"],
        false
    );
    let list_params = doc["paths"]["/keys"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        list_params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} parameter"))
    };
    assert!(param("cursor")["schema"]["pattern"].is_string());
    assert!(param("owner")["schema"]["pattern"].is_string());
    assert!(param("status")["schema"].is_object());
    assert!(param("environment")["schema"].is_object());

    // What the document promises, the server takes.
    let created = h
        .create(json!({"owner": "user:a", "name": "k", "scopes": ["read"],
            "metadata": null, "allowed_ips": null, "expires_in_seconds": 60.0}))
        .await;
    assert_eq!(lifetime_days(&created), 0);
    let id = str_of(&created["id"]);
    h.call(
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(&h.admin),
        None,
    )
    .await
    .expect(StatusCode::OK);
    h.admin(
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": 30.0})),
    )
    .await
    .expect(StatusCode::CREATED);
    // ...and refuses what it calls invalid.
    let reply = h
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"owner": "user:a", "name": "k", "scopes": ["read"], "extra": 1})),
        )
        .await;
    assert_eq!(
        reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ["extra"]
    );
}

/// The docs page: Swagger UI served from the binary, every file under a
/// strict CSP, configured to fetch the document from beside it (no other
/// origin, no validator), without keeping the key; the document it shows
/// needs no key and is the API's own.
#[cfg(feature = "docs")]
#[tokio::test]
async fn the_docs_page_is_served_from_the_binary_under_a_strict_csp() {
    let h = Harness::with(|b| b).await;
    let get = |path: &'static str| h.call(Method::GET, path, None, None);
    let redirect = get("/admin/docs").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.header("location"), Some("/admin/docs/"));

    let page = get("/admin/docs/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type().starts_with("text/html"));
    let html = page.text().to_owned();
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "nothing inline"
    );
    // Every file the page names is its own, relative, served, and secured.
    let mut files = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = &part[..part.find('"').unwrap()];
            assert!(!url.contains("//"), "{url} is not on this origin");
            files.push(url.trim_start_matches("./").to_owned());
        }
    }
    assert!(
        files.iter().any(|f| f == "swagger-ui-bundle.js"),
        "{files:?}"
    );
    files.push("swagger-initializer.js".to_owned());
    for file in &files {
        let reply = h
            .call(Method::GET, &format!("/admin/docs/{file}"), None, None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{file}");
        assert_eq!(
            reply.header("content-security-policy"),
            Some(keygate::manage::DOCS_CSP),
            "{file}"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
    for reply in [&page, &redirect] {
        assert_eq!(
            reply.header("content-security-policy"),
            Some(keygate::manage::DOCS_CSP)
        );
    }
    let csp = keygate::manage::DOCS_CSP;
    for strict in [
        "default-src 'none'",
        "script-src 'self';",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(strict), "{strict}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));

    let init = h
        .call(
            Method::GET,
            "/admin/docs/swagger-initializer.js",
            None,
            None,
        )
        .await;
    let init = init.text();
    assert!(init.contains("\"url\": \"openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    assert!(init.contains("\"persistAuthorization\": false"), "{init}");
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );

    // The document the page shows: no key needed, the API's own, its
    // server the router's mount point, and its security scheme the header.
    let public = get("/admin/docs/openapi.json").await.expect(StatusCode::OK);
    let own = h
        .admin(Method::GET, "/admin/openapi.json", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(public, own);
    assert_eq!(public["servers"][0]["url"], "/admin");
    assert_eq!(
        public["components"]["securitySchemes"]["api_key"]["name"],
        "x-api-key"
    );
    // The page needs no key; the API behind it still does.
    h.call(Method::GET, "/admin/keys", None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing_key");
    get("/admin/docs/no-such-file.js")
        .await
        .expect(StatusCode::NOT_FOUND);
}
