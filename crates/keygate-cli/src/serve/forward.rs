//! The auth endpoint: rebuilds the request a proxy describes and runs
//! keygate's layer on it, answering 200 with identity headers or the
//! layer's refusal.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use keygate::{ApiKey, Keygate, KeygateService, Layer as _, Problem, Rejection};
use tower::ServiceExt as _;
use tower_service::Service;

use super::{
    config::{Identity, Proxy, ServeConfig},
    metrics::Metrics,
    routes::{RouteTable, normalize_request_path},
};

/// What the auth endpoint needs, shared by every request.
pub(crate) struct Gate {
    proxy: Proxy,
    routes: RouteTable,
    /// One service per rule of `routes`, in its order: the layer with the
    /// rule's scope required.
    by_route: Vec<KeygateService<Admit>>,
    /// The layer for requests no rule covers.
    default: KeygateService<Admit>,
    remaining_from: HeaderName,
    remaining_to: HeaderName,
    credits_to: HeaderName,
    pub(crate) metrics: Arc<Metrics>,
}

impl Gate {
    pub(crate) fn new(keys: &Keygate, config: &ServeConfig, metrics: Arc<Metrics>) -> Self {
        let admit = Admit {
            identity: Arc::new(config.identity.clone()),
            metrics: Arc::clone(&metrics),
        };
        let by_route = config
            .routes
            .iter()
            .map(|route| {
                keys.layer()
                    .require_scope(route.scope.clone())
                    .layer(admit.clone())
            })
            .collect();
        Self {
            proxy: config.proxy.clone(),
            routes: config.routes.clone(),
            by_route,
            default: keys.layer().layer(admit),
            remaining_from: HeaderName::from_static("ratelimit-remaining"),
            remaining_to: config.identity.remaining.clone(),
            credits_to: config.identity.credits.clone(),
            metrics,
        }
    }
}

/// The auth endpoint's handler.
pub(crate) async fn auth(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let res = decide(&gate, peer, req).await;
    gate.metrics.answered_in(started.elapsed());
    res
}

async fn decide(gate: &Gate, peer: SocketAddr, req: Request) -> Response {
    let peer_ip = peer.ip().to_canonical();
    if !gate.proxy.trusted.iter().any(|net| net.contains(&peer_ip)) {
        // Someone other than our proxy: its headers describe nothing we
        // may believe, so there is nothing to judge.
        tracing::warn!(
            target: keygate::audit::TARGET,
            peer = %peer_ip,
            "auth request from an address that is not a trusted proxy"
        );
        return refuse(
            gate,
            &Refused::new(
                StatusCode::FORBIDDEN,
                "untrusted_proxy",
                "Only the configured proxies may ask this endpoint.",
            ),
        );
    }
    let (mut parts, _body) = req.into_parts();
    let original = match original_request(&gate.proxy, &parts.headers) {
        Ok(original) => original,
        Err(refused) => return refuse(gate, &refused),
    };
    if !gate.proxy.allow_method_override && overrides_method(&parts.headers, &original.uri) {
        // Some upstreams run the overriding method after keygate judged the
        // request's own: a `read` key's POST becomes a DELETE.
        return refuse(
            gate,
            &Refused::new(
                StatusCode::BAD_REQUEST,
                "method_override",
                "Method overrides (X-HTTP-Method-Override, _method) are not accepted: send the \
                 method itself.",
            ),
        );
    }
    parts.method = original.method;
    parts.uri = original.uri;
    // The description is consumed; the layer sees the original request.
    parts.headers.remove(&gate.proxy.method);
    parts.headers.remove(&gate.proxy.uri);
    let service = match gate.routes.find(&original.path, &parts.method) {
        Some(i) => gate.by_route[i].clone(),
        None => gate.default.clone(),
    };
    let Ok(res) = service
        .oneshot(Request::from_parts(parts, Body::empty()))
        .await;
    let (mut head, body) = res.into_parts();
    if head.status.is_success() {
        // Every identity header on every admission, empty when no quota
        // applies: a proxy that copies a header the answer lacks may pass
        // the client's own copy, or (Caddy 2.6) a placeholder, upstream.
        for (from, to) in [
            (&gate.remaining_from, &gate.remaining_to),
            (&keygate::CREDITS_REMAINING, &gate.credits_to),
        ] {
            let value = head
                .headers
                .get(from)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static(""));
            head.headers.insert(to.clone(), value);
        }
    }
    Response::from_parts(head, Body::new(body))
}

/// A refusal this module makes itself, before the layer runs.
#[derive(Debug)]
struct Refused {
    code: &'static str,
    problem: Problem,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            problem: Problem::new(status, code, detail),
        }
    }
}

fn refuse(gate: &Gate, refused: &Refused) -> Response {
    gate.metrics.decided(refused.code);
    let mut res = refused.problem.to_response();
    if let Some(header) = &gate.proxy.problem
        && let Ok(value) = HeaderValue::from_maybe_shared(res.body().clone())
    {
        res.headers_mut().insert(header.clone(), value);
    }
    res.map(Body::from)
}

/// The request as the proxy received it.
#[derive(Debug)]
struct Original {
    method: Method,
    uri: Uri,
    /// The path in matching form (see [`normalize_request_path`]).
    path: String,
}

/// Reads the proxy's description of the original request: exactly one of
/// each header, a method token and a request target.
fn original_request(proxy: &Proxy, headers: &HeaderMap) -> Result<Original, Refused> {
    let one = |name: &HeaderName| -> Result<&HeaderValue, Refused> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v),
            (None, _) => {
                tracing::error!(
                    target: keygate::audit::TARGET,
                    header = %name,
                    "the proxy did not send the original request's {name}; check its configuration"
                );
                Err(Refused::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "proxy_misconfigured",
                    format!("The proxy did not send {name}."),
                ))
            }
            (Some(_), Some(_)) => Err(malformed(&format!("{name} was sent more than once."))),
        }
    };
    // This proxy never sends the other kinds' description headers, so a
    // request that has one carries a client's attempt to write its own.
    if let Some(name) = proxy.foreign.iter().find(|h| headers.contains_key(*h)) {
        return Err(malformed(&format!(
            "{name} is not a header this proxy sets; the request cannot be described twice."
        )));
    }
    let method = Method::from_bytes(one(&proxy.method)?.as_bytes())
        .map_err(|_| malformed("The original method is not an HTTP method."))?;
    let target = one(&proxy.uri)?.as_bytes();
    let uri = Uri::try_from(target)
        .map_err(|_| malformed("The original request target is not a valid URI."))?;
    let path = std::str::from_utf8(target)
        .ok()
        .and_then(normalize_request_path)
        .ok_or_else(|| malformed("The original request target has no readable path."))?;
    Ok(Original { method, uri, path })
}

/// The headers and query parameter frameworks read a method override from.
const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether the original request asks the upstream to run another method
/// than its own.
fn overrides_method(headers: &HeaderMap, uri: &Uri) -> bool {
    OVERRIDE_HEADERS.iter().any(|h| headers.contains_key(*h))
        || uri.query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes())
                .any(|(name, _)| name.eq_ignore_ascii_case("_method"))
        })
}

fn malformed(detail: &str) -> Refused {
    Refused::new(StatusCode::BAD_REQUEST, "malformed_request", detail)
}

/// The service behind the layer: reached only by admitted requests, it
/// answers 200 with the key's identity for the proxy to hand upstream.
#[derive(Clone)]
pub(crate) struct Admit {
    identity: Arc<Identity>,
    metrics: Arc<Metrics>,
}

impl Service<Request> for Admit {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let mut res = StatusCode::OK.into_response();
        if let Some(key) = req.extensions().get::<ApiKey>() {
            self.metrics.decided("admitted");
            identify(&self.identity, key, res.headers_mut());
        } else {
            // The layer admits nothing without a key (serve never runs it
            // in optional mode); refuse rather than answer 200 anonymously.
            res = Rejection::MissingKey.to_response().map(Body::from);
        }
        ready(Ok(res))
    }
}

/// Writes the identity headers for `key`.
fn identify(identity: &Identity, key: &ApiKey, headers: &mut HeaderMap) {
    let scopes = key
        .scopes()
        .iter()
        .map(keygate_core::Scope::as_str)
        .collect::<Vec<_>>()
        .join(",");
    for (name, value) in [
        (&identity.key_id, key.id().to_string()),
        (&identity.owner, key.owner().to_string()),
        (&identity.name, key.name().to_owned()),
        (&identity.scopes, scopes),
        (&identity.environment, key.environment().as_str().to_owned()),
    ] {
        headers.insert(name.clone(), header_value(&value));
    }
}

/// A header value for text the key's owner chose (a name, an owner id):
/// printable ASCII as it is, anything else percent-encoded, so no value
/// can end a header or smuggle one.
fn header_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_chosen_text_cannot_break_a_header() {
        for (text, want) in [
            ("laptop", "laptop"),
            ("a b", "a b"),
            (
                "x\r\nX-Keygate-Owner: admin",
                "x%0D%0AX-Keygate-Owner: admin",
            ),
            ("caf\u{e9}", "caf%C3%A9"),
            ("100%", "100%25"),
            ("\u{7f}", "%7F"),
        ] {
            assert_eq!(header_value(text), want, "{text:?}");
        }
    }
}
