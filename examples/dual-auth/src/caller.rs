//! Who is calling: [`Caller`], the narrower [`Person`] and [`Machine`]
//! extractors built on it, and [`identify`], which tells keygate's key
//! self-service the same.

use axum::{
    extract::{FromRequestParts, Request},
    http::{HeaderMap, header, request::Parts},
    middleware::Next,
    response::Response,
};
use keygate::{ApiKey, core::Owner, manage::Identity};

use super::{app::AppState, error::ApiError};

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

/// Tells keygate's self-service router (`/me/keys`) who is calling, as
/// [`Caller`] says: a person owns the keys of `user:<id>`; a key is judged
/// by keygate's own rule (`keys:manage`, no more than it holds). Anything
/// [`Caller`] refuses (no credentials, two, a bad token) is refused here
/// with this service's own answer, before keygate's router runs.
pub(crate) async fn identify(caller: Caller, mut req: Request, next: Next) -> Response {
    let identity = match caller {
        Caller::Person(person) => Identity::person(Owner::user(person.user_id)),
        Caller::Key(key) => Identity::api_key(key),
    };
    req.extensions_mut().insert(identity);
    next.run(req).await
}
