#![cfg(feature = "manage")]
//! Credits through the management API, driven over HTTP through the real
//! routers (`keygate::manage::router` for API keys,
//! `keygate::manage::self_service` for people): metering a key at
//! creation, reading, setting and topping up its balance, changing its
//! refill; the 422s of every malformed value; and every way a caller that
//! is not an `admin` might mint credits, each refused.
//!
//! Balances that must not have grown are read by the `admin` key (which is
//! not metered), and compared with `<=`: a metered caller's own management
//! requests may be charged by the layer, which only ever lowers them.

use std::{sync::Arc, time::Duration};

use axum::{Router, http::request::Parts};
use http::{Method, StatusCode, header};
use keygate::{
    Keygate,
    core::{
        AuditAction, AuditLog, AuditQuery, AuditStore, FakeClock, MAX_CREDITS, MemoryStore, NewKey,
        Owner, Scope,
    },
    manage::{Identity, MANAGE_SCOPE, SelfService},
};
use keygate_test_support::{
    key::{id_of, issue},
    reply::{Reply, json_request},
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The service under test: the management router at `/admin` (API keys)
/// and the self-service router at `/me` (people: `Bearer alice` is the
/// person `user:alice`, `Bearer ops` an operator).
struct Harness {
    app: Router,
    clock: FakeClock,
    store: MemoryStore,
    audit: AuditLog,
    /// An `admin` key of `service:ops`.
    admin: String,
}

/// The application's own sign-in, for the tests: a bearer token naming
/// the person.
fn signed_in(parts: &Parts) -> Option<Identity> {
    let token = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    match token.strip_prefix("Bearer ")? {
        "ops" => Some(Identity::operator(Owner::user("ops"))),
        person => Some(Identity::person(Owner::user(person))),
    }
}

impl Harness {
    async fn new() -> Self {
        let store = MemoryStore::new();
        let audit = AuditLog::spawn(Arc::new(store.clone()), 64);
        // Midday: no daily refill falls between two steps of a test unless
        // the test moves the clock.
        let clock = FakeClock::new(time::macros::datetime!(2030-01-15 12:00 UTC));
        let keys = Keygate::builder(store.clone())
            .prefix("mbk")
            .clock(clock.clone())
            .audit_log(audit.clone())
            .build();
        let app = Router::new()
            .nest("/admin", keygate::manage::router(&keys))
            .nest(
                "/me",
                keygate::manage::self_service(&keys, SelfService::new(signed_in)),
            );
        let admin = issue(
            keys.manager(),
            NewKey::new(Owner::service("ops"), "ops admin").scopes([Scope::ADMIN]),
        )
        .await;
        Self {
            app,
            clock,
            store,
            audit,
            admin,
        }
    }

    async fn send(&self, req: http::Request<String>) -> Reply {
        Reply::read(self.app.clone().oneshot(req).await.unwrap()).await
    }

    /// A request to the API-key router with `key`.
    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.send(json_request(method, path, Some(key), body.as_deref()))
            .await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, &self.admin, body).await
    }

    /// A request to the self-service router as `person`.
    async fn person(&self, person: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = json_request(method, path, None, body.map(|b| b.to_string()).as_deref());
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {person}").parse().unwrap(),
        );
        self.send(req).await
    }

    /// Creates a key as admin; returns its answer (with `key`).
    async fn create(&self, body: Value) -> Value {
        self.admin(Method::POST, "/admin/keys", Some(body))
            .await
            .expect(StatusCode::CREATED)
    }

    /// The credits of key `id`, read by the admin.
    async fn credits(&self, id: &str) -> Value {
        self.admin(Method::GET, &format!("/admin/keys/{id}/credits"), None)
            .await
            .expect(StatusCode::OK)
    }

    /// The balance of key `id`, read by the admin.
    async fn remaining(&self, id: &str) -> u64 {
        self.credits(id).await["remaining"].as_u64().unwrap()
    }

    /// The record of key `id`, read by the admin.
    async fn key(&self, id: &str) -> Value {
        self.admin(Method::GET, &format!("/admin/keys/{id}"), None)
            .await
            .expect(StatusCode::OK)
    }

    /// The credit events of the audit trail about `id`, as (actor,
    /// detail).
    async fn credit_events(&self, id: &str) -> Vec<(String, String)> {
        self.audit.flush().await;
        let mut events: Vec<(String, String)> = self
            .store
            .query_audit(&AuditQuery {
                key_id: Some(id.parse().unwrap()),
                ..AuditQuery::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == AuditAction::Credits)
            .map(|e| (e.actor.unwrap_or_default(), e.detail.unwrap_or_default()))
            .collect();
        events.reverse();
        events
    }
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// A `keys:manage` key of `user:alice` (scopes `read` and `keys:manage`),
/// metered with `credits` if given; returns (key, id).
async fn delegate(h: &Harness, credits: Option<u64>) -> (String, String) {
    let mut body = json!({
        "owner": "user:alice",
        "name": "reseller",
        "scopes": ["read", MANAGE_SCOPE],
    });
    if let Some(n) = credits {
        body["credits"] = json!(n);
    }
    let created = h.create(body).await;
    (str_of(&created["key"]), str_of(&created["id"]))
}

/// The whole life of a metered key's credits as an admin drives it:
/// created metered, read, topped up, set, refill changed and removed; the
/// key shows its account (never its balance, in listings too); a due
/// refill is applied on read; every change is in the audit trail.
#[tokio::test]
async fn an_admin_meters_reads_sets_tops_up_and_changes_the_refill() {
    let h = Harness::new().await;
    let created = h
        .create(json!({
            "owner": "user:alice",
            "name": "trial",
            "scopes": ["read"],
            "credits": 100,
            "refill": {"amount": 50, "interval": "day"}
        }))
        .await;
    let id = str_of(&created["id"]);
    assert_eq!(created["credit_account"], id, "its own family's account");
    assert!(created.get("remaining").is_none(), "{created}");

    // Shown on the key and in listings: the account, never the balance.
    assert_eq!(h.key(&id).await["credit_account"], id);
    let list = h
        .admin(Method::GET, "/admin/keys?owner=user:alice", None)
        .await
        .expect(StatusCode::OK);
    let listed = &list["keys"][0];
    assert_eq!(listed["credit_account"], id);
    for field in ["remaining", "refill", "next_refill", "credits"] {
        assert!(listed.get(field).is_none(), "a listing shows {field}");
    }

    let credits = h.credits(&id).await;
    assert_eq!(
        credits,
        json!({
            "metered": true,
            "account": id,
            "remaining": 100,
            "refill": {"amount": 50, "interval": "day"},
            "next_refill": "2030-01-16T00:00:00Z"
        })
    );

    let path = format!("/admin/keys/{id}/credits");
    let topped = h
        .admin(Method::PATCH, &path, Some(json!({"add": 25})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(topped["remaining"], 125);
    assert_eq!(topped["account"], id);
    let set = h
        .admin(Method::PATCH, &path, Some(json!({"set": 10})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(set["remaining"], 10);
    assert_eq!(h.credits(&id).await, set, "PATCH answers what GET reads");

    // The next midnight tops the balance up to the refill's amount.
    h.clock.advance(Duration::from_secs(13 * 3600));
    let refilled = h.credits(&id).await;
    assert_eq!(refilled["remaining"], 50);
    assert_eq!(refilled["next_refill"], "2030-01-17T00:00:00Z");

    // A new refill, effective from this period; then none.
    let monthly = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"refill": {"amount": 1000, "interval": "month"}})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        monthly["refill"],
        json!({"amount": 1000, "interval": "month"})
    );
    assert_eq!(monthly["remaining"], 50, "the balance is left as it was");
    assert_eq!(monthly["next_refill"], "2030-02-01T00:00:00Z");
    let none = h
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"set": 7, "refill": null})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        none,
        json!({"metered": true, "account": id, "remaining": 7, "refill": null, "next_refill": null})
    );
    h.clock.advance(Duration::from_secs(40 * 86_400));
    assert_eq!(h.remaining(&id).await, 7, "no refill any more");

    // Every change is in the audit trail, with the admin key as the actor.
    let actor = format!("key:{}", id_of(&h.admin));
    let events = h.credit_events(&id).await;
    let mut details: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
    details.sort_unstable();
    assert_eq!(
        details,
        ["add 25", "refill 1000/month", "set 10", "set 7, no refill"]
    );
    assert!(events.iter().all(|(a, _)| *a == actor), "{events:?}");
}

/// A refill alone meters a new key with the refill's amount; a key that is
/// not metered says so, and a top-up meters it with an account of its own;
/// removing the refill of a key that has none changes nothing (it must not
/// meter the key with nothing to spend).
#[tokio::test]
async fn keys_are_metered_by_a_refill_alone_or_by_a_first_change() {
    let h = Harness::new().await;
    let refill_only = h
        .create(json!({
            "owner": "user:bob", "name": "free tier", "scopes": [],
            "refill": {"amount": 20, "interval": "6h"}
        }))
        .await;
    let id = str_of(&refill_only["id"]);
    let credits = h.credits(&id).await;
    assert_eq!(credits["remaining"], 20);
    assert_eq!(credits["refill"], json!({"amount": 20, "interval": "6h"}));
    assert_eq!(credits["next_refill"], "2030-01-15T18:00:00Z");

    // `credits: 0` meters a key that can spend nothing until topped up.
    let empty = h
        .create(json!({"owner": "user:bob", "name": "prepaid", "scopes": [], "credits": 0}))
        .await;
    let empty = str_of(&empty["id"]);
    assert_eq!(h.credits(&empty).await["remaining"], 0);
    assert_eq!(h.key(&empty).await["credit_account"], empty);

    let plain = h
        .create(json!({"owner": "user:bob", "name": "plain", "scopes": [], "credits": null, "refill": null}))
        .await;
    let plain = str_of(&plain["id"]);
    assert_eq!(h.key(&plain).await["credit_account"], Value::Null);
    assert_eq!(
        h.credits(&plain).await,
        json!({"metered": false, "account": null, "remaining": null, "refill": null, "next_refill": null})
    );
    let path = format!("/admin/keys/{plain}/credits");
    let unchanged = h
        .admin(Method::PATCH, &path, Some(json!({"refill": null})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(unchanged, h.credits(&plain).await);
    assert_eq!(unchanged["metered"], false);
    assert_eq!(h.key(&plain).await["credit_account"], Value::Null);
    assert!(h.credit_events(&plain).await.is_empty());

    let metered = h
        .admin(Method::PATCH, &path, Some(json!({"add": 30})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(metered["metered"], true);
    assert_eq!(metered["account"], plain);
    assert_eq!(metered["remaining"], 30, "from 0, plus 30");
    assert_eq!(h.key(&plain).await["credit_account"], plain);

    // A key rotated away is not metered alone (its successor would stay
    // free): 409 `superseded`; its successor is.
    let old = h
        .create(json!({"owner": "user:bob", "name": "rotating", "scopes": []}))
        .await;
    let old = str_of(&old["id"]);
    let new = h
        .admin(
            Method::POST,
            &format!("/admin/keys/{old}/rotate"),
            Some(json!({"grace_seconds": 3600})),
        )
        .await
        .expect(StatusCode::CREATED);
    let new = str_of(&new["id"]);
    let problem = h
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{old}/credits"),
            Some(json!({"set": 5})),
        )
        .await
        .problem(StatusCode::CONFLICT, "superseded");
    assert!(
        problem["detail"].as_str().unwrap().contains(&new),
        "{problem}"
    );
    assert_eq!(h.key(&old).await["credit_account"], Value::Null);
    h.admin(
        Method::PATCH,
        &format!("/admin/keys/{new}/credits"),
        Some(json!({"set": 5})),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        h.key(&new).await["credit_account"],
        old,
        "the family's account"
    );

    // Unknown and revoked keys; ids that are no key's.
    for path in ["/admin/keys/%FF/credits", "/admin/keys/nope/credits"] {
        for method in [Method::GET, Method::PATCH] {
            h.admin(method, path, Some(json!({"add": 1})))
                .await
                .problem(StatusCode::NOT_FOUND, "not_found");
        }
    }
    for method in [Method::GET, Method::PATCH] {
        h.admin(
            method,
            "/admin/keys/ZZZZZZZZZZ/credits",
            Some(json!({"add": 1})),
        )
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    }
    h.admin(Method::DELETE, &format!("/admin/keys/{plain}"), None)
        .await
        .expect(StatusCode::OK);
    for method in [Method::GET, Method::PATCH] {
        h.admin(method, &path, Some(json!({"add": 1})))
            .await
            .problem(StatusCode::NOT_FOUND, "revoked");
    }
}

/// Every out-of-range or malformed credits value, on a create and on a
/// change, is a 422 naming the field, and changes nothing.
#[tokio::test]
async fn out_of_range_and_malformed_credits_are_422s_naming_the_field() {
    let h = Harness::new().await;
    let created = h
        .create(json!({"owner": "user:alice", "name": "m", "scopes": [], "credits": 5}))
        .await;
    let id = str_of(&created["id"]);
    let before = h.credits(&id).await;
    let too_many = MAX_CREDITS + 1;
    let bad_numbers = [
        json!(too_many),
        json!(-1),
        json!(1.5),
        json!("5"),
        json!(true),
        json!([5]),
        json!({"n": 5}),
        json!(1e300),
        json!(-0.5),
        json!(u64::MAX),
        json!(18_446_744_073_709_551_616_f64),
    ];
    let bad_refills = [
        (
            json!({"amount": 20, "interval": "week"}),
            vec!["refill.interval"],
        ),
        (
            json!({"amount": 0, "interval": "day"}),
            vec!["refill.amount"],
        ),
        (
            json!({"amount": too_many, "interval": "day"}),
            vec!["refill.amount"],
        ),
        (
            json!({"amount": -1, "interval": "day"}),
            vec!["refill.amount"],
        ),
        (
            json!({"amount": 2.5, "interval": "day"}),
            vec!["refill.amount"],
        ),
        (
            json!({"amount": "20", "interval": "day"}),
            vec!["refill.amount"],
        ),
        (
            json!({"amount": 20, "interval": "367d"}),
            vec!["refill.interval"],
        ),
        (
            json!({"amount": 20, "interval": "0h"}),
            vec!["refill.interval"],
        ),
        (
            json!({"amount": 20, "interval": " day"}),
            vec!["refill.interval"],
        ),
        (
            json!({"amount": 20, "interval": 86_400}),
            vec!["refill.interval"],
        ),
        (json!({"amount": 20}), vec!["refill.interval"]),
        (
            json!({"amount": 20, "interval": "day", "starts": "now"}),
            vec!["refill.starts"],
        ),
        (json!("20/day"), vec!["refill"]),
        (json!([20, "day"]), vec!["refill"]),
    ];

    for value in &bad_numbers {
        let reply = h
            .admin(
                Method::POST,
                "/admin/keys",
                Some(json!({"owner": "user:alice", "name": "x", "scopes": [], "credits": value})),
            )
            .await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ["credits"],
            "credits: {value}"
        );
        for field in ["set", "add"] {
            let reply = h
                .admin(
                    Method::PATCH,
                    &format!("/admin/keys/{id}/credits"),
                    Some(json!({ field: value })),
                )
                .await;
            assert_eq!(
                reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
                [field],
                "{field}: {value}"
            );
        }
    }
    for (value, fields) in &bad_refills {
        let reply = h
            .admin(
                Method::POST,
                "/admin/keys",
                Some(json!({"owner": "user:alice", "name": "x", "scopes": [], "refill": value})),
            )
            .await;
        assert_eq!(
            &reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            fields,
            "refill: {value}"
        );
        let reply = h
            .admin(
                Method::PATCH,
                &format!("/admin/keys/{id}/credits"),
                Some(json!({ "refill": value })),
            )
            .await;
        assert_eq!(
            &reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            fields,
            "refill: {value}"
        );
    }
    // Bodies of the change itself.
    let path = format!("/admin/keys/{id}/credits");
    for (body, fields) in [
        (json!({}), vec!["body"]),
        (json!({"set": 1, "add": 1}), vec!["add"]),
        (json!({"set": null}), vec!["set"]),
        (
            json!({"add": 1, "credit_account": null}),
            vec!["credit_account"],
        ),
        (json!({"add": 1, "account": "Ab3Cd5Ef7G"}), vec!["account"]),
        (json!({"remaining": 10}), vec!["remaining"]),
        (json!([{"add": 1}]), vec!["body"]),
    ] {
        let reply = h.admin(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            fields,
            "{body}"
        );
    }
    // Not JSON.
    let mut req = json_request(Method::PATCH, &path, Some(&h.admin), Some("add=5"));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    h.send(req)
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    assert_eq!(h.credits(&id).await, before, "nothing changed");
    assert!(h.credit_events(&id).await.is_empty());

    // The bounds themselves are accepted, and a whole number written as a
    // float is whole (as JSON Schema's `integer` says).
    let max = h
        .admin(Method::PATCH, &path, Some(json!({"set": MAX_CREDITS})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(max["remaining"], MAX_CREDITS);
    let capped = h
        .admin(Method::PATCH, &path, Some(json!({"add": 1})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(capped["remaining"], MAX_CREDITS, "never above 10^15");
    let float = h
        .admin(Method::PATCH, &path, Some(json!({"set": 1e3})))
        .await
        .expect(StatusCode::OK);
    assert_eq!(float["remaining"], 1000);
    let edges = h
        .create(json!({
            "owner": "user:alice", "name": "edges", "scopes": [],
            "credits": MAX_CREDITS,
            "refill": {"amount": MAX_CREDITS, "interval": "366d"}
        }))
        .await;
    assert_eq!(
        h.credits(&str_of(&edges["id"])).await["refill"]["interval"],
        "366d"
    );
}

/// Only an `admin` key (or an operator) sets or tops up credits. A
/// `keys:manage` key gets 403 `insufficient_scope` naming `admin` on its
/// own key, on a key it made, on its owner's other keys and on keys that
/// do not exist, whatever the body; a person likewise, through the
/// self-service router. Both may read the credits of the keys they see.
#[tokio::test]
async fn only_admins_set_or_top_up_credits() {
    let h = Harness::new().await;
    let (manager_key, manager) = delegate(&h, Some(1_000)).await;
    let child = h
        .call(
            Method::POST,
            "/admin/keys",
            &manager_key,
            Some(json!({"name": "child", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let child = str_of(&child["id"]);
    let sibling = h
        .create(json!({"owner": "user:alice", "name": "sibling", "scopes": ["read"], "credits": 3}))
        .await;
    let sibling = str_of(&sibling["id"]);
    let (unmetered_key, unmetered) = delegate(&h, None).await;

    let forbidden = |reply: Reply, what: &str| {
        let problem = reply.problem(StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(problem["required_scope"], "admin", "{what}: {problem}");
    };
    let bodies = [
        json!({"add": 1_000_000}),
        json!({"set": MAX_CREDITS}),
        json!({"refill": {"amount": MAX_CREDITS, "interval": "1s"}}),
        json!({"refill": null}),
        json!({"add": -1}),
        json!({}),
    ];
    for (key, who) in [(&manager_key, "metered"), (&unmetered_key, "unmetered")] {
        for target in [
            &manager,
            &child,
            &sibling,
            &unmetered,
            &"ZZZZZZZZZZ".to_owned(),
        ] {
            for body in &bodies {
                let reply = h
                    .call(
                        Method::PATCH,
                        &format!("/admin/keys/{target}/credits"),
                        key,
                        Some(body.clone()),
                    )
                    .await;
                forbidden(reply, &format!("{who} key on {target} with {body}"));
            }
        }
        // Reading is allowed: the key's own credits, and its child's.
        let own = h
            .call(
                Method::GET,
                &format!("/admin/keys/{manager}/credits"),
                key,
                None,
            )
            .await
            .expect(StatusCode::OK);
        assert_eq!(own["account"], manager);
    }
    assert!(h.remaining(&manager).await <= 1_000);
    assert_eq!(h.remaining(&sibling).await, 3);
    assert_eq!(h.credits(&unmetered).await["metered"], false);

    // People: the self-service router. Alice's own key, made by herself.
    let mine = h
        .person(
            "alice",
            Method::POST,
            "/me/keys",
            Some(json!({"name": "laptop", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let mine = str_of(&mine["id"]);
    for target in [&mine, &manager, &sibling] {
        for body in &bodies {
            let reply = h
                .person(
                    "alice",
                    Method::PATCH,
                    &format!("/me/keys/{target}/credits"),
                    Some(body.clone()),
                )
                .await;
            forbidden(reply, &format!("alice on {target} with {body}"));
        }
        h.person(
            "alice",
            Method::GET,
            &format!("/me/keys/{target}/credits"),
            None,
        )
        .await
        .expect(StatusCode::OK);
    }
    // Another person sees none of Alice's keys.
    h.person(
        "mallory",
        Method::GET,
        &format!("/me/keys/{sibling}/credits"),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.credits(&mine).await["metered"], false);
    assert_eq!(h.remaining(&sibling).await, 3);

    // An operator is an admin: it may.
    let topped = h
        .person(
            "ops",
            Method::PATCH,
            &format!("/me/keys/{sibling}/credits"),
            Some(json!({"add": 2})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(topped["remaining"], 5);
    let events = h.credit_events(&sibling).await;
    assert_eq!(events, [("user:ops".to_owned(), "add 2".to_owned())]);
    assert!(h.credit_events(&manager).await.is_empty());
    assert!(h.credit_events(&mine).await.is_empty());
}

/// A metered `keys:manage` key's keys spend its account: asking for
/// credits (or a refill) of their own is 403 `not_grantable` naming the
/// field; a key it makes without them shows its account, and reads its
/// balance. An admin's change through the child changes the shared
/// account. An unmetered `keys:manage` key may make a metered key, which
/// is less powerful than itself.
#[tokio::test]
async fn a_metered_key_cannot_give_its_keys_credits_of_their_own() {
    let h = Harness::new().await;
    let (parent_key, parent) = delegate(&h, Some(500)).await;
    for (extra, field) in [
        (json!({"credits": 1_000_000}), "credits"),
        (json!({"credits": 0}), "credits"),
        (
            json!({"credits": 5, "refill": {"amount": 5, "interval": "day"}}),
            "credits",
        ),
        (
            json!({"refill": {"amount": 100, "interval": "1s"}}),
            "refill",
        ),
    ] {
        let mut body = json!({"name": "child", "scopes": ["read"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let reply = h
            .call(Method::POST, "/admin/keys", &parent_key, Some(body))
            .await;
        let fields = reply.problem_fields(StatusCode::FORBIDDEN, "not_grantable");
        assert_eq!(fields, [field], "{extra}");
        let message = reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("metered"), "{message}");
    }
    let keys = h
        .admin(Method::GET, "/admin/keys?owner=user:alice", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "no key was made");

    let child = h
        .call(
            Method::POST,
            "/admin/keys",
            &parent_key,
            Some(json!({"name": "child", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let child = str_of(&child["id"]);
    assert_eq!(h.key(&child).await["credit_account"], parent);
    let seen_by_parent = h
        .call(
            Method::GET,
            &format!("/admin/keys/{child}/credits"),
            &parent_key,
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(seen_by_parent["account"], parent);
    let by_admin = h.credits(&child).await;
    assert_eq!(by_admin, h.credits(&parent).await, "one balance");
    assert_eq!(by_admin["account"], parent);

    // A grandchild spends the same account.
    let child_key = h
        .call(
            Method::POST,
            "/admin/keys",
            &parent_key,
            Some(json!({"name": "sub-reseller", "scopes": ["read", MANAGE_SCOPE]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let grandchild = h
        .call(
            Method::POST,
            "/admin/keys",
            &str_of(&child_key["key"]),
            Some(json!({"name": "grandchild", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(grandchild["credit_account"], parent);

    // The admin tops up through the child: the parent's balance grows.
    let before = h.remaining(&parent).await;
    h.admin(
        Method::PATCH,
        &format!("/admin/keys/{child}/credits"),
        Some(json!({"add": 100})),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(h.remaining(&parent).await, before + 100);
    assert_eq!(h.remaining(&child).await, before + 100);

    // An unmetered delegating key may make a metered key: less powerful.
    let (free_key, _) = delegate(&h, None).await;
    let metered_child = h
        .call(
            Method::POST,
            "/admin/keys",
            &free_key,
            Some(json!({"name": "customer", "scopes": ["read"], "credits": 10})),
        )
        .await
        .expect(StatusCode::CREATED);
    let metered_child = str_of(&metered_child["id"]);
    assert_eq!(h.key(&metered_child).await["credit_account"], metered_child);
    assert_eq!(h.remaining(&metered_child).await, 10);
}

/// Every way a `keys:manage` key might mint credits, tried by a metered
/// one: change them, smuggle them into `PATCH /keys/{id}`, make keys with
/// credits, rotate itself or its key to a fresh (unmetered) one, and
/// change them again on the rotated keys. After all of it, every key it
/// can reach still spends its one account, which never grew.
#[tokio::test]
async fn a_delegating_key_cannot_mint_credits_any_way() {
    let h = Harness::new().await;
    let (key, id) = delegate(&h, Some(50)).await;
    let child = h
        .call(
            Method::POST,
            "/admin/keys",
            &key,
            Some(json!({"name": "child", "scopes": ["read"]})),
        )
        .await
        .expect(StatusCode::CREATED);
    let child = str_of(&child["id"]);

    // Credits smuggled into the settings route: refused, field by field.
    for target in [&id, &child] {
        for (body, field) in [
            (json!({"credits": 1_000_000}), "credits"),
            (json!({"credit_account": null}), "credit_account"),
            (json!({"credit_account": "ZZZZZZZZZZ"}), "credit_account"),
            (json!({"refill": {"amount": 9, "interval": "1s"}}), "refill"),
            (json!({"add": 5}), "add"),
            (json!({"set": 5}), "set"),
        ] {
            let reply = h
                .call(
                    Method::PATCH,
                    &format!("/admin/keys/{target}"),
                    &key,
                    Some(body.clone()),
                )
                .await;
            assert_eq!(
                reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
                [field],
                "{body}"
            );
        }
        // Even an admin cannot change metering there.
        let reply = h
            .admin(
                Method::PATCH,
                &format!("/admin/keys/{target}"),
                Some(json!({"credit_account": null})),
            )
            .await;
        assert_eq!(
            reply.problem_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ["credit_account"]
        );
    }

    // Rotation keeps the account: the new key is as metered as the old.
    let rotated_child = h
        .call(
            Method::POST,
            &format!("/admin/keys/{child}/rotate"),
            &key,
            Some(json!({"grace_seconds": 0})),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rotated_child["credit_account"], id);
    let rotated_self = h
        .call(
            Method::POST,
            &format!("/admin/keys/{id}/rotate"),
            &key,
            Some(json!({"grace_seconds": 60})),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rotated_self["credit_account"], id);
    let new_key = str_of(&rotated_self["key"]);
    let new_id = str_of(&rotated_self["id"]);
    assert_eq!(h.credits(&new_id).await["account"], id);

    // The rotated key, old and new, is just as unable to change credits
    // or make keys with credits.
    for k in [&key, &new_key] {
        for target in [&id, &new_id, &str_of(&rotated_child["id"])] {
            h.call(
                Method::PATCH,
                &format!("/admin/keys/{target}/credits"),
                k,
                Some(json!({"add": 1_000})),
            )
            .await
            .problem(StatusCode::FORBIDDEN, "insufficient_scope");
        }
        let fields = h
            .call(
                Method::POST,
                "/admin/keys",
                k,
                Some(json!({
                    "name": "fresh", "scopes": [], "expires_in_seconds": 30, "credits": 1_000
                })),
            )
            .await
            .problem_fields(StatusCode::FORBIDDEN, "not_grantable");
        assert_eq!(fields, ["credits"]);
    }
    // A key made by the rotated key spends the same account.
    let late_child = h
        .call(
            Method::POST,
            "/admin/keys",
            &new_key,
            Some(json!({"name": "late", "scopes": []})),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(late_child["credit_account"], id);

    // Every key of the owner spends the one account, which never grew.
    let list = h
        .admin(Method::GET, "/admin/keys?owner=user:alice", None)
        .await
        .expect(StatusCode::OK);
    let accounts: Vec<&Value> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["credit_account"])
        .collect();
    assert_eq!(accounts.len(), 5, "{list}");
    assert!(accounts.iter().all(|a| **a == json!(id)), "{accounts:?}");
    assert!(h.remaining(&id).await <= 50);
    assert!(h.credit_events(&id).await.is_empty());
    assert!(h.credit_events(&new_id).await.is_empty());
}
