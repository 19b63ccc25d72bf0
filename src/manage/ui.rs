//! The key-management page: one HTML page, one script and one style sheet,
//! built into the binary, that call the management API from the browser.

use axum::{
    Router,
    body::Body,
    extract::{NestedPath, rejection::NestedPathRejection},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::Keygate;

/// The `Content-Security-Policy` of every response of the key-management
/// page: its own script and style sheet only, requests to its own origin
/// only, nothing inline, nothing `eval`ed, no forms that navigate, no
/// frames, no `<base>`; and Trusted Types required with no policy allowed,
/// so the browser itself refuses any HTML built from strings (the page only
/// ever sets `textContent`).
pub const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");
const FAVICON_SVG: &str = include_str!("ui/favicon.svg");

/// How the key-management page authenticates its calls to the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UiSignIn {
    /// The person pastes an API key (`admin` or `keys:manage`), which the
    /// page keeps in the tab's memory only and sends with every call, the
    /// way the service's layer reads keys (its first header, else
    /// `Authorization: Bearer`, else its query parameter).
    #[default]
    ApiKey,
    /// The page sends no key: its calls carry the browser's cookies for
    /// this origin, for an API mounted behind the application's own
    /// session. A 401 tells the person to sign in to the application.
    Session,
}

/// The key-management page, to configure before [`router`](Self::router);
/// [`ui`] is `Ui::new(keys).router()`.
#[derive(Clone, Debug)]
#[must_use]
pub struct Ui {
    config: UiConfig,
}

/// What the page reads from `config.json` before it does anything.
#[derive(Clone, Debug, Serialize)]
struct UiConfig {
    /// `api-key` or `session`.
    sign_in: &'static str,
    /// How a pasted key is sent: `{"header": name}`, `{"bearer": true}` or
    /// `{"query": name}`.
    send_key: SendKey,
    /// The service's key prefix, shown as the shape of a key.
    key_prefix: String,
    /// The window in which a working key counts as expiring.
    expiry_warning_seconds: i64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum SendKey {
    Header(String),
    Bearer(bool),
    Query(String),
}

impl Ui {
    /// The page for `keys`' management API, signing in with an API key.
    pub fn new(keys: &Keygate) -> Self {
        let settings = &keys.shared.settings;
        let sources = &settings.sources;
        let send_key = match sources.header_names().first() {
            Some(header) => SendKey::Header(header.as_str().to_owned()),
            None if sources.bearer_enabled() => SendKey::Bearer(true),
            None => SendKey::Query(sources.query_name().unwrap_or("api_key").to_owned()),
        };
        Self {
            config: UiConfig {
                sign_in: "api-key",
                send_key,
                key_prefix: keys.format().prefix().to_owned(),
                expiry_warning_seconds: settings.expiry_warning.whole_seconds(),
            },
        }
    }

    /// How the page authenticates its calls: [`UiSignIn::ApiKey`] (the
    /// default) or [`UiSignIn::Session`].
    pub fn sign_in(mut self, sign_in: UiSignIn) -> Self {
        self.config.sign_in = match sign_in {
            UiSignIn::ApiKey => "api-key",
            UiSignIn::Session => "session",
        };
        self
    }

    /// The page's routes: `GET /ui` (a redirect), `GET /ui/` (the page),
    /// its files under `/ui/`, and `GET /ui/config.json`.
    pub fn router(self) -> Router {
        let config = serde_json::to_vec(&self.config).unwrap_or_default();
        Router::new()
            .route("/ui", get(to_page))
            .route(
                "/ui/",
                get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
            )
            .route(
                "/ui/app.js",
                get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
            )
            .route(
                "/ui/app.css",
                get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
            )
            .route(
                "/ui/favicon.svg",
                get(|| async { asset(FAVICON_SVG, "image/svg+xml") }),
            )
            .route(
                "/ui/config.json",
                get(move || {
                    let config = config.clone();
                    async move { served(config, "application/json") }
                }),
            )
            .route("/ui/{*file}", get(not_found))
    }
}

/// A page to create, list, rotate and revoke keys and read their usage,
/// for people, in a browser, over the [`router`](super::router)'s API.
///
/// Mount it beside the router, at the same path (the page calls the API
/// relative to itself, at `../keys`):
///
/// ```
/// use axum::Router;
/// use keygate::{Keygate, core::MemoryStore};
///
/// let keys = Keygate::builder(MemoryStore::new()).build();
/// let app: Router = Router::new().nest(
///     "/admin",
///     keygate::manage::router(&keys).merge(keygate::manage::ui(&keys)),
/// );
/// // The page: GET /admin/ui/
/// ```
///
/// Someone signs in by pasting an API key with `admin` or `keys:manage`;
/// the page keeps it in the tab's memory only (never in `localStorage`,
/// `sessionStorage`, cookies or `IndexedDB`) and forgets it on sign-out,
/// reload or leaving the page. Every call carries it, and the API judges
/// it as always: the page can do nothing its key cannot. A key the API
/// issues (created or rotated) is shown once, with a copy button, and
/// removed from the page when dismissed or when the page is left.
/// Behind the application's own session instead, use
/// `Ui::new(&keys).sign_in(UiSignIn::Session).router()`.
///
/// The page's files need no key: it must load before anyone has signed
/// in, and they hold nothing but the page and `config.json` (how to send
/// the key, the key prefix, the expiry-warning window). Everything is
/// served from the binary, so the page works offline and fetches nothing
/// from another origin; no build step made it. Its responses carry a
/// strict `Content-Security-Policy` ([`UI_CSP`]), `X-Content-Type-Options:
/// nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and
/// `Cache-Control: no-store`.
pub fn ui(keys: &Keygate) -> Router {
    Ui::new(keys).router()
}

/// `/ui` without its slash: the page's relative links need one.
async fn to_page(nested: Result<NestedPath, NestedPathRejection>) -> Response {
    let base = nested.as_ref().map_or("", NestedPath::as_str);
    secured(Redirect::permanent(&format!("{base}/ui/")).into_response())
}

async fn not_found() -> Response {
    secured((StatusCode::NOT_FOUND, "no such file").into_response())
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    served(text.as_bytes(), content_type)
}

fn served(body: impl Into<Body>, content_type: &'static str) -> Response {
    let mut res = Response::new(body.into());
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secured(res)
}

/// The headers every answer of the page carries. `no-store`: the files
/// are small, a browser never mixes old and new ones after an upgrade, and
/// a page that held a key is not kept in the back/forward cache.
fn secured(res: Response) -> Response {
    let mut res = super::secure_page(res, UI_CSP);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
