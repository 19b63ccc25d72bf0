//! The tower layer that authenticates each request, in tower-http's
//! shape: the [`KeygateLayer`] here, its [`KeygateService`] in `service`,
//! the service's [`ResponseFuture`] in `future`, and the request path
//! itself (extract, parse, look up, verify, judge, limit, admit) in
//! `pipeline`, which knows nothing of services.

mod credits;
mod future;
mod peer_warning;
mod pipeline;
mod service;

use std::{fmt, sync::Arc};

use keygate_core::Scope;
use tower_layer::Layer;

pub(crate) use self::credits::Spent;
pub use self::{future::ResponseFuture, service::KeygateService};
use crate::{GrpcScopes, MethodScopes, Protocol, handle::Shared, settings::Settings};

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

    /// The same layer (same cache, limiter and store) with `change` made to
    /// its settings.
    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings.clone();
        change(&mut settings);
        Self {
            shared: Arc::new(Shared {
                settings,
                runtime: self.shared.runtime.clone(),
            }),
        }
    }

    /// The same layer (same cache, limiter, store and settings) with other
    /// method-to-scope rules, e.g. [`MethodScopes::none`]
    /// for routes that check scopes themselves.
    #[must_use]
    pub fn method_scopes(self, scopes: MethodScopes) -> Self {
        self.with(|s| s.method_scopes = scopes)
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
    pub fn require_scope(self, scope: Scope) -> Self {
        self.with(|s| s.extra_scopes.push(scope))
    }

    /// The same layer, charging `cost` credits (instead of the builder's
    /// [`credit_cost`](crate::KeygateBuilder::credit_cost), 1 by default)
    /// for each request it admits with a metered key; keys that are not
    /// metered are unaffected. Apply it with `route_layer` to the routes
    /// that cost more (or nothing):
    ///
    /// ```
    /// use axum::{Router, routing::{get, post}};
    /// use keygate::{Keygate, core::MemoryStore};
    ///
    /// let keys = Keygate::builder(MemoryStore::new()).build();
    /// let cheap = Router::new()
    ///     .route("/notes", get(|| async { "notes" }))
    ///     .route_layer(keys.layer());
    /// let pricey = Router::new()
    ///     .route("/reports", post(|| async { "report" }))
    ///     .route_layer(keys.layer().cost(10));
    /// let app: Router = cheap.merge(pricey);
    /// ```
    ///
    /// Nested in a layer of the same `Keygate` that already admitted the
    /// key (one on the whole router, say), it charges only what its cost
    /// adds to the credits paid further out; if the balance cannot pay
    /// that, the request is refused with `usage_exceeded` and what was paid
    /// further out is given back. (The outer layer's rate-limit charge
    /// stays: put costly routes under a layer of their own to keep the two
    /// all-or-nothing.) At most [`MAX_COST`](keygate_core::MAX_COST).
    #[must_use]
    pub fn cost(self, cost: u64) -> Self {
        self.with(|s| s.credit_cost = cost.min(keygate_core::MAX_COST))
    }

    /// The same layer protecting `protocol`: its scope rules and the form of
    /// its refusals (see [`Protocol`]).
    #[must_use]
    pub fn protocol(self, protocol: Protocol) -> Self {
        self.with(|s| s.set_protocol(protocol))
    }

    /// The same layer with other gRPC method-to-scope rules (used when it
    /// protects [`Protocol::Grpc`]).
    #[must_use]
    pub fn grpc_scopes(self, scopes: GrpcScopes) -> Self {
        self.with(|s| s.grpc_scopes = scopes)
    }

    /// The same layer in optional mode or not (see
    /// [`KeygateBuilder::optional`](crate::KeygateBuilder::optional)).
    #[must_use]
    pub fn optional(self, enabled: bool) -> Self {
        self.with(|s| s.optional = enabled)
    }
}

impl fmt::Debug for KeygateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygateLayer")
            .field("prefix", &self.shared.settings.format.prefix())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for KeygateLayer {
    type Service = KeygateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeygateService::new(inner, Arc::clone(&self.shared))
    }
}
