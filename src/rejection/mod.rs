//! Why a request was refused: [`Rejection`], its status, code and message.
//! How it becomes a response is in `render`.

mod render;

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{Response, StatusCode};
use keygate_core::{Decision, Environment, Quota, Scope};

pub(crate) use self::render::{RejectionRenderer, RenderContext, Renderer};
use crate::Protocol;

/// Why keygate refused a request.
///
/// Every variant has a stable machine-readable [`code`](Self::code), an HTTP
/// [`status`](Self::status) and a message for the caller that says what to do
/// ([`detail`](Self::detail)). The default response is an RFC 9457
/// `application/problem+json` body:
///
/// ```json
/// {"type":"about:blank","title":"Unauthorized","status":401,
///  "code":"invalid_key","detail":"The API key is not valid. …"}
/// ```
///
/// Every 401 also carries a `WWW-Authenticate` challenge, `ApiKey
/// realm="api", header="X-API-Key"` (with the layer's realm and header);
/// all but `missing_key` add their code as its `error` parameter, e.g.
/// `error="malformed_key"`.
///
/// Messages never include the presented key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No key in the request (401, `missing_key`).
    MissingKey,
    /// Something that is not a key of this application's format: wrong
    /// prefix, length, characters or checksum (401, `malformed_key`).
    MalformedKey,
    /// Two different keys in one request (400, `conflicting_keys`).
    ConflictingKeys,
    /// A well-formed key that matches no stored key (401, `invalid_key`).
    InvalidKey,
    /// A revoked key (401, `revoked_key`).
    RevokedKey,
    /// An expired key (401, `expired_key`).
    ExpiredKey,
    /// A key of an environment this service does not accept, e.g. a `test`
    /// key on a production server (401, `wrong_environment`).
    WrongEnvironment {
        /// The key's environment.
        environment: Environment,
    },
    /// The key lacks the scope the method or route needs (403,
    /// `insufficient_scope`).
    InsufficientScope {
        /// The scope that was needed.
        required: Scope,
    },
    /// The key may not be used from the client's address (403,
    /// `ip_not_allowed`).
    IpNotAllowed,
    /// The key has used up its quota (429, `rate_limited`).
    RateLimited {
        /// The limiter's decision, for the `Retry-After` and `RateLimit-*`
        /// headers.
        decision: Decision,
    },
    /// The key's usage credits cannot pay for the request (429,
    /// `usage_exceeded`): distinct from `rate_limited`, since waiting a
    /// second does not help; with `Retry-After` when the balance refills.
    UsageExceeded {
        /// Credits left (fewer than the request costs).
        remaining: u64,
        /// What the request costs.
        cost: u64,
        /// Time until the balance refills, if it does.
        retry_after: Option<Duration>,
    },
    /// The key store or rate limiter cannot answer (503, `unavailable`).
    /// Never reported as a 401.
    Unavailable {
        /// What to send in `Retry-After`.
        retry_after: Duration,
    },
    /// The `ApiKey` extractor ran on a route keygate's layer does not cover
    /// (500, `layer_missing`): a server misconfiguration.
    LayerMissing,
    /// The request is not of the protocol the layer protects, so the layer
    /// cannot judge it (400, `wrong_protocol`): a gRPC call reaching an HTTP
    /// layer, or anything but `POST /package.Service/Method` reaching a gRPC
    /// layer. See [`Protocol`].
    WrongProtocol {
        /// The protocol the layer protects.
        expected: Protocol,
    },
}

impl Rejection {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey
            | Self::MalformedKey
            | Self::InvalidKey
            | Self::RevokedKey
            | Self::ExpiredKey
            | Self::WrongEnvironment { .. } => StatusCode::UNAUTHORIZED,
            Self::ConflictingKeys | Self::WrongProtocol { .. } => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } | Self::IpNotAllowed => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } | Self::UsageExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code, e.g. `"invalid_key"`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_key",
            Self::MalformedKey => "malformed_key",
            Self::ConflictingKeys => "conflicting_keys",
            Self::InvalidKey => "invalid_key",
            Self::RevokedKey => "revoked_key",
            Self::ExpiredKey => "expired_key",
            Self::WrongEnvironment { .. } => "wrong_environment",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::UsageExceeded { .. } => "usage_exceeded",
            Self::Unavailable { .. } => "unavailable",
            Self::LayerMissing => "layer_missing",
            Self::WrongProtocol { .. } => "wrong_protocol",
        }
    }

    /// A message for the caller that says what to do.
    pub fn detail(&self) -> String {
        self.detail_with("the `X-API-Key` header")
    }

    /// The message, telling the caller to send the key in `key_sources`
    /// (the layer's key sources in words).
    fn detail_with(&self, key_sources: &str) -> String {
        match self {
            Self::MissingKey => format!("This request needs an API key. Send it in {key_sources}."),
            Self::MalformedKey => format!(
                "The API key is malformed. Send the whole key exactly as it was issued, in {key_sources}."
            ),
            Self::ConflictingKeys => "The request carries more than one different API key \
                (for example in a header and in the query string). Send exactly one."
                .to_owned(),
            Self::InvalidKey => "The API key is not valid. Check that it was copied completely, \
                or create a new key."
                .to_owned(),
            Self::RevokedKey => "This API key has been revoked. Use a current key, or ask the \
                key's owner for a new one."
                .to_owned(),
            Self::ExpiredKey => {
                "This API key has expired. Rotate it or create a new one.".to_owned()
            }
            Self::WrongEnvironment { environment } => format!(
                "This is a `{environment}` key, which this service does not accept. Use a key of \
                 the other environment."
            ),
            Self::InsufficientScope { required } => format!(
                "This API key lacks the `{required}` scope that this request needs. Use a key \
                 that has it."
            ),
            Self::IpNotAllowed => "This API key may not be used from your network address. \
                Call from an allowed network or use another key."
                .to_owned(),
            Self::RateLimited { decision } => format!(
                "This API key has used its quota of {}. Retry after {}.",
                describe_quota(decision.quota),
                seconds(ceil_secs(decision.retry_after))
            ),
            Self::UsageExceeded {
                remaining,
                cost,
                retry_after,
            } => {
                let left = match (remaining, cost) {
                    (0, _) => "has no usage credits left".to_owned(),
                    (n, c) => format!(
                        "has {n} usage credit{} left and this request costs {c}",
                        if *n == 1 { "" } else { "s" }
                    ),
                };
                match retry_after {
                    Some(wait) => format!(
                        "This API key {left}. Its credits refill in {}.",
                        seconds(ceil_secs(*wait))
                    ),
                    None => format!("This API key {left}. Ask the key's owner to top it up."),
                }
            }
            Self::Unavailable { retry_after } => format!(
                "API keys cannot be verified right now. Retry after {}.",
                seconds(ceil_secs(*retry_after))
            ),
            Self::LayerMissing => "Server misconfiguration: this route reads the API key but \
                keygate's layer does not cover it. Add `.layer(keys.layer())` to the router."
                .to_owned(),
            Self::WrongProtocol {
                expected: Protocol::Grpc,
            } => "This endpoint takes gRPC calls (`POST /package.Service/Method`); this request \
                is not one."
                .to_owned(),
            Self::WrongProtocol { .. } => "This endpoint takes plain HTTP requests, not gRPC \
                calls. (Server operators: put gRPC services behind `keys.grpc_layer()`.)"
                .to_owned(),
        }
    }

    /// The default response: problem+json body and the headers each case
    /// needs (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`).
    pub fn to_response(&self) -> Response<Bytes> {
        self.render(RenderContext::default_ref())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.status())
    }
}

impl std::error::Error for Rejection {}

/// `10 requests per second`, `1 request per 30 seconds`, `5 requests per
/// 250 ms`.
fn describe_quota(quota: Quota) -> String {
    const UNITS: [(u128, &str); 4] = [
        (86_400_000, "day"),
        (3_600_000, "hour"),
        (60_000, "minute"),
        (1_000, "second"),
    ];
    let n = quota.limit();
    let requests = if n == 1 { "request" } else { "requests" };
    let ms = quota.period().as_millis();
    let per = UNITS
        .iter()
        .find(|(unit, _)| ms.is_multiple_of(*unit))
        .map_or_else(
            || format!("{ms} ms"),
            |&(unit, name)| match ms / unit {
                1 => name.to_owned(),
                count => format!("{count} {name}s"),
            },
        );
    format!("{n} {requests} per {per}")
}

/// `1 second`, `2 seconds`.
fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".to_owned()
    } else {
        format!("{n} seconds")
    }
}

/// Whole seconds, rounded up, at least 1: a `Retry-After` of 0 invites an
/// immediate retry that would fail again.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Rejection {
    fn into_response(self) -> axum::response::Response {
        self.to_response().map(axum::body::Body::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_read_as_words() {
        assert_eq!(
            describe_quota(Quota::per_second(10)),
            "10 requests per second"
        );
        assert_eq!(describe_quota(Quota::per_day(1)), "1 request per day");
        let q = |n, ms| Quota::new(n, Duration::from_millis(ms)).unwrap();
        assert_eq!(describe_quota(q(3, 30_000)), "3 requests per 30 seconds");
        assert_eq!(describe_quota(q(3, 7_200_000)), "3 requests per 2 hours");
        assert_eq!(describe_quota(q(3, 250)), "3 requests per 250 ms");
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }
}
