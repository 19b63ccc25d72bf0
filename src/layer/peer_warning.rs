//! The one warning the layer logs: a key with an IP allowlist refused
//! because the client address is unknown, which is a server
//! misconfiguration that otherwise only shows as 403s.

use crate::handle::Shared;

/// The `tracing` target of the layer's own diagnostics (not the audit).
const TARGET: &str = "keygate::layer";

/// Logs, once per [`Keygate`](crate::Keygate), that a key with an IP
/// allowlist was refused because the client address is unknown, and how to
/// make it known for the way this layer looks for it. Says nothing about
/// the request or its key.
pub(super) fn peer_unknown(shared: &Shared) {
    if !shared.runtime.first_peer_unknown() {
        return;
    }
    let settings = &shared.settings;
    if settings.peer_fn.is_some() {
        tracing::warn!(
            target: TARGET,
            "A key with an IP allowlist was refused (403 ip_not_allowed) because the client \
             address is unknown: the `peer_addr_with` function returned none. Make it return \
             the address for every request. This warning is logged once."
        );
    } else if let Some(forwarded) = &settings.forwarded {
        tracing::warn!(
            target: TARGET,
            header = forwarded.header.as_str(),
            "A key with an IP allowlist was refused (403 ip_not_allowed) because the client \
             address is unknown: the trusted forwarding header is missing, has fewer entries \
             than `trusted_hops`, or its entry is not an IP address (with `trusted_proxies`, \
             the connection's address is needed too). Check that your proxy sets it on every \
             request, or work the address out with `peer_addr_with`. This warning is logged \
             once."
        );
    } else {
        tracing::warn!(
            target: TARGET,
            "A key with an IP allowlist was refused (403 ip_not_allowed) because the client \
             address is unknown: the request carries no `ConnectInfo<SocketAddr>`. Serve the \
             app with `app.into_make_service_with_connect_info::<SocketAddr>()` instead of \
             `axum::serve(listener, app)`, or configure `trust_forwarded_header` (behind a \
             proxy you control) or `peer_addr_with` on the `KeygateBuilder`. This warning is \
             logged once."
        );
    }
}
