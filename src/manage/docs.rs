//! The interactive docs page of the management API (feature `docs`):
//! Swagger UI, built into the binary, showing the router's OpenAPI document.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{NestedPath, Path, State, rejection::NestedPathRejection},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use utoipa_swagger_ui::Config;

use super::openapi;
use crate::Keygate;

/// The `Content-Security-Policy` of every response of the docs page: its
/// own scripts, styles and fonts only, requests to its own origin only
/// (where "Try it out" sends them), images from itself or `data:` URLs
/// (Swagger UI's icons), no plugins, frames, forms elsewhere or `<base>`.
/// Nothing inline, nothing `eval`ed, nothing from another origin.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-hashes' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// An interactive page for the management API: Swagger UI, with the
/// [`router`](super::router)'s OpenAPI document, where people authorize
/// with their API key (the "Authorize" button, the `X-API-Key` header) and
/// try every call (feature `docs`).
///
/// Mount it beside the router, at the same path:
///
/// ```
/// use axum::Router;
/// use keygate::{Keygate, core::MemoryStore};
///
/// let keys = Keygate::builder(MemoryStore::new()).build();
/// let app: Router = Router::new().nest(
///     "/admin",
///     keygate::manage::router(&keys).merge(keygate::manage::docs(&keys)),
/// );
/// // The page: GET /admin/docs/
/// ```
///
/// It serves `GET /docs/` (the page), its files under `/docs/`, and
/// `GET /docs/openapi.json`, the document the page shows. Those need no API
/// key: the page must load before anyone has pasted one, and the document
/// holds no key material (it describes the routes, their bounds and the
/// header keys go in). Every call the page makes to the API itself carries
/// the key the user typed, which the API checks as always. Mount `docs`
/// behind your own authentication if the shape of your admin API is not
/// for everyone to read.
///
/// Everything is served from the binary: the page works offline and fetches
/// nothing from another origin. Its responses carry a strict
/// `Content-Security-Policy` ([`DOCS_CSP`]), `X-Content-Type-Options:
/// nosniff` and `Referrer-Policy: no-referrer`; the page does not keep the
/// key once the tab is closed (Swagger UI's `persistAuthorization` is off).
pub fn docs(keys: &Keygate) -> Router {
    // Relative to the page, so it resolves wherever the router is nested.
    let config = Config::new(["openapi.json"])
        .try_it_out_enabled(true)
        .persist_authorization(false)
        .validator_url("none")
        .display_request_duration(true);
    let state = DocsState(Arc::new(DocsInner {
        config: Arc::new(config),
        doc: openapi::document(keys, None),
    }));
    Router::new()
        .route("/docs", get(to_page))
        .route("/docs/", get(page))
        .route("/docs/openapi.json", get(document))
        .route("/docs/{*file}", get(file))
        .with_state(state)
}

#[derive(Clone)]
struct DocsState(Arc<DocsInner>);

struct DocsInner {
    config: Arc<Config<'static>>,
    doc: serde_json::Value,
}

/// `/docs` without its slash: the page's relative links need one.
async fn to_page(nested: Result<NestedPath, NestedPathRejection>) -> Response {
    let base = nested.as_ref().map_or("", NestedPath::as_str);
    secured(Redirect::permanent(&format!("{base}/docs/")).into_response())
}

async fn page(State(state): State<DocsState>) -> Response {
    serve(&state, "index.html")
}

async fn file(State(state): State<DocsState>, Path(file): Path<String>) -> Response {
    serve(&state, &file)
}

/// The document the page shows, its `servers` entry the path the docs are
/// mounted at (where the router is too).
async fn document(
    State(state): State<DocsState>,
    nested: Result<NestedPath, NestedPathRejection>,
) -> Response {
    let mounted_at = nested.as_ref().ok().map(NestedPath::as_str);
    secured(openapi::served(&state.0.doc, mounted_at))
}

fn serve(state: &DocsState, file: &str) -> Response {
    let found = utoipa_swagger_ui::serve(file, Arc::clone(&state.0.config));
    let res = match found {
        Ok(Some(file)) => {
            let mut res = Response::new(Body::from(file.bytes.into_owned()));
            if let Ok(kind) = HeaderValue::from_str(&file.content_type) {
                res.headers_mut().insert(header::CONTENT_TYPE, kind);
            }
            res
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such file").into_response(),
        Err(e) => {
            tracing::error!(target: "keygate::manage", error = %e, "cannot serve the docs page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    secured(res)
}

/// The headers every answer of the docs page carries.
fn secured(res: Response) -> Response {
    super::secure_page(res, DOCS_CSP)
}
