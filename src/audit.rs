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

use http::Request;
use keygate_core::{AuditAction, AuditEvent, KeyId};
use time::OffsetDateTime;
use tracing::Level;

use crate::{Rejection, keygate::Shared};

/// The `tracing` target of audit events.
pub const TARGET: &str = "keygate::audit";

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
                target: "keygate::audit",
                $level,
                outcome = "ok",
                key_id = id.as_str(),
                method = %req.method(),
                path = req.uri().path(),
                peer = shared.peer(req).map(tracing::field::display),
                reminder,
                sunset = sunset.map(tracing::field::display),
            )
        };
    }
    match shared.audit_admitted_level {
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
    if let Some(log) = &shared.audit_log {
        log.record(AuditEvent {
            at: shared.clock.now(),
            action: AuditAction::Authenticate,
            outcome: outcome.to_owned(),
            detail: detail.map(str::to_owned),
            key_id,
            actor: None,
            method: Some(req.method().as_str().to_owned()),
            path: Some(req.uri().path().to_owned()),
            peer: shared.peer(req),
        });
    }
}

pub(crate) fn rejected<B>(
    shared: &Shared,
    req: &Request<B>,
    rejection: &Rejection,
    id: Option<KeyId>,
    reason: &'static str,
) {
    tracing::info!(
        target: "keygate::audit",
        outcome = rejection.code(),
        reason,
        status = rejection.status().as_u16(),
        key_id = id.as_ref().map(KeyId::as_str),
        method = %req.method(),
        path = req.uri().path(),
        peer = shared.peer(req).map(tracing::field::display),
    );
    persist(shared, req, rejection.code(), Some(reason), id);
}

pub(crate) fn anonymous<B>(shared: &Shared, req: &Request<B>) {
    tracing::debug!(
        target: "keygate::audit",
        outcome = "anonymous",
        method = %req.method(),
        path = req.uri().path(),
        peer = shared.peer(req).map(tracing::field::display),
    );
}
