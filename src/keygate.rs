//! [`Keygate`]: the handle that owns the cache, limiter and configuration,
//! and hands out layers and a key manager.

use std::{
    fmt,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use keygate_core::{
    AuditLog, CacheConfig, Clock, Environment, GovernorLimiter, KeyFormat, KeyHasher, KeyManager,
    KeyStore, Quotas, RateLimiter, SystemClock, Verifier,
};

use crate::{
    GrpcScopes, KeySources, KeygateLayer, MethodScopes, Protocol, Rejection,
    extract::AdmittedBy,
    peer::{Forwarded, Trust},
    rejection::{RenderContext, Renderer},
    require_scope::RejectionRenderer,
};

/// Numbers each built [`Keygate`], so its layers know the keys they admitted.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A custom rejection renderer; see [`KeygateBuilder::on_rejection`].
pub type RejectionHandler = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;

type PeerFn = Arc<dyn Fn(&http::Extensions, &http::HeaderMap) -> Option<IpAddr> + Send + Sync>;

/// API-key authentication for a service: the verifier (cache in front of a
/// store), the rate limiter and the configuration, shared by every layer and
/// clone.
///
/// ```
/// use axum::{Router, routing::get};
/// use keygate::{Keygate, core::{MemoryStore, Quota}};
///
/// let keys = Keygate::builder(MemoryStore::new())
///     .prefix("mbk")
///     .default_rate_limit(Quota::per_second(100))
///     .build();
///
/// let app: Router = Router::new()
///     .route("/notes", get(|| async { "notes" }))
///     .layer(keys.layer());
/// ```
#[derive(Clone)]
pub struct Keygate {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) format: KeyFormat,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    pub(crate) default_quota: Option<Quotas>,
    pub(crate) sources: KeySources,
    pub(crate) optional: bool,
    pub(crate) strip: bool,
    pub(crate) protocol: Protocol,
    /// Which `Keygate` this is, stamped on the keys its layers admit.
    pub(crate) instance: AdmittedBy,
    pub(crate) method_scopes: MethodScopes,
    pub(crate) grpc_scopes: GrpcScopes,
    pub(crate) extra_scopes: Vec<keygate_core::Scope>,
    pub(crate) environments: Option<Environment>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rate_limit_headers: bool,
    pub(crate) renderer: Arc<Renderer>,
    // Set when the renderer differs from the default, so route layers and
    // extractors get it through request extensions; `None` costs nothing.
    pub(crate) renderer_ext: Option<RejectionRenderer>,
    pub(crate) forwarded: Option<Forwarded>,
    pub(crate) peer_fn: Option<PeerFn>,
    pub(crate) unavailable_retry_after: Duration,
    pub(crate) expiry_warning: time::Duration,
    pub(crate) audit_log: Option<AuditLog>,
    pub(crate) audit_admitted_level: tracing::Level,
    pub(crate) manager: KeyManager,
    /// Set once the "client address unknown" warning has been logged; shared
    /// by every layer derived from one `Keygate`, so it is logged once.
    pub(crate) peer_unknown_warned: Arc<AtomicBool>,
}

impl Keygate {
    /// Starts configuring keygate over a key store.
    pub fn builder<S: KeyStore>(store: S) -> KeygateBuilder {
        KeygateBuilder::new(Arc::new(store))
    }

    /// Starts configuring keygate over a store already behind an `Arc`.
    pub fn builder_from_arc(store: Arc<dyn keygate_core::DynKeyStore>) -> KeygateBuilder {
        KeygateBuilder::new(store)
    }

    /// A tower layer that authenticates every request of the service it
    /// wraps. All layers from one `Keygate` share its cache and limiter.
    ///
    /// It protects the [`Protocol`] set on the builder (default
    /// [`Protocol::Http`]); see [`grpc_layer`](Self::grpc_layer) for gRPC
    /// services.
    pub fn layer(&self) -> KeygateLayer {
        KeygateLayer::new(Arc::clone(&self.shared))
    }

    /// A layer for gRPC services: the same cache, limiter and store as
    /// [`layer`](Self::layer), judging every call by its method path with the
    /// builder's [`GrpcScopes`] and answering with gRPC statuses. Put it on the
    /// gRPC service itself (tonic's `Server::builder().layer(..)`, or
    /// `route_service(path, keys.grpc_layer().layer(svc))` in an axum
    /// router), never on plain HTTP routes; see [`Protocol`].
    pub fn grpc_layer(&self) -> KeygateLayer {
        self.layer().protocol(Protocol::Grpc)
    }

    /// Issues, lists, updates and revokes keys. Changes take effect on this
    /// `Keygate`'s layers at once.
    pub fn manager(&self) -> &KeyManager {
        &self.shared.manager
    }

    /// The verifier (cache and store) behind the layer.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.shared.verifier
    }

    /// The key format this service accepts.
    pub fn format(&self) -> &KeyFormat {
        &self.shared.format
    }

    /// Writes the usage counted so far (request counts, `last_used_at`) to
    /// the store now. This also happens by itself every
    /// [`CacheConfig::usage_flush_interval`](keygate_core::CacheConfig::usage_flush_interval).
    ///
    /// # Errors
    ///
    /// The store's error; the counts are kept for the next flush.
    pub async fn flush_usage(&self) -> Result<usize, keygate_core::StoreError> {
        self.shared.verifier.flush_usage().await
    }

    /// Call after the server has stopped taking requests (e.g. after
    /// `axum::serve(..).with_graceful_shutdown(..)` returns): writes all
    /// pending usage so nothing counted is lost.
    ///
    /// # Errors
    ///
    /// The store's error if the final flush fails.
    pub async fn shutdown(&self) -> Result<(), keygate_core::StoreError> {
        if let Some(log) = &self.shared.audit_log {
            log.flush().await;
        }
        self.flush_usage().await.map(drop)
    }
}

impl Shared {
    /// The response for a rejection, in the layer's protocol: a gRPC status
    /// on a gRPC layer, else the application's handler or problem+json.
    pub(crate) fn reject(&self, rejection: &Rejection) -> Response<Bytes> {
        self.renderer.render(rejection)
    }

    /// The scope a request needs under the layer's protocol: by its method
    /// (HTTP) or its method path (gRPC). A request of the other protocol
    /// cannot be judged and is refused.
    pub(crate) fn required_scope<B>(
        &self,
        req: &Request<B>,
    ) -> Result<Option<&keygate_core::Scope>, Rejection> {
        let wrong = || Rejection::WrongProtocol {
            expected: self.protocol,
        };
        match self.protocol {
            Protocol::Http if crate::grpc::claims_grpc(req) => Err(wrong()),
            Protocol::Http => Ok(self.method_scopes.required(req.method())),
            Protocol::Grpc
                if req.method() != http::Method::POST
                    || !crate::grpc::is_call_path(req.uri().path()) =>
            {
                Err(wrong())
            }
            Protocol::Grpc => Ok(self.grpc_scopes.required(req.uri().path())),
        }
    }

    /// The client's address: the trusted forwarding header if configured,
    /// else the connection's peer. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, what a dual-stack listener reports for IPv4
    /// clients) are read as the IPv4 address they carry, everywhere.
    pub(crate) fn peer<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        if let Some(f) = &self.peer_fn {
            return f(req.extensions(), req.headers()).map(|ip| ip.to_canonical());
        }
        let connection = connect_info_ip(req.extensions());
        match &self.forwarded {
            Some(forwarded) => forwarded.client(req.headers(), connection),
            None => connection,
        }
    }
}

/// The connection's peer address, from whichever server put it in the
/// request's extensions: axum's `ConnectInfo` (or `MockConnectInfo` in
/// tests), tonic's `TcpConnectInfo`, or a plain `SocketAddr`.
fn connect_info_ip(ext: &http::Extensions) -> Option<IpAddr> {
    connection_ip(ext).map(|ip| ip.to_canonical())
}

fn connection_ip(ext: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    {
        use axum::extract::{ConnectInfo, connect_info::MockConnectInfo};
        if let Some(ci) = ext.get::<ConnectInfo<std::net::SocketAddr>>() {
            return Some(ci.0.ip());
        }
        if let Some(mock) = ext.get::<MockConnectInfo<std::net::SocketAddr>>() {
            return Some(mock.0.ip());
        }
    }
    #[cfg(feature = "tonic")]
    if let Some(addr) = ext
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
    {
        return Some(addr.ip());
    }
    ext.get::<std::net::SocketAddr>()
        .map(std::net::SocketAddr::ip)
}

impl fmt::Debug for Keygate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("Keygate")
            .field("format", &s.format)
            .field("sources", &s.sources)
            .field("optional", &s.optional)
            .field("default_quota", &s.default_quota)
            .field("limiter", &s.limiter)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Keygate`]. Every setting has a sane default; only the store
/// is required.
#[must_use]
pub struct KeygateBuilder {
    store: Arc<dyn keygate_core::DynKeyStore>,
    format: KeyFormat,
    hasher: KeyHasher,
    cache: CacheConfig,
    limiter: Option<Arc<dyn RateLimiter>>,
    default_quota: Option<Quotas>,
    sources: KeySources,
    optional: bool,
    strip: Option<bool>,
    protocol: Protocol,
    method_scopes: MethodScopes,
    grpc_scopes: GrpcScopes,
    environments: Option<Environment>,
    clock: Arc<dyn Clock>,
    rate_limit_headers: bool,
    realm: String,
    on_rejection: Option<RejectionHandler>,
    forwarded: Option<Forwarded>,
    peer_fn: Option<PeerFn>,
    unavailable_retry_after: Duration,
    expiry_warning: Duration,
    audit_log: Option<AuditLog>,
    audit_admitted_level: tracing::Level,
    manage_limits: keygate_core::Limits,
}

impl KeygateBuilder {
    fn new(store: Arc<dyn keygate_core::DynKeyStore>) -> Self {
        Self {
            store,
            format: KeyFormat::new("kg").unwrap_or_else(|_| unreachable!("valid default prefix")),
            hasher: KeyHasher::sha256(),
            cache: CacheConfig::default(),
            limiter: None,
            default_quota: None,
            sources: KeySources::default(),
            optional: false,
            strip: None,
            protocol: Protocol::Http,
            method_scopes: MethodScopes::default(),
            grpc_scopes: GrpcScopes::default(),
            environments: None,
            clock: Arc::new(SystemClock),
            rate_limit_headers: false,
            realm: "api".to_owned(),
            on_rejection: None,
            forwarded: None,
            peer_fn: None,
            unavailable_retry_after: Duration::from_secs(1),
            expiry_warning: Duration::from_secs(7 * 86_400),
            audit_log: None,
            audit_admitted_level: tracing::Level::INFO,
            manage_limits: keygate_core::Limits::default(),
        }
    }

    /// Caps on the keys this service's [`manager`](Keygate::manager) (and so
    /// the management router) creates and changes: keys per owner, metadata
    /// size, allowlist entries, rotation grace. They bind every caller,
    /// `admin` included. Default: [`Limits::default`](keygate_core::Limits::default).
    pub fn manage_limits(mut self, limits: keygate_core::Limits) -> Self {
        self.manage_limits = limits;
        self
    }

    /// This application's key prefix (`mbk` for `mbk_live_…`; default `kg`).
    ///
    /// # Panics
    ///
    /// If the prefix is not 1 to 16 lowercase letters or digits. Use
    /// [`key_format`](Self::key_format) with [`KeyFormat::new`] to handle
    /// that as an error.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.format = KeyFormat::new(prefix).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    /// The key format, checked beforehand with [`KeyFormat::new`].
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// How keys are hashed (default SHA-256). Use
    /// [`KeyHasher::hmac_sha256`] to add a server-side pepper.
    pub fn hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// Cache sizes and lifetimes.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// The quota for keys that have none of their own (default: none, so
    /// such keys are not rate-limited): one, `Quota::per_second(100)`, or
    /// several enforced at once, `Quota::per_second(100).and(Quota::per_day(100_000))`.
    pub fn default_rate_limit(mut self, quotas: impl Into<Quotas>) -> Self {
        self.default_quota = Some(quotas.into());
        self
    }

    /// The rate limiter (default: in-process [`GovernorLimiter`]).
    pub fn rate_limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.limiter = Some(Arc::new(limiter));
        self
    }

    /// Add `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` to
    /// successful responses too (default off; 429s always carry them).
    pub fn rate_limit_headers(mut self, enabled: bool) -> Self {
        self.rate_limit_headers = enabled;
        self
    }

    /// Where keys are read from (default: the `X-API-Key` header).
    pub fn sources(mut self, sources: KeySources) -> Self {
        self.sources = sources;
        self
    }

    /// Shorthand: read keys from these headers instead of `X-API-Key`.
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.sources = self.sources.headers(names);
        self
    }

    /// Shorthand: also read keys from this query parameter.
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.sources = self.sources.query(name);
        self
    }

    /// Shorthand: also read keys from `Authorization: Bearer`.
    pub fn bearer(mut self, enabled: bool) -> Self {
        self.sources = self.sources.bearer(enabled);
        self
    }

    /// Let requests that carry no key through, unauthenticated, so session
    /// or JWT authentication can run on the same routes. A request that
    /// carries a key that fails is still rejected. Handlers take
    /// `Option<ApiKey>`.
    pub fn optional(mut self, enabled: bool) -> Self {
        self.optional = enabled;
        self
    }

    /// Remove the key from the request before the inner service sees it
    /// (its headers, our `Authorization: Bearer`, the query parameter).
    ///
    /// Default: on when keys may come in a query parameter (so the key does
    /// not reach handlers, logs or redirects that echo the URL), off
    /// otherwise, when the key's header values are marked sensitive instead
    /// ([`HeaderValue::set_sensitive`](http::HeaderValue::set_sensitive)).
    pub fn strip_credential(mut self, enabled: bool) -> Self {
        self.strip = Some(enabled);
        self
    }

    /// Which scope each HTTP method needs (default: see [`MethodScopes`]).
    pub fn method_scopes(mut self, scopes: MethodScopes) -> Self {
        self.method_scopes = scopes;
        self
    }

    /// The protocol of the layers [`Keygate::layer`] makes (default
    /// [`Protocol::Http`]). Set [`Protocol::Grpc`] for a server that only
    /// serves gRPC; mixed servers use [`Keygate::grpc_layer`] for their gRPC
    /// services instead.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Which scope each gRPC method needs on layers of
    /// [`Protocol::Grpc`] (default: see [`GrpcScopes`]).
    pub fn grpc_scopes(mut self, scopes: GrpcScopes) -> Self {
        self.grpc_scopes = scopes;
        self
    }

    /// Accept keys of this environment only (default: both).
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environments = Some(environment);
        self
    }

    /// The clock expiry is checked against (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The realm in `WWW-Authenticate` challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Render rejections yourself, e.g. in your API's own error format.
    /// [`Rejection::to_response`] gives the default to start from.
    pub fn on_rejection<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.on_rejection = Some(Arc::new(handler));
        self
    }

    /// Take the client address for IP allowlists from this header (e.g.
    /// `x-forwarded-for`, or `forwarded` for RFC 7239's `for=`), using its
    /// last entry: the one your own proxy appended. Every instance of the
    /// header counts, as one list. Only set this behind a proxy you control;
    /// otherwise clients choose their own address. Without it, the
    /// connection's address is used (axum's `ConnectInfo<SocketAddr>`).
    ///
    /// Behind several proxies, say how many with
    /// [`trusted_hops`](Self::trusted_hops), or where they are with
    /// [`trusted_proxies`](Self::trusted_proxies).
    pub fn trust_forwarded_header(mut self, name: HeaderName) -> Self {
        self.forwarded = Some(Forwarded {
            header: name,
            trust: self.forwarded.map_or(Trust::Hops(1), |f| f.trust),
        });
        self
    }

    /// Behind `hops` proxies of yours, each appending one entry to the
    /// [trusted header](Self::trust_forwarded_header) (default 1): the
    /// client's address is the `hops`-th entry from the right. A request
    /// with fewer entries has no known address, so keys with an IP
    /// allowlist are refused; entries further left are the client's own
    /// claims and are ignored.
    pub fn trusted_hops(mut self, hops: usize) -> Self {
        self.set_trust(Trust::Hops(hops));
        self
    }

    /// Your proxies' networks: the client's address is the rightmost entry
    /// of the [trusted header](Self::trust_forwarded_header) outside them,
    /// and the header is believed only from a connection that comes from one
    /// of them (a client that reaches the server directly is judged by its
    /// own address). Needs the connection's address (`ConnectInfo`);
    /// without it, no address is known and allowlisted keys are refused.
    pub fn trusted_proxies(mut self, nets: impl IntoIterator<Item = keygate_core::IpNet>) -> Self {
        self.set_trust(Trust::Networks(nets.into_iter().collect()));
        self
    }

    fn set_trust(&mut self, trust: Trust) {
        let header = self
            .forwarded
            .take()
            .map_or_else(|| HeaderName::from_static("x-forwarded-for"), |f| f.header);
        self.forwarded = Some(Forwarded { header, trust });
    }

    /// Work out the client address yourself.
    pub fn peer_addr_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Extensions, &http::HeaderMap) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.peer_fn = Some(Arc::new(f));
        self
    }

    /// `Retry-After` on 503s when the store cannot answer (default 1 s).
    pub fn unavailable_retry_after(mut self, after: Duration) -> Self {
        self.unavailable_retry_after = after;
        self
    }

    /// How long before a key expires its responses start carrying `Sunset`
    /// and `Deprecation` headers (default 7 days). Keys in a rotation grace
    /// period always carry them.
    pub fn expiry_warning(mut self, within: Duration) -> Self {
        self.expiry_warning = within;
        self
    }

    /// Also persist every authentication attempt and management change
    /// through this [`AuditLog`] (bounded queue, batched writes, never
    /// blocks a request).
    pub fn audit_log(mut self, log: AuditLog) -> Self {
        self.audit_log = Some(log);
        self
    }

    /// The `tracing` level of the audit event for an admitted request
    /// (default `INFO`). Rejections stay at `INFO`, and requests without a
    /// key in optional mode at `DEBUG`.
    ///
    /// Formatting an event is the most expensive thing a request does here
    /// (about 1.6 µs with tracing-subscriber's `fmt` layer, more than the
    /// rest of keygate's work; see BENCHMARKS.md). A busy service that logs
    /// at `INFO` can send admissions to `DEBUG` and keep refusals in its
    /// logs; an [`audit_log`](Self::audit_log) still persists every attempt.
    pub fn audit_admitted_level(mut self, level: tracing::Level) -> Self {
        self.audit_admitted_level = level;
        self
    }

    /// Builds the [`Keygate`].
    pub fn build(self) -> Keygate {
        let verifier = Arc::new(Verifier::new(
            Arc::clone(&self.store),
            self.hasher.clone(),
            Arc::clone(&self.clock),
            self.cache,
        ));
        // Usage flushing and the store's invalidation feed; outside a
        // runtime this waits for the first request.
        verifier.start_background();
        let manager = KeyManager::new(
            Arc::clone(&self.store),
            self.format.clone(),
            self.hasher,
            Arc::clone(&self.clock),
        )
        .with_verifier(Arc::clone(&verifier))
        .with_limits(self.manage_limits);
        let manager = match &self.audit_log {
            Some(log) => manager.with_audit_log(log.clone()),
            None => manager,
        };
        let header = self
            .sources
            .header_names()
            .first()
            .map_or("X-API-Key", HeaderName::as_str)
            .to_owned();
        let where_ = describe_sources(&self.sources, &header);
        let renderer = Arc::new(Renderer {
            ctx: RenderContext::new(&self.realm, &display_header(&header), where_),
            handler: self.on_rejection,
            protocol: self.protocol,
        });
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(GovernorLimiter::new()));
        let strip = self
            .strip
            .unwrap_or_else(|| self.sources.query_name().is_some());
        Keygate {
            shared: Arc::new(Shared {
                format: self.format,
                verifier,
                limiter,
                default_quota: self.default_quota,
                sources: self.sources,
                optional: self.optional,
                strip,
                protocol: self.protocol,
                instance: AdmittedBy(NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)),
                method_scopes: self.method_scopes,
                grpc_scopes: self.grpc_scopes,
                extra_scopes: Vec::new(),
                environments: self.environments,
                clock: self.clock,
                rate_limit_headers: self.rate_limit_headers,
                renderer_ext: (!renderer.is_default())
                    .then(|| RejectionRenderer(Arc::clone(&renderer))),
                renderer,
                forwarded: self.forwarded,
                peer_fn: self.peer_fn,
                unavailable_retry_after: self.unavailable_retry_after,
                expiry_warning: time::Duration::try_from(self.expiry_warning)
                    .unwrap_or(time::Duration::MAX),
                audit_log: self.audit_log,
                audit_admitted_level: self.audit_admitted_level,
                manager,
                peer_unknown_warned: Arc::new(AtomicBool::new(false)),
            }),
        }
    }
}

fn describe_sources(sources: &KeySources, header: &str) -> String {
    let mut s = if sources.header_names().is_empty() {
        String::new()
    } else {
        format!("the `{}` header", display_header(header))
    };
    let mut add = |part: String| {
        if !s.is_empty() {
            s.push_str(" or ");
        }
        s.push_str(&part);
    };
    if sources.bearer_enabled() {
        add("`Authorization: Bearer`".to_owned());
    }
    if let Some(q) = sources.query_name() {
        add(format!("the `{q}` query parameter"));
    }
    s
}

/// `x-api-key` → `X-API-Key`: how people write header names.
fn display_header(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "api" | "id" => part.to_ascii_uppercase(),
            _ => {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

impl fmt::Debug for KeygateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygateBuilder")
            .field("format", &self.format)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_descriptions_read_well() {
        assert_eq!(display_header("x-api-key"), "X-API-Key");
        let s = KeySources::new().query("api_key").bearer(true);
        assert_eq!(
            describe_sources(&s, "x-api-key"),
            "the `X-API-Key` header or `Authorization: Bearer` or the `api_key` query parameter"
        );
    }
}
