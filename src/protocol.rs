//! Which rules judge a request: fixed when the layer is configured, never
//! chosen by the request.

/// The protocol a [`KeygateLayer`](crate::KeygateLayer) protects, which
/// decides both the scope rules it judges requests by and the form of its
/// refusals.
///
/// It is part of the layer's configuration, never read from the request: a
/// client that sends `content-type: application/grpc` to an HTTP route, or
/// a gRPC call without it, is judged by the rules of the layer it reaches.
///
/// | | `Http` (default) | `Grpc` |
/// |---|---|---|
/// | scope rules | [`MethodScopes`](crate::MethodScopes), by HTTP method | [`GrpcScopes`](crate::GrpcScopes), by method path |
/// | refusals | `application/problem+json` (or your [`on_rejection`](crate::KeygateBuilder::on_rejection) handler) | trailers-only gRPC responses |
/// | refused as `wrong_protocol` | requests with `content-type: application/grpc…` | anything but `POST /package.Service/Method` |
///
/// The refusals in the last row are not what keeps keys in their scopes
/// (the rules do that whatever the request says); they make a gRPC service
/// mounted behind an HTTP layer fail loudly instead of being judged by the
/// wrong rules.
///
/// ```
/// use axum::{Router, routing::get};
/// use keygate::{Keygate, core::MemoryStore};
/// # #[derive(Clone)] struct MyGrpcService;
/// # impl tower_service::Service<http::Request<axum::body::Body>> for MyGrpcService {
/// #     type Response = http::Response<axum::body::Body>;
/// #     type Error = std::convert::Infallible;
/// #     type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
/// #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> { std::task::Poll::Ready(Ok(())) }
/// #     fn call(&mut self, _: http::Request<axum::body::Body>) -> Self::Future { std::future::ready(Ok(http::Response::new(axum::body::Body::empty()))) }
/// # }
/// use keygate::Layer as _;
///
/// let keys = Keygate::builder(MemoryStore::new()).build();
/// let app: Router = Router::new()
///     .route("/notes", get(|| async { "notes" }))
///     .route_layer(keys.layer()) // HTTP rules
///     .route_service("/notes.v1.Notes/{*method}", keys.grpc_layer().layer(MyGrpcService));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP: the scope a request needs comes from its method.
    #[default]
    Http,
    /// gRPC: the scope a call needs comes from its method path
    /// (`/package.Service/Method`).
    Grpc,
}

impl Protocol {
    /// `"http"` or `"grpc"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
