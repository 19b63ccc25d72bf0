//! Audit events: one `tracing` event per judged webhook, on keygate's audit
//! target (`keygate::audit`), at `INFO`.
//!
//! Fields: `outcome` (`ok` or the refusal's code), `status` (refusals),
//! `scheme`, `webhook_id` (the Standard Webhooks id, once its header was
//! read and found well-formed), `timestamp` and `secret` (the index of the
//! matching secret) for accepted messages, `header` (which header was
//! missing or malformed), `method` and `path` (through the layer). Never a
//! secret, a signature or the body.

use keygate::audit::TARGET;

use crate::{Scheme, VerifiedWebhook, WebhookError, verify::RequestLine};

pub(crate) fn admitted(verified: &VerifiedWebhook, line: Option<RequestLine<'_>>) {
    tracing::info!(
        target: TARGET,
        outcome = "ok",
        scheme = verified.scheme().as_str(),
        webhook_id = verified.id(),
        timestamp = verified.timestamp(),
        secret = verified.secret_index(),
        method = line.map(|l| tracing::field::display(l.method)),
        path = line.map(|l| l.path),
    );
}

pub(crate) fn refused(
    scheme: Scheme,
    error: &WebhookError,
    webhook_id: Option<&str>,
    line: Option<RequestLine<'_>>,
) {
    let header = match error {
        WebhookError::MissingHeader { header } | WebhookError::MalformedHeader { header, .. } => {
            Some(*header)
        }
        _ => None,
    };
    tracing::info!(
        target: TARGET,
        outcome = error.code(),
        status = error.status().as_u16(),
        scheme = scheme.as_str(),
        webhook_id,
        header,
        method = line.map(|l| tracing::field::display(l.method)),
        path = line.map(|l| l.path),
    );
}
