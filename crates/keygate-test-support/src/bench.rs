//! What the benches share: a runtime, a keygate that never rate-limits, the
//! `GET /notes` app and its requests, `tower_governor` keyed by the key
//! header, and criterion's settings.

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    routing::{RouterIntoService, get},
};
pub use criterion;
use criterion::Criterion;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use keygate::{
    Keygate, KeygateBuilder,
    core::{KeyStore, NewKey, Owner, Quota, Scope},
};
use tokio::runtime::Runtime;
use tower::{Service as _, ServiceExt};
use tower_governor::{GovernorError, key_extractor::KeyExtractor};
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// The header the keys travel in.
pub const HEADER: &str = "x-api-key";
/// The path every bench request asks for.
pub const PATH: &str = "/notes";
/// A quota no bench reaches, so the limiter runs but never refuses.
pub const NEVER_REJECTS: Quota = Quota::per_second(1_000_000_000);

/// A current-thread runtime with time and I/O, as the benches drive.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A keygate builder over `store` with the `bench` prefix and the
/// [`NEVER_REJECTS`] quota.
pub fn builder<S: KeyStore>(store: S) -> KeygateBuilder {
    Keygate::builder(store)
        .prefix("bench")
        .default_rate_limit(NEVER_REJECTS)
}

/// A `read` key of `service:bench`, as a header value.
pub async fn read_key(keys: &Keygate) -> HeaderValue {
    let created = keys
        .manager()
        .create(NewKey::new(Owner::service("bench"), "bench").scopes([Scope::READ]))
        .await
        .expect("create key");
    header(created.key.expose_secret())
}

/// A metered `read` key with as many credits as a balance can hold, so a
/// bench never runs it dry: what a charge costs, beside [`read_key`].
pub async fn metered_key(keys: &Keygate) -> HeaderValue {
    let created = keys
        .manager()
        .create(
            NewKey::new(Owner::service("bench"), "bench metered")
                .scopes([Scope::READ])
                .credits(keygate::core::MAX_CREDITS),
        )
        .await
        .expect("create key");
    header(created.key.expose_secret())
}

/// `s` as a header value.
pub fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("visible ASCII")
}

/// The handler: a fixed answer, so the bench measures what is in front.
pub async fn notes() -> &'static str {
    "notes"
}

/// `GET /notes` and nothing else, with no layer.
pub fn app() -> Router {
    Router::new().route(PATH, get(notes))
}

/// The router as `axum::serve` runs it: `into_make_service` calls
/// `with_state(())`, which turns handlers into routes once; without it axum
/// rebuilds the handler (and re-applies every layer) on every request.
pub fn service(router: Router) -> RouterIntoService<Body> {
    router.with_state(()).into_service()
}

/// `GET /notes`, with `X-API-Key: header` if there is one.
pub fn request(header: Option<&HeaderValue>) -> Request<Body> {
    let mut req = Request::builder().method(Method::GET).uri(PATH);
    if let Some(header) = header {
        req = req.header(HEADER, header.clone());
    }
    req.body(Body::empty()).expect("a valid request")
}

/// Sends `req` through `svc` once it is ready.
pub async fn call(mut svc: RouterIntoService<Body>, req: Request<Body>) -> Response<Body> {
    let ready = ServiceExt::<Request<Body>>::ready(&mut svc)
        .await
        .unwrap_or_else(|e| match e {});
    ready.call(req).await.unwrap_or_else(|e| match e {})
}

/// `tower_governor` keyed by the `X-API-Key` header's value, the way its
/// users key by something other than the peer address.
#[derive(Clone, Copy, Debug)]
pub struct ApiKeyHeader;

impl KeyExtractor for ApiKeyHeader {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, GovernorError> {
        req.headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// tower-http's `ValidateRequestHeaderLayer` admitting exactly the
/// requests whose `X-API-Key` is `expected`: the cheapest possible key
/// check, a baseline for keygate's.
pub fn validate_header(
    expected: HeaderValue,
) -> ValidateRequestHeaderLayer<impl FnMut(&mut Request<Body>) -> Result<(), Response<Body>> + Clone>
{
    // The `Err` type is tower-http's (a rejection response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    ValidateRequestHeaderLayer::custom(move |req: &mut Request<Body>| {
        if req.headers().get(HEADER) == Some(&expected) {
            Ok(())
        } else {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            Err(res)
        }
    })
}

/// What a hand-rolled guard does, and nothing more: the key's SHA-256
/// looked up in a map of digests, a governor check keyed by the key's
/// number, and the key's information in the extensions. No parsing, no
/// checksum, no revocation, expiry or scope, no usage or audit, and the
/// map is never refreshed: the floor an API-key layer cannot go below,
/// beside which keygate's cost is what its guarantees add.
pub fn hand_written(
    key: &HeaderValue,
) -> ValidateRequestHeaderLayer<
    impl FnMut(&mut Request<Body>) -> Result<(), Response<Body>> + Clone + use<>,
> {
    use std::{collections::HashMap, num::NonZeroU32, sync::Arc};

    use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter};
    use sha2::{Digest, Sha256};

    /// The key's information, as a handler would extract it.
    #[derive(Clone, Debug)]
    struct Info {
        number: u64,
        _owner: String,
    }
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let keys: Arc<HashMap<[u8; 32], Arc<Info>>> = Arc::new(HashMap::from([(
        digest,
        Arc::new(Info {
            number: 1,
            _owner: "service:bench".to_owned(),
        }),
    )]));
    let never = NonZeroU32::new(1_000_000_000).expect("non-zero");
    let limiter: Arc<DefaultKeyedRateLimiter<u64>> =
        Arc::new(RateLimiter::keyed(GovernorQuota::per_second(never)));
    let refuse = |status| {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = status;
        res
    };
    // The `Err` type is tower-http's (a rejection response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    ValidateRequestHeaderLayer::custom(move |req: &mut Request<Body>| {
        let Some(presented) = req.headers().get(HEADER) else {
            return Err(refuse(StatusCode::UNAUTHORIZED));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let Some(info) = keys.get(&digest) else {
            return Err(refuse(StatusCode::UNAUTHORIZED));
        };
        if limiter.check_key(&info.number).is_err() {
            return Err(refuse(StatusCode::TOO_MANY_REQUESTS));
        }
        req.extensions_mut().insert(Arc::clone(info));
        Ok(())
    })
}

/// Criterion with one second of warm-up and `measurement_secs` of
/// measurement per bench.
pub fn settings(measurement_secs: u64) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measurement_secs))
}

/// `criterion_group!` and `criterion_main!` for a bench file's targets,
/// with a [`Criterion`] built by `$config`.
#[macro_export]
macro_rules! bench_main {
    ($config:expr; $($target:path),+ $(,)?) => {
        $crate::bench::criterion::criterion_group! {
            name = benches;
            config = $config;
            targets = $($target),+
        }
        $crate::bench::criterion::criterion_main!(benches);
    };
}
