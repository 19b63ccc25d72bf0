//! What the black-box tests share: a real axum router with one route per
//! scheme behind the layer, a fake clock, bodies that count what was read
//! of them, and a log capture.

#![allow(dead_code, unreachable_pub)]

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Extension, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, Request, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use http_body::Frame;
use keygate::core::{FakeClock, time::OffsetDateTime};
pub use keygate_test_support::reply::Reply;
use keygate_webhook::{
    SignedHeaders, VerifiedWebhook, WebhookSecret, WebhookSigner, WebhookVerifier,
    WebhookVerifierBuilder,
};
use tower::ServiceExt as _;

/// The fake clock's start, in seconds since 1970 (2030-03-17).
pub const T0: i64 = 1_900_000_000;
/// The Standard Webhooks secret of the routes (the specification's example).
pub const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The Stripe secret of the routes.
pub const STRIPE_SECRET: &str = "whsec_test_secret";

pub fn clock() -> FakeClock {
    FakeClock::new(OffsetDateTime::from_unix_timestamp(T0).expect("a valid time"))
}

pub fn standard_secret() -> WebhookSecret {
    WebhookSecret::standard(STANDARD_SECRET).expect("a valid secret")
}

pub fn stripe_secret() -> WebhookSecret {
    WebhookSecret::stripe(STRIPE_SECRET).expect("a valid secret")
}

pub fn standard_signer() -> WebhookSigner {
    WebhookSigner::standard(standard_secret())
}

pub fn stripe_signer() -> WebhookSigner {
    WebhookSigner::stripe(stripe_secret())
}

/// The router under test and what it lets the tests see.
pub struct App {
    pub router: Router,
    pub clock: FakeClock,
    /// How many requests reached a handler.
    pub calls: Arc<AtomicUsize>,
}

impl App {
    /// `POST /standard` and `POST /flaky` (shared verifier: one replay
    /// cache) behind Standard Webhooks, `POST /stripe` behind Stripe, and a
    /// public `GET /health`.
    pub fn new() -> Self {
        Self::with(
            WebhookVerifier::standard(standard_secret()),
            WebhookVerifier::stripe(stripe_secret()),
        )
    }

    /// The same routes with verifiers built from these builders (the
    /// clock is set here).
    pub fn with(standard: WebhookVerifierBuilder, stripe: WebhookVerifierBuilder) -> Self {
        let clock = clock();
        let standard = standard.clock(Arc::new(clock.clone())).build();
        let stripe = stripe.clock(Arc::new(clock.clone())).build();
        let calls = Arc::new(AtomicUsize::new(0));
        let flaky = Arc::new(AtomicUsize::new(0));
        let router = Router::new()
            .route("/standard", post(echo))
            .route(
                "/flaky",
                post(move |state: State<Arc<AtomicUsize>>, msg, body| {
                    let flaky = Arc::clone(&flaky);
                    async move {
                        // The first delivery fails, as a handler whose database is down.
                        if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                            state.0.fetch_add(1, Ordering::SeqCst);
                            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                        }
                        echo(state, msg, body).await.into_response()
                    }
                }),
            )
            .route_layer(standard.layer())
            .merge(
                Router::new()
                    .route("/stripe", post(echo))
                    .route_layer(stripe.layer()),
            )
            .route("/health", get(|| async { "ok" }))
            .with_state(Arc::clone(&calls));
        Self {
            router,
            clock,
            calls,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// `POST path` with `headers` and `body`, answered in full.
    pub async fn post(&self, path: &str, headers: &HeaderMap, body: impl Into<Body>) -> Reply {
        let mut req = Request::post(path).body(body.into()).expect("a request");
        req.headers_mut().extend(headers.clone());
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        Reply::read(res).await
    }

    /// `POST path` with the signed headers and `body`.
    pub async fn send(&self, path: &str, signed: &SignedHeaders, body: &[u8]) -> Reply {
        self.post(path, &signed.to_header_map(), Bytes::copy_from_slice(body))
            .await
    }
}

/// Echoes the verified body, with the message's id and matching secret in
/// headers.
async fn echo(
    State(calls): State<Arc<AtomicUsize>>,
    Extension(msg): Extension<VerifiedWebhook>,
    body: Bytes,
) -> impl IntoResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    (
        [
            ("x-webhook-id", msg.id().unwrap_or("-").to_owned()),
            ("x-secret-index", msg.secret_index().to_string()),
        ],
        body,
    )
}

/// A body that yields `chunks` chunks of `chunk` bytes (or forever), and
/// counts how many the layer pulled.
pub struct CountingBody {
    chunk: Bytes,
    left: Option<usize>,
    pub pulled: Arc<AtomicUsize>,
    announced: Option<u64>,
}

impl CountingBody {
    pub fn endless(chunk_len: usize) -> Self {
        Self {
            chunk: Bytes::from(vec![b'x'; chunk_len]),
            left: None,
            pulled: Arc::new(AtomicUsize::new(0)),
            announced: None,
        }
    }

    pub fn chunks(chunk: &[u8], count: usize) -> Self {
        Self {
            chunk: Bytes::copy_from_slice(chunk),
            left: Some(count),
            pulled: Arc::new(AtomicUsize::new(0)),
            announced: None,
        }
    }

    /// Claims an exact size in its size hint, whatever it yields (hyper
    /// takes it from `Content-Length`).
    pub fn claiming(mut self, len: u64) -> Self {
        self.announced = Some(len);
        self
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.left {
            Some(0) => return Poll::Ready(None),
            Some(n) => *n -= 1,
            None => {}
        }
        self.pulled.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.announced.map_or_else(
            http_body::SizeHint::default,
            http_body::SizeHint::with_exact,
        )
    }
}

/// The headers of `signed`, with `name` set to `value`.
pub fn with_header(signed: &SignedHeaders, name: &'static str, value: &str) -> HeaderMap {
    let mut map = signed.to_header_map();
    map.insert(name, value.parse().expect("a header value"));
    map
}

/// The headers of `signed`, without `name`.
pub fn without_header(signed: &SignedHeaders, name: &str) -> HeaderMap {
    let mut map = signed.to_header_map();
    map.remove(name);
    map
}

/// Five minutes.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// Every `tracing` event, formatted with its target, while the guard lives.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(capture.clone())
            .with_target(true)
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
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

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}
