//! [`KeygateBuilder`]: every setting of a [`Keygate`], with its default.

use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderName, Response};
use keygate_core::{
    AuditLog, CacheConfig, Clock, Environment, GovernorLimiter, KeyFormat, KeyHasher, KeyManager,
    Quotas, RateLimiter, Verifier,
};

use crate::{
    GrpcScopes, KeySources, Keygate, MethodScopes, Protocol, Rejection,
    handle::Shared,
    peer::{Forwarded, Trust},
    rejection::{RenderContext, Renderer},
    runtime::Runtime,
    settings::Settings,
};

/// A custom rejection renderer; see [`KeygateBuilder::on_rejection`].
pub type RejectionHandler = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;

/// Configures a [`Keygate`]. Every setting has a sane default; only the store
/// is required.
#[must_use]
pub struct KeygateBuilder {
    store: Arc<dyn keygate_core::DynKeyStore>,
    hasher: KeyHasher,
    cache: CacheConfig,
    limiter: Option<Arc<dyn RateLimiter>>,
    credits: Option<Arc<dyn keygate_core::CreditBank>>,
    /// `None`: on when keys may come in a query parameter.
    strip: Option<bool>,
    realm: String,
    on_rejection: Option<RejectionHandler>,
    audit_log: Option<AuditLog>,
    manage_limits: keygate_core::Limits,
    settings: Settings,
}

impl KeygateBuilder {
    pub(crate) fn new(store: Arc<dyn keygate_core::DynKeyStore>) -> Self {
        Self {
            store,
            hasher: KeyHasher::sha256(),
            cache: CacheConfig::default(),
            limiter: None,
            credits: None,
            strip: None,
            realm: "api".to_owned(),
            on_rejection: None,
            audit_log: None,
            manage_limits: keygate_core::Limits::default(),
            settings: Settings::new(),
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

    /// The lifetime of a key created without an expiry, by any way of
    /// creating one ([`Keygate::manager`], the management router, a
    /// rotation of a key that has none): it expires this long after its
    /// creation. Default: none (such keys never expire). Sets
    /// [`Limits::default_key_lifetime`](keygate_core::Limits::default_key_lifetime);
    /// call it after [`manage_limits`](Self::manage_limits), which replaces
    /// every cap.
    pub fn default_key_lifetime(mut self, lifetime: Duration) -> Self {
        self.manage_limits.default_key_lifetime = Some(lifetime);
        self
    }

    /// The longest a key may live, from its creation: creating a key that
    /// expires later, or changing a key's expiry past its creation plus
    /// this (or to none), is refused (422 in the management router); a key
    /// created without an expiry gets the [default
    /// lifetime](Self::default_key_lifetime), or this; a rotation's new key
    /// never expires later than this long after the rotation. The
    /// management router's OpenAPI document states it as the maximum of
    /// `expires_in_seconds`. Default: none. Sets
    /// [`Limits::max_key_lifetime`](keygate_core::Limits::max_key_lifetime);
    /// call it after [`manage_limits`](Self::manage_limits).
    ///
    /// ```
    /// use std::time::Duration;
    /// use keygate::{Keygate, core::MemoryStore};
    ///
    /// const DAY: Duration = Duration::from_secs(86_400);
    /// let keys = Keygate::builder(MemoryStore::new())
    ///     .default_key_lifetime(90 * DAY)
    ///     .max_key_lifetime(365 * DAY)
    ///     .build();
    /// ```
    pub fn max_key_lifetime(mut self, lifetime: Duration) -> Self {
        self.manage_limits.max_key_lifetime = Some(lifetime);
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
        self.settings.format = KeyFormat::new(prefix).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    /// The key format, checked beforehand with [`KeyFormat::new`].
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.settings.format = format;
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
        self.settings.default_quota = Some(quotas.into());
        self
    }

    /// Where metered keys' credit balances are kept (default: the key store
    /// itself, [`StoreCredits`](keygate_core::StoreCredits)), for the layer
    /// and the [`manager`](crate::Keygate::manager) alike. keygate-redis's
    /// `RedisCredits` keeps them in Redis.
    pub fn credit_bank(mut self, bank: impl keygate_core::CreditBank) -> Self {
        self.credits = Some(Arc::new(bank));
        self
    }

    /// What each request admitted with a metered key costs, in credits
    /// (default 1); a layer can charge otherwise with
    /// [`KeygateLayer::cost`](crate::KeygateLayer::cost). 0 makes
    /// requests free. At most [`MAX_COST`](keygate_core::MAX_COST).
    pub fn credit_cost(mut self, cost: u64) -> Self {
        self.settings.credit_cost = cost.min(keygate_core::MAX_COST);
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
        self.settings.rate_limit_headers = enabled;
        self
    }

    /// Where keys are read from (default: the `X-API-Key` header).
    pub fn sources(mut self, sources: KeySources) -> Self {
        self.settings.sources = sources;
        self
    }

    /// Shorthand: read keys from these headers instead of `X-API-Key`.
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.settings.sources = self.settings.sources.headers(names);
        self
    }

    /// Shorthand: also read keys from this query parameter.
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.settings.sources = self.settings.sources.query(name);
        self
    }

    /// Shorthand: also read keys from `Authorization: Bearer`.
    pub fn bearer(mut self, enabled: bool) -> Self {
        self.settings.sources = self.settings.sources.bearer(enabled);
        self
    }

    /// Let requests that carry no key through, unauthenticated, so session
    /// or JWT authentication can run on the same routes. A request that
    /// carries a key that fails is still rejected. Handlers take
    /// `Option<ApiKey>`.
    pub fn optional(mut self, enabled: bool) -> Self {
        self.settings.optional = enabled;
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
        self.settings.method_scopes = scopes;
        self
    }

    /// The protocol of the layers [`Keygate::layer`] makes (default
    /// [`Protocol::Http`]). Set [`Protocol::Grpc`] for a server that only
    /// serves gRPC; mixed servers use [`Keygate::grpc_layer`] for their gRPC
    /// services instead.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.settings.protocol = protocol;
        self
    }

    /// Which scope each gRPC method needs on layers of
    /// [`Protocol::Grpc`] (default: see [`GrpcScopes`]).
    pub fn grpc_scopes(mut self, scopes: GrpcScopes) -> Self {
        self.settings.grpc_scopes = scopes;
        self
    }

    /// Accept keys of this environment only (default: both).
    pub fn environment(mut self, environment: Environment) -> Self {
        self.settings.environments = Some(environment);
        self
    }

    /// The clock expiry is checked against (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.settings.clock = Arc::new(clock);
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
        self.settings.forwarded = Some(Forwarded {
            header: name,
            trust: self
                .settings
                .forwarded
                .take()
                .map_or(Trust::Hops(1), |f| f.trust),
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
            .settings
            .forwarded
            .take()
            .map_or_else(|| HeaderName::from_static("x-forwarded-for"), |f| f.header);
        self.settings.forwarded = Some(Forwarded { header, trust });
    }

    /// Work out the client address yourself.
    pub fn peer_addr_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Extensions, &http::HeaderMap) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.settings.peer_fn = Some(Arc::new(f));
        self
    }

    /// `Retry-After` on 503s when the store cannot answer (default 1 s).
    pub fn unavailable_retry_after(mut self, after: Duration) -> Self {
        self.settings.unavailable_retry_after = after;
        self
    }

    /// How long before a key expires its responses start carrying `Sunset`
    /// and `Deprecation` headers (default 7 days). Keys in a rotation grace
    /// period always carry them.
    pub fn expiry_warning(mut self, within: Duration) -> Self {
        self.settings.expiry_warning =
            time::Duration::try_from(within).unwrap_or(time::Duration::MAX);
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
        self.settings.audit_admitted_level = level;
        self
    }

    /// Builds the [`Keygate`].
    pub fn build(self) -> Keygate {
        let mut settings = self.settings;
        let verifier = Arc::new(Verifier::new(
            Arc::clone(&self.store),
            self.hasher.clone(),
            Arc::clone(&settings.clock),
            self.cache,
        ));
        // Usage flushing and the store's invalidation feed; outside a
        // runtime this waits for the first request.
        verifier.start_background();
        let manager = KeyManager::new(
            Arc::clone(&self.store),
            settings.format.clone(),
            self.hasher,
            Arc::clone(&settings.clock),
        )
        .with_verifier(Arc::clone(&verifier))
        .with_limits(self.manage_limits);
        let manager = match self.credits {
            Some(bank) => manager.with_credit_bank(bank),
            None => manager,
        };
        let manager = match &self.audit_log {
            Some(log) => manager.with_audit_log(log.clone()),
            None => manager,
        };
        let limiter = self
            .limiter
            .unwrap_or_else(|| Arc::new(GovernorLimiter::new()));
        settings.strip = self
            .strip
            .unwrap_or_else(|| settings.sources.query_name().is_some());
        let ctx = RenderContext::new(
            &self.realm,
            &settings.sources.challenge_header(),
            settings.sources.describe(),
        );
        settings.set_renderer(Renderer {
            ctx,
            handler: self.on_rejection,
            protocol: settings.protocol,
        });
        Keygate::new(Shared {
            settings,
            runtime: Runtime::new(verifier, limiter, self.audit_log, manager),
        })
    }
}

impl fmt::Debug for KeygateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygateBuilder")
            .field("format", &self.settings.format)
            .field("sources", &self.settings.sources)
            .finish_non_exhaustive()
    }
}
