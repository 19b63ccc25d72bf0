//! The authenticated key, as handlers see it.

use std::{fmt, sync::Arc};

use keygate_core::{CreditHints, Environment, KeyId, KeyInfo, Metadata, Owner, Scope, Scopes};
use time::OffsetDateTime;

use crate::{layer::Spent, rejection::RejectionRenderer};

/// The key that authenticated a request.
///
/// The layer puts it into the request's extensions; with the `axum` feature
/// it is an extractor. Cloning it is one `Arc` clone.
///
/// ```
/// use keygate::ApiKey;
///
/// async fn whoami(key: ApiKey) -> String {
///     format!("{} ({}), scopes {}", key.name(), key.owner(), key.scopes())
/// }
/// ```
///
/// Extracting `ApiKey` on a route keygate's layer does not cover is a
/// server misconfiguration and answers 500 saying so. In
/// [optional](crate::KeygateBuilder::optional) mode a request without a key
/// has none: take `Option<ApiKey>` there (plain `ApiKey` answers 401).
#[derive(Clone)]
pub struct ApiKey(
    Arc<KeyInfo>,
    AdmittedBy,
    Option<Spent>,
    Option<Arc<CreditHints>>,
);

/// Which [`Keygate`](crate::Keygate) admitted a key: layers of the same one
/// further in judge only their own rules against it instead of looking for
/// a credential that may have been stripped (and charging it twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AdmittedBy(pub(crate) u64);

impl ApiKey {
    /// The key `info` that `by` admitted; for a metered key, what it paid
    /// and its refusal hints, which layers further in use.
    pub(crate) fn new(
        info: Arc<KeyInfo>,
        by: AdmittedBy,
        spent: Option<Spent>,
        hints: Option<Arc<CreditHints>>,
    ) -> Self {
        Self(info, by, spent, hints)
    }

    /// A metered key's refusal hints.
    pub(crate) fn credit_hints(&self) -> Option<&Arc<CreditHints>> {
        self.3.as_ref()
    }

    pub(crate) fn admitted_by(&self) -> AdmittedBy {
        self.1
    }

    pub(crate) fn set_spent(&mut self, spent: Spent) {
        self.2 = Some(spent);
    }

    /// What the request paid in credits, if the key is metered.
    pub(crate) fn spent(&self) -> Option<Spent> {
        self.2
    }

    /// For a metered key, the credits left after this request was charged
    /// (also sent in the `X-Credits-Remaining` response header); `None`
    /// for a key that is not metered. On many nodes it is the balance as
    /// the bank answered this request's charge.
    pub fn credits_remaining(&self) -> Option<u64> {
        self.2.map(|s| s.remaining)
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.0.id
    }

    /// The key's rotation family (see [`KeyRecord::family`](keygate_core::KeyRecord::family)).
    pub fn family(&self) -> KeyId {
        self.0.family
    }

    /// Who the key belongs to.
    pub fn owner(&self) -> &Owner {
        &self.0.owner
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The key's scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.0.scopes
    }

    /// Whether the key may do what `scope` guards (`admin` may do everything).
    pub fn allows(&self, scope: &Scope) -> bool {
        self.0.scopes.allows(scope)
    }

    /// `live` or `test`.
    pub fn environment(&self) -> Environment {
        self.0.environment
    }

    /// The key's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.0.metadata
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.0.expires_at
    }

    /// The whole record the accessors above read from, as the verifier's
    /// cache holds it: clone the `Arc` to keep it past the request.
    pub fn info(&self) -> &Arc<KeyInfo> {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.0.id)
            .field("owner", &self.0.owner)
            .field("name", &self.0.name)
            .field("scopes", &self.0.scopes)
            .finish_non_exhaustive()
    }
}

/// Marks a request the layer let through without a key (optional mode), so
/// extractors can tell "no key" from "no layer".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anonymous;

/// What an extractor finds in the extensions.
pub(crate) fn lookup(ext: &http::Extensions) -> Result<Option<ApiKey>, crate::Rejection> {
    if let Some(key) = ext.get::<ApiKey>() {
        return Ok(Some(key.clone()));
    }
    if ext.get::<Anonymous>().is_some() {
        return Ok(None);
    }
    Err(crate::Rejection::LayerMissing)
}

/// The rejection of keygate's extractors: a [`Rejection`](crate::Rejection)
/// rendered the way the layer that admitted the request renders them
/// (its realm, header names and
/// [`on_rejection`](crate::KeygateBuilder::on_rejection) handler).
#[derive(Clone)]
pub struct ApiKeyRejection {
    rejection: crate::Rejection,
    renderer: Option<RejectionRenderer>,
}

impl ApiKeyRejection {
    #[cfg(feature = "axum")]
    pub(crate) fn new(rejection: crate::Rejection, ext: &http::Extensions) -> Self {
        Self {
            rejection,
            renderer: ext.get().cloned(),
        }
    }

    /// Why the extractor refused.
    pub fn rejection(&self) -> &crate::Rejection {
        &self.rejection
    }

    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        self.rejection.status()
    }

    /// The response, as the layer would render it.
    pub fn to_response(&self) -> http::Response<bytes::Bytes> {
        RejectionRenderer::render_with(self.renderer.as_ref(), &self.rejection)
    }
}

impl fmt::Debug for ApiKeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKeyRejection")
            .field(&self.rejection)
            .finish()
    }
}

impl fmt::Display for ApiKeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.rejection, f)
    }
}

impl std::error::Error for ApiKeyRejection {}

#[cfg(feature = "axum")]
mod axum_impls {
    use axum::{
        extract::{FromRequestParts, OptionalFromRequestParts},
        response::{IntoResponse, Response},
    };
    use http::request::Parts;

    use super::{ApiKey, ApiKeyRejection, lookup};
    use crate::Rejection;

    impl<S: Send + Sync> FromRequestParts<S> for ApiKey {
        type Rejection = ApiKeyRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            lookup(&parts.extensions)
                .and_then(|key| key.ok_or(Rejection::MissingKey))
                .map_err(|r| ApiKeyRejection::new(r, &parts.extensions))
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for ApiKey {
        type Rejection = ApiKeyRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            lookup(&parts.extensions).map_err(|r| ApiKeyRejection::new(r, &parts.extensions))
        }
    }

    impl IntoResponse for ApiKeyRejection {
        fn into_response(self) -> Response {
            self.to_response().map(axum::body::Body::from)
        }
    }
}
