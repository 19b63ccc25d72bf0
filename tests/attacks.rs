//! Attacks found by reviewing the request path as an attacker, each pinned
//! through a real router: every test failed before its fix and says what
//! the attacker gained.

mod common;

use std::{
    convert::Infallible,
    future::{self, Ready},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{Router, body::Body, routing::get};
use common::{Op, TestApp, TestStore, builder, from_addr, issue, keyed, send, with_header};
use http::{HeaderName, Method, Request, Response, StatusCode};
use keygate::{
    ApiKey, GrpcScopes, Keygate, KeygateService, Layer as _,
    core::{Clock, IpNet, KeyId, KeyStore, NewKey, Owner, Scope, time::OffsetDateTime},
};
use tower::ServiceExt as _;

/// A service that records the path of every request reaching it and
/// answers an empty 200: what a gRPC service behind a layer saw.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    /// The paths that reached the service, in order.
    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl tower::Service<Request<Body>> for Recorder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.0.lock().unwrap().push(req.uri().path().to_owned());
        future::ready(Ok(Response::new(Body::empty())))
    }
}

/// A key with `read` and `write` but not `delete`, and a [`Recorder`] behind
/// `keys.grpc_layer()`: no deleting method may reach it with that key.
async fn writer_and_grpc(keys: &Keygate) -> (String, Recorder, KeygateService<Recorder>) {
    let writer = issue(
        keys,
        NewKey::new(Owner::service("s"), "writer").scopes([Scope::READ, Scope::WRITE]),
    )
    .await;
    let reached = Recorder::default();
    let grpc = keys.grpc_layer().layer(reached.clone());
    (writer, reached, grpc)
}

// ---------------------------------------------------------------------------
// 1. A route-level `keys.layer().require_scope(..)` inside a router
// that already has `.layer(keys.layer())` is skipped when the credential is
// stripped (the default with a query source) and the Keygate is optional.
// ---------------------------------------------------------------------------

/// Optional mode + query source (strip on by default): the outer layer
/// admits the key and strips it; the inner, route-scoped layer sees no key,
/// treats the request as anonymous and lets it through. The handler still
/// gets the outer layer's `ApiKey`, so a `read`-only key reads invoices that
/// need `billing:read`.
#[tokio::test]
async fn a_nested_layer_judges_a_stripped_key_instead_of_waving_it_through() {
    let keys = builder().query_param("api_key").optional(true).build();
    let read_only = issue(
        &keys,
        NewKey::new(Owner::user("mallory"), "read only").scopes([Scope::READ]),
    )
    .await;
    let app = Router::new()
        .route(
            "/invoices",
            get(|key: ApiKey| async move { format!("invoices for {}", key.owner()) }).route_layer(
                keys.layer()
                    .require_scope(Scope::from_static("billing:read")),
            ),
        )
        .route("/notes", get(|| async { "notes" }))
        .layer(keys.layer());

    // Header and query alike.
    for req in [
        keyed(Method::GET, "/invoices", &read_only),
        common::bare(Method::GET, &format!("/invoices?api_key={read_only}")),
    ] {
        let res = send(&app, req).await;
        assert_eq!(
            res.status,
            StatusCode::FORBIDDEN,
            "a read-only key must not pass the billing:read route layer; got {} {:?}",
            res.status,
            std::str::from_utf8(&res.body)
        );
    }
}

/// The same router without optional mode: every valid request to the
/// route-scoped path, even with the right scope, is refused 401
/// `missing_key`, because the outer layer stripped the key the inner one
/// looks for. (Availability, and it pushes operators to turn stripping off.)
#[tokio::test]
async fn a_nested_layer_admits_a_stripped_key_that_has_the_scope() {
    let keys = builder().query_param("api_key").build();
    let billing = issue(
        &keys,
        NewKey::new(Owner::user("u1"), "billing")
            .scopes([Scope::READ, Scope::from_static("billing:read")]),
    )
    .await;
    let app = Router::new()
        .route(
            "/invoices",
            get(|| async { "invoices" }).route_layer(
                keys.layer()
                    .require_scope(Scope::from_static("billing:read")),
            ),
        )
        .layer(keys.layer());
    let res = send(&app, keyed(Method::GET, "/invoices", &billing)).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{:?}",
        std::str::from_utf8(&res.body)
    );
}

/// The same root cause on a mixed server: an HTTP layer on the whole router
/// (optional, query source) and the gRPC service behind `grpc_layer()`. A
/// call without the gRPC content-type passes the HTTP layer as a plain POST
/// (`write`), is stripped, and the gRPC layer waves it through as
/// anonymous: a `write` key calls `DeleteNote`, which needs `delete`.
#[tokio::test]
async fn a_grpc_layer_inside_an_http_layer_judges_the_method_path() {
    let keys = builder().query_param("api_key").optional(true).build();
    let (writer, reached, grpc) = writer_and_grpc(&keys).await;
    let app = Router::new()
        .route("/notes", get(|| async { "notes" }))
        .route_service("/notes.v1.Notes/{*method}", grpc)
        .layer(keys.layer());
    let res = send(
        &app,
        keyed(Method::POST, "/notes.v1.Notes/DeleteNote", &writer),
    )
    .await;
    assert!(
        reached.paths().is_empty(),
        "DeleteNote reached the service with a key lacking `delete` ({})",
        res.status
    );
}

// ---------------------------------------------------------------------------
// 2. `trusted_proxies` compares the connection address (and header
// entries) to the proxy networks without un-mapping `::ffff:a.b.c.d`. On a
// dual-stack listener (`[::]:port`, the usual way to serve both families),
// an IPv4 proxy's connection arrives as `::ffff:10.0.0.1`, is judged "not
// our proxy", and becomes the client address itself — which the allowlist
// check *does* un-map. Every client behind the proxy then looks like the
// proxy, so a key allowlisted for the internal network is usable from the
// internet.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_proxy_on_a_dual_stack_socket_is_still_a_trusted_proxy() {
    let keys = builder()
        .trust_forwarded_header(HeaderName::from_static("x-forwarded-for"))
        .trusted_proxies(["10.0.0.0/24".parse::<IpNet>().unwrap()])
        .build();
    // Internal-only key: the intranet, which is also where the proxy lives.
    let internal = issue(
        &keys,
        NewKey::new(Owner::service("intranet"), "internal only")
            .scopes([Scope::READ])
            .allowed_ips(["10.0.0.0/8".parse::<IpNet>().unwrap()]),
    )
    .await;
    let app = TestApp::new(&keys);
    let via_proxy = |peer: &str| {
        from_addr(
            with_header(
                keyed(Method::GET, "/notes", &internal),
                "x-forwarded-for",
                b"203.0.113.66",
            ),
            peer,
        )
    };
    // Plain IPv4 socket: the header is believed, the internet client refused.
    app.send(via_proxy("10.0.0.1:4000"))
        .await
        .assert_problem(403, "ip_not_allowed");
    // The same proxy on a dual-stack socket: refused the same way.
    app.send(via_proxy("[::ffff:10.0.0.1]:4000"))
        .await
        .assert_problem(403, "ip_not_allowed");
}

// ---------------------------------------------------------------------------
// 3. The default gRPC rule grants `write` for deletions whose name
// does not *start* with Delete/Remove: `BatchDeleteNotes` (the AIP-235
// standard name), `BulkRemoveNotes`, `PurgeNotes`… A key with `write` but
// not `delete` — refused `DELETE /notes/1` over HTTP — deletes in bulk over
// gRPC.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn grpc_deletions_anywhere_in_a_name_need_delete() {
    let keys = builder().build();
    let (writer, reached, svc) = writer_and_grpc(&keys).await;
    let mut leaked = Vec::new();
    for path in [
        "/notes.v1.Notes/DeleteNote", // refused: baseline
        "/notes.v1.Notes/BatchDeleteNotes",
        "/notes.v1.Notes/BulkRemoveNotes",
        "/notes.v1.Notes/PurgeNotes",
        "/notes.v1.Notes/ClearNotes",
    ] {
        let res = svc
            .clone()
            .oneshot(
                Request::post(path)
                    .header("content-type", "application/grpc")
                    .header("x-api-key", &writer)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        if res.headers().get("grpc-status").is_none() {
            leaked.push(path);
        }
    }
    assert!(
        leaked.is_empty(),
        "a key without `delete` reached deleting methods: {leaked:?} (service saw {:?})",
        reached.paths()
    );
    assert_eq!(
        GrpcScopes::default().required("/notes.v1.Notes/BatchDeleteNotes"),
        Some(&Scope::DELETE)
    );
}

/// Nested layers of one `Keygate` charge a request to the key's quota once,
/// not once per layer.
#[tokio::test]
async fn nested_layers_charge_the_quota_once() {
    use keygate::core::Quota;
    let keys = builder().build();
    let key = common::issue_limited(&keys, Quota::per_minute(4)).await;
    let app = Router::new()
        .route(
            "/invoices",
            get(|| async { "invoices" }).route_layer(keys.layer().require_scope(Scope::READ)),
        )
        .layer(keys.layer());
    for _ in 0..4 {
        let res = send(&app, keyed(Method::GET, "/invoices", &key)).await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let res = send(&app, keyed(Method::GET, "/invoices", &key)).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
}

/// A key admitted by another `Keygate`'s layer is not this layer's to wave
/// through: with the credential stripped it is refused, even in optional
/// mode, and with the credential it is judged again.
#[tokio::test]
async fn a_key_admitted_by_another_keygate_is_judged_again() {
    let outer = builder().query_param("api_key").build();
    let inner = builder().optional(true).build();
    let outer_key = issue(
        &outer,
        NewKey::new(Owner::user("u1"), "outer").scopes([Scope::ADMIN]),
    )
    .await;
    let app = Router::new()
        .route(
            "/x",
            get(|key: ApiKey| async move { key.name().to_owned() }),
        )
        .route_layer(inner.layer())
        .layer(outer.layer());
    let res = send(&app, keyed(Method::GET, "/x", &outer_key)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{:?}", res.body);
}

// ---------------------------------------------------------------------------
// 4. A revocation that has already answered is undone in the cache
// when it lands between a cache fill's generation check and its insert
// (verify.rs `fetch`: `still_current` is computed, then the entry is built
// and inserted with no re-check). The stale, unrevoked entry then serves
// every request until the TTL (5 min by default). Made deterministic here
// by running the revocation from the clock read that sits in that window
// (standing in for the filling thread being pre-empted there).
// ---------------------------------------------------------------------------

/// The system clock, which — the first time it is read after the store
/// answered a lookup while armed — revokes the key (on another thread, as
/// an operator would) and waits for the revocation to answer.
#[derive(Clone, Debug, Default)]
struct PreemptingClock {
    armed: Arc<AtomicBool>,
    read: Arc<AtomicBool>,
    target: Arc<OnceLock<(Keygate, KeyId)>>,
}

impl Clock for PreemptingClock {
    fn now(&self) -> OffsetDateTime {
        if self.armed.load(Ordering::SeqCst) && self.read.swap(false, Ordering::SeqCst) {
            self.armed.store(false, Ordering::SeqCst);
            let (keys, id) = self.target.get().expect("target set").clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(keys.manager().revoke(id))
                    .expect("revoked");
            })
            .join()
            .unwrap();
        }
        OffsetDateTime::now_utc()
    }
}

#[tokio::test]
async fn a_revocation_racing_a_cache_fill_is_never_undone() {
    // A flag raised when a lookup has read its answer.
    let read = Arc::new(AtomicBool::new(false));
    let store = TestStore::memory();
    let raise = Arc::clone(&read);
    store.after(Op::Find, move |_| {
        raise.store(true, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    });
    let clock = PreemptingClock {
        read: Arc::clone(&read),
        ..PreemptingClock::default()
    };
    let keys = Keygate::builder(store.clone()).clock(clock.clone()).build();
    let key = issue(
        &keys,
        NewKey::new(Owner::user("u1"), "doomed").scopes([Scope::READ]),
    )
    .await;
    let id = common::key_id(&keys, &key);
    clock.target.set((keys.clone(), id)).unwrap();
    let app = TestApp::new(&keys);

    // First request fills the cache; the revocation lands mid-fill. This
    // request itself raced the revocation, so either answer is fine.
    read.store(false, Ordering::SeqCst);
    clock.armed.store(true, Ordering::SeqCst);
    let _ = app.get("/notes", &key).await;
    assert!(!clock.armed.load(Ordering::SeqCst), "the revocation ran");
    assert!(
        store
            .get_ref()
            .find(id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "the store holds the revocation"
    );

    // The revocation has answered: from now on the key must be refused.
    for _ in 0..3 {
        app.get("/notes", &key)
            .await
            .assert_unauthorized("revoked_key");
    }
}
