//! Route-level scope requirements: the [`require_scope`] layer and the
//! [`RequireScope`] extractor.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use keygate_core::Scope;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "axum")]
use crate::extract::ApiKeyRejection;
use crate::{
    ApiKey, Rejection,
    audit::{self, Reason},
    body::ResponseBody,
    extract::lookup,
    rejection::RejectionRenderer,
};

/// Requires the authenticated key to hold `scope` (or `admin`), on top of
/// what the method needs. Use it with axum's `route_layer`, so unknown paths
/// stay 404:
///
/// ```
/// use axum::{Router, routing::get};
/// use keygate::{Keygate, require_scope, core::MemoryStore};
///
/// let keys = Keygate::builder(MemoryStore::new()).build();
/// let app: Router = Router::new()
///     .route("/invoices", get(|| async { "…" }))
///     .route_layer(require_scope("billing:read"))
///     .layer(keys.layer());
/// ```
///
/// A request without a key (optional mode) gets 401; a key without the
/// scope gets 403.
///
/// This layer runs inside the router, after keygate's layer has admitted the
/// request, so a refused request has already been counted against the key's
/// quota and usage, like any request a handler refuses. To refuse before the
/// quota is touched, protect those routes with
/// [`KeygateLayer::require_scope`](crate::KeygateLayer::require_scope)
/// instead.
///
/// # Panics
///
/// If `scope` is not a valid scope name (see [`Scope`]); this happens when
/// the router is built, not per request.
pub fn require_scope(scope: &'static str) -> RequireScopeLayer {
    RequireScopeLayer::new(Scope::from_static(scope))
}

/// The layer made by [`require_scope`].
#[derive(Clone, Debug)]
pub struct RequireScopeLayer {
    scope: Scope,
}

impl RequireScopeLayer {
    /// Requires `scope`.
    pub fn new(scope: Scope) -> Self {
        Self { scope }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            scope: self.scope.clone(),
        }
    }
}

/// The service made by [`RequireScopeLayer`].
#[derive(Clone, Debug)]
pub struct RequireScopeService<S> {
    inner: S,
    scope: Scope,
}

impl<S> RequireScopeService<S> {
    define_inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for RequireScopeService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ScopeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let rejection = match lookup(req.extensions()) {
            Ok(Some(key)) if key.allows(&self.scope) => {
                return ScopeFuture {
                    kind: ScopeKind::Inner {
                        future: self.inner.call(req),
                    },
                };
            }
            Ok(Some(key)) => {
                let (method, path) = (req.method(), req.uri().path());
                audit::scope_refused(Reason::RouteScope, &key, &self.scope, method, path);
                Rejection::InsufficientScope {
                    required: self.scope.clone(),
                }
            }
            Ok(None) => Rejection::MissingKey,
            Err(e) => e,
        };
        // In the layer's protocol, which the layer put in the extensions.
        let response = RejectionRenderer::render_from(req.extensions(), &rejection);
        ScopeFuture {
            kind: ScopeKind::Rejected {
                response: Some(response),
            },
        }
    }
}

pin_project! {
    /// The response future of [`RequireScopeService`].
    pub struct ScopeFuture<F> {
        #[pin]
        kind: ScopeKind<F>,
    }
}

pin_project! {
    #[project = ScopeKindProj]
    enum ScopeKind<F> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Bytes>> },
    }
}

impl<F, ResBody, E> Future for ScopeFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ScopeKindProj::Inner { future } => {
                Poll::Ready(Ok(ready!(future.poll(cx))?.map(ResponseBody::inner)))
            }
            ScopeKindProj::Rejected { response } => {
                let res = response
                    .take()
                    .expect("ScopeFuture polled after completion");
                Poll::Ready(Ok(res.map(ResponseBody::full)))
            }
        }
    }
}

impl<F> fmt::Debug for ScopeFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeFuture").finish_non_exhaustive()
    }
}

/// A scope known at compile time, for the [`RequireScope`] extractor.
/// Declare one with [`scope!`](crate::scope!).
pub trait ScopeName: Send + Sync + 'static {
    /// The scope's name.
    const NAME: &'static str;

    /// The scope.
    fn scope() -> Scope {
        Scope::from_static(Self::NAME)
    }
}

/// Declares a [`ScopeName`] type; the name is checked at compile time.
///
/// ```
/// keygate::scope!(pub BillingRead = "billing:read");
///
/// async fn invoices(key: keygate::RequireScope<BillingRead>) -> String {
///     format!("invoices for {}", key.owner())
/// }
/// ```
#[macro_export]
macro_rules! scope {
    ($(#[$meta:meta])* $vis:vis $name:ident = $scope:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name;

        impl $crate::ScopeName for $name {
            const NAME: &'static str = {
                assert!(
                    $crate::core::Scope::is_valid_name($scope),
                    "invalid scope name"
                );
                $scope
            };
        }
    };
}

/// An extractor that yields the [`ApiKey`] only if it holds scope `S`
/// (or `admin`); otherwise 403 (or 401 without a key).
pub struct RequireScope<S: ScopeName>(pub ApiKey, PhantomData<fn() -> S>);

impl<S: ScopeName> RequireScope<S> {
    /// The key.
    pub fn into_inner(self) -> ApiKey {
        self.0
    }
}

impl<S: ScopeName> std::ops::Deref for RequireScope<S> {
    type Target = ApiKey;

    fn deref(&self) -> &ApiKey {
        &self.0
    }
}

impl<S: ScopeName> Clone for RequireScope<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<S: ScopeName> fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequireScope")
            .field(&S::NAME)
            .field(&self.0)
            .finish()
    }
}

#[cfg(feature = "axum")]
impl<S: ScopeName, St: Send + Sync> axum::extract::FromRequestParts<St> for RequireScope<S> {
    type Rejection = ApiKeyRejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        let reject = |r| ApiKeyRejection::new(r, &parts.extensions);
        let key = lookup(&parts.extensions)
            .map_err(reject)?
            .ok_or_else(|| reject(Rejection::MissingKey))?;
        let scope = S::scope();
        if key.allows(&scope) {
            return Ok(Self(key, PhantomData));
        }
        let (method, path) = (&parts.method, parts.uri.path());
        audit::scope_refused(Reason::ExtractorScope, &key, &scope, method, path);
        Err(reject(Rejection::InsufficientScope { required: scope }))
    }
}
