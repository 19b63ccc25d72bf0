//! Who may manage which keys: the [`Caller`] every route extracts, its
//! checks, and how a refused management call answers.

use axum::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};
use keygate_core::{
    Cap, CreatedKey, Environment, GrantDimension, GrantViolation, Grantor, KeyId, KeyManager,
    KeyRecord, KeyView, ManageError, Owner, Scope, StoreError, may_grant_environment,
    ungrantable_scopes,
};

use super::{
    AdminState, MANAGE_SCOPE,
    input::FieldError,
    view::{CreatedKeyView, Problem, json},
};
use crate::ApiKey;

/// An authenticated caller allowed to manage keys (its key has `admin` or
/// [`MANAGE_SCOPE`]), with a manager that records it as the actor.
///
/// Extracting it is every route's first check: any other key is refused
/// with 403 `insufficient_scope` before the request is read further.
pub(super) struct Caller {
    key: ApiKey,
    admin: bool,
    manager: KeyManager,
    state: AdminState,
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        let key = ApiKey::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Self::new(key, state).map_err(IntoResponse::into_response)
    }
}

impl Caller {
    /// The caller, if its key has `admin` or `keys:manage`.
    fn new(key: ApiKey, state: &AdminState) -> Result<Self, Problem> {
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
        let manager = state.0.keys.manager().as_actor(format!("key:{}", key.id()));
        Ok(Self {
            key,
            admin,
            manager,
            state: state.clone(),
        })
    }

    /// The router's state.
    pub(super) fn state(&self) -> &AdminState {
        &self.state
    }

    /// The key manager, recording this caller as the actor.
    pub(super) fn manager(&self) -> &KeyManager {
        &self.manager
    }

    /// The owner of the caller's key.
    pub(super) fn owner(&self) -> &Owner {
        self.key.owner()
    }

    /// The environment of the caller's key.
    pub(super) fn environment(&self) -> Environment {
        self.key.environment()
    }

    /// `record` as the API shows it.
    pub(super) fn view(&self, record: &KeyRecord) -> KeyView {
        self.state.view(record)
    }

    /// The 201 answer to a create or a rotation: the key, shown this once,
    /// and its record.
    pub(super) fn created(&self, created: &CreatedKey) -> Response {
        json(
            StatusCode::CREATED,
            &CreatedKeyView {
                key: created.key.expose_secret(),
                record: self.view(&created.record),
            },
        )
    }

    /// The caller may see keys of `owner`; another owner's are a 403
    /// `owner_not_allowed` naming the caller's own (for `field`).
    pub(super) fn sees_owner(&self, owner: &Owner, field: &str) -> Result<(), Problem> {
        if self.sees(owner) {
            Ok(())
        } else {
            Err(Problem::owner_not_allowed(field, &self.owner().to_string()))
        }
    }

    /// Whether the caller's key has `admin`: it manages every owner's keys.
    pub(super) fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the caller may see keys of `owner`.
    fn sees(&self, owner: &Owner) -> bool {
        self.admin || self.key.owner() == owner
    }

    /// The caller's key may hand out every scope of `scopes`.
    pub(super) fn may_grant(&self, scopes: &[Scope], field: &str) -> Result<(), Problem> {
        let lacking: Vec<(usize, &Scope)> = ungrantable_scopes(self.key.scopes(), scopes).collect();
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
    pub(super) fn may_use_environment(
        &self,
        environment: Environment,
        field: Option<&str>,
    ) -> Result<(), Problem> {
        if may_grant_environment(self.key.scopes(), self.key.environment(), environment) {
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
    pub(super) fn may_modify(&self, record: &KeyRecord) -> Result<(), Problem> {
        if let Some((_, scope)) = ungrantable_scopes(self.key.scopes(), record.scopes.iter()).next()
        {
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
    pub(super) async fn grantor(&self) -> Result<Option<Grantor>, Problem> {
        if self.admin {
            return Ok(None);
        }
        let id = self.key.id();
        match self.manager.get(id).await {
            Ok(Some(record)) => Ok(Some(Grantor::new(&record, self.state.default_quota()))),
            Ok(None) => Err(self.failed(ManageError::Store(StoreError::NotFound(id)))),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// The key `id` if the caller may see it; another owner's key is
    /// reported as missing.
    pub(super) async fn load(&self, id: &str) -> Result<KeyRecord, Problem> {
        let id: KeyId = id.parse().map_err(|_| Problem::not_found())?;
        match self.manager.get(id).await {
            Ok(Some(record)) if self.sees(&record.owner) => Ok(record),
            Ok(_) => Err(Problem::not_found()),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// The key `id` if the caller may see it and it is not revoked: a
    /// revoked key is gone from the routes on one key (404 `revoked`, with
    /// its record), as a `DELETE` answered with success promised. Listings
    /// (`status=revoked`) and the audit trail still show it.
    pub(super) async fn load_live(&self, id: &str) -> Result<KeyRecord, Problem> {
        let record = self.load(id).await?;
        if record.is_revoked() {
            return Err(Problem::revoked(&self.view(&record)));
        }
        Ok(record)
    }

    /// The response for a failed management call.
    pub(super) fn failed(&self, err: ManageError) -> Problem {
        self.refused(err, "expires_at")
    }

    /// The response for a failed management call whose request names its
    /// expiry `expiry_field` (`expires_in_seconds` for a create).
    pub(super) fn refused(&self, err: ManageError, expiry_field: &str) -> Problem {
        match err {
            ManageError::Store(StoreError::NotFound(_)) => Problem::not_found(),
            ManageError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(target: "keygate::manage", error = %cause, "key store unavailable");
                let after = self.state.unavailable_retry_after();
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
            ManageError::OverCap {
                cap: Cap::KeyLifetime,
                max,
            } => Problem::invalid_field(
                expiry_field,
                format!(
                    "this service gives a key at most {max} seconds of life from its creation \
                     ({}); ask for an earlier expiry",
                    days(max)
                ),
            ),
            ManageError::OverCap { cap, max } => {
                Problem::invalid_field(cap.field(), format!("at most {max} {cap}"))
            }
            ManageError::NotGrantable(violations) => Problem::not_grantable(
                violations
                    .iter()
                    .map(|v| violation(v, expiry_field))
                    .collect(),
            ),
            ManageError::CreatorRevoked => Problem::creator_revoked(),
            ManageError::InvalidName => {
                Problem::invalid_field("name", "must be 1 to 200 characters")
            }
            other => Problem::internal(&other),
        }
    }
}

/// One grant violation as a field error: the field of the request it is
/// about (`expiry_field` names the request's expiry field).
fn violation(v: &GrantViolation, expiry_field: &str) -> FieldError {
    let field = match (v.dimension, v.index, &v.entry) {
        (GrantDimension::Expiry, _, _) => expiry_field.to_owned(),
        (GrantDimension::AllowedIps, Some(i), _) => format!("allowed_ips[{i}]"),
        (GrantDimension::Metadata, _, Some(entry)) => format!("metadata.{entry}"),
        (dimension, _, _) => dimension.field().to_owned(),
    };
    FieldError {
        field,
        message: v.message.clone(),
    }
}

/// `secs` in days, for people: `365 days`, or `1.50 days`.
fn days(secs: u64) -> String {
    if secs.is_multiple_of(86_400) {
        format!("{} days", secs / 86_400)
    } else {
        format!("{:.2} days", secs as f64 / 86_400.0)
    }
}
