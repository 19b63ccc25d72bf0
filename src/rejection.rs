//! Why a request was refused, and how that becomes a response.

use std::{fmt, sync::LazyLock, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use keygate_core::{Decision, Environment, Quota, Scope};

use crate::{Problem, Protocol};

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
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            Self::Unavailable { .. } => "unavailable",
            Self::LayerMissing => "layer_missing",
            Self::WrongProtocol { .. } => "wrong_protocol",
        }
    }

    /// A message for the caller that says what to do.
    pub fn detail(&self) -> String {
        self.detail_with("the `X-API-Key` header")
    }

    fn detail_with(&self, where_: &str) -> String {
        match self {
            Self::MissingKey => format!("This request needs an API key. Send it in {where_}."),
            Self::MalformedKey => format!(
                "The API key is malformed. Send the whole key exactly as it was issued, in {where_}."
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

    pub(crate) fn render(&self, ctx: &RenderContext) -> Response<Bytes> {
        let problem = Problem::new(self.status(), self.code(), self.detail_with(&ctx.where_));
        let problem = match self {
            Self::InsufficientScope { required } => {
                problem.with("required_scope", required.as_str())
            }
            Self::RateLimited { decision } => {
                problem.with("retry_after", ceil_secs(decision.retry_after))
            }
            Self::Unavailable { retry_after } => {
                problem.with("retry_after", ceil_secs(*retry_after))
            }
            _ => problem,
        };
        let mut res = problem.to_response();
        let headers = res.headers_mut();
        match self {
            Self::RateLimited { decision } => {
                headers.insert(header::RETRY_AFTER, ceil_secs(decision.retry_after).into());
                insert_rate_limit_headers(headers, decision);
            }
            Self::Unavailable { retry_after } => {
                headers.insert(header::RETRY_AFTER, ceil_secs(*retry_after).into());
            }
            _ => {
                if let Some(challenge) = ctx.challenge(self) {
                    headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
                }
            }
        }
        res
    }

    /// Where this rejection's `WWW-Authenticate` challenge is in
    /// [`RenderContext::challenges`] (and its code in [`CHALLENGED`]);
    /// `None` for everything but a 401.
    fn challenge_slot(&self) -> Option<usize> {
        match self {
            Self::MissingKey => Some(0),
            Self::MalformedKey => Some(1),
            Self::InvalidKey => Some(2),
            Self::RevokedKey => Some(3),
            Self::ExpiredKey => Some(4),
            Self::WrongEnvironment { .. } => Some(5),
            _ => None,
        }
    }
}

/// The codes of the rejections answered with a 401 and a `WWW-Authenticate`
/// challenge, in [`Rejection::challenge_slot`] order. `missing_key` gets
/// the bare challenge; the others add `error="<code>"`.
const CHALLENGED: [&str; 6] = [
    "missing_key",
    "malformed_key",
    "invalid_key",
    "revoked_key",
    "expired_key",
    "wrong_environment",
];

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

/// Adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
pub(crate) fn insert_rate_limit_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert(RATELIMIT_LIMIT, d.quota.limit().into());
    headers.insert(RATELIMIT_REMAINING, d.remaining.into());
    let reset = d.reset.as_secs() + u64::from(d.reset.subsec_nanos() > 0);
    headers.insert(RATELIMIT_RESET, reset.into());
}

/// Adds `Sunset` (RFC 8594, an HTTP-date) and `Deprecation` (RFC 9745, a
/// structured date `@<unix seconds>`) for a key that stops working at `at`.
pub(crate) fn insert_sunset_headers(headers: &mut HeaderMap, at: time::OffsetDateTime) {
    const IMF_FIXDATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    // `to_offset` panics when the UTC form is out of `time`'s range; a
    // record from a store the application wrote itself may hold anything.
    let Some(utc) = at.checked_to_offset(time::UtcOffset::UTC) else {
        return;
    };
    if let Ok(date) = utc.format(IMF_FIXDATE)
        && let Ok(v) = HeaderValue::from_str(&date)
    {
        headers.insert(SUNSET, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("@{}", utc.unix_timestamp())) {
        headers.insert(DEPRECATION, v);
    }
}

const SUNSET: http::HeaderName = http::HeaderName::from_static("sunset");
const DEPRECATION: http::HeaderName = http::HeaderName::from_static("deprecation");
const RATELIMIT_LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: http::HeaderName = http::HeaderName::from_static("ratelimit-reset");

/// How a layer renders rejections: its challenge and wording, and the
/// application's handler if it set one. Shared by the layer and, through
/// request extensions, by route layers and extractors, so one API answers
/// in one format.
#[derive(Clone)]
pub(crate) struct Renderer {
    pub(crate) ctx: RenderContext,
    pub(crate) handler: Option<crate::RejectionHandler>,
    /// The layer's protocol: a gRPC layer answers every refusal as a gRPC
    /// status, whatever the request looks like.
    pub(crate) protocol: Protocol,
}

impl Renderer {
    pub(crate) fn render(&self, rejection: &Rejection) -> Response<Bytes> {
        match (self.protocol, &self.handler) {
            (Protocol::Grpc, _) => rejection.to_grpc_response(),
            (_, Some(handler)) => handler(rejection),
            (_, None) => rejection.render(&self.ctx),
        }
    }

    /// Whether this renders exactly like [`Rejection::to_response`].
    pub(crate) fn is_default(&self) -> bool {
        self.protocol == Protocol::Http
            && self.handler.is_none()
            && self.ctx == *RenderContext::default_ref()
    }
}

/// What rendering needs from the layer's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RenderContext {
    pub(crate) where_: Box<str>,
    /// The `WWW-Authenticate` value of each 401, indexed by
    /// [`Rejection::challenge_slot`]: built once here, so a rejection only
    /// clones one.
    challenges: [HeaderValue; CHALLENGED.len()],
}

impl RenderContext {
    pub(crate) fn new(realm: &str, header: &str, where_: String) -> Self {
        let quote = |s: &str| s.replace(['"', '\\'], "");
        let params = format!("realm=\"{}\", header=\"{}\"", quote(realm), quote(header));
        // Only a realm or header name with characters a header value cannot
        // hold fails; then the challenge goes without them.
        let challenges = CHALLENGED.map(|code| {
            challenge(&params, code)
                .or_else(|| challenge("", code))
                .unwrap_or_else(|| HeaderValue::from_static("ApiKey"))
        });
        Self {
            where_: where_.into_boxed_str(),
            challenges,
        }
    }

    /// The rendering of [`Rejection::to_response`], built once.
    pub(crate) fn default_ref() -> &'static Self {
        static DEFAULT: LazyLock<RenderContext> = LazyLock::new(|| {
            RenderContext::new("api", "X-API-Key", "the `X-API-Key` header".to_owned())
        });
        &DEFAULT
    }

    /// The `WWW-Authenticate` challenge for a rejection, if it is a 401.
    pub(crate) fn challenge(&self, rejection: &Rejection) -> Option<&HeaderValue> {
        self.challenges.get(rejection.challenge_slot()?)
    }
}

/// `ApiKey {params}`, adding `error="{code}"` for every 401 but
/// `missing_key`.
fn challenge(params: &str, code: &str) -> Option<HeaderValue> {
    let mut value = format!("ApiKey {params}");
    if code != "missing_key" {
        if !params.is_empty() {
            value.push_str(", ");
        }
        value.push_str("error=\"");
        value.push_str(code);
        value.push('"');
    }
    HeaderValue::from_str(value.trim_end()).ok()
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
    fn a_realm_a_header_cannot_hold_is_left_out_of_the_challenge() {
        let ctx = RenderContext::new("caf\u{e9}\nbar", "X-API-Key", "there".to_owned());
        assert_eq!(ctx.challenge(&Rejection::MissingKey).unwrap(), "ApiKey");
        assert_eq!(
            ctx.challenge(&Rejection::RevokedKey).unwrap(),
            r#"ApiKey error="revoked_key""#
        );
        assert_eq!(ctx.challenge(&Rejection::IpNotAllowed), None);
        let ctx = RenderContext::new(r#"my "notes\ api"#, "X-Notes-Key", "there".to_owned());
        assert_eq!(
            ctx.challenge(&Rejection::MalformedKey).unwrap(),
            r#"ApiKey realm="my notes api", header="X-Notes-Key", error="malformed_key""#
        );
    }

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

    #[test]
    fn every_case_renders_problem_json() {
        let d = Decision {
            allowed: false,
            quota: Quota::per_second(5),
            remaining: 0,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(200),
        };
        for r in [
            Rejection::MissingKey,
            Rejection::MalformedKey,
            Rejection::ConflictingKeys,
            Rejection::InvalidKey,
            Rejection::RevokedKey,
            Rejection::ExpiredKey,
            Rejection::WrongEnvironment {
                environment: Environment::Test,
            },
            Rejection::InsufficientScope {
                required: Scope::WRITE,
            },
            Rejection::IpNotAllowed,
            Rejection::RateLimited { decision: d },
            Rejection::Unavailable {
                retry_after: Duration::from_secs(1),
            },
            Rejection::LayerMissing,
        ] {
            let res = r.to_response();
            assert_eq!(res.status(), r.status());
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
            assert_eq!(v["code"], r.code());
            assert_eq!(v["status"], r.status().as_u16());
            assert!(!v["detail"].as_str().unwrap().is_empty());
            assert_eq!(
                res.headers().contains_key("www-authenticate"),
                r.status() == StatusCode::UNAUTHORIZED,
                "{r}"
            );
            if let Some(challenge) = res.headers().get("www-authenticate") {
                let challenge = challenge.to_str().unwrap();
                assert!(
                    challenge.starts_with(r#"ApiKey realm="api", header="X-API-Key""#),
                    "{challenge}"
                );
                let error = challenge
                    .split_once(", error=")
                    .map(|(_, e)| e.trim_matches('"'));
                let expected = (r != Rejection::MissingKey).then(|| r.code());
                assert_eq!(
                    error, expected,
                    "the challenge's error is the code: {challenge}"
                );
            }
        }
        let r = Rejection::RateLimited { decision: d };
        assert!(
            r.detail().ends_with("Retry after 1 second."),
            "{}",
            r.detail()
        );
        let slow = Rejection::Unavailable {
            retry_after: Duration::from_millis(2500),
        };
        assert!(
            slow.detail().ends_with("Retry after 3 seconds."),
            "{}",
            slow.detail()
        );
        let res = Rejection::RateLimited { decision: d }.to_response();
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["ratelimit-limit"], "5");
        assert_eq!(res.headers()["ratelimit-remaining"], "0");
        assert_eq!(res.headers()["ratelimit-reset"], "2");
    }
}
