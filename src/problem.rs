//! Error answers in keygate's shape: RFC 9457 `application/problem+json`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// An error answer in the shape of every refusal keygate sends: an RFC 9457
/// `application/problem+json` body with `type` (always `about:blank`: the
/// `code` says what happened), `title` (the status's reason phrase),
/// `status`, a stable machine-readable `code` and a `detail` that tells the
/// caller what to do, sent with `Cache-Control: no-store`.
///
/// [`Rejection`](crate::Rejection)s render through it. Use it for the
/// refusals your application sends itself on the same routes (its own
/// authentication, its own checks), so clients parse one shape:
///
/// ```
/// use http::StatusCode;
/// use keygate::Problem;
///
/// let res = Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", "The token is not valid.")
///     .with("realm", "dual-auth")
///     .to_response();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(res.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    body: Map<String, Value>,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("type".to_owned(), "about:blank".into());
        body.insert(
            "title".to_owned(),
            status.canonical_reason().unwrap_or("Error").into(),
        );
        body.insert("status".to_owned(), status.as_u16().into());
        body.insert("code".to_owned(), code.into());
        body.insert("detail".to_owned(), detail.into().into());
        Self { status, body }
    }

    /// Adds an extension member (RFC 9457 §3.2), e.g. `required_scope` or
    /// `retry_after`. A member of the same name is replaced.
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    /// Sets the body's member `name`, in place.
    pub(crate) fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.body.insert(name.to_owned(), value.into());
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response: status, body, `Content-Type: application/problem+json`
    /// and `Cache-Control: no-store` (an error about a credential is never
    /// for a shared cache to keep).
    pub fn to_response(&self) -> Response<Bytes> {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        Self::response(self.status, Bytes::from(body))
    }

    /// The response for a body already encoded: status, body and the
    /// headers every problem has.
    pub(crate) fn response(status: StatusCode, body: Bytes) -> Response<Bytes> {
        let mut res = Response::new(body);
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        self.to_response().map(axum::body::Body::from)
    }
}
