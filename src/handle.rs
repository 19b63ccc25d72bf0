//! [`Keygate`]: the handle that owns the cache, limiter and configuration,
//! and hands out layers and a key manager.

use std::{fmt, sync::Arc};

use keygate_core::{KeyFormat, KeyManager, KeyStore, Verifier};

use crate::{KeygateBuilder, KeygateLayer, Protocol, runtime::Runtime, settings::Settings};

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

impl Keygate {
    pub(crate) fn new(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

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
    /// builder's [`GrpcScopes`](crate::GrpcScopes) and answering with gRPC statuses. Put it on the
    /// gRPC service itself (tonic's `Server::builder().layer(..)`, or
    /// `route_service(path, keys.grpc_layer().layer(svc))` in an axum
    /// router), never on plain HTTP routes; see [`Protocol`].
    pub fn grpc_layer(&self) -> KeygateLayer {
        self.layer().protocol(Protocol::Grpc)
    }

    /// Issues, lists, updates and revokes keys. Changes take effect on this
    /// `Keygate`'s layers at once.
    pub fn manager(&self) -> &KeyManager {
        &self.shared.runtime.manager
    }

    /// The verifier (cache and store) behind the layer.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.shared.runtime.verifier
    }

    /// The key format this service accepts.
    pub fn format(&self) -> &KeyFormat {
        &self.shared.settings.format
    }

    /// Writes the usage counted so far (request counts, `last_used_at`) to
    /// the store now. This also happens by itself every
    /// [`CacheConfig::usage_flush_interval`](keygate_core::CacheConfig::usage_flush_interval).
    ///
    /// # Errors
    ///
    /// The store's error; the counts are kept for the next flush.
    pub async fn flush_usage(&self) -> Result<usize, keygate_core::StoreError> {
        self.shared.runtime.verifier.flush_usage().await
    }

    /// Call after the server has stopped taking requests (e.g. after
    /// `axum::serve(..).with_graceful_shutdown(..)` returns): writes all
    /// pending usage so nothing counted is lost.
    ///
    /// # Errors
    ///
    /// The store's error if the final flush fails.
    pub async fn shutdown(&self) -> Result<(), keygate_core::StoreError> {
        if let Some(log) = &self.shared.runtime.audit_log {
            log.flush().await;
        }
        self.flush_usage().await.map(drop)
    }
}

/// What the services of one layer share, behind one `Arc` so axum's
/// per-connection clones see the same cache and limiters: the layer's
/// settings, and the runtime of the `Keygate` it came from (shared with
/// every other layer made from it).
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) runtime: Runtime,
}

impl fmt::Debug for Keygate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("Keygate")
            .field("format", &s.settings.format)
            .field("sources", &s.settings.sources)
            .field("optional", &s.settings.optional)
            .field("default_quota", &s.settings.default_quota)
            .field("limiter", &s.runtime.limiter)
            .finish_non_exhaustive()
    }
}
