//! The management API behind the application's own sign-in: who is
//! calling ([`Identity`]), how the router learns it ([`SelfService`]), and
//! how the OpenAPI document describes it ([`AuthScheme`]).

use std::{fmt, sync::Arc};

use http::{HeaderValue, StatusCode, header, request::Parts};
use keygate_core::{Owner, Scope, Scopes};

use crate::ApiKey;

/// Who is calling the [`self_service`](super::self_service) router, as the
/// application's own authentication says.
///
/// ```
/// use keygate::{core::Owner, manage::Identity};
///
/// let alice = Identity::person(Owner::user("alice"));
/// assert_eq!(alice.owner(), Some(&Owner::user("alice")));
/// assert!(!alice.is_operator());
/// assert!(Identity::operator(Owner::user("ops")).is_operator());
/// ```
#[derive(Clone, Debug)]
pub struct Identity(pub(super) Signed);

#[derive(Clone, Debug)]
pub(super) enum Signed {
    /// A person: the keys of `owner`, or everyone's for an operator.
    Person { owner: Owner, operator: bool },
    /// An API key, judged as the API-key-protected router judges it.
    Key(ApiKey),
}

impl Identity {
    /// A signed-in person whose keys belong to `owner` (usually
    /// `Owner::user(<their id>)`). They see and change the keys of `owner`
    /// only, and grant at most what [`SelfService::grantable_scopes`]
    /// allows. The audit trail names `owner` as the actor (`user:alice`).
    pub fn person(owner: Owner) -> Self {
        Self(Signed::Person {
            owner,
            operator: false,
        })
    }

    /// A signed-in operator: acts like an API key with `admin` (every
    /// owner's keys, any scope, no ceiling). `owner` is who the audit trail
    /// names, and whose keys a create without `owner` makes.
    pub fn operator(owner: Owner) -> Self {
        Self(Signed::Person {
            owner,
            operator: true,
        })
    }

    /// An API key the application's own layer admitted (for services where
    /// people and machines share the routes): judged exactly as by
    /// [`router`](super::router) — it needs `admin` or `keys:manage`, and a
    /// `keys:manage` key grants no more than it holds.
    pub fn api_key(key: ApiKey) -> Self {
        Self(Signed::Key(key))
    }

    /// Whose keys a person manages; `None` for an API key (see
    /// [`ApiKey::owner`]).
    pub fn owner(&self) -> Option<&Owner> {
        match &self.0 {
            Signed::Person { owner, .. } => Some(owner),
            Signed::Key(_) => None,
        }
    }

    /// Whether this is an [operator](Self::operator).
    pub fn is_operator(&self) -> bool {
        matches!(self.0, Signed::Person { operator: true, .. })
    }
}

/// How the [`self_service`](super::self_service) router learns who is
/// calling, what people may grant, and how its OpenAPI document describes
/// the sign-in.
///
/// The router asks an *identify* function, a plain `Fn(&Parts) ->
/// Option<Identity>`, on every request; `None` is a 401 `not_signed_in`.
/// It is synchronous on purpose: it only reads what the application's own
/// authentication has already established — a token it can verify on the
/// spot ([`SelfService::new`]), or an [`Identity`] its own auth layer put
/// into the request's extensions ([`SelfService::from_extension`]), which
/// is how axum hands data from middleware to handlers. Authentication that
/// must wait (a session store, a database) stays in the application's
/// layer, where it already is, and the router needs no state of the
/// application's.
#[derive(Clone)]
pub struct SelfService {
    identify: Arc<Identify>,
    pub(super) grantable: Scopes,
    pub(super) scheme: AuthScheme,
}

/// The application's answer to "who is calling?".
type Identify = dyn Fn(&Parts) -> Option<Identity> + Send + Sync;

impl fmt::Debug for SelfService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfService")
            .field("grantable", &self.grantable)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl SelfService {
    /// Who is calling, from the request's head: `identify` returns the
    /// [`Identity`], or `None` for a request that is not signed in.
    ///
    /// By default people may grant `read` and `write`
    /// ([`grantable_scopes`](Self::grantable_scopes)), and the document
    /// describes an `Authorization: Bearer` token ([`AuthScheme::bearer`]).
    pub fn new(identify: impl Fn(&Parts) -> Option<Identity> + Send + Sync + 'static) -> Self {
        Self {
            identify: Arc::new(identify),
            grantable: Scopes::from([Scope::READ, Scope::WRITE]),
            scheme: AuthScheme::bearer(),
        }
    }

    /// The [`Identity`] the application's own auth layer put into the
    /// request's extensions (`req.extensions_mut().insert(identity)`); none
    /// there is a 401.
    pub fn from_extension() -> Self {
        Self::new(|parts| parts.extensions.get::<Identity>().cloned())
    }

    /// The scopes a [person](Identity::person) may put on their keys:
    /// the ceiling of [`Grantor::person`](keygate_core::Grantor::person).
    /// Default: `read` and `write`.
    ///
    /// A person's key is never more powerful than this ceiling: no other
    /// scope, and, like a key made by a delegating key, no quota more
    /// generous than the service's default quota (nor none, when there is
    /// one) and no metadata (the application may read metadata as facts
    /// about a key, so only operators write it). Expiry, networks and
    /// environment are free within the service's own limits. Operators
    /// have no ceiling.
    ///
    /// # Panics
    ///
    /// If `scopes` holds `admin`: a key with `admin` manages every owner's
    /// keys, an operator's power. Create such keys as an operator.
    #[must_use]
    pub fn grantable_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        let scopes: Scopes = scopes.into_iter().collect();
        assert!(
            !scopes.contains(&Scope::ADMIN),
            "people may not grant `admin`: it manages every owner's keys; make such keys as an \
             operator"
        );
        self.grantable = scopes;
        self
    }

    /// How the OpenAPI document describes the sign-in (its security
    /// scheme), and the challenge a 401 carries. Default:
    /// [`AuthScheme::bearer`].
    #[must_use]
    pub fn auth_scheme(mut self, scheme: AuthScheme) -> Self {
        self.scheme = scheme;
        self
    }

    pub(super) fn identify(&self, parts: &Parts) -> Option<Identity> {
        (self.identify)(parts)
    }

    /// The answer to a request `identify` did not recognise: 401
    /// `not_signed_in`, problem+json, with the scheme's challenge.
    pub(super) fn not_signed_in(&self) -> axum::response::Response {
        let problem = crate::Problem::new(
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "Sign in first: managing your keys needs the application's own sign-in.",
        );
        let mut res = axum::response::IntoResponse::into_response(problem);
        if let Some(challenge) = self.scheme.challenge() {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        res
    }
}

/// How the application's sign-in travels, as the OpenAPI document of the
/// [`self_service`](super::self_service) router describes it (its security
/// scheme) — keygate itself never reads it: the identify function does.
///
/// ```
/// use keygate::manage::AuthScheme;
///
/// let jwt = AuthScheme::bearer().bearer_format("JWT");
/// let session = AuthScheme::cookie("session").description("The session cookie of /login");
/// ```
#[derive(Clone, Debug)]
pub struct AuthScheme {
    pub(super) kind: SchemeKind,
    pub(super) description: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) enum SchemeKind {
    Bearer { format: Option<String> },
    Cookie(String),
    Header(String),
}

impl AuthScheme {
    /// `Authorization: Bearer <token>`; 401s carry `WWW-Authenticate: Bearer`.
    pub fn bearer() -> Self {
        Self {
            kind: SchemeKind::Bearer { format: None },
            description: None,
        }
    }

    /// A cookie named `name` (a session cookie).
    pub fn cookie(name: impl Into<String>) -> Self {
        Self {
            kind: SchemeKind::Cookie(name.into()),
            description: None,
        }
    }

    /// A request header named `name` (set by a proxy in front, say).
    pub fn header(name: impl Into<String>) -> Self {
        Self {
            kind: SchemeKind::Header(name.into()),
            description: None,
        }
    }

    /// For a bearer scheme, what the token is (`JWT`); a hint for people.
    #[must_use]
    pub fn bearer_format(mut self, format: impl Into<String>) -> Self {
        if let SchemeKind::Bearer { format: f } = &mut self.kind {
            *f = Some(format.into());
        }
        self
    }

    /// What the document says about the sign-in: where to get the token or
    /// cookie, for people reading it.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// `WWW-Authenticate` for a 401 (RFC 6750 for bearer tokens; cookies
    /// and custom headers have no registered challenge).
    fn challenge(&self) -> Option<HeaderValue> {
        match self.kind {
            SchemeKind::Bearer { .. } => Some(HeaderValue::from_static("Bearer")),
            SchemeKind::Cookie(_) | SchemeKind::Header(_) => None,
        }
    }
}
