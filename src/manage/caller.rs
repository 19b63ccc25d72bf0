//! Who may manage which keys: the [`Caller`] every route extracts (an API
//! key, or a person the application signed in), its checks, and how a
//! refused management call answers.

use axum::{
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::{StatusCode, request::Parts};
use keygate_core::{
    Cap, CreatedKey, Environment, GrantDimension, GrantViolation, Grantor, KeyId, KeyManager,
    KeyRecord, KeySettings, KeyView, ManageError, Metadata, Owner, Scope, Scopes, StoreError,
    may_grant_environment, ungrantable_scopes,
};

use super::{
    AdminState, MANAGE_SCOPE,
    input::FieldError,
    self_service::Signed,
    view::{CreatedKeyView, Problem, json},
};
use crate::ApiKey;

/// An authenticated caller allowed to manage keys — an API key with
/// `admin` or [`MANAGE_SCOPE`], or a person the application signed in —
/// with a manager that records it as the actor.
///
/// Extracting it is every route's first check: any other caller is refused
/// (401 not signed in, 403 `insufficient_scope`) before the request is read
/// further.
pub(super) struct Caller {
    who: Who,
    /// An `admin` key or an operator: every owner's keys, no ceiling.
    admin: bool,
    manager: KeyManager,
    state: AdminState,
}

/// Who the caller is.
enum Who {
    Key(ApiKey),
    /// A person: the keys of `owner`, under `ceiling` (what the service
    /// lets people grant).
    Person {
        owner: Owner,
        ceiling: Scopes,
    },
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        let Some(people) = &state.0.people else {
            let key = ApiKey::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
            return Self::new(key, state).map_err(IntoResponse::into_response);
        };
        let Some(identity) = people.identify(parts) else {
            return Err(people.not_signed_in());
        };
        match identity.0 {
            Signed::Key(key) => Self::new(key, state).map_err(IntoResponse::into_response),
            Signed::Person { owner, operator } => {
                let manager = state.0.keys.manager().as_actor(owner.to_string());
                Ok(Self {
                    who: Who::Person {
                        owner,
                        ceiling: people.grantable.clone(),
                    },
                    admin: operator,
                    manager,
                    state: state.clone(),
                })
            }
        }
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
            who: Who::Key(key),
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

    /// The caller's own owner: its key's, or the person's.
    pub(super) fn owner(&self) -> &Owner {
        match &self.who {
            Who::Key(key) => key.owner(),
            Who::Person { owner, .. } => owner,
        }
    }

    /// The environment the caller's keys are made in by default: its key's,
    /// or `live` for a person.
    pub(super) fn environment(&self) -> Environment {
        match &self.who {
            Who::Key(key) => key.environment(),
            Who::Person { .. } => Environment::Live,
        }
    }

    /// The scopes the caller may hand out: its key's, or the ceiling the
    /// service sets for people.
    fn held(&self) -> &Scopes {
        match &self.who {
            Who::Key(key) => key.scopes(),
            Who::Person { ceiling, .. } => ceiling,
        }
    }

    /// Why the caller cannot grant `scope`, for people.
    fn lacks(&self, scope: &Scope) -> String {
        match &self.who {
            Who::Key(_) => format!("this API key lacks `{scope}`, so it cannot grant it"),
            Who::Person { .. } => {
                format!("this service does not let people grant `{scope}` on their keys")
            }
        }
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

    /// Whether the caller is an `admin` key or an operator: it manages
    /// every owner's keys.
    pub(super) fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the caller may see keys of `owner`.
    fn sees(&self, owner: &Owner) -> bool {
        self.admin || self.owner() == owner
    }

    /// The caller may hand out every scope of `scopes`.
    pub(super) fn may_grant(&self, scopes: &[Scope], field: &str) -> Result<(), Problem> {
        if self.admin {
            return Ok(());
        }
        let lacking: Vec<(usize, &Scope)> = ungrantable_scopes(self.held(), scopes).collect();
        let Some((_, first)) = lacking.first() else {
            return Ok(());
        };
        let errors = lacking
            .iter()
            .map(|(i, s)| FieldError {
                field: format!("{field}[{i}]"),
                message: self.lacks(s),
            })
            .collect();
        let detail = match &self.who {
            Who::Key(_) => format!(
                "This API key cannot grant `{first}`: a key can only hand out scopes it holds \
                 itself."
            ),
            Who::Person { ceiling, .. } => format!(
                "You cannot grant `{first}`: this service lets people grant {} only.",
                if ceiling.is_empty() {
                    "no scope".to_owned()
                } else {
                    format!("`{ceiling}`")
                }
            ),
        };
        Err(Problem::insufficient_scope(first.as_str(), detail, errors))
    }

    /// A `test` key may not create, change or rotate `live` keys (unless it
    /// is an admin).
    pub(super) fn may_use_environment(
        &self,
        environment: Environment,
        field: Option<&str>,
    ) -> Result<(), Problem> {
        if self.admin || may_grant_environment(self.held(), self.environment(), environment) {
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
    /// than its own (or than the ceiling, for a person).
    pub(super) fn may_modify(&self, record: &KeyRecord) -> Result<(), Problem> {
        if self.admin {
            return Ok(());
        }
        if let Some((_, scope)) = ungrantable_scopes(self.held(), record.scopes.iter()).next() {
            let who = match &self.who {
                Who::Key(_) => "your API key lacks, so your key",
                Who::Person { .. } => "this service does not let people grant, so you",
            };
            return Err(Problem::insufficient_scope(
                scope.as_str(),
                format!(
                    "This key has the `{scope}` scope, which {who} cannot change or rotate it."
                ),
                Vec::new(),
            ));
        }
        self.may_use_environment(record.environment, None)
    }

    /// The caller may set or top up credits: only an `admin` key or an
    /// operator. A `keys:manage` key could otherwise hand itself, or the keys
    /// it makes, credits nobody sold it; a person, likewise. Refused with 403
    /// `insufficient_scope` naming `admin`, whatever the key, so a refusal
    /// says nothing about it.
    pub(super) fn may_change_credits(&self) -> Result<(), Problem> {
        if self.admin {
            return Ok(());
        }
        let detail = match &self.who {
            Who::Key(_) => {
                "Setting or topping up credits needs an API key with the `admin` scope: a \
                 `keys:manage` key cannot give credits, not even to itself or the keys it made. \
                 Read them with GET."
            }
            Who::Person { .. } => {
                "Only operators set or top up credits; you can read a key's credits with GET."
            }
        };
        Err(Problem::insufficient_scope(
            Scope::ADMIN.as_str(),
            detail,
            Vec::new(),
        ))
    }

    /// The caller as a grantor: its key as the store holds it now (its
    /// quota and allowlist are not in the request's key info), or a person
    /// under the service's ceiling; `None` for an admin or an operator,
    /// which the grant rule does not bind.
    pub(super) async fn grantor(&self) -> Result<Option<Grantor>, Problem> {
        if self.admin {
            return Ok(None);
        }
        let key = match &self.who {
            Who::Key(key) => key,
            Who::Person { owner, ceiling } => {
                let ceiling = KeySettings {
                    scopes: ceiling.clone(),
                    environment: Environment::Live,
                    expires_at: None,
                    rate_limit: None,
                    allowed_ips: Vec::new(),
                    metadata: Metadata::default(),
                };
                return Ok(Some(Grantor::person(
                    owner.clone(),
                    ceiling,
                    self.state.default_quota(),
                )));
            }
        };
        let id = key.id();
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
        self.refused_naming(err, expiry_field, "credits")
    }

    /// [`refused`](Self::refused), for a request that names its credits
    /// `credits_field` (`refill`, for a create that asks for a refill only).
    pub(super) fn refused_naming(
        &self,
        err: ManageError,
        expiry_field: &str,
        credits_field: &str,
    ) -> Problem {
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
                    .map(|v| violation(v, expiry_field, credits_field))
                    .collect(),
            ),
            ManageError::CreatorRevoked => Problem::creator_revoked(),
            ManageError::InvalidName => {
                Problem::invalid_field("name", "must be 1 to 200 characters")
            }
            ManageError::CreditsOutOfRange => Problem::invalid_field(
                credits_field,
                format!(
                    "a credit balance is 0 to {} credits",
                    keygate_core::MAX_CREDITS
                ),
            ),
            other => Problem::internal(&other),
        }
    }
}

/// One grant violation as a field error: the field of the request it is
/// about (`expiry_field` names the request's expiry field, `credits_field`
/// its credits).
fn violation(v: &GrantViolation, expiry_field: &str, credits_field: &str) -> FieldError {
    let field = match (v.dimension, v.index, &v.entry) {
        (GrantDimension::Expiry, _, _) => expiry_field.to_owned(),
        (GrantDimension::Credits, _, _) => credits_field.to_owned(),
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
