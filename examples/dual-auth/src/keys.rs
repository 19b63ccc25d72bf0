//! Key self-service: people, and keys with `keys:manage`, list, create,
//! rotate and revoke their own keys.

use std::time::Duration;

use axum::{
    Json,
    extract::{FromRequestParts, Path, Query, State},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use keygate::{
    Rejection, ScopeName,
    core::{CreatedKey, Grantor, KeyId, KeyRecord, NewKey, Owner, Page, Scope, Scopes},
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    app::{AppState, KeysManage},
    caller::Caller,
    error::ApiError,
};

/// The scopes a person may put on their keys. A key with `keys:manage` may
/// grant only `read` and `write`, and only those it holds itself.
fn grantable() -> [Scope; 3] {
    [Scope::READ, Scope::WRITE, KeysManage::scope()]
}

/// How long a rotated key keeps working, unless the request says otherwise.
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
const MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);
const MAX_EXPIRY_DAYS: u32 = 365;

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

    /// Whether this service's own policy lets this caller put `scope` on a
    /// new key: only scopes from [`grantable`], and never `keys:manage` from
    /// a key. keygate's delegation rule (a key grants only what it holds,
    /// [`keygate::core::may_grant`]) applies on top, through
    /// [`KeyOwner::grantor`].
    fn service_allows(&self, scope: &Scope) -> bool {
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

/// A key as its owner sees it: never the key, never its digest.
#[derive(Serialize)]
pub(crate) struct KeyView {
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

pub(crate) async fn list_keys(
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
pub(crate) struct NewKeyForm {
    name: String,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    expires_in_days: Option<u32>,
}

fn default_scopes() -> Vec<String> {
    vec!["read".to_owned()]
}

pub(crate) async fn create_key(
    owner: KeyOwner,
    State(state): State<AppState>,
    Json(form): Json<NewKeyForm>,
) -> Result<Response, ApiError> {
    let mut scopes = Scopes::none();
    for name in form.scopes {
        let scope = Scope::new(name.clone())
            .ok()
            .filter(|s| owner.service_allows(s))
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

pub(crate) async fn revoke_key(
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
pub(crate) struct RotateParams {
    grace_seconds: Option<u64>,
}

pub(crate) async fn rotate_key(
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
