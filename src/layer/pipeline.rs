//! The request path, as functions of the layer's shared state and the
//! request: no service, no future. Each step ends in a [`Next`]; the
//! service and its future only carry it out (`future::settle`), so every
//! rule lives here once, and can be tested without a service.

use std::{
    ops::ControlFlow,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use keygate_core::{
    CachedKey, Check, Checked, Decision, Denied, KeyId, LimiterUnavailable, PendingCheck,
    PendingVerification, Scopes, StoreError, Verification,
};
use time::OffsetDateTime;

use super::peer_warning;
use crate::{
    ApiKey, Rejection,
    audit::{self, Reason},
    extract::Anonymous,
    handle::Shared,
    headers::{insert_rate_limit_headers, insert_sunset_headers},
    settings::Settings,
    source::SourceError,
};

/// What happens to a request next.
pub(super) enum Next {
    /// A layer of this `Keygate` further out admitted the key (and charged
    /// it), and this layer's own rules allow it: pass the request on as it
    /// is.
    Pass,
    /// No key, and the layer is optional: pass the request on without one.
    Anonymous,
    /// Admit the request with this key.
    Admit(Admission),
    /// Refuse the request.
    Refuse(Refusal),
    /// Park the request until the store or a remote limiter answers.
    Wait(Wait),
}

/// A key the request is admitted with.
pub(super) struct Admission {
    entry: Arc<CachedKey>,
    /// The limiter's decision, if the key is limited.
    decision: Option<Decision>,
    now: OffsetDateTime,
}

/// Why a request is refused, for its response and its audit event.
pub(super) struct Refusal {
    rejection: Rejection,
    key: Option<KeyId>,
    reason: Reason,
}

/// What a parked request waits for, and what it needs once answered.
pub(super) enum Wait {
    /// The store, for a key the cache does not hold; the verifier checks
    /// the key against what the store answers.
    Store {
        pending: PendingVerification,
        id: KeyId,
    },
    /// A remote limiter, for a key that passed every other check.
    Limiter {
        check: PendingCheck,
        entry: Arc<CachedKey>,
    },
}

impl Next {
    fn refuse(rejection: Rejection, key: Option<KeyId>, reason: Reason) -> Self {
        Self::Refuse(Refusal {
            rejection,
            key,
            reason,
        })
    }
}

/// Steps 1–6 for a request that just arrived, as far as they go without
/// waiting: extract and parse here; hash, look up and check in
/// [`Verifier::verify`](keygate_core::Verifier::verify); for a cached key
/// the rest.
pub(super) fn start<B>(shared: &Shared, req: &Request<B>) -> Next {
    let settings = &shared.settings;
    let admitted = req.extensions().get::<ApiKey>();
    if let Some(key) = admitted
        && key.admitted_by() == shared.runtime.instance
    {
        // A layer of this Keygate further out authenticated the key and
        // charged its quota (and may have stripped the credential): judge
        // only this layer's own rules.
        return match check_scopes(settings, key.scopes(), req) {
            Ok(()) => Next::Pass,
            Err((rejection, reason)) => Next::refuse(rejection, Some(key.id()), reason),
        };
    }
    let presented = match settings.sources.extract(req, settings.format.prefix()) {
        Ok(Some(p)) => p,
        // A key another Keygate admitted is not this layer's to wave
        // through as anonymous.
        Ok(None) if settings.optional && admitted.is_none() => return Next::Anonymous,
        Ok(None) => return Next::refuse(Rejection::MissingKey, None, Reason::Missing),
        Err(SourceError::Conflict) => {
            return Next::refuse(Rejection::ConflictingKeys, None, Reason::Conflicting);
        }
        Err(SourceError::Unreadable) => {
            return Next::refuse(Rejection::MalformedKey, None, Reason::UnreadableBytes);
        }
    };
    let parsed = match settings.format.parse(&presented) {
        Ok(p) => p,
        Err(e) => return Next::refuse(Rejection::MalformedKey, None, Reason::Parse(e)),
    };
    let id = parsed.id();
    if let Some(accepted) = settings.environments
        && parsed.environment() != accepted
    {
        let rejection = Rejection::WrongEnvironment {
            environment: parsed.environment(),
        };
        return Next::refuse(rejection, Some(id), Reason::Environment);
    }
    // The builder gives the verifier this same clock (one `Arc`), so the
    // checks a parked request gets from the verifier after a store lookup
    // tell the same time as the layer's.
    let now = settings.clock.now();
    match shared.runtime.verifier.verify(&parsed, now) {
        Verification::Found(checked) => decide(shared, checked, req),
        Verification::Unknown => Next::refuse(Rejection::InvalidKey, Some(id), Reason::UnknownKey),
        Verification::Loading(pending) => Next::Wait(Wait::Store { pending, id }),
        // Fails fast: queueing would hand the store's capacity to a flood of
        // forged ids. 503, never 401: the key may well be real.
        Verification::Busy => {
            Next::refuse(unavailable(settings), Some(id), Reason::UnknownLookupsBusy)
        }
    }
}

impl Wait {
    /// Polls what the request waits for; once it has answered, the step
    /// after it. Takes the wait by value so what it carries moves on.
    pub(super) fn poll<B>(
        self,
        cx: &mut Context<'_>,
        shared: &Shared,
        req: &Request<B>,
    ) -> ControlFlow<Next, Self> {
        match self {
            Self::Store { mut pending, id } => match Pin::new(&mut pending).poll(cx) {
                Poll::Pending => ControlFlow::Continue(Self::Store { pending, id }),
                Poll::Ready(loaded) => ControlFlow::Break(loaded_key(shared, req, id, loaded)),
            },
            Self::Limiter { mut check, entry } => match Pin::new(&mut check).poll(cx) {
                Poll::Pending => ControlFlow::Continue(Self::Limiter { check, entry }),
                Poll::Ready(result) => ControlFlow::Break(limited(shared, entry, &result)),
            },
        }
    }
}

/// Step 3's end, once the store has answered a miss (and the verifier has
/// checked the key against its answer, at the time it answered).
fn loaded_key<B>(
    shared: &Shared,
    req: &Request<B>,
    id: KeyId,
    loaded: Result<Option<Checked>, Arc<StoreError>>,
) -> Next {
    match loaded {
        Err(err) => {
            tracing::error!(target: audit::TARGET, error = %err, "key store unavailable");
            let rejection = unavailable(&shared.settings);
            Next::refuse(rejection, Some(id), Reason::StoreUnavailable)
        }
        Ok(None) => Next::refuse(Rejection::InvalidKey, Some(id), Reason::UnknownKey),
        Ok(Some(checked)) => decide(shared, checked, req),
    }
}

/// Steps 4–6 for a known key the verifier has checked (digest, revocation,
/// expiry): the IP allowlist, scope and quota, all at the time of its checks.
fn decide<B>(shared: &Shared, checked: Checked, req: &Request<B>) -> Next {
    let settings = &shared.settings;
    let now = checked.checked_at();
    // Only resolve the peer address for keys that have an allowlist: the
    // verifier answers `PeerUnknown` for those once every other check passed.
    let outcome = match checked.outcome() {
        Err(Denied::PeerUnknown) => checked.entry().check_peer(settings.peer(req)),
        other => other,
    };
    let entry = checked.into_entry();
    let id = Some(entry.info().id);
    if let Err(denied) = outcome {
        let (rejection, reason) = match denied {
            Denied::DigestMismatch => (Rejection::InvalidKey, Reason::DigestMismatch),
            Denied::Revoked => (Rejection::RevokedKey, Reason::Revoked),
            Denied::Expired => (Rejection::ExpiredKey, Reason::Expired),
            Denied::PeerUnknown => {
                peer_warning::peer_unknown(shared);
                (Rejection::IpNotAllowed, Reason::PeerUnknown)
            }
            _ => (Rejection::IpNotAllowed, Reason::IpNotAllowed),
        };
        return Next::refuse(rejection, id, reason);
    }
    if let Err((rejection, reason)) = check_scopes(settings, &entry.info().scopes, req) {
        return Next::refuse(rejection, id, reason);
    }
    let Some(quotas) = entry.rate_limit().or(settings.default_quota.as_ref()) else {
        return Next::Admit(Admission {
            entry,
            decision: None,
            now,
        });
    };
    match shared.runtime.limiter.check(entry.info().family, quotas) {
        Check::Ready(result) => match limit_verdict(settings, &result) {
            Ok(decision) => Next::Admit(Admission {
                entry,
                decision: Some(decision),
                now,
            }),
            Err((rejection, reason)) => Next::refuse(rejection, id, reason),
        },
        Check::Pending(check) => Next::Wait(Wait::Limiter { check, entry }),
    }
}

/// Step 6's end, once a remote limiter has answered.
fn limited(
    shared: &Shared,
    entry: Arc<CachedKey>,
    result: &Result<Decision, LimiterUnavailable>,
) -> Next {
    let id = Some(entry.info().id);
    let now = shared.settings.clock.now();
    match limit_verdict(&shared.settings, result) {
        // The round trip took time: the key may have expired meanwhile, and
        // expiry is exact.
        Ok(_) if entry.expires_at().is_some_and(|at| now >= at) => {
            Next::refuse(Rejection::ExpiredKey, id, Reason::Expired)
        }
        Ok(decision) => Next::Admit(Admission {
            entry,
            decision: Some(decision),
            now,
        }),
        Err((rejection, reason)) => Next::refuse(rejection, id, reason),
    }
}

/// Step 5's scope part: the scope the request needs under the layer's
/// protocol, then any the layer itself requires.
fn check_scopes<B>(
    settings: &Settings,
    scopes: &Scopes,
    req: &Request<B>,
) -> Result<(), (Rejection, Reason)> {
    let required = settings
        .required_scope(req)
        .map_err(|rejection| (rejection, Reason::WrongProtocol))?;
    if let Some(required) = required
        && !scopes.allows(required)
    {
        let rejection = Rejection::InsufficientScope {
            required: required.clone(),
        };
        return Err((rejection, Reason::Scope));
    }
    if let Some(required) = settings.extra_scopes.iter().find(|s| !scopes.allows(s)) {
        let rejection = Rejection::InsufficientScope {
            required: required.clone(),
        };
        return Err((rejection, Reason::RouteScope));
    }
    Ok(())
}

/// Step 6's verdict: the decision of a limiter that allowed the request.
fn limit_verdict(
    settings: &Settings,
    result: &Result<Decision, LimiterUnavailable>,
) -> Result<Decision, (Rejection, Reason)> {
    match *result {
        Ok(decision) if decision.allowed => Ok(decision),
        Ok(decision) => Err((Rejection::RateLimited { decision }, Reason::RateLimited)),
        Err(_) => Err((unavailable(settings), Reason::LimiterUnavailable)),
    }
}

/// The 503 for a store or limiter that cannot answer.
fn unavailable(settings: &Settings) -> Rejection {
    Rejection::Unavailable {
        retry_after: settings.unavailable_retry_after,
    }
}

/// Steps 7–9 for an admitted request: count usage, audit, strip the
/// credential, attach the key. Returns what the response gets added.
pub(super) fn admit<B>(
    shared: &Shared,
    req: &mut Request<B>,
    admission: Admission,
) -> AddedHeaders {
    let settings = &shared.settings;
    let Admission {
        entry,
        decision,
        now,
    } = admission;
    entry.record_use(now);
    let sunset = entry
        .expires_at()
        .filter(|at| entry.is_superseded() || *at - now <= settings.expiry_warning);
    audit::admitted(shared, req, entry.info().id, sunset, entry.is_superseded());
    if settings.strip {
        settings.sources.strip(req, settings.format.prefix());
    } else {
        settings
            .sources
            .mark_sensitive(req, settings.format.prefix());
    }
    req.extensions_mut().insert(ApiKey::new(
        Arc::clone(entry.info()),
        shared.runtime.instance,
    ));
    attach_renderer(settings, req);
    AddedHeaders {
        decision: decision.filter(|_| settings.rate_limit_headers),
        sunset,
    }
}

/// A request without a key on an optional layer: audit it, and mark it so
/// extractors tell "no key" from "no layer".
pub(super) fn pass_anonymous<B>(shared: &Shared, req: &mut Request<B>) {
    audit::anonymous(shared, req);
    req.extensions_mut().insert(Anonymous);
    attach_renderer(&shared.settings, req);
}

/// Route layers and extractors further in render refusals like the layer.
fn attach_renderer<B>(settings: &Settings, req: &mut Request<B>) {
    if let Some(renderer) = settings.renderer_ext() {
        req.extensions_mut().insert(renderer.clone());
    }
}

/// A refused request: its audit event and its response.
pub(super) fn refuse<B>(shared: &Shared, req: &Request<B>, refusal: &Refusal) -> Response<Bytes> {
    let Refusal {
        rejection,
        key,
        reason,
    } = refusal;
    audit::rejected(shared, req, rejection, *key, *reason);
    shared.settings.reject(rejection)
}

/// What an admitted request's response gets added: the quota, if the
/// layer sends it on success, and the reminder of a key's end.
#[derive(Debug, Default)]
pub(super) struct AddedHeaders {
    decision: Option<Decision>,
    sunset: Option<OffsetDateTime>,
}

impl AddedHeaders {
    /// Adds `RateLimit-*`, `Sunset` and `Deprecation` as due.
    pub(super) fn add_to(&self, headers: &mut HeaderMap) {
        if let Some(d) = &self.decision {
            insert_rate_limit_headers(headers, d);
        }
        if let Some(at) = self.sunset {
            insert_sunset_headers(headers, at);
        }
    }
}

#[cfg(test)]
mod tests;
