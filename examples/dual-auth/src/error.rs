//! Every refusal of this service, as `application/problem+json`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use keygate::{Rejection, core::ManageError};

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
        // The same problem+json body (and `Cache-Control: no-store`) as
        // keygate's own refusals, so clients parse one shape.
        let mut res = keygate::Problem::new(status, code, detail).into_response();
        let headers = res.headers_mut();
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
