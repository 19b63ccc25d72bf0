//! What a layer is configured with: where it reads keys, the rules it
//! judges them by, and how it answers. Fixed once built; the layer's
//! `method_scopes`, `require_scope`, `protocol`, … make a changed copy.

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use keygate_core::{Clock, Environment, KeyFormat, Quotas, Scope, SystemClock};

use crate::{
    GrpcScopes, KeySources, MethodScopes, Protocol, Rejection,
    peer::{self, Forwarded},
    rejection::{RejectionRenderer, Renderer},
};

/// Works the client address out of a request; see
/// [`KeygateBuilder::peer_addr_with`](crate::KeygateBuilder::peer_addr_with).
pub(crate) type PeerFn =
    Arc<dyn Fn(&http::Extensions, &http::HeaderMap) -> Option<IpAddr> + Send + Sync>;

/// A layer's settings (see [`KeygateBuilder`](crate::KeygateBuilder) for
/// what each means).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) format: KeyFormat,
    pub(crate) sources: KeySources,
    pub(crate) optional: bool,
    pub(crate) strip: bool,
    pub(crate) environments: Option<Environment>,
    pub(crate) protocol: Protocol,
    pub(crate) method_scopes: MethodScopes,
    pub(crate) grpc_scopes: GrpcScopes,
    /// Scopes the layer itself requires on top of the method's.
    pub(crate) extra_scopes: Vec<Scope>,
    pub(crate) default_quota: Option<Quotas>,
    /// What a request costs a metered key, in credits.
    pub(crate) credit_cost: u64,
    /// The clock expiry is judged against. Configuration, not state: it is
    /// chosen once and only read.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rate_limit_headers: bool,
    pub(crate) expiry_warning: time::Duration,
    pub(crate) unavailable_retry_after: Duration,
    pub(crate) forwarded: Option<Forwarded>,
    pub(crate) peer_fn: Option<PeerFn>,
    pub(crate) audit_admitted_level: tracing::Level,
    renderer: Arc<Renderer>,
    /// The renderer again, for request extensions, when it differs from the
    /// default: route layers and extractors then render like the layer.
    /// `None` costs an admitted request nothing.
    renderer_ext: Option<RejectionRenderer>,
}

impl Settings {
    /// The builder's defaults: `kg` keys in `X-API-Key`, HTTP rules,
    /// problem+json refusals, the system clock.
    pub(crate) fn new() -> Self {
        Self {
            format: KeyFormat::new("kg").unwrap_or_else(|_| unreachable!("valid default prefix")),
            sources: KeySources::default(),
            optional: false,
            strip: false,
            environments: None,
            protocol: Protocol::Http,
            method_scopes: MethodScopes::default(),
            grpc_scopes: GrpcScopes::default(),
            extra_scopes: Vec::new(),
            default_quota: None,
            credit_cost: 1,
            clock: Arc::new(SystemClock),
            rate_limit_headers: false,
            // The same window `status=expiring` and `keygate keys list
            // --status expiring` use.
            expiry_warning: time::Duration::try_from(keygate_core::DEFAULT_EXPIRY_WARNING)
                .unwrap_or(time::Duration::days(7)),
            unavailable_retry_after: Duration::from_secs(1),
            forwarded: None,
            peer_fn: None,
            audit_admitted_level: tracing::Level::INFO,
            renderer: Arc::new(Renderer::default()),
            renderer_ext: None,
        }
    }

    /// Protects `protocol`: its scope rules, and refusals in its form.
    pub(crate) fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        self.set_renderer(Renderer {
            protocol,
            ..(*self.renderer).clone()
        });
    }

    /// Renders refusals with `renderer`.
    pub(crate) fn set_renderer(&mut self, renderer: Renderer) {
        let renderer = Arc::new(renderer);
        self.renderer_ext =
            (!renderer.is_default()).then(|| RejectionRenderer(Arc::clone(&renderer)));
        self.renderer = renderer;
    }

    /// The response for a rejection, in the layer's protocol: a gRPC status
    /// on a gRPC layer, else the application's handler or problem+json.
    pub(crate) fn reject(&self, rejection: &Rejection) -> Response<Bytes> {
        self.renderer.render(rejection)
    }

    /// The renderer to put in a passed request's extensions, if it is not
    /// the default.
    pub(crate) fn renderer_ext(&self) -> Option<&RejectionRenderer> {
        self.renderer_ext.as_ref()
    }

    /// The scope a request needs under the layer's protocol: by its method
    /// (HTTP) or its method path (gRPC). A request of the other protocol
    /// cannot be judged and is refused.
    pub(crate) fn required_scope<B>(&self, req: &Request<B>) -> Result<Option<&Scope>, Rejection> {
        let wrong = || Rejection::WrongProtocol {
            expected: self.protocol,
        };
        match self.protocol {
            Protocol::Http if crate::grpc::claims_grpc(req) => Err(wrong()),
            Protocol::Http => Ok(self.method_scopes.required(req.method())),
            Protocol::Grpc
                if req.method() != http::Method::POST
                    || !crate::grpc::is_call_path(req.uri().path()) =>
            {
                Err(wrong())
            }
            Protocol::Grpc => Ok(self.grpc_scopes.required(req.uri().path())),
        }
    }

    /// The client's address: the trusted forwarding header if configured,
    /// else the connection's peer. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, what a dual-stack listener reports for IPv4
    /// clients) are read as the IPv4 address they carry, everywhere.
    pub(crate) fn peer<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        if let Some(f) = &self.peer_fn {
            return f(req.extensions(), req.headers()).map(|ip| ip.to_canonical());
        }
        let connection = peer::connection_ip(req.extensions());
        match &self.forwarded {
            Some(forwarded) => forwarded.client(req.headers(), connection),
            None => connection,
        }
    }
}
