//! Helpers shared by the black-box tests: a small notes router, request and
//! response helpers, a store that can be taken down, scripted rate limiters
//! and key forgery.
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
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use keygate::{
    ApiKey, Keygate, KeygateBuilder, RequireScope,
    core::{
        CHECKSUM_LEN, Check, Decision, KeyId, KeyRecord, KeyStore, KeyUpdate, LimiterUnavailable,
        MemoryStore, NewKey, Owner, Page, PendingCheck, Quota, Quotas, RateLimiter, Replacement,
        Rotation, SECRET_LEN, Scope, StoreError, UsageBucket, UsageDelta, time::OffsetDateTime,
    },
    require_scope,
};
use serde_json::{Value, json};
use tower::ServiceExt;
use tracing_subscriber::fmt::MakeWriter;

keygate::scope!(pub(crate) BillingRead = "billing:read");

/// Says that the current test is skipped because `var` is unset, on the
/// terminal: written to stderr directly, which the test harness does not
/// capture (it captures `eprintln!`), so a plain `cargo test` shows it.
pub(crate) fn say_skipped(var: &str, example: &str) {
    use std::io::Write as _;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped {test}: {var} is not set (set it, e.g. {var}={example}, to run it; \
         with CI=true it fails instead)"
    );
}

/// A builder over a fresh memory store.
pub(crate) fn builder() -> KeygateBuilder {
    Keygate::builder(MemoryStore::new())
}

/// Issues a key and returns its plaintext.
pub(crate) async fn issue(keys: &Keygate, new: NewKey) -> String {
    keys.manager()
        .create(new)
        .await
        .expect("create key")
        .key
        .expose_secret()
        .to_owned()
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

/// The public id inside a key.
pub(crate) fn key_id(keys: &Keygate, key: &str) -> KeyId {
    keys.format().parse(key).expect("a valid key").id()
}

/// The 32 secret characters of a key.
pub(crate) fn secret_part(key: &str) -> &str {
    let end = key.len() - CHECKSUM_LEN;
    &key[end - SECRET_LEN..end]
}

/// The key with one secret character changed and the checksum left alone:
/// a typo the checksum catches.
pub(crate) fn typo(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let at = key.len() - CHECKSUM_LEN - 1;
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("ascii")
}

/// The key with one secret character changed and a correct checksum: the
/// right id and shape, but not the key that was issued.
pub(crate) fn forge(key: &str) -> String {
    let typo = typo(key);
    let signed = &typo[..typo.len() - CHECKSUM_LEN];
    format!("{signed}{}", checksum(signed.as_bytes()))
}

/// The key format's checksum (CRC32 as 6 base62 digits), re-implemented so
/// the tests do not trust the code under test for it.
fn checksum(data: &[u8]) -> String {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    let mut n = !crc;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
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
    let res = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("read body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
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

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as text.
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", self.text()))
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("visible ASCII header"))
    }

    /// A header as a number.
    pub(crate) fn number(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not a whole number: {e}"))
    }

    /// The problem document's `code`.
    pub(crate) fn code(&self) -> String {
        self.json()["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {}", self.text()))
            .to_owned()
    }

    /// Asserts a 200 (with the body in the message otherwise).
    #[track_caller]
    pub(crate) fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "expected 200, got {self:?}");
        self
    }

    /// Asserts an RFC 9457 problem with this status and code, and the
    /// headers every keygate rejection carries.
    #[track_caller]
    pub(crate) fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "status of {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type of {self:?}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
        let body = self.json();
        assert_eq!(body["code"], code, "code in {body}");
        assert_eq!(body["status"], status, "status in {body}");
        assert_eq!(body["type"], "about:blank");
        assert_eq!(
            body["title"],
            self.status.canonical_reason().expect("standard status")
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| d.len() > 20),
            "a detail that says what to do: {body}"
        );
        let challenged = self.headers.contains_key(header::WWW_AUTHENTICATE);
        assert_eq!(
            challenged,
            status == 401,
            "WWW-Authenticate on every 401 and only there: {self:?}"
        );
        body
    }

    /// Asserts a 401 with this code and an `ApiKey` challenge; `missing_key`
    /// gets the plain challenge, the others add `error="<code>"`.
    #[track_caller]
    pub(crate) fn assert_unauthorized(&self, code: &str) -> Value {
        let body = self.assert_problem(401, code);
        let challenge = self.header("www-authenticate").expect("a challenge");
        assert!(challenge.starts_with("ApiKey "), "{challenge}");
        assert!(challenge.contains(r#"realm="api""#), "{challenge}");
        assert!(
            challenge
                .to_ascii_lowercase()
                .contains(r#"header="x-api-key""#),
            "{challenge}"
        );
        if code == "missing_key" {
            assert!(!challenge.contains("error="), "{challenge}");
        } else {
            assert!(
                challenge.ends_with(&format!(r#", error="{code}""#)),
                "the challenge's error is the code: {challenge}"
            );
        }
        body
    }
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

/// A store in front of a [`MemoryStore`] that can be taken down, and counts
/// lookups.
#[derive(Clone, Debug, Default)]
pub(crate) struct FlakyStore {
    pub(crate) inner: MemoryStore,
    down: Arc<AtomicBool>,
    corrupt: Arc<AtomicBool>,
    finds: Arc<AtomicUsize>,
    // A connection pool, if set: every lookup waits for one of its permits.
    pool: Option<Arc<tokio::sync::Semaphore>>,
    // While set, lookups of ids the store does not have hang (holding their
    // connection) until `release_unknown`.
    hold_unknown: Arc<AtomicBool>,
    released: Arc<tokio::sync::Notify>,
    // Lookups of absent ids under way (waiting for a connection included),
    // and the most there ever were at once.
    unknown_now: Arc<AtomicUsize>,
    unknown_max: Arc<AtomicUsize>,
}

impl FlakyStore {
    /// Lookups fail with [`StoreError::Unavailable`] from now on.
    pub(crate) fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Lookups fail with [`StoreError::Corrupt`] from now on.
    pub(crate) fn go_corrupt(&self) {
        self.corrupt.store(true, Ordering::SeqCst);
    }

    /// Lookups work again.
    pub(crate) fn recover(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.corrupt.store(false, Ordering::SeqCst);
    }

    /// How many lookups reached the store.
    pub(crate) fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }

    /// A store whose lookups share `connections` connections, as a pooled
    /// database's do (PostgreSQL's default pool has 10).
    pub(crate) fn pooled(connections: usize) -> Self {
        Self {
            pool: Some(Arc::new(tokio::sync::Semaphore::new(connections))),
            ..Self::default()
        }
    }

    /// From now on, lookups of ids the store does not have hang, holding
    /// their connection, until [`release_unknown`](Self::release_unknown):
    /// the slowest a forger's queries can be.
    pub(crate) fn hold_unknown(&self) {
        self.hold_unknown.store(true, Ordering::SeqCst);
    }

    /// Lets held lookups answer, and new ones answer at once.
    pub(crate) fn release_unknown(&self) {
        self.hold_unknown.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Lookups of absent ids under way now.
    pub(crate) fn unknown_lookups_now(&self) -> usize {
        self.unknown_now.load(Ordering::SeqCst)
    }

    /// The most lookups of absent ids that were ever under way at once.
    pub(crate) fn unknown_lookups_max(&self) -> usize {
        self.unknown_max.load(Ordering::SeqCst)
    }

    async fn find_absent(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let now = self.unknown_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.unknown_max.fetch_max(now, Ordering::SeqCst);
        // Undone however this lookup ends, cancelled included.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.unknown_now);
        let _connection = match &self.pool {
            Some(pool) => Some(pool.acquire().await.expect("the pool is never closed")),
            None => None,
        };
        loop {
            let released = self.released.notified();
            if !self.hold_unknown.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
        self.inner.find(id).await
    }
}

impl KeyStore for FlakyStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("connection refused (test outage)"));
        }
        if self.corrupt.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("unreadable row (test)".into()));
        }
        if self.inner.find(id).await?.is_none() {
            return self.find_absent(id).await;
        }
        let _connection = match &self.pool {
            Some(pool) => Some(pool.acquire().await.expect("the pool is never closed")),
            None => None,
        };
        self.inner.find(id).await
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        self.inner.update(id, changes).await
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        self.inner.rotate(id, replacement).await
    }
    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_created_by(family).await
    }
    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        self.inner.list_live_ids(limit).await
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.revoke(id, at).await
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_by_owner(owner, page).await
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_expiring(before, limit).await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.inner.usage(family, since).await
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
