//! The tower layer and service that authenticate each request.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use keygate_core::{
    CachedKey, Check, Decision, Denied, KeyDigest, KeyId, Lookup, Pending, PendingCheck,
};
use pin_project_lite::pin_project;
use time::OffsetDateTime;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    ApiKey, Rejection, audit,
    body::ResponseBody,
    extract::Anonymous,
    keygate::Shared,
    rejection::{insert_rate_limit_headers, insert_sunset_headers},
    require_scope::RejectionRenderer,
    source::SourceError,
};

/// Applies keygate's authentication to a service. Made by
/// [`Keygate::layer`](crate::Keygate::layer).
#[derive(Clone)]
pub struct KeygateLayer {
    shared: Arc<Shared>,
}

impl KeygateLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The same layer (same cache, limiter, store and settings) with other
    /// method-to-scope rules, e.g. [`MethodScopes::none`](crate::MethodScopes::none)
    /// for routes that check scopes themselves.
    #[must_use]
    pub fn method_scopes(self, scopes: crate::MethodScopes) -> Self {
        let mut shared = (*self.shared).clone();
        shared.method_scopes = scopes;
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The same layer, also requiring `scope` (or `admin`) on every request
    /// it sees. Apply it with `route_layer` to the routes that need it:
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use keygate::{Keygate, core::{MemoryStore, Scope}};
    ///
    /// let keys = Keygate::builder(MemoryStore::new()).build();
    /// let notes = Router::new()
    ///     .route("/notes", get(|| async { "notes" }))
    ///     .route_layer(keys.layer());
    /// let billing = Router::new()
    ///     .route("/invoices", get(|| async { "invoices" }))
    ///     .route_layer(keys.layer().require_scope(Scope::from_static("billing:read")));
    /// let app: Router = notes.merge(billing);
    /// ```
    ///
    /// Unlike the standalone [`require_scope`](crate::require_scope) route
    /// layer, which runs inside a layer applied to the whole router (after
    /// the request was counted against the key's quota and usage), this
    /// check runs with the method's scope check, before the quota: a refused
    /// request costs the key nothing.
    ///
    /// Layers of one `Keygate` nest: a layer that finds a key admitted by a
    /// layer of the same `Keygate` further out (even one that stripped the
    /// credential) judges only its own protocol and scope rules against that
    /// key; it neither authenticates nor charges the quota again. A key
    /// admitted by *another* `Keygate` is judged afresh, and refused if its
    /// credential is gone, optional mode or not.
    #[must_use]
    pub fn require_scope(self, scope: keygate_core::Scope) -> Self {
        let mut shared = (*self.shared).clone();
        shared.extra_scopes.push(scope);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The same layer protecting `protocol`: its scope rules and the form of
    /// its refusals (see [`Protocol`](crate::Protocol)).
    #[must_use]
    pub fn protocol(self, protocol: crate::Protocol) -> Self {
        let mut shared = (*self.shared).clone();
        shared.protocol = protocol;
        let renderer = Arc::new(crate::rejection::Renderer {
            protocol,
            ..(*shared.renderer).clone()
        });
        shared.renderer_ext =
            (!renderer.is_default()).then(|| RejectionRenderer(Arc::clone(&renderer)));
        shared.renderer = renderer;
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The same layer with other gRPC method-to-scope rules (used when it
    /// protects [`Protocol::Grpc`](crate::Protocol::Grpc)).
    #[must_use]
    pub fn grpc_scopes(self, scopes: crate::GrpcScopes) -> Self {
        let mut shared = (*self.shared).clone();
        shared.grpc_scopes = scopes;
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The same layer in optional mode or not (see
    /// [`KeygateBuilder::optional`](crate::KeygateBuilder::optional)).
    #[must_use]
    pub fn optional(self, enabled: bool) -> Self {
        let mut shared = (*self.shared).clone();
        shared.optional = enabled;
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl fmt::Debug for KeygateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygateLayer")
            .field("prefix", &self.shared.format.prefix())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for KeygateLayer {
    type Service = KeygateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeygateService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service that lets through only requests with a valid key, the scope
/// their method needs, and quota left; see [`KeygateLayer`].
///
/// Rejections are responses, never errors: `Error` is the inner service's.
#[derive(Clone)]
pub struct KeygateService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> KeygateService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for KeygateService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygateService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What the synchronous part of the request path concluded.
enum Start {
    Anonymous,
    Reject(Rejection, Option<KeyId>, &'static str),
    Hit(Arc<CachedKey>, KeyDigest, OffsetDateTime),
    Miss(Pending, KeyId, KeyDigest),
}

/// What the policy checks concluded for a known key.
enum Decided {
    Admit(Option<Decision>),
    Reject(Rejection, &'static str),
    Pending(PendingCheck),
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeygateService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        shared.verifier.start_background();
        let admitted = req.extensions().get::<ApiKey>();
        if let Some(key) = admitted
            && key.admitted_by() == shared.instance
        {
            // A layer of this Keygate further out authenticated the key and
            // charged its quota (and may have stripped the credential):
            // judge only this layer's own rules.
            return match check_scopes(shared, key.scopes(), &req) {
                Ok(()) => ResponseFuture::inner(self.inner.call(req), None, None),
                Err((rejection, reason)) => {
                    audit::rejected(shared, &req, &rejection, Some(key.id()), reason);
                    ResponseFuture::rejected(shared.reject(&rejection))
                }
            };
        }
        // A key another Keygate admitted is not this layer's to wave
        // through as anonymous.
        let foreign = admitted.is_some();
        match start(shared, &req) {
            Start::Anonymous if foreign => {
                let rejection = Rejection::MissingKey;
                audit::rejected(shared, &req, &rejection, None, "missing");
                ResponseFuture::rejected(shared.reject(&rejection))
            }
            Start::Anonymous => {
                audit::anonymous(shared, &req);
                req.extensions_mut().insert(Anonymous);
                if let Some(renderer) = &shared.renderer_ext {
                    req.extensions_mut().insert(renderer.clone());
                }
                ResponseFuture::inner(self.inner.call(req), None, None)
            }
            Start::Reject(rejection, id, reason) => {
                audit::rejected(shared, &req, &rejection, id, reason);
                ResponseFuture::rejected(shared.reject(&rejection))
            }
            Start::Hit(entry, digest, now) => match decide(shared, &entry, &digest, &req, now) {
                Decided::Admit(decision) => {
                    let sunset = admit(shared, &mut req, &entry, now);
                    let decision = decision.filter(|_| shared.rate_limit_headers);
                    ResponseFuture::inner(self.inner.call(req), decision, sunset)
                }
                Decided::Reject(rejection, reason) => {
                    audit::rejected(shared, &req, &rejection, Some(entry.info().id), reason);
                    ResponseFuture::rejected(shared.reject(&rejection))
                }
                Decided::Pending(check) => ResponseFuture {
                    state: State::Limiting {
                        check,
                        deferred: Some(self.defer(req, entry.info().id, Some(entry), digest)),
                    },
                },
            },
            Start::Miss(pending, id, digest) => ResponseFuture {
                state: State::Loading {
                    pending,
                    deferred: Some(self.defer(req, id, None, digest)),
                },
            },
        }
    }
}

impl<S: Clone> KeygateService<S> {
    /// Moves the request and the (ready) inner service into the future, for
    /// the paths that must wait for the store or a remote limiter.
    fn defer<B>(
        &mut self,
        req: Request<B>,
        id: KeyId,
        entry: Option<Arc<CachedKey>>,
        digest: KeyDigest,
    ) -> Box<Deferred<S, B>> {
        // The clone has not been driven to readiness; keep it and hand the
        // ready one to the future (the pattern tower's docs describe).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::new(Deferred {
            req,
            inner,
            shared: Arc::clone(&self.shared),
            id,
            entry,
            digest,
        })
    }
}

/// Steps 1–3 of the request path: extract, parse, hash, look up. No I/O.
fn start<B>(shared: &Shared, req: &Request<B>) -> Start {
    let presented = match shared.sources.extract(req, shared.format.prefix()) {
        Ok(Some(p)) => p,
        Ok(None) if shared.optional => return Start::Anonymous,
        Ok(None) => return Start::Reject(Rejection::MissingKey, None, "missing"),
        Err(SourceError::Conflict) => {
            return Start::Reject(Rejection::ConflictingKeys, None, "conflicting");
        }
        Err(SourceError::Unreadable) => {
            return Start::Reject(Rejection::MalformedKey, None, "unreadable_bytes");
        }
    };
    let parsed = match shared.format.parse(&presented) {
        Ok(p) => p,
        Err(e) => return Start::Reject(Rejection::MalformedKey, None, parse_reason(e)),
    };
    let id = parsed.id();
    if let Some(accepted) = shared.environments
        && parsed.environment() != accepted
    {
        let rejection = Rejection::WrongEnvironment {
            environment: parsed.environment(),
        };
        return Start::Reject(rejection, Some(id), "environment");
    }
    let digest = shared.verifier.hasher().digest(parsed.expose_secret());
    let now = shared.clock.now();
    match shared.verifier.lookup(id, now) {
        Lookup::Hit(entry) => Start::Hit(entry, digest, now),
        Lookup::Unknown => Start::Reject(Rejection::InvalidKey, Some(id), "unknown_key"),
        Lookup::Miss(pending) => Start::Miss(pending, id, digest),
        // Fails fast: queueing would hand the store's capacity to a flood of
        // forged ids. 503, never 401: the key may well be real.
        Lookup::Busy => Start::Reject(
            Rejection::Unavailable {
                retry_after: shared.unavailable_retry_after,
            },
            Some(id),
            "unknown_lookups_busy",
        ),
    }
}

fn parse_reason(e: keygate_core::ParseError) -> &'static str {
    use keygate_core::ParseError as P;
    match e {
        P::Empty => "empty",
        P::Length => "length",
        P::Prefix => "prefix",
        P::Environment => "environment_syntax",
        P::Alphabet => "alphabet",
        P::Checksum => "checksum",
        _ => "malformed",
    }
}

/// Steps 4–6: digest, revocation, expiry, IP, scope, quota.
fn decide<B>(
    shared: &Shared,
    entry: &CachedKey,
    digest: &KeyDigest,
    req: &Request<B>,
    now: OffsetDateTime,
) -> Decided {
    let peer = || shared.peer(req);
    let checked = entry.check(digest, now, None);
    // Only resolve the peer address for keys that have an allowlist.
    let checked = match checked {
        Err(Denied::PeerUnknown) => entry.check(digest, now, peer()),
        other => other,
    };
    if let Err(denied) = checked {
        let (rejection, reason) = match denied {
            Denied::DigestMismatch => (Rejection::InvalidKey, "digest_mismatch"),
            Denied::Revoked => (Rejection::RevokedKey, "revoked"),
            Denied::Expired => (Rejection::ExpiredKey, "expired"),
            Denied::PeerUnknown => {
                warn_peer_unknown(shared);
                (Rejection::IpNotAllowed, "peer_unknown")
            }
            _ => (Rejection::IpNotAllowed, "ip_not_allowed"),
        };
        return Decided::Reject(rejection, reason);
    }
    if let Err((rejection, reason)) = check_scopes(shared, &entry.info().scopes, req) {
        return Decided::Reject(rejection, reason);
    }
    let Some(quotas) = entry.rate_limit().or(shared.default_quota.as_ref()) else {
        return Decided::Admit(None);
    };
    match shared.limiter.check(entry.info().family, quotas) {
        Check::Ready(result) => decided_by_limit(shared, &result),
        Check::Pending(p) => Decided::Pending(p),
    }
}

/// Step 5's scope part: the scope the request needs under the layer's
/// protocol, then any the layer itself requires.
fn check_scopes<B>(
    shared: &Shared,
    scopes: &keygate_core::Scopes,
    req: &Request<B>,
) -> Result<(), (Rejection, &'static str)> {
    let required = shared
        .required_scope(req)
        .map_err(|rejection| (rejection, "wrong_protocol"))?;
    if let Some(required) = required
        && !scopes.allows(required)
    {
        let rejection = Rejection::InsufficientScope {
            required: required.clone(),
        };
        return Err((rejection, "scope"));
    }
    if let Some(required) = shared.extra_scopes.iter().find(|s| !scopes.allows(s)) {
        let rejection = Rejection::InsufficientScope {
            required: required.clone(),
        };
        return Err((rejection, "route_scope"));
    }
    Ok(())
}

/// Logs, once per [`Keygate`](crate::Keygate), that a key with an IP
/// allowlist was refused because the client address is unknown: a server
/// misconfiguration that otherwise only shows as 403s. Says nothing about
/// the request or its key.
fn warn_peer_unknown(shared: &Shared) {
    if shared.peer_unknown_warned.load(Ordering::Relaxed)
        || shared.peer_unknown_warned.swap(true, Ordering::Relaxed)
    {
        return;
    }
    if shared.peer_fn.is_some() {
        tracing::warn!(
            target: "keygate::layer",
            "A key with an IP allowlist was refused (403 ip_not_allowed) because the client \
             address is unknown: the `peer_addr_with` function returned none. Make it return \
             the address for every request. This warning is logged once."
        );
    } else if let Some(forwarded) = &shared.forwarded {
        tracing::warn!(
            target: "keygate::layer",
            header = forwarded.header.as_str(),
            "A key with an IP allowlist was refused (403 ip_not_allowed) because the client \
             address is unknown: the trusted forwarding header is missing, has fewer entries \
             than `trusted_hops`, or its entry is not an IP address (with `trusted_proxies`, \
             the connection's address is needed too). Check that your proxy sets it on every \
             request, or work the address out with `peer_addr_with`. This warning is logged \
             once."
        );
    } else {
        tracing::warn!(
            target: "keygate::layer",
            "A key with an IP allowlist was refused (403 ip_not_allowed) because the client \
             address is unknown: the request carries no `ConnectInfo<SocketAddr>`. Serve the \
             app with `app.into_make_service_with_connect_info::<SocketAddr>()` instead of \
             `axum::serve(listener, app)`, or configure `trust_forwarded_header` (behind a \
             proxy you control) or `peer_addr_with` on the `KeygateBuilder`. This warning is \
             logged once."
        );
    }
}

fn decided_by_limit(
    shared: &Shared,
    result: &Result<Decision, keygate_core::LimiterUnavailable>,
) -> Decided {
    match *result {
        Ok(d) if d.allowed => Decided::Admit(Some(d)),
        Ok(decision) => Decided::Reject(Rejection::RateLimited { decision }, "rate_limited"),
        Err(_) => Decided::Reject(
            Rejection::Unavailable {
                retry_after: shared.unavailable_retry_after,
            },
            "limiter_unavailable",
        ),
    }
}

/// Steps 7–9: count usage, audit, attach the key, strip the credential.
/// Returns the sunset time when the response should carry a reminder.
fn admit<B>(
    shared: &Shared,
    req: &mut Request<B>,
    entry: &CachedKey,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    entry.record_use(now);
    let sunset = entry
        .expires_at()
        .filter(|at| entry.is_superseded() || *at - now <= shared.expiry_warning);
    audit::admitted(shared, req, entry.info().id, sunset, entry.is_superseded());
    if shared.strip {
        shared.sources.strip(req, shared.format.prefix());
    } else {
        shared.sources.mark_sensitive(req, shared.format.prefix());
    }
    req.extensions_mut()
        .insert(ApiKey::new(Arc::clone(entry.info()), shared.instance));
    if let Some(renderer) = &shared.renderer_ext {
        req.extensions_mut().insert(renderer.clone());
    }
    sunset
}

/// A request waiting for the store or a remote limiter.
struct Deferred<S, B> {
    req: Request<B>,
    inner: S,
    shared: Arc<Shared>,
    id: KeyId,
    entry: Option<Arc<CachedKey>>,
    digest: KeyDigest,
}

impl<S, B, ResBody> Deferred<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    fn call_inner(mut self, decision: Option<Decision>, entry: &CachedKey) -> State<S, B> {
        let now = self.shared.clock.now();
        let sunset = admit(&self.shared, &mut self.req, entry, now);
        let future = self.inner.call(self.req);
        let decision = decision.filter(|_| self.shared.rate_limit_headers);
        State::Inner {
            future,
            decision,
            sunset,
        }
    }

    fn reject(self, rejection: &Rejection, id: Option<KeyId>, reason: &'static str) -> State<S, B> {
        audit::rejected(&self.shared, &self.req, rejection, id, reason);
        State::Rejected {
            response: Some(self.shared.reject(rejection)),
        }
    }
}

pin_project! {
    /// The response future of [`KeygateService`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            decision: Option<Decision>,
            sunset: Option<OffsetDateTime>,
        },
        Loading {
            pending: Pending,
            deferred: Option<Box<Deferred<S, B>>>,
        },
        Limiting {
            check: PendingCheck,
            deferred: Option<Box<Deferred<S, B>>>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn inner(
        future: S::Future,
        decision: Option<Decision>,
        sunset: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            state: State::Inner {
                future,
                decision,
                sunset,
            },
        }
    }

    fn rejected(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner {
                    future,
                    decision,
                    sunset,
                } => {
                    let mut res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    if let Some(d) = decision {
                        insert_rate_limit_headers(res.headers_mut(), d);
                    }
                    if let Some(at) = sunset {
                        insert_sunset_headers(res.headers_mut(), *at);
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Rejected { response } => {
                    let res = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(res.map(ResponseBody::full)));
                }
                StateProj::Loading { pending, deferred } => {
                    let loaded = ready!(pending.0.as_mut().poll(cx));
                    let d = deferred
                        .take()
                        .expect("ResponseFuture polled after completion");
                    resume(*d, loaded)
                }
                StateProj::Limiting { check, deferred } => {
                    let result = ready!(check.0.as_mut().poll(cx));
                    let d = deferred
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let Some(entry) = d.entry.clone() else {
                        unreachable!("a limiter check always follows a lookup")
                    };
                    match decided_by_limit(&d.shared, &result) {
                        // A remote limiter took a round trip: the key may
                        // have expired meanwhile, and expiry is exact.
                        Decided::Admit(_)
                            if entry
                                .expires_at()
                                .is_some_and(|at| d.shared.clock.now() >= at) =>
                        {
                            d.reject(&Rejection::ExpiredKey, Some(entry.info().id), "expired")
                        }
                        Decided::Admit(decision) => d.call_inner(decision, &entry),
                        Decided::Reject(r, reason) => d.reject(&r, Some(entry.info().id), reason),
                        Decided::Pending(_) => unreachable!("decided_by_limit never defers"),
                    }
                }
            };
            state.set(next);
        }
    }
}

/// Continues the request path once the store has answered.
fn resume<S, B, ResBody>(
    mut d: Deferred<S, B>,
    loaded: Result<Option<Arc<CachedKey>>, Arc<keygate_core::StoreError>>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    match loaded {
        Err(err) => {
            tracing::error!(target: "keygate::audit", error = %err, "key store unavailable");
            let retry_after = d.shared.unavailable_retry_after;
            let id = Some(d.id);
            d.reject(
                &Rejection::Unavailable { retry_after },
                id,
                "store_unavailable",
            )
        }
        Ok(None) => {
            let id = Some(d.id);
            d.reject(&Rejection::InvalidKey, id, "unknown_key")
        }
        Ok(Some(entry)) => match decide(&d.shared, &entry, &d.digest, &d.req, d.shared.clock.now())
        {
            Decided::Admit(decision) => d.call_inner(decision, &entry),
            Decided::Reject(r, reason) => d.reject(&r, Some(entry.info().id), reason),
            Decided::Pending(check) => {
                d.entry = Some(entry);
                State::Limiting {
                    check,
                    deferred: Some(Box::new(d)),
                }
            }
        },
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
