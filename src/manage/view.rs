//! What the management API answers: key records without secrets
//! ([`keygate_core::KeyView`]), and problem+json errors.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use keygate_core::{KeyView, UsageBucket};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{input::FieldError, schema::KeySchema};

/// A key just issued: the key itself, shown this once, and its record.
/// Its `Debug` leaves the key out.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedKey)]
pub(super) struct CreatedKeyView<'a> {
    /// The whole API key. It is not stored anywhere and is never shown
    /// again: hand it to the client now.
    #[schema(example = "mbk_live_Ab3Cd5Ef7GhJ2kL4mN6pQ8rS0tU2vW4xY6zA8bC0dE1f9XkQ")]
    pub(super) key: &'a str,
    #[serde(flatten)]
    #[schema(value_type = KeySchema)]
    pub(super) record: KeyView,
}

impl std::fmt::Debug for CreatedKeyView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKeyView")
            .field("key", &"[redacted]")
            .field("record", &self.record)
            .finish()
    }
}

/// One page of an owner's keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KeyList)]
pub(super) struct KeyListView {
    /// The keys.
    #[schema(value_type = Vec<KeySchema>)]
    pub(super) keys: Vec<KeyView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub(super) next_cursor: Option<String>,
}

/// Requests made with a key's family, per hour.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Usage)]
pub(super) struct UsageView {
    /// The key asked about.
    pub(super) id: String,
    /// Its rotation family, whose usage this is.
    pub(super) family: String,
    /// The start of the period.
    #[serde(with = "time::serde::rfc3339")]
    pub(super) since: OffsetDateTime,
    /// Hours with requests, oldest first. Usage is written in batches, so
    /// the latest hour lags by up to the service's flush interval.
    pub(super) buckets: Vec<BucketView>,
}

/// Requests in one hour.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageBucket)]
pub(super) struct BucketView {
    /// The start of the hour.
    #[serde(with = "time::serde::rfc3339")]
    bucket: OffsetDateTime,
    /// Requests counted in it.
    requests: u64,
}

impl From<UsageBucket> for BucketView {
    fn from(b: UsageBucket) -> Self {
        Self {
            bucket: b.bucket,
            requests: b.requests,
        }
    }
}

/// A JSON response that is never cached: management answers may carry a
/// key.
pub(super) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => respond(status, "application/json", bytes.into()),
        Err(e) => Problem::internal(&e).into_response(),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut res = (status, body).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An error answer. Boxed, so results that carry one stay small.
#[derive(Debug)]
pub(super) struct Problem(Box<Answer>);

#[derive(Debug)]
struct Answer {
    /// keygate's problem+json body, the one every refusal of the layer has.
    body: crate::Problem,
    /// Seconds for `Retry-After`, when the body says to wait.
    retry_after: Option<u64>,
}

/// The OpenAPI description of a [`Problem`]'s body: an RFC 9457
/// `application/problem+json` body in the shape keygate's layer uses. Never
/// built: [`crate::Problem`] writes the body.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub(super) struct ProblemBody {
    /// Always `about:blank`: `code` says what happened.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    kind: &'static str,
    /// The HTTP status's reason phrase.
    #[schema(example = "Unprocessable Entity")]
    title: &'static str,
    /// The HTTP status.
    #[schema(example = 422)]
    status: u16,
    /// A stable, machine-readable code: `invalid_request`, `not_found`,
    /// `insufficient_scope`, `owner_not_allowed`, `environment_not_allowed`,
    /// `not_grantable`, `not_rotatable`, `superseded`, `creator_revoked`, `revoked`, `unavailable`, … (and the layer's own codes, such as
    /// `missing_key` or `rate_limited`).
    #[schema(example = "invalid_request")]
    code: &'static str,
    /// What went wrong and what to do about it.
    detail: String,
    /// For `invalid_request`: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    errors: Vec<FieldError>,
    /// For `insufficient_scope`: the scope that was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    required_scope: Option<String>,
    /// For `unavailable` and `rate_limited`: seconds to wait (also in
    /// `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    /// For `revoked`: the key as it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<KeySchema>)]
    key: Option<()>,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(Answer {
            body: crate::Problem::new(status, code, detail),
            retry_after: None,
        }))
    }

    /// The body's member `name`.
    fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.0.body.set(name, value);
        self
    }

    /// `retry_after` in the body and `Retry-After` in the headers.
    fn with_retry_after(mut self, secs: u64) -> Self {
        self.0.retry_after = Some(secs);
        self.with("retry_after", secs)
    }

    /// `errors`, when there are any.
    fn with_errors(self, errors: Vec<FieldError>) -> Self {
        if errors.is_empty() {
            return self;
        }
        let errors = serde_json::to_value(errors).unwrap_or_default();
        self.with("errors", errors)
    }

    /// 422: the request's fields are wrong.
    pub(super) fn invalid(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let detail = format!(
            "The request is invalid. Fix {} and retry; `errors` says what is wrong with each.",
            fields.join(", ")
        );
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail).with_errors(errors)
    }

    /// 422 for one field.
    pub(super) fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// A body that could not be read at all (too large, cut off).
    pub(super) fn unreadable_body(status: StatusCode, why: &str) -> Self {
        Self::new(
            status,
            "invalid_body",
            format!("The request body could not be read: {why}."),
        )
    }

    /// 404: no such key, or one the caller may not see.
    pub(super) fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no key with this id, or it belongs to an owner whose keys this API key cannot manage.",
        )
    }

    /// 403: the caller's key lacks a scope it would hand out or touch.
    pub(super) fn insufficient_scope(
        scope: &str,
        detail: impl Into<String>,
        errors: Vec<FieldError>,
    ) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", detail)
            .with_errors(errors)
            .with("required_scope", scope)
    }

    /// 403: the caller manages only its own owner's keys.
    pub(super) fn owner_not_allowed(field: &str, owner: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "owner_not_allowed",
            format!(
                "This API key may only manage keys of its own owner, {owner}. Use a key with the \
                 `admin` scope to manage other owners' keys."
            ),
        )
        .with_errors(vec![FieldError {
            field: field.to_owned(),
            message: format!("this API key manages the keys of {owner} only"),
        }])
    }

    /// 403: a `test` key reaching for `live` keys.
    pub(super) fn environment_not_allowed(errors: Vec<FieldError>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "environment_not_allowed",
            "A `test` key cannot create, change or rotate `live` keys. Use a `live` key, or one \
             with the `admin` scope.",
        )
        .with_errors(errors)
    }

    /// 403: the key would be more powerful than the caller's own.
    pub(super) fn not_grantable(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let detail = format!(
            "A key can only create or change keys that are no more powerful than itself, and \
             cannot lift its own restrictions. Fix {}; `errors` says what this API key allows.",
            fields.join(", ")
        );
        Self::new(StatusCode::FORBIDDEN, "not_grantable", detail).with_errors(errors)
    }

    /// 404 `revoked`: the key was revoked, so it is gone from the routes on
    /// one key, as after any successful `DELETE`; the body carries its
    /// record as `key`.
    pub(super) fn revoked(view: &KeyView) -> Self {
        let at = view
            .revoked_at
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let problem = Self::new(
            StatusCode::NOT_FOUND,
            "revoked",
            format!(
                "This key was revoked at {at}: it can no longer be read, changed or rotated here. \
                 Listings with `status=revoked` still show it."
            ),
        );
        match serde_json::to_value(view) {
            Ok(key) => problem.with("key", key),
            Err(_) => problem,
        }
    }

    /// 409: the caller's key was revoked while it created a key.
    pub(super) fn creator_revoked() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "creator_revoked",
            "The API key making this request was revoked while the new key was being made, so \
             the new key was revoked with it.",
        )
    }

    /// 409: metering a key that was rotated away: only the key itself would
    /// be metered, not its successor.
    pub(super) fn superseded(successor: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "superseded",
            format!(
                "This key was rotated to {successor} and is not metered: metering it would leave \
                 its successor free. Change the credits of its newest successor instead (see \
                 `superseded_by`); keys rotated from a metered key spend its account."
            ),
        )
    }

    /// 409: rotating a key that is revoked, expired or already rotated.
    pub(super) fn not_rotatable() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "not_rotatable",
            "This key cannot be rotated: it is revoked, expired or already rotated. Rotate its \
             newest successor (see `superseded_by`), or create a new key.",
        )
    }

    /// 503: the store cannot answer.
    pub(super) fn unavailable(retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "The key store cannot answer right now. Retry after {retry_after} second{}.",
                if retry_after == 1 { "" } else { "s" }
            ),
        )
        .with_retry_after(retry_after)
    }

    /// 500, logged with its cause; the caller learns nothing about it.
    pub(super) fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(target: "keygate::manage", error = %cause, "key management failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The key could not be managed because of a server error. It has been logged.",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let Answer { body, retry_after } = *self.0;
        let mut res = body.into_response();
        if let Some(secs) = retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        res
    }
}
