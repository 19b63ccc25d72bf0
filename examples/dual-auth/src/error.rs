//! Every refusal of this service, as `application/problem+json`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use keygate::Rejection;

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
    Internal,
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
