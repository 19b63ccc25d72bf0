//! API-key authentication for axum and tonic services: a tower [`Layer`]
//! that checks hashed keys, scopes, per-key rate limits and usage credits,
//! and extractors that hand the authenticated key to handlers.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use keygate::{ApiKey, Keygate, core::{MemoryStore, NewKey, Owner, Quota, Scope}};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = Keygate::builder(MemoryStore::new())
//!     .prefix("mbk")
//!     .default_rate_limit(Quota::per_second(100))
//!     .build();
//!
//! // Issue a key; the plaintext exists only in `created.key`.
//! let created = keys
//!     .manager()
//!     .create(NewKey::new(Owner::service("reports"), "nightly").scopes([Scope::READ]))
//!     .await?;
//! println!("X-API-Key: {}", created.key.expose_secret());
//!
//! // `route_layer`: only these routes need a key (unknown paths stay 404).
//! let notes = Router::new()
//!     .route("/notes", get(list_notes).post(|| async { "created" }))
//!     .route_layer(keys.layer());
//! // Routes that need more than the method's scope: checked before the quota,
//! // so a refused request costs the key nothing.
//! let admin = Router::new()
//!     .route("/admin/stats", get(|| async { "stats" }))
//!     .route_layer(keys.layer().require_scope(Scope::ADMIN));
//! let app: Router = notes.merge(admin);
//!
//! async fn list_notes(key: ApiKey) -> Json<Vec<String>> {
//!     Json(vec![format!("notes of {}", key.owner())])
//! }
//! # let _ = app; Ok(()) }
//! ```
//!
//! A request without a valid key never reaches a handler:
//!
//! | case | status | `code` |
//! |---|---|---|
//! | no key | 401 + `WWW-Authenticate` | `missing_key` |
//! | wrong prefix, length, characters or checksum | 401 | `malformed_key` |
//! | two different keys in one request | 400 | `conflicting_keys` |
//! | unknown key | 401 | `invalid_key` |
//! | revoked / expired | 401 | `revoked_key` / `expired_key` |
//! | key of an environment not accepted | 401 | `wrong_environment` |
//! | scope missing for method or route | 403 | `insufficient_scope` |
//! | client address not in the key's allowlist | 403 | `ip_not_allowed` |
//! | quota used up | 429 + `Retry-After`, `RateLimit-*` | `rate_limited` |
//! | usage credits used up ([`KeygateLayer::cost`]) | 429 + `X-Credits-Remaining`, `Retry-After` at the refill | `usage_exceeded` |
//! | store cannot answer | 503 + `Retry-After` | `unavailable` |
//!
//! Bodies are `application/problem+json` (RFC 9457); see [`Rejection`], and
//! [`Problem`] to answer your own refusals in the same shape.
//! Every 401 carries a `WWW-Authenticate: ApiKey realm="api",
//! header="X-API-Key"` challenge (with the configured realm and header);
//! all but `missing_key` add their code as its `error` parameter
//! (`error="revoked_key"`).
//!
//! # The request path
//!
//! 1. **extract** the key from `X-API-Key` (header names configurable), and
//!    optionally a query parameter or `Authorization: Bearer`
//!    ([`KeySources`]); two different keys in one request are rejected;
//! 2. **parse** `{prefix}_{live|test}_{id}{secret}{checksum}` without I/O or
//!    allocation, so garbage never reaches the store;
//! 3. **look up** the id in the [`Verifier`](core::Verifier)'s cache; on a miss
//!    ask the store (concurrent misses share one query; unknown ids are
//!    remembered briefly);
//! 4. **verify** the SHA-256 (or peppered HMAC) digest in constant time;
//! 5. **policy**: revoked, expired (against the clock, every request), IP
//!    allowlist, the scope the method needs ([`MethodScopes`]);
//! 6. **limit** the key's quota ([`RateLimiter`](core::RateLimiter));
//! 7. **audit**: one `tracing` event on target `keygate::audit` per attempt
//!    (see [`audit`]), never with the key;
//! 8. **attach** the [`ApiKey`] to the request's extensions, optionally
//!    stripping the credential.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `ApiKey`, `Option<ApiKey>` and `RequireScope<S>` extractors; `IntoResponse` for [`Rejection`]; peer address from `ConnectInfo` |
//! | `manage` | no | `manage::router`: an HTTP API to create, list, update, rotate and revoke keys and read their usage, with an OpenAPI 3.1 document; `manage::self_service`: the same API behind the application's own sign-in; `manage::ui`: a key-management page for it (served from the binary under a strict CSP) |
//! | `docs` | no | `manage::docs`: the management API's interactive docs page (Swagger UI, served from the binary under a strict CSP); implies `manage` |
//! | `tonic` | no | `GrpcRequestExt::api_key()` for tonic handlers, `From<Rejection> for tonic::Status`, peer address from tonic's connect info. Layers from [`Keygate::grpc_layer`] answer with gRPC statuses without it (see [`grpc`] and [`Protocol`]). |
//!
//! # Living with other authentication
//!
//! With [`KeygateBuilder::optional`], requests without a key pass through
//! unauthenticated so session or JWT middleware can handle them; a request
//! that presents a key is still held to it. Bearer tokens that do not carry
//! this application's prefix are left alone.

// The workspace lint is `deny` so one allocation-counting test can
// implement `GlobalAlloc`; library code stays free of `unsafe`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[macro_use]
mod macros;

pub mod audit;
mod body;
mod builder;
mod extract;
pub mod grpc;
mod handle;
mod headers;
mod layer;
#[cfg(feature = "manage")]
pub mod manage;
mod method;
mod peer;
mod problem;
mod protocol;
pub mod recipes;
mod rejection;
mod require_scope;
mod runtime;
mod settings;
mod source;

pub use keygate_core as core;

pub use crate::{
    body::ResponseBody,
    builder::{KeygateBuilder, RejectionHandler},
    extract::{ApiKey, ApiKeyRejection},
    grpc::GrpcScopes,
    handle::Keygate,
    headers::CREDITS_REMAINING,
    layer::{KeygateLayer, KeygateService, ResponseFuture},
    method::MethodScopes,
    problem::Problem,
    protocol::Protocol,
    rejection::Rejection,
    require_scope::{
        RequireScope, RequireScopeLayer, RequireScopeService, ScopeFuture, ScopeName, require_scope,
    },
    source::KeySources,
};

#[doc(no_inline)]
pub use tower_layer::Layer;
