//! The service: its keygate, its routes and the layers in front of them.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, header},
    middleware,
    routing::{get, post},
};
use keygate::{
    Keygate, MethodScopes,
    core::{MemoryStore, Scope},
    manage::{self, AuthScheme, SelfService},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{caller, handlers, tokens::Tokens};

/// Origins of browser apps allowed to call cross-origin (Vite's default
/// dev server).
pub(crate) const BROWSER_ORIGINS: [&str; 2] = ["http://localhost:5173", "http://127.0.0.1:5173"];

/// keygate for this service: keys look like `dual_live_…` and are read from
/// `X-API-Key` or `Authorization: Bearer dual_…`.
///
/// The layer is required by default; the routes people share with machines
/// take `keys.layer().optional(true)` (see [`app`]).
pub(crate) fn build_keygate() -> Keygate {
    Keygate::builder(MemoryStore::new())
        .prefix("dual")
        .bearer(true)
        .build()
}

/// What every handler and extractor shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) keys: Keygate,
    pub(crate) tokens: Arc<Tokens>,
}

impl AppState {
    pub(crate) fn new(keys: Keygate, jwt_secret: &[u8]) -> Self {
        Self {
            keys,
            tokens: Arc::new(Tokens::new(jwt_secret)),
        }
    }
}

/// The whole service. `main` serves it; the tests drive it with `oneshot`.
pub(crate) fn app(state: AppState) -> Router {
    let keys = &state.keys;

    // People and machines: a key is optional here, but one that is presented
    // must be valid and hold the scope its method needs (GET: `read`).
    let shared = Router::new()
        .route("/me", get(handlers::me))
        .route("/reports", get(handlers::reports))
        .route_layer(keys.layer().optional(true));

    // Key self-service: keygate's management router, told who is calling
    // by this service's own `Caller` (a person by JWT, or a key). People
    // grant at most `read`, `write` and `keys:manage`; a key with
    // `keys:manage` at most what it holds itself. The router checks that,
    // not the method's scope (a key that may manage keys needs no `delete`
    // to revoke one). Same cache and limiter as the other layers.
    let people = SelfService::from_extension()
        .grantable_scopes([
            Scope::READ,
            Scope::WRITE,
            Scope::from_static(manage::MANAGE_SCOPE),
        ])
        .auth_scheme(
            AuthScheme::bearer()
                .bearer_format("JWT")
                .description("The `access_token` of `POST /login`"),
        );
    let key_management = manage::self_service(keys, people)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            caller::identify,
        ))
        .route_layer(
            keys.layer()
                .optional(true)
                .method_scopes(MethodScopes::none()),
        );

    // Machines only: no key, no entry.
    let machines = Router::new()
        .route("/export", get(handlers::export))
        .route_layer(keys.layer());

    Router::new()
        .route("/login", post(handlers::login))
        .merge(shared)
        .merge(machines)
        .with_state(state)
        .nest("/me", key_management)
        // Outermost, so a browser's preflight (which carries no key) is
        // answered here and never reaches keygate, and rejections get CORS
        // headers too, so the page can read them.
        .layer(cors())
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            BROWSER_ORIGINS.map(HeaderValue::from_static),
        ))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
        ])
        // Let scripts read why a call was refused and when to retry.
        .expose_headers([
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("sunset"),
        ])
        .max_age(Duration::from_secs(600))
}
