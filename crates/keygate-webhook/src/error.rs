//! [`WebhookError`]: why a webhook was refused, and the one place a refusal
//! becomes an HTTP answer.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use keygate::Problem;

use crate::Scheme;

/// Why a webhook was refused. Each variant has its own HTTP status and
/// problem `code` ([`status`](Self::status), [`code`](Self::code)); the
/// layer answers with [`to_response`](Self::to_response).
///
/// | variant | status | `code` |
/// |---|---|---|
/// | [`MissingHeader`](Self::MissingHeader) | 400 | `missing_signature` |
/// | [`MalformedHeader`](Self::MalformedHeader) | 400 | `malformed_signature` |
/// | [`InvalidSignature`](Self::InvalidSignature) | 401 | `invalid_signature` |
/// | [`TimestampOutOfTolerance`](Self::TimestampOutOfTolerance) | 401 | `timestamp_out_of_tolerance` |
/// | [`Replayed`](Self::Replayed) | 401 | `replayed_message` |
/// | [`PayloadTooLarge`](Self::PayloadTooLarge) | 413 | `payload_too_large` |
/// | [`UnreadableBody`](Self::UnreadableBody) | 400 | `unreadable_body` |
///
/// No variant carries a signature, a secret or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A header the scheme needs is absent.
    #[error("the `{header}` header is missing")]
    MissingHeader {
        /// The header's name, lowercase.
        header: &'static str,
    },
    /// A header is present but cannot be read: not ASCII, sent twice, a
    /// timestamp that is not a number of seconds, no signature of the
    /// version this crate checks, and the like.
    #[error("the `{header}` header is malformed: {reason}")]
    MalformedHeader {
        /// The header's name, lowercase.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No signature in the request matches its id, timestamp and body
    /// under any of the endpoint's secrets.
    #[error("no signature matches the message under this endpoint's secrets")]
    InvalidSignature,
    /// The timestamp is further from the server's clock than the
    /// tolerance, in the past or in the future.
    #[error("the timestamp is more than {}s away from the server's clock", tolerance.as_secs())]
    TimestampOutOfTolerance {
        /// The tolerance the endpoint allows, either way.
        tolerance: Duration,
    },
    /// A message with this id (Standard Webhooks) or this timestamp and
    /// body (Stripe) was already accepted within the tolerance window.
    #[error("this message was already received")]
    Replayed,
    /// The body is longer than the endpoint accepts (by its
    /// `Content-Length`, or as it streamed in).
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The endpoint's limit, in bytes.
        limit: u64,
    },
    /// The body failed while it was read (the client went away, a
    /// protocol error).
    #[error("the body could not be read")]
    UnreadableBody,
}

impl WebhookError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHeader { .. } | Self::MalformedHeader { .. } | Self::UnreadableBody => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidSignature | Self::TimestampOutOfTolerance { .. } | Self::Replayed => {
                StatusCode::UNAUTHORIZED
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The stable, machine-readable `code` of the problem body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader { .. } => "missing_signature",
            Self::MalformedHeader { .. } => "malformed_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
            Self::Replayed => "replayed_message",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnreadableBody => "unreadable_body",
        }
    }

    /// The refusal as keygate's `application/problem+json` [`Problem`],
    /// with a `detail` that tells the sender what to do and, where it
    /// helps, a member naming the header, the tolerance or the limit.
    pub fn problem(&self, scheme: Scheme) -> Problem {
        let problem = Problem::new(self.status(), self.code(), self.detail(scheme));
        match self {
            Self::MissingHeader { header } | Self::MalformedHeader { header, .. } => {
                problem.with("header", *header)
            }
            Self::TimestampOutOfTolerance { tolerance } => {
                problem.with("tolerance_seconds", tolerance.as_secs())
            }
            Self::PayloadTooLarge { limit } => problem.with("max_body_size", *limit),
            _ => problem,
        }
    }

    /// The HTTP answer: the [`problem`](Self::problem), and on a 401 a
    /// `WWW-Authenticate` challenge naming the scheme and the code, e.g.
    /// `Webhook scheme="standard-webhooks", error="invalid_signature"`.
    pub fn to_response(&self, scheme: Scheme) -> Response<Bytes> {
        let mut res = self.problem(scheme).to_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                r#"Webhook scheme="{}", error="{}""#,
                scheme.as_str(),
                self.code()
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        res
    }

    fn detail(&self, scheme: Scheme) -> String {
        let how = match scheme {
            Scheme::StandardWebhooks => {
                "Sign each message as Standard Webhooks describes: `webhook-id`, \
                 `webhook-timestamp` and `webhook-signature: v1,<base64>`."
            }
            Scheme::Stripe => {
                "Sign each message as Stripe does: `Stripe-Signature: t=<seconds>,v1=<hex>`."
            }
        };
        match self {
            Self::MissingHeader { header } => format!("The `{header}` header is missing. {how}"),
            Self::MalformedHeader { header, reason } => {
                format!("The `{header}` header is malformed: {reason}. {how}")
            }
            Self::InvalidSignature => "No signature in the request matches its content under \
                this endpoint's secret. Sign the exact bytes sent, with the endpoint's current \
                secret."
                .to_owned(),
            Self::TimestampOutOfTolerance { tolerance } => format!(
                "The message's timestamp is more than {} seconds away from this server's clock. \
                 Sign with the current time, and check both clocks.",
                tolerance.as_secs()
            ),
            Self::Replayed => "This message was already received. Send each message once; a \
                message whose delivery failed may be sent again."
                .to_owned(),
            Self::PayloadTooLarge { limit } => {
                format!("The body is larger than the {limit} bytes this endpoint accepts.")
            }
            Self::UnreadableBody => "The request body could not be read to its end.".to_owned(),
        }
    }
}
