//! The audit stream: one `tracing` event per authentication attempt, on
//! target `keygate::audit`.
//!
//! Fields: `outcome` (`ok` or a rejection code), `reason` (finer detail for
//! operators, e.g. `checksum`, `unknown_key`, `digest_mismatch`), `key_id`
//! (the public id, never the key), `method`, `path` and `peer`. Rejections
//! are logged at `INFO`; admissions at `INFO` unless
//! [`KeygateBuilder::audit_admitted_level`](crate::KeygateBuilder::audit_admitted_level)
//! says otherwise. Requests without a key in optional mode are logged at
//! `DEBUG` with outcome `anonymous`. Admitted requests of keys near expiry
//! or in a rotation grace period add `reminder` (`expires_soon`,
//! `rotated_grace_period`) and `sunset`.
//!
//! With [`KeygateBuilder::audit_log`](crate::KeygateBuilder::audit_log) the
//! same attempts are also persisted, batched, off the request path.

use http::{Method, Request};
use keygate_core::{AuditAction, AuditEvent, KeyId, ParseError, Scope};
use time::OffsetDateTime;
use tracing::Level;

use crate::{ApiKey, Rejection, handle::Shared};

/// The `tracing` target of audit events: the same as keygate-core's
/// management events and audit log diagnostics.
pub use keygate_core::AUDIT_TARGET as TARGET;

pub(crate) fn admitted<B>(
    shared: &Shared,
    req: &Request<B>,
    id: KeyId,
    sunset: Option<OffsetDateTime>,
    superseded: bool,
) {
    let reminder = match (sunset, superseded) {
        (Some(_), true) => Some("rotated_grace_period"),
        (Some(_), false) => Some("expires_soon"),
        (None, _) => None,
    };
    // `event!` needs its level at compile time: one call site per level.
    macro_rules! admitted_at {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                outcome = "ok",
                key_id = id.as_str(),
                method = %req.method(),
                path = req.uri().path(),
                peer = shared.settings.peer(req).map(tracing::field::display),
                reminder,
                sunset = sunset.map(tracing::field::display),
            )
        };
    }
    match shared.settings.audit_admitted_level {
        Level::ERROR => admitted_at!(Level::ERROR),
        Level::WARN => admitted_at!(Level::WARN),
        Level::INFO => admitted_at!(Level::INFO),
        Level::DEBUG => admitted_at!(Level::DEBUG),
        _ => admitted_at!(Level::TRACE),
    }
    persist(shared, req, "ok", reminder, Some(id));
}

/// Queues the attempt on the persisted audit log, if one is configured.
fn persist<B>(
    shared: &Shared,
    req: &Request<B>,
    outcome: &str,
    detail: Option<&str>,
    key_id: Option<KeyId>,
) {
    if let Some(log) = &shared.runtime.audit_log {
        log.record(AuditEvent {
            at: shared.settings.clock.now(),
            action: AuditAction::Authenticate,
            outcome: outcome.to_owned(),
            detail: detail.map(str::to_owned),
            key_id,
            actor: None,
            method: Some(req.method().as_str().to_owned()),
            path: Some(req.uri().path().to_owned()),
            peer: shared.settings.peer(req),
        });
    }
}

pub(crate) fn rejected<B>(
    shared: &Shared,
    req: &Request<B>,
    rejection: &Rejection,
    id: Option<KeyId>,
    reason: Reason,
) {
    tracing::info!(
        target: TARGET,
        outcome = rejection.code(),
        reason = reason.as_str(),
        status = rejection.status().as_u16(),
        key_id = id.as_ref().map(KeyId::as_str),
        method = %req.method(),
        path = req.uri().path(),
        peer = shared.settings.peer(req).map(tracing::field::display),
    );
    persist(shared, req, rejection.code(), Some(reason.as_str()), id);
}

pub(crate) fn anonymous<B>(shared: &Shared, req: &Request<B>) {
    tracing::debug!(
        target: TARGET,
        outcome = "anonymous",
        method = %req.method(),
        path = req.uri().path(),
        peer = shared.settings.peer(req).map(tracing::field::display),
    );
}

/// A key held by a route-level check ([`require_scope`](crate::require_scope)
/// or [`RequireScope`](crate::RequireScope)) lacks the scope it needs. The
/// layer has already admitted the request, so this is a second event for it.
pub(crate) fn scope_refused(
    reason: Reason,
    key: &ApiKey,
    required: &Scope,
    method: &Method,
    path: &str,
) {
    tracing::info!(
        target: TARGET,
        outcome = "insufficient_scope",
        reason = reason.as_str(),
        status = 403u16,
        key_id = key.id().as_str(),
        required = required.as_str(),
        method = %method,
        path,
    );
}

/// Why a request was refused, finer than its [`Rejection`]: the `reason`
/// of its audit event (and the `detail` of its persisted record). The
/// strings are part of the audit log's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No key in the request.
    Missing,
    /// Two different keys in one request.
    Conflicting,
    /// A value with bytes outside visible ASCII.
    UnreadableBytes,
    /// The key did not parse; which check failed.
    Parse(ParseError),
    /// A key of an environment the layer does not accept.
    Environment,
    /// No stored key has this id.
    UnknownKey,
    /// Too many lookups of ids not known to exist are in flight.
    UnknownLookupsBusy,
    /// The store could not answer.
    StoreUnavailable,
    /// The id is known, the secret is not its.
    DigestMismatch,
    /// The key is revoked.
    Revoked,
    /// The key has expired.
    Expired,
    /// The key has an IP allowlist and the client address is unknown.
    PeerUnknown,
    /// The client address is not in the key's allowlist.
    IpNotAllowed,
    /// The request is not of the protocol the layer protects.
    WrongProtocol,
    /// The key lacks the scope the method needs.
    Scope,
    /// The key lacks a scope the layer, or a route layer, requires.
    RouteScope,
    /// The key lacks the scope a `RequireScope` extractor requires.
    #[cfg(feature = "axum")]
    ExtractorScope,
    /// The key's quota is used up.
    RateLimited,
    /// The rate limiter could not answer.
    LimiterUnavailable,
    /// The key's usage credits cannot pay for the request.
    UsageExceeded,
    /// The credit bank could not answer.
    CreditsUnavailable,
}

impl Reason {
    /// How usage history counts a refusal of the key's holder for this
    /// reason; `None` for reasons that are not about the key, or not its
    /// holder's (a digest that does not match).
    pub(crate) const fn refusal_kind(self) -> Option<keygate_core::RefusalKind> {
        use keygate_core::RefusalKind as K;
        match self {
            Self::Revoked => Some(K::Revoked),
            Self::Expired => Some(K::Expired),
            Self::PeerUnknown | Self::IpNotAllowed | Self::Scope | Self::RouteScope => {
                Some(K::Forbidden)
            }
            Self::RateLimited => Some(K::RateLimited),
            Self::UsageExceeded => Some(K::UsageExceeded),
            _ => None,
        }
    }

    /// The `reason` field's value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Conflicting => "conflicting",
            Self::UnreadableBytes => "unreadable_bytes",
            Self::Parse(ParseError::Empty) => "empty",
            Self::Parse(ParseError::Length) => "length",
            Self::Parse(ParseError::Prefix) => "prefix",
            Self::Parse(ParseError::Environment) => "environment_syntax",
            Self::Parse(ParseError::Alphabet) => "alphabet",
            Self::Parse(ParseError::Checksum) => "checksum",
            Self::Parse(_) => "malformed",
            Self::Environment => "environment",
            Self::UnknownKey => "unknown_key",
            Self::UnknownLookupsBusy => "unknown_lookups_busy",
            Self::StoreUnavailable => "store_unavailable",
            Self::DigestMismatch => "digest_mismatch",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::PeerUnknown => "peer_unknown",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::WrongProtocol => "wrong_protocol",
            Self::Scope => "scope",
            Self::RouteScope => "route_scope",
            #[cfg(feature = "axum")]
            Self::ExtractorScope => "extractor_scope",
            Self::RateLimited => "rate_limited",
            Self::LimiterUnavailable => "limiter_unavailable",
            Self::UsageExceeded => "usage_exceeded",
            Self::CreditsUnavailable => "credits_unavailable",
        }
    }
}
