//! Helpers shared by the black-box tests: a small notes router, request
//! helpers, a store whose absent-key lookups can be held, and scripted rate
//! limiters; with what keygate-test-support offers every crate re-exported.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Extension, Json, Router,
    body::Body,
    extract::ConnectInfo,
    routing::{any, get},
};
use http::{HeaderValue, Method, Request};
use keygate::{
    ApiKey, Keygate, KeygateBuilder, RequireScope,
    core::{
        Check, Decision, IpNet, KeyId, KeyStore, LimiterUnavailable, MemoryStore, NewKey, Owner,
        PendingCheck, Quota, Quotas, RateLimiter, Scope,
    },
    require_scope,
};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;
use tracing_subscriber::fmt::MakeWriter;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub(crate) use keygate_test_support::{
    Failure, Op, TestStore,
    key::{forge, secret_part, typo},
    reply::Reply,
};

keygate::scope!(pub(crate) BillingRead = "billing:read");

/// The property tests' runner. `Config::default()` reads `PROPTEST_CASES`
/// (default 256). A failing case is printed in full; there is no source file
/// to record it beside.
pub(crate) fn prop_runner() -> TestRunner {
    TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    })
}

/// A builder over a fresh memory store.
pub(crate) fn builder() -> KeygateBuilder {
    Keygate::builder(MemoryStore::new())
}

/// Issues a key and returns its plaintext.
pub(crate) async fn issue(keys: &Keygate, new: NewKey) -> String {
    keygate_test_support::key::issue(keys.manager(), new).await
}

/// Issues a key for `user:u1` with these scopes.
pub(crate) async fn issue_scoped<const N: usize>(keys: &Keygate, scopes: [Scope; N]) -> String {
    issue(
        keys,
        NewKey::new(Owner::user("u1"), "test key").scopes(scopes),
    )
    .await
}

/// Issues a `read` key with its own quota, or several.
pub(crate) async fn issue_limited(keys: &Keygate, quotas: impl Into<Quotas>) -> String {
    issue(
        keys,
        NewKey::new(Owner::user("u1"), "limited")
            .scopes([Scope::READ])
            .rate_limit(quotas),
    )
    .await
}

/// A `read` key of `service:office` usable only from `network` (CIDR): the
/// key the client-address tests admit or refuse.
pub(crate) async fn issue_office_key(keys: &Keygate, network: &str) -> String {
    let network = network.parse::<IpNet>().expect("a CIDR network");
    issue(
        keys,
        NewKey::new(Owner::service("office"), "office only")
            .scopes([Scope::READ])
            .allowed_ips([network]),
    )
    .await
}

/// The public id inside a key.
pub(crate) fn key_id(keys: &Keygate, key: &str) -> KeyId {
    keys.format().parse(key).expect("a valid key").id()
}

/// Counts how often a handler ran.
pub(crate) type Hits = Arc<AtomicUsize>;

/// The routes of a small notes API, without keygate's layer.
///
/// * `/notes`: GET answers the key's owner and name, POST/PUT/DELETE answer
///   a word;
/// * `/any`: any method, including custom ones;
/// * `/billing`: GET behind `require_scope("billing:read")`;
/// * `/typed`: GET taking `RequireScope<BillingRead>`;
/// * `/maybe`: GET taking `Option<ApiKey>`;
/// * `/echo`: any method, answers what the handler saw (URI, key headers,
///   whether a key was attached).
///
/// Every handler counts its runs in `hits`.
pub(crate) fn routes(hits: &Hits) -> Router {
    Router::new()
        .route(
            "/notes",
            get(whoami)
                .post(word("created"))
                .put(word("replaced"))
                .delete(word("deleted")),
        )
        .route("/any", any(word("any")))
        .route(
            "/billing",
            get(word("invoices")).route_layer(require_scope("billing:read")),
        )
        .route("/typed", get(typed))
        .route("/maybe", get(maybe))
        .route("/echo", any(echo))
        .layer(Extension(Arc::clone(hits)))
}

fn count(hits: &Hits) {
    hits.fetch_add(1, Ordering::SeqCst);
}

async fn whoami(Extension(hits): Extension<Hits>, key: ApiKey) -> String {
    count(&hits);
    format!("{} {}", key.owner(), key.name())
}

fn word(
    text: &'static str,
) -> impl Fn(Extension<Hits>) -> std::future::Ready<&'static str> + Clone + Send + Sync + 'static {
    move |Extension(hits): Extension<Hits>| {
        count(&hits);
        std::future::ready(text)
    }
}

async fn typed(Extension(hits): Extension<Hits>, key: RequireScope<BillingRead>) -> String {
    count(&hits);
    format!("invoices for {}", key.owner())
}

async fn maybe(Extension(hits): Extension<Hits>, key: Option<ApiKey>) -> String {
    count(&hits);
    key.map_or_else(|| "anonymous".to_owned(), |k| format!("key {}", k.id()))
}

async fn echo(req: Request<Body>) -> Json<Value> {
    if let Some(hits) = req.extensions().get::<Hits>() {
        count(hits);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Json(json!({
        "uri": req.uri().to_string(),
        "query": req.uri().query(),
        "x-api-key": header("x-api-key"),
        "authorization": header("authorization"),
        "other": header("x-other"),
        "sensitive": req
            .headers()
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        "debug": format!("{:?}", req.headers()),
        "key_id": req.extensions().get::<ApiKey>().map(|k| k.id().to_string()),
    }))
}

/// A router and the count of handler runs.
#[derive(Clone)]
pub(crate) struct TestApp {
    pub(crate) router: Router,
    pub(crate) hits: Hits,
}

impl TestApp {
    /// The notes routes behind `keys.layer()`.
    pub(crate) fn new(keys: &Keygate) -> Self {
        Self::with(|r| r.layer(keys.layer()))
    }

    /// The notes routes, wrapped by `wrap`.
    pub(crate) fn with(wrap: impl FnOnce(Router) -> Router) -> Self {
        let hits = Hits::default();
        Self {
            router: wrap(routes(&hits)),
            hits,
        }
    }

    /// Sends one request.
    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        send(&self.router, req).await
    }

    /// `GET uri` with `X-API-Key: key`.
    pub(crate) async fn get(&self, uri: &str, key: &str) -> Reply {
        self.send(keyed(Method::GET, uri, key)).await
    }

    /// How many times a handler ran.
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Sends one request through a router.
pub(crate) async fn send(router: &Router, req: Request<Body>) -> Reply {
    Reply::read(router.clone().oneshot(req).await.expect("infallible")).await
}

/// A request with no key.
pub(crate) fn bare(method: Method, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

/// A request with `X-API-Key: key`.
pub(crate) fn keyed(method: Method, uri: &str, key: &str) -> Request<Body> {
    with_header(bare(method, uri), "x-api-key", key.as_bytes())
}

/// Appends a header given as raw bytes (kept even if another value exists).
pub(crate) fn with_header(
    mut req: Request<Body>,
    name: &'static str,
    value: &[u8],
) -> Request<Body> {
    let value = HeaderValue::from_bytes(value).expect("a header value http accepts");
    req.headers_mut().append(name, value);
    req
}

/// Marks the request as coming from `addr`, as axum's `ConnectInfo` does.
pub(crate) fn from_addr(mut req: Request<Body>, addr: &str) -> Request<Body> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// Everything a `tracing_subscriber::fmt` subscriber writes, kept.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Captures every `tracing` event up to `level`, formatted with its
    /// target, on this thread until the guard is dropped.
    pub(crate) fn install(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(capture.clone())
            .with_target(true)
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// What was written so far.
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Lookups of ids a [`TestStore`] does not have, as a forger's flood makes
/// them: they share the store's connections (if it has a pool), can be held
/// (keeping their connection) until released, and are counted.
#[derive(Debug, Default)]
pub(crate) struct AbsentLookups {
    // A connection pool, if set: every lookup waits for one of its permits.
    pool: Option<tokio::sync::Semaphore>,
    hold: AtomicBool,
    released: tokio::sync::Notify,
    // Lookups of absent ids under way (waiting for a connection included),
    // and the most there ever were at once.
    now: AtomicUsize,
    max: AtomicUsize,
}

impl AbsentLookups {
    /// A memory-backed test store whose lookups go through the returned
    /// gate; with `connections`, they share that many connections, as a
    /// pooled database's do (PostgreSQL's default pool has 10).
    pub(crate) fn store(connections: Option<usize>) -> (TestStore, Arc<Self>) {
        let store = TestStore::memory();
        let gate = Arc::new(Self {
            pool: connections.map(tokio::sync::Semaphore::new),
            ..Self::default()
        });
        let (inner, hook_gate) = (store.get_ref().clone(), Arc::clone(&gate));
        store.before(Op::Find, move |call| {
            let (inner, gate) = (inner.clone(), Arc::clone(&hook_gate));
            let id = call.key().expect("a lookup names its key");
            Box::pin(async move { gate.enter(&inner, id).await })
        });
        (store, gate)
    }

    /// Waits as the lookup of `id` would before the store answers.
    async fn enter(&self, inner: &MemoryStore, id: KeyId) {
        if !matches!(inner.find(id).await, Ok(None)) {
            let _connection = self.connection().await;
            return;
        }
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        // Undone however this lookup ends, cancelled included.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.now);
        let _connection = self.connection().await;
        loop {
            let released = self.released.notified();
            if !self.hold.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
    }

    async fn connection(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.pool {
            Some(pool) => Some(pool.acquire().await.expect("the pool is never closed")),
            None => None,
        }
    }

    /// From now on, lookups of ids the store does not have hang, holding
    /// their connection, until [`release_unknown`](Self::release_unknown):
    /// the slowest a forger's queries can be.
    pub(crate) fn hold_unknown(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Lets held lookups answer, and new ones answer at once.
    pub(crate) fn release_unknown(&self) {
        self.hold.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Lookups of absent ids under way now.
    pub(crate) fn unknown_lookups_now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most lookups of absent ids that were ever under way at once.
    pub(crate) fn unknown_lookups_max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A rate limiter that answers what it is told, and records the quotas it
/// was asked about.
#[derive(Clone, Debug)]
pub(crate) struct ScriptedLimiter {
    answer: Option<Decision>,
    pending: bool,
    pub(crate) asked: Arc<Mutex<Vec<Quotas>>>,
}

impl ScriptedLimiter {
    /// Always answers `decision`, at once.
    pub(crate) fn always(decision: Decision) -> Self {
        Self {
            answer: Some(decision),
            pending: false,
            asked: Arc::default(),
        }
    }

    /// Always fails, as a limiter whose backend is down.
    pub(crate) fn unavailable() -> Self {
        Self {
            answer: None,
            pending: false,
            asked: Arc::default(),
        }
    }

    /// Answers after yielding to the runtime once, as a remote limiter does.
    pub(crate) fn pending(mut self) -> Self {
        self.pending = true;
        self
    }
}

impl RateLimiter for ScriptedLimiter {
    fn check(&self, _family: KeyId, quotas: &Quotas) -> Check {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(quotas.clone());
        let answer = self.answer;
        let result =
            move || answer.ok_or_else(|| LimiterUnavailable("redis is down (test)".into()));
        if self.pending {
            Check::Pending(PendingCheck::new(async move {
                tokio::task::yield_now().await;
                result()
            }))
        } else {
            Check::Ready(result())
        }
    }
}

/// A rejecting decision, by a quota of `limit` per second.
pub(crate) fn rejecting(limit: u32, retry_after: Duration, reset: Duration) -> Decision {
    Decision {
        allowed: false,
        quota: Quota::per_second(limit),
        remaining: 0,
        reset,
        retry_after,
    }
}
