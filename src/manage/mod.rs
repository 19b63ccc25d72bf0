//! An HTTP API to manage keys: create, list, update, rotate and revoke them,
//! read their usage, and fetch an OpenAPI 3.1 document of it all (feature
//! `manage`).
//!
//! ```
//! use axum::{Router, routing::get};
//! use keygate::{Keygate, core::MemoryStore};
//!
//! let keys = Keygate::builder(MemoryStore::new()).prefix("mbk").build();
//! let app: Router = Router::new()
//!     .route("/notes", get(|| async { "notes" }))
//!     .layer(keys.layer())
//!     // The admin router brings its own authentication: it cannot be
//!     // mounted unprotected.
//!     .nest("/admin", keygate::manage::router(&keys));
//! ```
//!
//! Nest it after the service's own `.layer(keys.layer())`, as above: a layer
//! added after it would authenticate its requests a second time, with the
//! service's method-to-scope rules (a `keys:manage` key would then also need
//! `write` to `POST`).
//!
//! # Who may do what
//!
//! Every route needs an API key of the same [`Keygate`], checked by
//! keygate's layer (with the service's key sources, quotas and IP rules but
//! without its method-to-scope rules), and then:
//!
//! * a key with the `admin` scope manages every key;
//! * a key with the [`MANAGE_SCOPE`] (`keys:manage`) manages the keys of its
//!   own owner only, and only keys no more powerful than itself, in every
//!   dimension ([`keygate_core::may_grant`]): no scope it lacks (so it can
//!   never mint `admin`), no `live` key if it is a `test` key, no expiry
//!   later than its own (nor none, if it expires), no quota more generous
//!   than its own (or the service's default, for a key without one), no
//!   network outside its own allowlist (nor an empty list, if it has one),
//!   no metadata entry it does not carry itself. That holds for the key a
//!   create, a change or a rotation would produce, so a key cannot lift its
//!   own restrictions either. It may still read, list and revoke every key
//!   of its owner;
//! * only an `admin` key (or an [operator](Identity::operator)) sets or
//!   tops up credits (`PATCH /keys/{id}/credits`): a `keys:manage` key or a
//!   person gets 403 `insufficient_scope` (`required_scope`: `admin`), for
//!   its own keys too, since it would mint credits; they may read them. The
//!   keys a metered `keys:manage` key makes spend its credits and may not
//!   ask for their own (403 `not_grantable` on `credits`);
//! * any other key gets 403 `insufficient_scope`.
//!
//! Keys created by a `keys:manage` key die with it: revoking it (unless it
//! was already rotated away; then its successor carries them) revokes every
//! key it created, and theirs, at once; a key created while its creator is
//! being revoked is revoked too (409 `creator_revoked`). Keys created by an
//! `admin` key have no creator and outlive it.
//!
//! Caps bind every caller, `admin` included: keys per owner, metadata size,
//! allowlist entries and rotation grace (`KeygateBuilder::manage_limits`,
//! defaults in [`keygate_core::Limits`]). Going over one is a 422 naming the
//! field (`owner` for the keys-per-owner cap).
//!
//! Another owner's key looks exactly like a key that does not exist (404),
//! so ids of other owners' keys cannot be probed; listing another owner's
//! keys, or creating one for them, is a 403 `owner_not_allowed`. Changes are
//! recorded in the audit trail with the actor `key:<id of the caller's key>`.
//!
//! # Self-service behind your own sign-in
//!
//! [`self_service`] serves the same routes to people signed in with the
//! application's own authentication (JWTs, session cookies, a proxy's
//! header): the application tells keygate who is calling with an
//! [`Identity`] — a [person](Identity::person) owning keys, an
//! [operator](Identity::operator) acting like `admin`, or an
//! [API key](Identity::api_key) judged as above — and keygate does the
//! rest: same validation, answers, OpenAPI document (its security scheme is
//! the application's, [`AuthScheme`]) and audit events (actor
//! `user:alice`, the person's owner).
//!
//! A person sees and changes the keys of their own owner only (another
//! owner in a body or `?owner=` is 403 `owner_not_allowed`, another
//! owner's key id 404), and never makes a key more powerful than the
//! service lets people grant ([`SelfService::grantable_scopes`], `read` and
//! `write` by default): the ceiling is a
//! [`Grantor::person`](keygate_core::Grantor::person), judged by the same
//! rule as a `keys:manage` key. A request the application does not
//! identify is a 401 `not_signed_in`.
//!
//! ```
//! use axum::{Router, body::Body, http::{Request, StatusCode, request::Parts}};
//! use keygate::{
//!     Keygate,
//!     core::{MemoryStore, Owner, Scope},
//!     manage::{self, AuthScheme, Identity, SelfService},
//! };
//! use tower::ServiceExt;
//!
//! /// Your own sign-in; here a stand-in for a JWT check.
//! fn signed_in(parts: &Parts) -> Option<Identity> {
//!     let token = parts.headers.get("authorization")?.to_str().ok()?;
//!     match token.strip_prefix("Bearer ")? {
//!         "alice-token" => Some(Identity::person(Owner::user("alice"))),
//!         "ops-token" => Some(Identity::operator(Owner::user("ops"))),
//!         _ => None,
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let keys = Keygate::builder(MemoryStore::new()).prefix("mbk").build();
//! let people = SelfService::new(signed_in)
//!     .grantable_scopes([Scope::READ])
//!     .auth_scheme(AuthScheme::bearer().bearer_format("JWT"));
//! let app: Router = Router::new().nest("/account", manage::self_service(&keys, people));
//!
//! // Alice makes a key for herself (no `owner`: her own).
//! let res = app
//!     .clone()
//!     .oneshot(
//!         Request::post("/account/keys")
//!             .header("authorization", "Bearer alice-token")
//!             .header("content-type", "application/json")
//!             .body(Body::from(r#"{"name":"laptop","scopes":["read"]}"#))
//!             .unwrap(),
//!     )
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), StatusCode::CREATED);
//! // Not signed in: 401.
//! let res = app
//!     .oneshot(Request::get("/account/keys").body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! When the sign-in needs I/O (a session store, a database), let the
//! application's own middleware put the [`Identity`] into the request's
//! extensions and use [`SelfService::from_extension`].
//!
//! # Routes
//!
//! Paths are relative to where the router is mounted.
//!
//! | route | does | success |
//! |---|---|---|
//! | `POST /keys` | issues a key (for the caller's own owner unless `owner` names another); the answer holds the key itself, shown this once | 201 |
//! | `GET /keys?owner=&status=&environment=&limit=&cursor=` | one page of keys, newest first, with `next_cursor`: every owner's for an `admin` key (or `owner`'s), the caller's own owner's for a `keys:manage` key; `status` is `active`, `expiring`, `revoked` or `expired`, `environment` `live` or `test` | 200 |
//! | `GET /keys/{id}` | one key | 200 |
//! | `PATCH /keys/{id}` | changes `name`, `scopes`, `rate_limit`, `allowed_ips`, `metadata` or `expires_at` (RFC 3339); `null` clears `rate_limit` and `expires_at` | 200 |
//! | `DELETE /keys/{id}` | revokes the key, at once; revoking again keeps the first time; afterwards the other routes on the key answer 404 `revoked` | 200, with the record |
//! | `POST /keys/{id}/rotate` | replaces the key; the old one works for `grace_seconds` more | 201, with the new key |
//! | `GET /keys/{id}/usage?since=` | hourly request counts of the key's rotation family (default: the last 24 hours) | 200 |
//! | `GET /keys/{id}/credits` | the credits the key spends: `metered`, `account`, `remaining`, `refill`, `next_refill` | 200 |
//! | `PATCH /keys/{id}/credits` | `admin` only: `set` (the new balance) or `add` (a top-up), and/or `refill` (`{"amount": 20, "interval": "day"}`, `null` removes it) | 200, with the credits |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of these routes, behind the same authorization | 200 |
//!
//! No answer ever holds a key's digest, and only the two 201s hold a key.
//! Every answer carries `Cache-Control: no-store`.
//!
//! # Credits
//!
//! `POST /keys` with `credits` (0 to 10¹⁵) or `refill` meters the new key:
//! each admitted request spends one credit (or its route's cost), and at 0
//! the key is refused until a refill or a top-up. Keys show the account
//! they spend as `credit_account` (never the balance: listings would read
//! it once per key); `GET /keys/{id}/credits` reads the balance. A key made
//! by a metered `keys:manage` key spends its creator's account, and a
//! rotated key its predecessor's, so `PATCH /keys/{id}/credits` on such a
//! key changes the account they share.
//!
//! ```json
//! {"metered":true,"account":"Ab3Cd5Ef7G","remaining":740,
//!  "refill":{"amount":1000,"interval":"month"},"next_refill":"2030-02-01T00:00:00Z"}
//! ```
//!
//! `status=expiring` lists the keys that work now and expire within the
//! service's expiry-warning window (`KeygateBuilder::expiry_warning`, 7 days
//! by default): the keys whose responses already carry `Sunset` headers.
//! `active` keys work now (a rotated key in its grace period included, and
//! expiring ones too); `expired` keys are past their `expires_at` and not
//! revoked.
//!
//! # Lifetimes
//!
//! `KeygateBuilder::default_key_lifetime` and `max_key_lifetime` bind every
//! create, change and rotation: a key created without
//! `expires_in_seconds` gets the default (or the maximum); a longer
//! `expires_in_seconds`, or an `expires_at` later than the key's creation
//! plus the maximum (or `null`), is a 422 naming the field; a rotation's new
//! key keeps its key's expiry, brought forward to the maximum from now. The
//! OpenAPI document states the bounds (`maximum` of `expires_in_seconds`,
//! which is never more than 100 years, and of `grace_seconds`).
//!
//! # Interactive docs
//!
//! With the `docs` feature, [`docs`] serves Swagger UI for this API from
//! the binary, under a strict `Content-Security-Policy`: mount it beside the
//! router (`router(&keys).merge(docs(&keys))`).
//!
//! # Key-management page
//!
//! [`ui`] serves a page where people sign in with their key and create,
//! list, rotate and revoke keys and read their usage, from the binary,
//! under a strict `Content-Security-Policy` ([`UI_CSP`]): mount it beside
//! the router (`router(&keys).merge(ui(&keys))`) and open `…/ui/`. A key
//! the API issues is shown once; the page stores nothing in the browser.
//!
//! # Errors
//!
//! Errors are `application/problem+json` in the shape of keygate's own
//! rejections (`type`, `title`, `status`, `code`, `detail`):
//!
//! | status | `code` | when |
//! |---|---|---|
//! | 401, 429, 503 | the layer's (`missing_key`, `rate_limited`, …) | the caller's key itself is refused |
//! | 403 | `insufficient_scope` | the key has neither `admin` nor `keys:manage`, or asks for a scope it lacks (`required_scope` says which), or changes credits without `admin` |
//! | 403 | `owner_not_allowed`, `environment_not_allowed` | see above |
//! | 403 | `not_grantable` | the key would be more powerful than the caller's; `errors` names each field (`rate_limit`, `expires_at` / `expires_in_seconds`, `allowed_ips[i]`, `metadata.<entry>`, `credits`) |
//! | 409 | `creator_revoked` | the caller's key was revoked while it created a key, which was revoked with it |
//! | 404 | `not_found` | no such key, or another owner's |
//! | 404 | `revoked` | `GET`, `PATCH` or usage of a revoked key; `key` holds its record |
//! | 409 | `not_rotatable` | rotating a key that is revoked, expired or already rotated |
//! | 409 | `superseded` | metering (`PATCH /keys/{id}/credits`) a key that is not metered and was rotated away: meter its newest successor |
//! | 413 | `invalid_body` | a body over axum's body limit |
//! | 415 | `unsupported_media_type` | a body not sent as `application/json` (or `application/*+json`): what a form or `no-cors` fetch from another site sends, so a signed-in person's browser cannot be made to change keys (CSRF) |
//! | 422 | `invalid_request` | any invalid input, or a cap exceeded (the lifetime policy included); `errors` lists every bad field (`body` for a value the key store cannot keep, such as a NUL character in PostgreSQL) |
//! | 503 | `unavailable` | the key store cannot answer (`Retry-After`) |
//!
//! ```json
//! {"type":"about:blank","title":"Unprocessable Entity","status":422,
//!  "code":"invalid_request","detail":"The request is invalid. Fix scopes[1] and retry; …",
//!  "errors":[{"field":"scopes[1]","message":"invalid scope \"Billing\": use 1 to 64 …"}]}
//! ```
//!
//! Bodies are read as JSON whatever their `Content-Type`; unknown body
//! fields are errors (a misspelt `allowed_ips` must not go unnoticed),
//! unknown query parameters are ignored (the query may carry the API key).
//! The OpenAPI document states every bound the server enforces (patterns,
//! lengths, caps, `additionalProperties: false`); `scripts/schemathesis.sh`
//! checks the two agree.

mod caller;
mod credits;
#[cfg(feature = "docs")]
mod docs;
mod id_param;
mod input;
mod keys;
mod openapi;
mod schema;
mod self_service;
mod ui;
mod view;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    routing::{get, post},
};
use keygate_core::{KeyRecord, KeyView, Quotas};
use time::OffsetDateTime;

#[cfg(feature = "docs")]
pub use self::docs::{DOCS_CSP, docs};
pub use self::self_service::{AuthScheme, Identity, SelfService};
pub use self::ui::{UI_CSP, Ui, UiSignIn, ui};
use crate::{Keygate, MethodScopes};

/// The scope that lets a key manage the keys of its own owner.
pub const MANAGE_SCOPE: &str = "keys:manage";

/// The management API as an axum router, protected by `keys`' own layer.
///
/// Mount it anywhere, e.g. `Router::new().nest("/admin", router(&keys))`.
/// Changes take effect on every layer of `keys` at once. See the
/// [module documentation](self) for routes, authorization and errors.
pub fn router(keys: &Keygate) -> Router {
    let state = AdminState(Arc::new(Inner {
        keys: keys.clone(),
        doc: openapi::document(keys, None),
        people: None,
    }));
    // Scopes are checked per route (see `Caller`); the layer only
    // authenticates. It is never optional here, whatever the service's own
    // layer does.
    let auth = keys
        .layer()
        .method_scopes(MethodScopes::none())
        .optional(false);
    routes().route_layer(auth).with_state(state)
}

/// The management API for people signed in with the application's own
/// authentication: the same routes, checks, answers, OpenAPI document and
/// audit events as [`router`], for the caller `config` identifies.
///
/// A [person](Identity::person) sees and changes only the keys of their own
/// owner, and grants at most [`SelfService::grantable_scopes`]; an
/// [operator](Identity::operator) acts like an `admin` key; an
/// [API key](Identity::api_key) is judged as by [`router`]. A request
/// `config` does not identify is a 401 `not_signed_in` before anything else
/// is read. Mount it behind the layers that establish the sign-in (a
/// session layer, an auth middleware), with `route_layer`. See the
/// [module documentation](self#self-service-behind-your-own-sign-in).
pub fn self_service(keys: &Keygate, config: SelfService) -> Router {
    let state = AdminState(Arc::new(Inner {
        keys: keys.clone(),
        doc: openapi::document(keys, Some(&config.scheme)),
        people: Some(config),
    }));
    routes().with_state(state)
}

/// The routes both routers serve; they differ only in how the [`Caller`]
/// (`caller::Caller`) is found.
fn routes() -> Router<AdminState> {
    Router::new()
        .route("/keys", get(keys::list_keys).post(keys::create_key))
        .route(
            "/keys/{id}",
            get(keys::get_key)
                .patch(keys::update_key)
                .delete(keys::revoke_key),
        )
        .route("/keys/{id}/rotate", post(keys::rotate_key))
        .route("/keys/{id}/usage", get(keys::key_usage))
        .route(
            "/keys/{id}/credits",
            get(credits::get_credits).patch(credits::update_credits),
        )
        .route("/openapi.json", get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn(json_bodies_only))
}

/// The headers every answer of a page the routers serve carries (the
/// key-management page, the docs page): its `Content-Security-Policy`, and
/// no content sniffing, no referrer, no framing.
fn secure_page(mut res: axum::response::Response, csp: &'static str) -> axum::response::Response {
    use http::{HeaderValue, header};
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// Refuses a request body that is not declared JSON (415
/// `unsupported_media_type`). What browsers send cross-site without asking
/// first (an HTML form's `text/plain`, `application/x-www-form-urlencoded`
/// or `multipart/form-data`, a `no-cors` fetch of a string or an untyped
/// blob) never reaches a handler, so a page on another site cannot make a
/// signed-in person's browser create or change keys (CSRF). An empty body
/// needs no type.
async fn json_bodies_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use http_body::Body as _;
    let empty = req.body().size_hint().exact() == Some(0);
    let json = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if empty || json {
        return next.run(req).await;
    }
    crate::Problem::new(
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as JSON, with Content-Type: application/json.",
    )
    .into_response()
}

/// What every handler shares: the [`Keygate`] whose keys it manages and
/// the OpenAPI document, made once.
#[derive(Clone)]
struct AdminState(Arc<Inner>);

struct Inner {
    keys: Keygate,
    /// The OpenAPI document, as JSON: [`openapi::document`] writes the
    /// server's bounds into it.
    doc: serde_json::Value,
    /// For [`self_service`]: how callers are identified. `None`: by
    /// `keys`' own layer.
    people: Option<SelfService>,
}

impl AdminState {
    /// The service's clock: key statuses and the default usage period are
    /// judged by the same time as the layer's checks.
    fn now(&self) -> OffsetDateTime {
        self.0.keys.shared.settings.clock.now()
    }

    /// The service's default quota, which stands in for a grantor's own
    /// when it has none.
    fn default_quota(&self) -> Option<&Quotas> {
        self.0.keys.shared.settings.default_quota.as_ref()
    }

    /// The window of `status=expiring`: the service's expiry warning.
    fn expiry_warning(&self) -> Duration {
        self.0
            .keys
            .shared
            .settings
            .expiry_warning
            .try_into()
            .unwrap_or(Duration::MAX)
    }

    /// The caps every change obeys, lifetimes included.
    fn limits(&self) -> &keygate_core::Limits {
        self.0.keys.manager().limits()
    }

    /// How long a client should wait when the key store cannot answer.
    fn unavailable_retry_after(&self) -> Duration {
        self.0.keys.shared.settings.unavailable_retry_after
    }

    /// `record` as the API shows it, now.
    fn view(&self, record: &KeyRecord) -> KeyView {
        KeyView::new(record, self.0.keys.format().prefix(), self.now())
    }
}
