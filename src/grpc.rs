//! gRPC: scopes from method paths, and rejections as gRPC statuses.
//!
//! A layer protects gRPC services when it is configured to
//! ([`Keygate::grpc_layer`](crate::Keygate::grpc_layer), or
//! [`Protocol::Grpc`](crate::Protocol) on the builder or a layer); nothing in
//! the request chooses. Such a layer judges every request by its method path
//! with [`GrpcScopes`], refuses anything that is not a gRPC call
//! (`POST /package.Service/Method`, service and method made of letters,
//! digits, `_` and, in the service, `.`), and answers every refusal the way
//! gRPC clients expect: a trailers-only response (HTTP 200, `grpc-status`,
//! `grpc-message`, no body). An HTTP layer refuses gRPC calls instead
//! (`wrong_protocol`), so a gRPC service mounted behind the wrong layer fails
//! loudly rather than being judged by HTTP method rules.
//!
//! | rejection | gRPC status |
//! |---|---|
//! | missing, malformed, invalid, revoked, expired key; wrong environment | `UNAUTHENTICATED` (16) |
//! | conflicting keys | `INVALID_ARGUMENT` (3) |
//! | scope, IP allowlist | `PERMISSION_DENIED` (7) |
//! | rate limited | `RESOURCE_EXHAUSTED` (8), with `retry-after` (seconds) and `grpc-retry-pushback-ms` metadata |
//! | store or limiter unavailable | `UNAVAILABLE` (14), with `retry-after` |
//! | not a gRPC call (`wrong_protocol`) | `INVALID_ARGUMENT` (3) |
//! | layer missing | `INTERNAL` (13) |
//!
//! The key is read from the same places as for HTTP: `x-api-key` metadata,
//! and `authorization: Bearer` when enabled.

use std::{collections::HashMap, fmt::Write as _};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use keygate_core::Scope;

use crate::{
    headers::{insert_credits_header, insert_rate_limit_headers},
    rejection::{Rejection, ceil_secs},
};

/// Whether a request says it is a gRPC (or gRPC-Web) call. Only an HTTP
/// layer asks, to refuse it: what a request says never picks the rules.
pub(crate) fn claims_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether `path` is a gRPC method path, `/package.Service/Method`: the
/// only paths a gRPC layer can judge. Names are protobuf identifiers, so
/// nothing percent-encoded, no empty or extra segments.
pub(crate) fn is_call_path(path: &str) -> bool {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return false;
    };
    let ident = |s: &str, dots: bool| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
    };
    ident(service, true) && ident(method, false)
}

/// Which scope a gRPC method needs.
///
/// Every gRPC call is a `POST`, so the HTTP method says nothing; the
/// method's name does. The default rule reads the method name (the part of
/// the path after the last `/`) as CamelCase words:
///
/// * a word that destroys (`Delete`, `Remove`, `Purge`, `Clear`, `Erase`,
///   `Destroy`, `Drop`, `Truncate`, `Wipe`) anywhere → `delete`
///   (`DeleteNote`, `BatchDeleteNotes`, `PurgeCache`), or `admin` when a
///   word joins it with another action (`Or`, `And`, `Then`:
///   `DeleteAndRecreate`, `ListAndDeleteNotes`);
/// * first word `Get`, `List`, `Watch` or `Search` → `read`, unless a later
///   word changes something (`Create`, `Update`, `Set`, …) or joins another
///   action: `GetOrCreateNote` is not a read;
/// * anything else → `write`.
///
/// Only whole words count: `Getaway` is not a read, `Removed` not a
/// deletion.
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
        match NameRule::of(method) {
            NameRule::Read => Some(&Scope::READ),
            NameRule::Delete => Some(&Scope::DELETE),
            NameRule::Combined => Some(&Scope::ADMIN),
            NameRule::Other => self.fallback.as_ref(),
        }
    }
}

/// What the default rule makes of a method name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameRule {
    Read,
    Delete,
    /// A deletion joined with another action.
    Combined,
    Other,
}

impl NameRule {
    const READS: [&'static str; 4] = ["Get", "List", "Watch", "Search"];
    const DESTROYS: [&'static str; 9] = [
        "Delete", "Remove", "Purge", "Clear", "Erase", "Destroy", "Drop", "Truncate", "Wipe",
    ];
    const JOINS: [&'static str; 3] = ["Or", "And", "Then"];
    const CHANGES: [&'static str; 14] = [
        "Create", "Update", "Set", "Put", "Insert", "Upsert", "Write", "Patch", "Add", "Modify",
        "Replace", "Reset", "Move", "Rename",
    ];

    fn of(method: &str) -> Self {
        let mut words = camel_words(method);
        let Some(first) = words.next() else {
            return Self::Other;
        };
        let mut destroys = Self::DESTROYS.contains(&first);
        let (mut joins, mut changes) = (false, false);
        for word in words {
            joins |= Self::JOINS.contains(&word);
            changes |= Self::CHANGES.contains(&word);
            destroys |= Self::DESTROYS.contains(&word);
        }
        if destroys {
            if joins { Self::Combined } else { Self::Delete }
        } else if Self::READS.contains(&first) && !joins && !changes {
            Self::Read
        } else {
            Self::Other
        }
    }
}

/// `GetOrCreateNote` → `Get`, `Or`, `Create`, `Note`; digits and `_` end a
/// word (`Get_note` → `Get`, `note`).
fn camel_words(name: &str) -> impl Iterator<Item = &str> {
    let bytes = name.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < bytes.len() && !bytes[start].is_ascii_alphabetic() {
            start += 1;
        }
        if start >= bytes.len() {
            return None;
        }
        let mut end = start + 1;
        while end < bytes.len() && bytes[end].is_ascii_lowercase() {
            end += 1;
        }
        let word = &name[start..end];
        start = end;
        Some(word)
    })
}

/// The gRPC status codes keygate answers with (gRPC's `statuscodes.md`).
mod code {
    pub(super) const INVALID_ARGUMENT: u16 = 3;
    pub(super) const PERMISSION_DENIED: u16 = 7;
    pub(super) const RESOURCE_EXHAUSTED: u16 = 8;
    pub(super) const INTERNAL: u16 = 13;
    pub(super) const UNAVAILABLE: u16 = 14;
    pub(super) const UNAUTHENTICATED: u16 = 16;
}

impl Rejection {
    /// The gRPC status code (see the [module docs](crate::grpc)).
    pub fn grpc_code(&self) -> u16 {
        match self.status() {
            StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
            StatusCode::BAD_REQUEST => code::INVALID_ARGUMENT,
            StatusCode::FORBIDDEN => code::PERMISSION_DENIED,
            StatusCode::TOO_MANY_REQUESTS => code::RESOURCE_EXHAUSTED,
            StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
            _ => code::INTERNAL,
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
        // An HTTP 200 that a shared cache must never keep.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
        Rejection::UsageExceeded {
            remaining,
            retry_after,
            ..
        } => {
            insert_credits_header(h, *remaining);
            if let Some(wait) = retry_after {
                h.insert(header::RETRY_AFTER, ceil_secs(*wait).into());
            }
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
    use super::{Rejection, code};
    use crate::ApiKey;

    impl From<Rejection> for tonic::Status {
        fn from(r: Rejection) -> Self {
            let message = format!("{}: {}", r.code(), r.detail());
            match r.grpc_code() {
                code::UNAUTHENTICATED => Self::unauthenticated(message),
                code::INVALID_ARGUMENT => Self::invalid_argument(message),
                code::PERMISSION_DENIED => Self::permission_denied(message),
                code::RESOURCE_EXHAUSTED => Self::resource_exhausted(message),
                code::UNAVAILABLE => Self::unavailable(message),
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
    fn names_that_join_or_change_are_not_reads() {
        let s = GrpcScopes::default();
        for (method, scope) in [
            ("GetOrCreateNote", &Scope::WRITE),
            ("ListAndUpdate", &Scope::WRITE),
            ("GetThenSetFlag", &Scope::WRITE),
            ("SearchCreateRequests", &Scope::WRITE),
            ("ListAndDeleteNotes", &Scope::ADMIN),
            ("DeleteAndRecreate", &Scope::ADMIN),
            ("CreateOrRemove", &Scope::ADMIN),
            ("Getaway", &Scope::WRITE),
            ("Removed", &Scope::WRITE),
            ("GetUpdates", &Scope::READ),
            ("Get", &Scope::READ),
            ("Get_note", &Scope::READ),
            ("ListNotesV2", &Scope::READ),
            ("DeleteNote", &Scope::DELETE),
            ("BatchDeleteNotes", &Scope::DELETE),
            ("BulkRemoveNotes", &Scope::DELETE),
            ("PurgeNotes", &Scope::DELETE),
            ("ClearCache", &Scope::DELETE),
            ("GetAndWipe", &Scope::ADMIN),
            ("ListDroppedNotes", &Scope::READ),
            ("getNote", &Scope::WRITE),
        ] {
            assert_eq!(
                s.required(&format!("/a.B/{method}")),
                Some(scope),
                "{method}"
            );
        }
    }

    #[test]
    fn only_method_paths_are_calls() {
        for ok in ["/a.B/C", "/notes.v1.Notes/GetNote", "/x/y_z9"] {
            assert!(is_call_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "//",
            "/a.B/",
            "//GetNote",
            "/a.B/Get/Note",
            "/a.B/Get%4Eote",
            "a.B/C",
            "/a.B/C ",
            "/a.B/C.D",
            "/a-b/C",
            "/a.B/Ünï",
        ] {
            assert!(!is_call_path(bad), "{bad}");
        }
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
        let res = Rejection::UsageExceeded {
            remaining: 2,
            cost: 5,
            retry_after: Some(Duration::from_millis(3500)),
        }
        .to_grpc_response();
        assert_eq!(res.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
        assert_eq!(res.headers()["retry-after"], "4");
        assert_eq!(res.headers()["x-credits-remaining"], "2");
        assert!(
            res.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .starts_with("usage_exceeded: ")
        );
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
