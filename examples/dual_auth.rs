//! keygate dual auth: people sign in and get a JWT, machines call with API
//! keys, and some routes take either.
//!
//! ```text
//! cargo run --example dual_auth
//! ```
//!
//! It listens on 127.0.0.1:3000 (set `KEYGATE_ADDR` to change that), issues
//! one machine key and prints it with curl commands to paste into another
//! shell. The demo people are `alice` / `alice-password` and `bob` /
//! `bob-password`.
//!
//! | route                          | who may call                                     |
//! |--------------------------------|--------------------------------------------------|
//! | `POST /login`                  | anyone: a password gives a JWT (15 minutes)      |
//! | `GET /me`                      | people only (JWT)                                |
//! | `GET /reports`                 | a person (JWT) or a machine (key with `read`)    |
//! | `GET /export`                  | machines only (key with `read`)                  |
//! | `GET`, `POST /me/keys`         | a person, or a key with `keys:manage`: own keys  |
//! | `DELETE /me/keys/{id}`         | the same: revoke one of them                     |
//! | `POST /me/keys/{id}/rotate`    | the same: replace one, old key valid for a grace |
//!
//! Keys go in `X-API-Key` or `Authorization: Bearer dual_…`; a person's JWT
//! goes in `Authorization: Bearer eyJ…`. keygate only looks at bearer tokens
//! that start with its prefix, so JWTs pass through it untouched.
//!
//! The rules, all in one place ([`Caller`]):
//!
//! - a request that presents a key is held to it: an invalid, revoked or
//!   expired key is a 401 even when a valid JWT comes with it;
//! - one request, one identity: a valid key and a JWT together are a 400;
//! - handlers learn who is calling from one extractor, never from headers.
//!
//! Browsers on `http://localhost:5173` may call cross-origin: CORS is the
//! outermost layer, so preflights are answered before keygate runs (see
//! `docs/recipes.md`, "Browser clients and CORS").

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use keygate::{
    ApiKey, Keygate, MethodScopes, Rejection, ScopeName,
    core::{
        CreatedKey, Environment, Grantor, KeyId, KeyRecord, ManageError, MemoryStore, NewKey,
        Owner, Page, Scope, Scopes,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();

    let keys = build_keygate();
    let secret = jwt_secret(&keys)?;
    // A machine client to try the key routes with.
    let machine_key = keys
        .manager()
        .create(NewKey::new(Owner::service("nightly-export"), "export job").scopes([Scope::READ]))
        .await?
        .key;

    let app = app(AppState::new(keys.clone(), &secret));

    let addr = std::env::var("KEYGATE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (set KEYGATE_ADDR to another address)")
    })?;
    let addr = listener.local_addr()?;
    println!("keygate dual_auth listening on http://{addr}  (Ctrl-C to stop)");
    println!("Paste these lines into another shell:");
    println!();
    println!("MACHINE_KEY={}", machine_key.expose_secret());
    print_curl_commands(addr);

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
    .await?;
    keys.shutdown().await?;
    Ok(())
}

/// `KEYGATE_JWT_SECRET` if set, else 190 random bits for this run (the
/// tokens die with the process, like the keys in the memory store).
fn jwt_secret(keys: &Keygate) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    if let Ok(secret) = std::env::var("KEYGATE_JWT_SECRET") {
        if secret.len() < 32 {
            return Err("KEYGATE_JWT_SECRET must be at least 32 bytes".into());
        }
        return Ok(secret.into_bytes());
    }
    // Any CSPRNG output will do; keygate's key generator is one at hand.
    let random = keys.format().generate(Environment::Test)?;
    Ok(random.expose_secret().as_bytes().to_vec())
}

fn print_curl_commands(addr: SocketAddr) {
    let url = format!("http://{addr}");
    let origin = BROWSER_ORIGINS[0];
    println!(
        r#"
# A person signs in and gets a JWT
TOKEN=$(curl -s -X POST -H 'Content-Type: application/json' -d '{{"username":"alice","password":"alice-password"}}' {url}/login | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

# 200: the person's own routes; "either" routes tell who is calling
curl -i -H "Authorization: Bearer $TOKEN" {url}/me
curl -i -H "Authorization: Bearer $TOKEN" {url}/reports

# 200: the machine on the "either" and machines-only routes; 403: /me is for people
curl -i -H "X-API-Key: $MACHINE_KEY" {url}/reports
curl -i -H "Authorization: Bearer $MACHINE_KEY" {url}/export
curl -i -H "X-API-Key: $MACHINE_KEY" {url}/me

# 401: a JWT does not open machines-only routes, and a bad key sinks a good JWT
curl -i -H "Authorization: Bearer $TOKEN" {url}/export
curl -i -H "Authorization: Bearer $TOKEN" -H "X-API-Key: dual_live_not-a-real-key" {url}/reports

# The person manages their own keys: create (the key is shown once), list, rotate, revoke
curl -i -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"name":"laptop","scopes":["read"]}}' {url}/me/keys
curl -i -H "Authorization: Bearer $TOKEN" {url}/me/keys
curl -i -X POST -H "Authorization: Bearer $TOKEN" "{url}/me/keys/<id>/rotate?grace_seconds=600"
curl -i -X DELETE -H "Authorization: Bearer $TOKEN" {url}/me/keys/<id>

# A browser on {origin}: the preflight is answered without a key, then the call carries one
curl -i -X OPTIONS -H 'Origin: {origin}' -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: x-api-key' {url}/export
curl -i -H 'Origin: {origin}' -H "X-API-Key: $MACHINE_KEY" {url}/export
"#
    );
}

// ---- configuration ----

/// The demo's people: user id (also the login name) and password. A real
/// service keeps password hashes (argon2) in a database.
const DEMO_USERS: [(&str, &str); 2] = [("alice", "alice-password"), ("bob", "bob-password")];

/// Who issues and who accepts the JWTs.
pub(crate) const ISSUER: &str = "keygate-dual-auth-example";

/// How long a JWT is valid. Short: a person signs in again, a machine uses
/// a key.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Origins of browser apps allowed to call cross-origin (Vite's default
/// dev server).
pub(crate) const BROWSER_ORIGINS: [&str; 2] = ["http://localhost:5173", "http://127.0.0.1:5173"];

keygate::scope!(
    /// The scope that lets an API key manage its owner's keys.
    pub(crate) KeysManage = "keys:manage"
);

/// The scopes a person may put on their keys. A key with `keys:manage` may
/// grant only `read` and `write`, and only those it holds itself.
fn grantable() -> [Scope; 3] {
    [Scope::READ, Scope::WRITE, KeysManage::scope()]
}

/// How long a rotated key keeps working, unless the request says otherwise.
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
const MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);
const MAX_EXPIRY_DAYS: u32 = 365;

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

// ---- the application ----

/// What every handler and extractor shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) keys: Keygate,
    tokens: Arc<Tokens>,
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
        .route("/me", get(me))
        .route("/reports", get(reports))
        .route_layer(keys.layer().optional(true));

    // Key self-service: the handlers check `keys:manage`, not the method's
    // scope (a key that may manage keys needs no `delete` to revoke one).
    // Same cache and limiter as the other layers.
    let key_management = Router::new()
        .route("/me/keys", get(list_keys).post(create_key))
        .route("/me/keys/{id}", delete(revoke_key))
        .route("/me/keys/{id}/rotate", post(rotate_key))
        .route_layer(
            keys.layer()
                .optional(true)
                .method_scopes(MethodScopes::none()),
        );

    // Machines only: no key, no entry.
    let machines = Router::new()
        .route("/export", get(export))
        .route_layer(keys.layer());

    Router::new()
        .route("/login", post(login))
        .merge(shared)
        .merge(key_management)
        .merge(machines)
        .with_state(state)
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
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
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

// ---- who is calling ----

/// Who is calling: a person (by JWT) or a machine (by API key). The one
/// extractor handlers use to find out.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    Person(Person),
    Key(ApiKey),
}

/// A signed-in person.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    pub(crate) user_id: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The layer has checked the key, if any: a bad key never gets here.
        // (`Option<ApiKey>` is a 500 on a route without keygate's layer,
        // rather than treating every caller as keyless.)
        let key = Option::<ApiKey>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::Keygate(r.rejection().clone()))?;
        let token = person_token(&parts.headers, state.keys.format().prefix())?;
        match (key, token) {
            (Some(_), Some(_)) => Err(ApiError::TwoCredentials),
            (Some(key), None) => Ok(Self::Key(key)),
            (None, Some(token)) => Ok(Self::Person(state.tokens.verify(token)?)),
            (None, None) => Err(ApiError::NoCredentials),
        }
    }
}

/// The JWT in `Authorization: Bearer`, if any: a bearer token that is not
/// one of our keys (the same rule keygate uses to leave it alone).
fn person_token<'h>(headers: &'h HeaderMap, key_prefix: &str) -> Result<Option<&'h str>, ApiError> {
    let mut found = None;
    for value in headers.get_all(header::AUTHORIZATION) {
        let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
            continue;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            continue;
        }
        let token = token.trim();
        let ours = token
            .strip_prefix(key_prefix)
            .is_some_and(|rest| rest.starts_with('_'));
        if !ours && found.replace(token).is_some() {
            return Err(ApiError::TwoCredentials);
        }
    }
    Ok(found)
}

impl FromRequestParts<AppState> for Person {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Person(person) => Ok(person),
            Caller::Key(_) => Err(ApiError::PeopleOnly),
        }
    }
}

/// A machine: the caller of a keys-only route.
#[derive(Clone, Debug)]
pub(crate) struct Machine(pub(crate) ApiKey);

impl FromRequestParts<AppState> for Machine {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Key(key) => Ok(Self(key)),
            Caller::Person(_) => Err(ApiError::MachinesOnly),
        }
    }
}

/// Whose keys a request may manage: a person's own, or those of a key's
/// owner if the key holds `keys:manage`.
#[derive(Clone, Debug)]
pub(crate) struct KeyOwner {
    owner: Owner,
    caller: Caller,
}

impl FromRequestParts<AppState> for KeyOwner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let owner = match &caller {
            Caller::Person(person) => Owner::user(&person.user_id),
            Caller::Key(key) if key.allows(&KeysManage::scope()) => key.owner().clone(),
            Caller::Key(_) => {
                return Err(ApiError::Keygate(Rejection::InsufficientScope {
                    required: KeysManage::scope(),
                }));
            }
        };
        Ok(Self { owner, caller })
    }
}

impl KeyOwner {
    /// Who the audit trail names for changes made by this request.
    fn actor(&self) -> String {
        match &self.caller {
            Caller::Person(person) => format!("user:{}", person.user_id),
            Caller::Key(key) => format!("key:{}", key.id()),
        }
    }

    /// Whether this service lets this caller put `scope` on a new key: its
    /// own policy, on top of keygate's rule (see [`KeyOwner::grantor`]).
    fn may_grant(&self, scope: &Scope) -> bool {
        if !grantable().contains(scope) {
            return false;
        }
        match &self.caller {
            Caller::Person(_) => true,
            // A key never passes on the power to mint more keys here.
            Caller::Key(_) => *scope != KeysManage::scope(),
        }
    }

    /// For a key, keygate's grant rule: what it creates or rotates can be
    /// no more powerful than itself (scopes, environment, expiry, quota, IP
    /// allowlist, metadata), and dies with it. `None` for a person.
    async fn grantor(&self, state: &AppState) -> Result<Option<Grantor>, ApiError> {
        let Caller::Key(key) = &self.caller else {
            return Ok(None);
        };
        let record = state
            .keys
            .manager()
            .get(key.id())
            .await?
            .ok_or(ApiError::Internal)?;
        // This service has no default quota; pass it here if yours does.
        Ok(Some(Grantor::new(&record, None)))
    }
}

// ---- JWTs ----

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) iss: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

/// Signs and checks the JWTs `POST /login` hands out (HS256).
struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    fn new(secret: &[u8]) -> Self {
        // One algorithm only: a token cannot choose how it is checked.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Issuer and checker share a clock here.
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    fn issue(&self, user_id: &str) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + TOKEN_TTL.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            ApiError::Internal
        })
    }

    fn verify(&self, token: &str) -> Result<Person, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(Person {
                user_id: data.claims.sub,
            }),
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(ApiError::ExpiredToken),
            Err(_) => Err(ApiError::InvalidToken),
        }
    }
}

// ---- handlers ----

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    Json(form): Json<LoginForm>,
) -> Result<Response, ApiError> {
    // Demo only: real passwords are checked against a slow hash.
    let known = DEMO_USERS
        .iter()
        .any(|(user, password)| *user == form.username && *password == form.password);
    if !known {
        return Err(ApiError::BadLogin);
    }
    let token = state.tokens.issue(&form.username)?;
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL.as_secs(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// People only.
async fn me(person: Person) -> Json<Value> {
    Json(json!({ "user_id": person.user_id }))
}

/// People and machines: one extractor says which.
async fn reports(caller: Caller) -> Json<Value> {
    Json(match caller {
        Caller::Person(person) => json!({
            "caller": "person",
            "user_id": person.user_id,
        }),
        Caller::Key(key) => json!({
            "caller": "key",
            "key_id": key.id().to_string(),
            "owner": key.owner().to_string(),
        }),
    })
}

/// Machines only.
async fn export(Machine(key): Machine) -> Json<Value> {
    Json(json!({ "exported_for": key.owner().to_string() }))
}

/// A key as its owner sees it: never the key, never its digest.
#[derive(Serialize)]
struct KeyView {
    id: String,
    name: String,
    scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    /// The key that replaced this one; this one works until `expires_at`.
    rotated_to: Option<String>,
}

impl From<&KeyRecord> for KeyView {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name.clone(),
            scopes: r.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            rotated_to: r.superseded_by.map(|id| id.to_string()),
        }
    }
}

/// The answer to create and rotate: the plaintext key, this once.
fn created(created: &CreatedKey) -> Response {
    let mut body = serde_json::to_value(KeyView::from(&created.record)).unwrap_or_default();
    body["key"] = created.key.expose_secret().into();
    (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

async fn list_keys(
    owner: KeyOwner,
    State(state): State<AppState>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    // One page of 100 is plenty for a demo; pass `Page.cursor` for more.
    let records = state
        .keys
        .manager()
        .list(&owner.owner, Page::first(100))
        .await?;
    Ok(Json(records.iter().map(KeyView::from).collect()))
}

#[derive(Deserialize)]
struct NewKeyForm {
    name: String,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    expires_in_days: Option<u32>,
}

fn default_scopes() -> Vec<String> {
    vec!["read".to_owned()]
}

async fn create_key(
    owner: KeyOwner,
    State(state): State<AppState>,
    Json(form): Json<NewKeyForm>,
) -> Result<Response, ApiError> {
    let mut scopes = Scopes::none();
    for name in form.scopes {
        let scope = Scope::new(name.clone())
            .ok()
            .filter(|s| owner.may_grant(s))
            .ok_or(ApiError::NotGrantable(name))?;
        scopes.insert(scope);
    }
    let mut new = NewKey::new(owner.owner.clone(), form.name).scopes(scopes);
    if let Some(days) = form.expires_in_days {
        if days == 0 || days > MAX_EXPIRY_DAYS {
            return Err(ApiError::BadRequest("`expires_in_days` is 1 to 365"));
        }
        new = new.expires_in(Duration::from_secs(u64::from(days) * 86_400));
    }
    let manager = state.keys.manager().as_actor(owner.actor());
    let made = match owner.grantor(&state).await? {
        Some(grantor) => manager.create_as(&grantor, new).await?,
        None => manager.create(new).await?,
    };
    Ok(created(&made))
}

async fn revoke_key(
    owner: KeyOwner,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = owned_key(&state, &owner, &id).await?;
    state
        .keys
        .manager()
        .as_actor(owner.actor())
        .revoke(id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RotateParams {
    grace_seconds: Option<u64>,
}

async fn rotate_key(
    owner: KeyOwner,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<RotateParams>,
) -> Result<Response, ApiError> {
    let grace = params
        .grace_seconds
        .map_or(DEFAULT_GRACE, Duration::from_secs);
    if grace > MAX_GRACE {
        return Err(ApiError::BadRequest(
            "`grace_seconds` is at most 604800 (7 days)",
        ));
    }
    let id = owned_key(&state, &owner, &id).await?;
    let manager = state.keys.manager().as_actor(owner.actor());
    let made = match owner.grantor(&state).await? {
        Some(grantor) => manager.rotate_as(&grantor, id, grace).await?,
        None => manager.rotate(id, grace).await?,
    };
    Ok(created(&made))
}

/// The id of one of the caller's keys. Anyone else's key is "not found",
/// exactly like a key that does not exist: ids are not secret, but whose
/// they are is.
async fn owned_key(state: &AppState, owner: &KeyOwner, id: &str) -> Result<KeyId, ApiError> {
    let id: KeyId = id.parse().map_err(|_| ApiError::NotFound)?;
    match state.keys.manager().get(id).await? {
        Some(record) if record.owner == owner.owner => Ok(id),
        _ => Err(ApiError::NotFound),
    }
}

// ---- errors ----

/// Every refusal of this service, as `application/problem+json` in the
/// same shape as keygate's own.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// keygate's answer, as it would give it.
    Keygate(Rejection),
    NoCredentials,
    InvalidToken,
    ExpiredToken,
    TwoCredentials,
    PeopleOnly,
    MachinesOnly,
    BadLogin,
    NotGrantable(String),
    /// The key would be more powerful than the key asking for it.
    ExceedsCaller(Vec<&'static str>),
    OverCap(String),
    BadRequest(&'static str),
    NotFound,
    NotRotatable,
    Internal,
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::InvalidName => Self::BadRequest("a key name is 1 to 200 characters"),
            ManageError::NotRotatable(_) => Self::NotRotatable,
            ManageError::NotGrantable(violations) => {
                match violations.iter().find_map(|v| v.scope.as_ref()) {
                    Some(scope) => Self::NotGrantable(scope.to_string()),
                    None => Self::ExceedsCaller(
                        violations.iter().map(|v| v.dimension.field()).collect(),
                    ),
                }
            }
            ManageError::OverCap { cap, max } => Self::OverCap(format!("at most {max} {cap}")),
            e => {
                tracing::error!(error = %e, "key management failed");
                Self::Internal
            }
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use StatusCode as S;
        match self {
            Self::Keygate(r) => (r.status(), r.code(), r.detail()),
            Self::NoCredentials => (
                S::UNAUTHORIZED,
                "missing_credentials",
                "Sign in (`POST /login`) and send `Authorization: Bearer <token>`, \
                 or send an API key in `X-API-Key`."
                    .into(),
            ),
            Self::InvalidToken => (
                S::UNAUTHORIZED,
                "invalid_token",
                "The bearer token is not valid. Sign in again (`POST /login`).".into(),
            ),
            Self::ExpiredToken => (
                S::UNAUTHORIZED,
                "expired_token",
                "The bearer token has expired. Sign in again (`POST /login`).".into(),
            ),
            Self::TwoCredentials => (
                S::BAD_REQUEST,
                "ambiguous_credentials",
                "The request carries both a person's token and an API key. Send one.".into(),
            ),
            Self::PeopleOnly => (
                S::FORBIDDEN,
                "people_only",
                "This route is for people signed in with `POST /login`, not API keys.".into(),
            ),
            Self::MachinesOnly => (
                S::FORBIDDEN,
                "machines_only",
                "This route takes API keys only.".into(),
            ),
            Self::BadLogin => (
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Unknown user or wrong password.".into(),
            ),
            Self::NotGrantable(scope) => (
                S::FORBIDDEN,
                "scope_not_grantable",
                format!(
                    "You cannot grant `{}`. People may grant `read`, `write` and \
                     `keys:manage`; a key only `read` and `write`, if it holds them.",
                    scope.escape_default()
                ),
            ),
            Self::ExceedsCaller(fields) => (
                S::FORBIDDEN,
                "not_grantable",
                format!(
                    "A key can only make keys no more powerful than itself; this one would \
                     exceed it in: {}.",
                    fields.join(", ")
                ),
            ),
            Self::OverCap(what) => (S::BAD_REQUEST, "invalid_request", format!("{what}.")),
            Self::BadRequest(detail) => (S::BAD_REQUEST, "invalid_request", (*detail).into()),
            Self::NotFound => (
                S::NOT_FOUND,
                "not_found",
                "You have no key with this id.".into(),
            ),
            Self::NotRotatable => (
                S::CONFLICT,
                "not_rotatable",
                "The key is revoked, expired or already rotated.".into(),
            ),
            Self::Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Keygate(rejection) = self {
            return rejection.into_response();
        }
        let (status, code, detail) = self.parts();
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
        });
        let mut res = (status, Json(body)).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // RFC 6750 challenges: both ways in when there is none, the token's
        // fault when it is bad.
        let challenges: &[&'static str] = match self {
            Self::NoCredentials => &[
                "Bearer realm=\"dual-auth\"",
                "ApiKey realm=\"api\", header=\"X-API-Key\"",
            ],
            Self::InvalidToken => &["Bearer realm=\"dual-auth\", error=\"invalid_token\""],
            Self::ExpiredToken => &["Bearer realm=\"dual-auth\", error=\"invalid_token\", \
                 error_description=\"expired\""],
            _ => &[],
        };
        for challenge in challenges {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        res
    }
}
