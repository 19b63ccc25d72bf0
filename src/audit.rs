//! The audit stream: one `tracing` event per authentication attempt, on
//! target `keygate::audit`.
//!
//! Fields: `outcome` (`ok` or a rejection code), `reason` (finer detail for
//! operators, e.g. `checksum`, `unknown_key`, `digest_mismatch`), `key_id`
//! (the public id, never the key), `method`, `path` and `peer`. Requests
//! without a key in optional mode are logged at `DEBUG` with outcome
//! `anonymous`.

use http::Request;
use keygate_core::KeyId;

use crate::{Rejection, keygate::Shared};

/// The `tracing` target of audit events.
pub const TARGET: &str = "keygate::audit";

pub(crate) fn admitted<B>(shared: &Shared, req: &Request<B>, id: KeyId) {
    tracing::info!(
        target: "keygate::audit",
        outcome = "ok",
        key_id = id.as_str(),
        method = %req.method(),
        path = req.uri().path(),
        peer = shared.peer(req).map(tracing::field::display),
    );
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
