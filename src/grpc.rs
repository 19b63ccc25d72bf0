//! gRPC: scopes from method paths, and rejections as gRPC statuses.
//!
//! The layer recognises a gRPC call by its `content-type: application/grpc…`
//! and answers it the way gRPC clients expect: a trailers-only response
//! (HTTP 200, `grpc-status`, `grpc-message`, no body). Plain HTTP requests on
//! the same server keep their HTTP rejections.
//!
//! | rejection | gRPC status |
//! |---|---|
//! | missing, malformed, invalid, revoked, expired key; wrong environment | `UNAUTHENTICATED` (16) |
//! | conflicting keys | `INVALID_ARGUMENT` (3) |
//! | scope, IP allowlist | `PERMISSION_DENIED` (7) |
//! | rate limited | `RESOURCE_EXHAUSTED` (8), with `retry-after` (seconds) and `grpc-retry-pushback-ms` metadata |
//! | store or limiter unavailable | `UNAVAILABLE` (14), with `retry-after` |
//! | layer missing | `INTERNAL` (13) |
//!
//! The key is read from the same places as for HTTP: `x-api-key` metadata,
//! and `authorization: Bearer` when enabled.

use std::{collections::HashMap, fmt::Write as _};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use keygate_core::Scope;

use crate::rejection::{Rejection, ceil_secs, insert_rate_limit_headers};

/// Whether a request is a gRPC call.
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Which scope a gRPC method needs.
///
/// Every gRPC call is a `POST`, so the HTTP method says nothing; the
/// method's name does. The default rule, on the method name (the part of
/// the path after the last `/`):
///
/// * `Get…`, `List…`, `Watch…`, `Search…` → `read`;
/// * `Delete…`, `Remove…` → `delete`;
/// * anything else → `write`.
///
/// Replace it per method (`/pkg.Service/Method`) or per service
/// (`pkg.Service`); the most specific entry wins.
///
/// ```
/// use keygate::GrpcScopes;
/// use keygate::core::Scope;
///
/// let scopes = GrpcScopes::default()
///     .service("grpc.health.v1.Health", None)
///     .method("/notes.v1.Notes/Export", Some(Scope::from_static("notes:export")));
/// assert_eq!(scopes.required("/notes.v1.Notes/GetNote"), Some(&Scope::READ));
/// assert_eq!(scopes.required("/notes.v1.Notes/CreateNote"), Some(&Scope::WRITE));
/// assert_eq!(scopes.required("/grpc.health.v1.Health/Check"), None);
/// ```
#[derive(Clone, Debug)]
pub struct GrpcScopes {
    methods: HashMap<Box<str>, Option<Scope>>,
    services: HashMap<Box<str>, Option<Scope>>,
    by_name: bool,
    fallback: Option<Scope>,
}

impl Default for GrpcScopes {
    fn default() -> Self {
        Self {
            methods: HashMap::new(),
            services: HashMap::new(),
            by_name: true,
            fallback: Some(Scope::WRITE),
        }
    }
}

impl GrpcScopes {
    /// No rule at all: methods need only what the tables say, others nothing.
    pub fn none() -> Self {
        Self {
            by_name: false,
            fallback: None,
            ..Self::default()
        }
    }

    /// `path` (`/pkg.Service/Method`) needs `scope` (`None`: no scope).
    #[must_use]
    pub fn method(mut self, path: &str, scope: Option<Scope>) -> Self {
        self.methods.insert(path.into(), scope);
        self
    }

    /// Every method of `service` (`pkg.Service`) needs `scope` unless a
    /// method entry says otherwise.
    #[must_use]
    pub fn service(mut self, service: &str, scope: Option<Scope>) -> Self {
        self.services.insert(service.into(), scope);
        self
    }

    /// The scope a call to `path` needs.
    pub fn required(&self, path: &str) -> Option<&Scope> {
        if let Some(scope) = self.methods.get(path) {
            return scope.as_ref();
        }
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let (service, method) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        if let Some(scope) = self.services.get(service) {
            return scope.as_ref();
        }
        if !self.by_name {
            return self.fallback.as_ref();
        }
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| method.starts_with(p));
        if starts(&["Get", "List", "Watch", "Search"]) {
            Some(&Scope::READ)
        } else if starts(&["Delete", "Remove"]) {
            Some(&Scope::DELETE)
        } else {
            self.fallback.as_ref()
        }
    }
}

impl Rejection {
    /// The gRPC status code (see the [module docs](crate::grpc)).
    pub fn grpc_code(&self) -> u16 {
        match self.status() {
            StatusCode::UNAUTHORIZED => 16,
            StatusCode::BAD_REQUEST => 3,
            StatusCode::FORBIDDEN => 7,
            StatusCode::TOO_MANY_REQUESTS => 8,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            _ => 13,
        }
    }

    /// This rejection as a gRPC trailers-only response.
    pub fn to_grpc_response(&self) -> Response<Bytes> {
        let mut res = Response::new(Bytes::new());
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", self.grpc_code().into());
        let message = format!("{}: {}", self.code(), self.detail());
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
            h.insert("grpc-message", v);
        }
        add_retry_metadata(self, h);
        res
    }
}

fn add_retry_metadata(rejection: &Rejection, h: &mut HeaderMap) {
    match rejection {
        Rejection::RateLimited { decision } => {
            h.insert(header::RETRY_AFTER, ceil_secs(decision.retry_after).into());
            let ms = u64::try_from(decision.retry_after.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            h.insert("grpc-retry-pushback-ms", ms.into());
            insert_rate_limit_headers(h, decision);
        }
        Rejection::Unavailable { retry_after } => {
            h.insert(header::RETRY_AFTER, ceil_secs(*retry_after).into());
        }
        _ => {}
    }
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec asks: bytes
/// outside printable ASCII, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(feature = "tonic")]
mod tonic_impls {
    use super::Rejection;
    use crate::ApiKey;

    impl From<Rejection> for tonic::Status {
        fn from(r: Rejection) -> Self {
            let message = format!("{}: {}", r.code(), r.detail());
            match r.grpc_code() {
                16 => Self::unauthenticated(message),
                3 => Self::invalid_argument(message),
                7 => Self::permission_denied(message),
                8 => Self::resource_exhausted(message),
                14 => Self::unavailable(message),
                _ => Self::internal(message),
            }
        }
    }

    /// Reads the authenticated key in a tonic handler.
    ///
    /// ```
    /// use keygate::grpc::GrpcRequestExt;
    ///
    /// fn owner_of(request: &tonic::Request<()>) -> Result<String, tonic::Status> {
    ///     Ok(request.api_key()?.owner().to_string())
    /// }
    /// ```
    pub trait GrpcRequestExt {
        /// The key that authenticated this call; `UNAUTHENTICATED` if the
        /// call had none (optional mode), `INTERNAL` if keygate's layer does
        /// not wrap this service.
        fn api_key(&self) -> Result<ApiKey, tonic::Status>;

        /// The key, if the call had one.
        fn maybe_api_key(&self) -> Result<Option<ApiKey>, tonic::Status>;
    }

    impl<T> GrpcRequestExt for tonic::Request<T> {
        fn api_key(&self) -> Result<ApiKey, tonic::Status> {
            self.maybe_api_key()?
                .ok_or_else(|| Rejection::MissingKey.into())
        }

        fn maybe_api_key(&self) -> Result<Option<ApiKey>, tonic::Status> {
            crate::extract::lookup(self.extensions()).map_err(Into::into)
        }
    }
}

#[cfg(feature = "tonic")]
pub use tonic_impls::GrpcRequestExt;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keygate_core::Decision;

    use super::*;

    #[test]
    fn default_rule_and_overrides() {
        let s = GrpcScopes::default();
        assert_eq!(s.required("/a.B/GetThing"), Some(&Scope::READ));
        assert_eq!(s.required("/a.B/ListThings"), Some(&Scope::READ));
        assert_eq!(s.required("/a.B/DeleteThing"), Some(&Scope::DELETE));
        assert_eq!(s.required("/a.B/CreateThing"), Some(&Scope::WRITE));
        let s = s
            .service("a.B", Some(Scope::ADMIN))
            .method("/a.B/GetThing", None);
        assert_eq!(s.required("/a.B/GetThing"), None);
        assert_eq!(s.required("/a.B/ListThings"), Some(&Scope::ADMIN));
        assert_eq!(GrpcScopes::none().required("/a.B/DeleteThing"), None);
    }

    #[test]
    fn rejections_are_trailers_only() {
        let d = Decision {
            allowed: false,
            quota: keygate_core::Quota::per_second(5),
            remaining: 0,
            reset: Duration::from_secs(1),
            retry_after: Duration::from_millis(1500),
        };
        let res = Rejection::RateLimited { decision: d }.to_grpc_response();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "8");
        assert_eq!(res.headers()["retry-after"], "2");
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "1500");
        assert!(res.body().is_empty());
        let res = Rejection::InvalidKey.to_grpc_response();
        assert_eq!(res.headers()["grpc-status"], "16");
        assert!(
            res.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .starts_with("invalid_key")
        );
        assert_eq!(percent_encode("a%b\né"), "a%25b%0A%C3%A9");
    }
}
