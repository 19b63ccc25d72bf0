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
//! # Routes
//!
//! Paths are relative to where the router is mounted.
//!
//! | route | does | success |
//! |---|---|---|
//! | `POST /keys` | issues a key; the answer holds the key itself, shown this once | 201 |
//! | `GET /keys?owner=&limit=&cursor=` | one page of an owner's keys (default: the caller's owner), newest first, with `next_cursor` | 200 |
//! | `GET /keys/{id}` | one key | 200 |
//! | `PATCH /keys/{id}` | changes `name`, `scopes`, `rate_limit`, `allowed_ips`, `metadata` or `expires_at` (RFC 3339); `null` clears `rate_limit` and `expires_at` | 200 |
//! | `DELETE /keys/{id}` | revokes the key, at once; revoking again keeps the first time | 200, with the record |
//! | `POST /keys/{id}/rotate` | replaces the key; the old one works for `grace_seconds` more | 201, with the new key |
//! | `GET /keys/{id}/usage?since=` | hourly request counts of the key's rotation family (default: the last 24 hours) | 200 |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of these routes, behind the same authorization | 200 |
//!
//! No answer ever holds a key's digest, and only the two 201s hold a key.
//! Every answer carries `Cache-Control: no-store`.
//!
//! # Errors
//!
//! Errors are `application/problem+json` in the shape of keygate's own
//! rejections (`type`, `title`, `status`, `code`, `detail`):
//!
//! | status | `code` | when |
//! |---|---|---|
//! | 401, 429, 503 | the layer's (`missing_key`, `rate_limited`, …) | the caller's key itself is refused |
//! | 403 | `insufficient_scope` | the key has neither `admin` nor `keys:manage`, or asks for a scope it lacks (`required_scope` says which) |
//! | 403 | `owner_not_allowed`, `environment_not_allowed` | see above |
//! | 403 | `not_grantable` | the key would be more powerful than the caller's; `errors` names each field (`rate_limit`, `expires_at` / `expires_in_seconds`, `allowed_ips[i]`, `metadata.<entry>`) |
//! | 409 | `creator_revoked` | the caller's key was revoked while it created a key, which was revoked with it |
//! | 404 | `not_found` | no such key, or another owner's |
//! | 409 | `not_rotatable` | rotating a key that is revoked, expired or already rotated |
//! | 413 | `invalid_body` | a body over axum's body limit |
//! | 422 | `invalid_request` | any invalid input, or a cap exceeded; `errors` lists every bad field (`body` for a value the key store cannot keep, such as a NUL character in PostgreSQL) |
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

mod id_param;
mod input;
mod view;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{NestedPath, RawQuery, State, rejection::BytesRejection},
    response::Response,
    routing::{get, post},
};
use http::StatusCode;
use keygate_core::{
    Environment, GrantDimension, GrantViolation, Grantor, KeyId, KeyManager, KeyRecord,
    ManageError, NewKey, Owner, Page, Scope, Scopes, StoreError,
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Components, Content, RefOr, ResponseBuilder, Server,
        security::{
            ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement,
            SecurityScheme,
        },
    },
};

use self::{
    id_param::KeyIdParam,
    input::{
        CreateKeyRequest, EnvironmentName, FieldError, ListQuery, RotateKeyRequest,
        UpdateKeyRequest, UsageQuery,
    },
    view::{
        BucketView, CreatedKeyView, KeyListView, KeyStatus, KeyView, Problem, ProblemBody,
        UsageView, json,
    },
};
use crate::{ApiKey, Keygate, MethodScopes};

/// What a 422 says about a time outside keygate's bounds
/// ([`keygate_core::checked_utc`]).
const TIME_RANGE: &str = "must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (in UTC)";

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
        doc: document(keys),
    }));
    // Scopes are checked per route below; the layer only authenticates.
    // It is never optional here, whatever the service's own layer does.
    let auth = keys
        .layer()
        .method_scopes(MethodScopes::none())
        .optional(false);
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route(
            "/keys/{id}",
            get(get_key).patch(update_key).delete(revoke_key),
        )
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/keys/{id}/usage", get(key_usage))
        .route("/openapi.json", get(openapi_json))
        .route_layer(auth)
        .with_state(state)
}

#[derive(Clone)]
struct AdminState(Arc<Inner>);

struct Inner {
    keys: Keygate,
    /// The OpenAPI document, made once.
    doc: openapi::OpenApi,
}

/// An authenticated caller allowed to manage keys, and a manager that
/// records it as the actor.
struct Caller {
    key: ApiKey,
    admin: bool,
    manager: KeyManager,
}

type Answer = Result<Response, Problem>;

impl AdminState {
    /// The caller, if its key has `admin` or `keys:manage`.
    fn caller(&self, key: ApiKey) -> Result<Caller, Problem> {
        let admin = key.allows(&Scope::ADMIN);
        let manage = Scope::from_static(MANAGE_SCOPE);
        if !admin && !key.allows(&manage) {
            return Err(Problem::insufficient_scope(
                MANAGE_SCOPE,
                "Managing keys needs an API key with the `keys:manage` scope (the keys of its own \
                 owner) or `admin` (every key). This one has neither.",
                Vec::new(),
            ));
        }
        let manager = self.0.keys.manager().as_actor(format!("key:{}", key.id()));
        Ok(Caller {
            key,
            admin,
            manager,
        })
    }

    fn view(&self, record: &KeyRecord) -> KeyView {
        KeyView::new(
            record,
            self.0.keys.format().prefix(),
            self.0.keys.shared.clock.now(),
        )
    }

    /// The response for a failed management call.
    fn failed(&self, err: ManageError) -> Problem {
        match err {
            ManageError::Store(StoreError::NotFound(_)) => Problem::not_found(),
            ManageError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(target: "keygate::manage", error = %cause, "key store unavailable");
                let after = self.0.keys.shared.unavailable_retry_after;
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                Problem::unavailable(secs.max(1))
            }
            ManageError::Store(StoreError::Rejected(why)) => {
                // The database's words stay in the server's log: they name
                // tables and constraints callers have no business with.
                tracing::warn!(target: "keygate::manage", error = %why, "key store refused a value");
                Problem::invalid_field(
                    "body",
                    "the key store cannot keep a value of this request \
                     (such as a NUL character in a string)",
                )
            }
            ManageError::NotRotatable(_) => Problem::not_rotatable(),
            ManageError::OverCap { cap, max } => {
                Problem::invalid_field(cap.field(), format!("at most {max} {cap}"))
            }
            ManageError::NotGrantable(violations) => {
                Problem::not_grantable(violations.iter().map(|v| violation(v, None)).collect())
            }
            ManageError::CreatorRevoked => Problem::creator_revoked(),
            ManageError::InvalidName => {
                Problem::invalid_field("name", "must be 1 to 200 characters")
            }
            other => Problem::internal(&other),
        }
    }
}

impl Caller {
    /// Whether the caller may see keys of `owner`.
    fn sees(&self, owner: &Owner) -> bool {
        self.admin || self.key.owner() == owner
    }

    /// The caller's key may hand out every scope of `scopes`.
    fn may_grant(&self, scopes: &[Scope], field: &str) -> Result<(), Problem> {
        let lacking: Vec<(usize, &Scope)> = scopes
            .iter()
            .enumerate()
            .filter(|(_, s)| !self.key.allows(s))
            .collect();
        let Some((_, first)) = lacking.first() else {
            return Ok(());
        };
        let errors = lacking
            .iter()
            .map(|(i, s)| FieldError {
                field: format!("{field}[{i}]"),
                message: format!("this API key lacks `{s}`, so it cannot grant it"),
            })
            .collect();
        Err(Problem::insufficient_scope(
            first.as_str(),
            format!(
                "This API key cannot grant `{first}`: a key can only hand out scopes it holds \
                 itself."
            ),
            errors,
        ))
    }

    /// A `test` key may not create, change or rotate `live` keys (unless it
    /// is an admin).
    fn may_use_environment(
        &self,
        environment: Environment,
        field: Option<&str>,
    ) -> Result<(), Problem> {
        if self.admin
            || self.key.environment() == Environment::Live
            || environment == Environment::Test
        {
            return Ok(());
        }
        let errors = field
            .map(|f| FieldError {
                field: f.to_owned(),
                message: "a `test` key cannot create `live` keys".to_owned(),
            })
            .into_iter()
            .collect();
        Err(Problem::environment_not_allowed(errors))
    }

    /// The caller may change or rotate `record`: a key no more powerful
    /// than its own.
    fn may_modify(&self, record: &KeyRecord) -> Result<(), Problem> {
        if let Some(scope) = record.scopes.iter().find(|s| !self.key.allows(s)) {
            return Err(Problem::insufficient_scope(
                scope.as_str(),
                format!(
                    "This key has the `{scope}` scope, which your API key lacks, so your key \
                     cannot change or rotate it."
                ),
                Vec::new(),
            ));
        }
        self.may_use_environment(record.environment, None)
    }

    /// The caller's key as a grantor, as the store holds it now (its quota
    /// and allowlist are not in the request's key info), or `None` for an
    /// admin, which the grant rule does not bind.
    async fn grantor(&self, state: &AdminState) -> Result<Option<Grantor>, Problem> {
        if self.admin {
            return Ok(None);
        }
        let id = self.key.id();
        match self.manager.get(id).await {
            Ok(Some(record)) => Ok(Some(Grantor::new(
                &record,
                state.0.keys.shared.default_quota.as_ref(),
            ))),
            Ok(None) => Err(state.failed(ManageError::Store(StoreError::NotFound(id)))),
            Err(e) => Err(state.failed(e)),
        }
    }

    /// The key `id` if the caller may see it; another owner's key is
    /// reported as missing.
    async fn load(&self, state: &AdminState, id: &str) -> Result<KeyRecord, Problem> {
        let id: KeyId = id.parse().map_err(|_| Problem::not_found())?;
        match self.manager.get(id).await {
            Ok(Some(record)) if self.sees(&record.owner) => Ok(record),
            Ok(_) => Err(Problem::not_found()),
            Err(e) => Err(state.failed(e)),
        }
    }
}

/// One grant violation as a field error: the field of the request it is
/// about (`expiry_field` names the request's expiry field, if any).
fn violation(v: &GrantViolation, expiry_field: Option<&str>) -> FieldError {
    let field = match (v.dimension, v.index, &v.entry) {
        (GrantDimension::Expiry, _, _) => expiry_field.unwrap_or("expires_at").to_owned(),
        (GrantDimension::AllowedIps, Some(i), _) => format!("allowed_ips[{i}]"),
        (GrantDimension::Metadata, _, Some(entry)) => format!("metadata.{entry}"),
        (dimension, _, _) => dimension.field().to_owned(),
    };
    FieldError {
        field,
        message: v.message.clone(),
    }
}

/// The answer to a failed create, update or rotate, whose expiry field is
/// `expiry_field`.
fn refused(state: &AdminState, err: ManageError, expiry_field: Option<&str>) -> Problem {
    match err {
        ManageError::NotGrantable(violations) => Problem::not_grantable(
            violations
                .iter()
                .map(|v| violation(v, expiry_field))
                .collect(),
        ),
        e => state.failed(e),
    }
}

/// The body, or a problem+json answer when it cannot be read.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| Problem::unreadable_body(rejection.status(), &rejection.body_text()))
}

/// Issue a key.
///
/// The answer holds the key itself, which is shown this once. A
/// `keys:manage` key can only create keys for its own owner, with scopes
/// it holds itself.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The key was issued", body = CreatedKeyView<'static>),
        (status = 403, description = "`insufficient_scope`, `owner_not_allowed` or `environment_not_allowed`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn create_key(
    State(state): State<AdminState>,
    key: ApiKey,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let caller = state.caller(key)?;
    let req = input::create(&body(raw)?).map_err(Problem::invalid)?;
    if !caller.sees(&req.owner) {
        return Err(Problem::owner_not_allowed(
            "owner",
            &caller.key.owner().to_string(),
        ));
    }
    caller.may_grant(&req.scopes, "scopes")?;
    let environment = req.environment.unwrap_or(caller.key.environment());
    caller.may_use_environment(environment, Some("environment"))?;
    let expires_in = req.expires_in_seconds;
    let mut new = NewKey::new(req.owner, req.name)
        .scopes(req.scopes.into_iter().collect::<Scopes>())
        .environment(environment)
        .allowed_ips(req.allowed_ips)
        .metadata(req.metadata);
    if let Some(secs) = expires_in {
        new = new.expires_in(Duration::from_secs(secs));
    }
    if let Some(quota) = req.rate_limit {
        new = new.rate_limit(quota);
    }
    let created = match caller.grantor(&state).await? {
        Some(grantor) => caller.manager.create_as(&grantor, new).await,
        None => caller.manager.create(new).await,
    };
    match created {
        Ok(created) => Ok(json(
            StatusCode::CREATED,
            &CreatedKeyView {
                key: created.key.expose_secret(),
                record: state.view(&created.record),
            },
        )),
        Err(ManageError::ExpiryOutOfRange) => Err(Problem::invalid_field(
            "expires_in_seconds",
            "is too far in the future",
        )),
        Err(e) => Err(refused(&state, e, Some("expires_in_seconds"))),
    }
}

/// List an owner's keys, newest first.
///
/// Without `owner`, the keys of the caller's own owner. Revoked and expired
/// keys are included.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of keys", body = KeyListView),
        (status = 403, description = "`insufficient_scope`, or `owner_not_allowed` for another owner's keys", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn list_keys(
    State(state): State<AdminState>,
    key: ApiKey,
    RawQuery(query): RawQuery,
) -> Answer {
    let caller = state.caller(key)?;
    let query = input::list(query.as_deref()).map_err(Problem::invalid)?;
    let owner = query.owner.unwrap_or_else(|| caller.key.owner().clone());
    if !caller.sees(&owner) {
        return Err(Problem::owner_not_allowed(
            "owner",
            &caller.key.owner().to_string(),
        ));
    }
    // One more than asked for tells whether there is a next page.
    let page = Page {
        limit: query.limit + 1,
        cursor: query.cursor,
    };
    let mut records = caller
        .manager
        .list(&owner, page)
        .await
        .map_err(|e| state.failed(e))?;
    let next_cursor = if records.len() > query.limit {
        records.truncate(query.limit);
        records
            .last()
            .map(|r| keygate_core::Cursor::after(r).to_string())
    } else {
        None
    };
    let keys = records.iter().map(|r| state.view(r)).collect();
    Ok(json(StatusCode::OK, &KeyListView { keys, next_cursor }))
}

/// Get one key.
#[utoipa::path(
    get,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's public id")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 404, description = "No such key, or another owner's", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn get_key(
    State(state): State<AdminState>,
    key: ApiKey,
    KeyIdParam(id): KeyIdParam,
) -> Answer {
    let caller = state.caller(key)?;
    let record = caller.load(&state, &id).await?;
    Ok(json(StatusCode::OK, &state.view(&record)))
}

/// Change a key's settings.
///
/// Only the fields present change; `rate_limit: null` goes back to the
/// service's default quota and `expires_at: null` removes the expiry. The
/// owner and environment never change. Effective at once.
#[utoipa::path(
    patch,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's public id")),
    request_body = UpdateKeyRequest,
    responses(
        (status = 200, description = "The updated key", body = KeyView),
        (status = 403, description = "`insufficient_scope` or `environment_not_allowed`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such key, or another owner's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn update_key(
    State(state): State<AdminState>,
    key: ApiKey,
    KeyIdParam(id): KeyIdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let caller = state.caller(key)?;
    // The body is checked before the key is looked up, so the answer to a
    // bad body does not tell whether another owner's key exists.
    let req = input::update(&body(raw)?).map_err(Problem::invalid)?;
    let record = caller.load(&state, &id).await?;
    caller.may_modify(&record)?;
    if let Some(scopes) = &req.scopes {
        caller.may_grant(scopes, "scopes")?;
    }
    let updated = match caller.grantor(&state).await? {
        Some(grantor) => {
            caller
                .manager
                .update_as(&grantor, record.id, req.into())
                .await
        }
        None => caller.manager.update(record.id, req.into()).await,
    };
    match updated {
        Ok(updated) => Ok(json(StatusCode::OK, &state.view(&updated))),
        Err(ManageError::ExpiryOutOfRange) => Err(Problem::invalid_field("expires_at", TIME_RANGE)),
        Err(e) => Err(refused(&state, e, Some("expires_at"))),
    }
}

/// Revoke a key, at once.
///
/// Revoking a revoked key changes nothing and answers the same record.
#[utoipa::path(
    delete,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's public id")),
    responses(
        (status = 200, description = "The revoked key", body = KeyView),
        (status = 404, description = "No such key, or another owner's", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn revoke_key(
    State(state): State<AdminState>,
    key: ApiKey,
    KeyIdParam(id): KeyIdParam,
) -> Answer {
    let caller = state.caller(key)?;
    let record = caller.load(&state, &id).await?;
    match caller.manager.revoke(record.id).await {
        Ok(revoked) => Ok(json(StatusCode::OK, &state.view(&revoked))),
        Err(e) => Err(state.failed(e)),
    }
}

/// Replace a key with a new one.
///
/// The new key has the same owner, name, scopes, environment, quota, IP
/// allowlist and metadata, and continues the old one's usage and rate
/// limit. The old key keeps working for `grace_seconds` (its responses then
/// carry `Sunset` and `Deprecation` headers), so clients can switch without
/// a failed request.
#[utoipa::path(
    post,
    path = "/keys/{id}/rotate",
    tag = "keys",
    params(("id" = String, Path, description = "The key's public id")),
    request_body = RotateKeyRequest,
    responses(
        (status = 201, description = "The new key", body = CreatedKeyView<'static>),
        (status = 403, description = "`insufficient_scope` or `environment_not_allowed`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such key, or another owner's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`not_rotatable`: the key is revoked, expired or already rotated", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn rotate_key(
    State(state): State<AdminState>,
    key: ApiKey,
    KeyIdParam(id): KeyIdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let caller = state.caller(key)?;
    let req = input::rotate(&body(raw)?).map_err(Problem::invalid)?;
    let record = caller.load(&state, &id).await?;
    caller.may_modify(&record)?;
    let grace = Duration::from_secs(req.grace_seconds);
    let rotated = match caller.grantor(&state).await? {
        Some(grantor) => caller.manager.rotate_as(&grantor, record.id, grace).await,
        None => caller.manager.rotate(record.id, grace).await,
    };
    match rotated {
        Ok(created) => Ok(json(
            StatusCode::CREATED,
            &CreatedKeyView {
                key: created.key.expose_secret(),
                record: state.view(&created.record),
            },
        )),
        Err(ManageError::ExpiryOutOfRange) => {
            Err(Problem::invalid_field("grace_seconds", "is too long"))
        }
        Err(e) => Err(state.failed(e)),
    }
}

/// Hourly request counts of a key's rotation family.
#[utoipa::path(
    get,
    path = "/keys/{id}/usage",
    tag = "keys",
    params(("id" = String, Path, description = "The key's public id"), UsageQuery),
    responses(
        (status = 200, description = "Usage per hour", body = UsageView),
        (status = 404, description = "No such key, or another owner's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
async fn key_usage(
    State(state): State<AdminState>,
    key: ApiKey,
    KeyIdParam(id): KeyIdParam,
    RawQuery(query): RawQuery,
) -> Answer {
    let caller = state.caller(key)?;
    let query = input::usage(query.as_deref()).map_err(Problem::invalid)?;
    let record = caller.load(&state, &id).await?;
    let since = query
        .since
        .unwrap_or_else(|| state.0.keys.shared.clock.now() - time::Duration::DAY);
    let buckets = match caller.manager.usage(record.family, since).await {
        Ok(buckets) => buckets,
        Err(ManageError::TimeOutOfRange(field)) => {
            return Err(Problem::invalid_field(field, TIME_RANGE));
        }
        Err(e) => return Err(state.failed(e)),
    };
    Ok(json(
        StatusCode::OK,
        &UsageView {
            id: record.id.to_string(),
            family: record.family.to_string(),
            since,
            buckets: buckets.into_iter().map(BucketView::from).collect(),
        },
    ))
}

/// This API's OpenAPI 3.1 document.
///
/// Its `servers` entry is the path the router is mounted at, so the paths
/// in it resolve.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
)]
async fn openapi_json(
    State(state): State<AdminState>,
    key: ApiKey,
    nested: Result<NestedPath, axum::extract::rejection::NestedPathRejection>,
) -> Answer {
    state.caller(key)?;
    let mut doc = state.0.doc.clone();
    if let Ok(path) = nested {
        doc.servers = Some(vec![Server::new(path.as_str())]);
    }
    Ok(json(StatusCode::OK, &doc))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate key management",
        description = "Create, list, update, rotate and revoke API keys. Every operation needs an \
            API key with the `admin` scope (all keys) or `keys:manage` (keys of its own owner).",
    ),
    paths(create_key, list_keys, get_key, update_key, revoke_key, rotate_key, key_usage, openapi_json),
    components(schemas(KeyStatus, EnvironmentName, FieldError, BucketView)),
    modifiers(&CommonResponses),
    tags(
        (name = "keys", description = "API keys"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// Adds the answers every operation can give (the layer's 401, 403, 429
/// and 503) to every operation.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    Content::new(Some(RefOr::Ref(openapi::Ref::from_schema_name("Problem")))),
                )
                .build()
        };
        let common = [
            (
                "401",
                "The API key is missing, malformed, unknown, revoked or expired",
            ),
            (
                "403",
                "`insufficient_scope`: the API key has neither `admin` nor `keys:manage`; or `ip_not_allowed`",
            ),
            ("429", "`rate_limited`: the API key's quota is used up"),
            ("503", "`unavailable`: the key store cannot answer"),
        ];
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                for (status, description) in common {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(problem(description)));
                }
            }
        }
    }
}

fn operations(item: &mut openapi::PathItem) -> impl Iterator<Item = &mut openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.patch.as_mut(),
        item.delete.as_mut(),
        item.put.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The document for `keys`: the security scheme names the header (or
/// bearer token) its layer reads keys from.
fn document(keys: &Keygate) -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let sources = &keys.shared.sources;
    let scheme = match sources.header_names().first() {
        Some(header) => {
            SecurityScheme::ApiKey(ApiKeyScheme::Header(ApiKeyValue::new(header.as_str())))
        }
        None if sources.bearer_enabled() => {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build())
        }
        None => SecurityScheme::ApiKey(ApiKeyScheme::Query(ApiKeyValue::new(
            sources.query_name().unwrap_or("api_key"),
        ))),
    };
    doc.components
        .get_or_insert_with(Components::new)
        .add_security_scheme("api_key", scheme);
    doc.security = Some(vec![SecurityRequirement::new(
        "api_key",
        Vec::<String>::new(),
    )]);
    doc
}
