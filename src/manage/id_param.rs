//! The `{id}` segment of the key routes.

use axum::extract::{FromRequestParts, Path};
use http::request::Parts;
use utoipa::IntoParams;

/// The `{id}` segment of a key route, percent-decoded.
///
/// axum's `Path<String>` refuses a segment that decodes to invalid UTF-8
/// (`/keys/%FF`) with a plain-text 400, outside this API's problem+json
/// errors. Such a segment is no key's id, so it is read as an empty id,
/// which the handlers answer like any unknown id: 404 `not_found`, after
/// the caller's own checks.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub(super) struct KeyIdParam(
    /// The key's public id
    pub(super) String,
);

impl<S: Send + Sync> FromRequestParts<S> for KeyIdParam {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let id = Path::<String>::from_request_parts(parts, state).await;
        Ok(Self(id.map_or_else(|_| String::new(), |Path(id)| id)))
    }
}
