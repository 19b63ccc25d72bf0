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
    CachedKey, Charge, Check, Checked, Decision, Denied, KeyId, LimiterUnavailable, PendingCheck,
    PendingVerification, Scopes, StoreError, Verification,
};
use time::OffsetDateTime;

use super::{
    credits::{self, ChargeGuard, Charged, Charging, PendingCharge, PendingRefund, Spent},
    peer_warning,
};
use crate::{
    ApiKey, Rejection,
    audit::{self, Reason},
    extract::Anonymous,
    handle::Shared,
    headers::{CREDITS_REMAINING, insert_rate_limit_headers, insert_sunset_headers},
    settings::Settings,
    source::SourceError,
};

/// What happens to a request next.
pub(super) enum Next {
    /// A layer of this `Keygate` further out admitted the key (and charged
    /// it), and this layer's own rules allow it: pass the request on, with
    /// what the key has now paid if this layer charged more.
    Pass(Option<Spent>),
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
    /// The credits paid, if the key is metered.
    paid: Option<ChargeGuard>,
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
    /// The credit bank, charging a metered key that passed every check
    /// before the rate limit's.
    Credits {
        charge: PendingCharge,
        entry: Arc<CachedKey>,
        spend: Spend,
    },
    /// A remote limiter, for a key that passed every other check (and paid
    /// its credits, if metered).
    Limiter {
        check: PendingCheck,
        entry: Arc<CachedKey>,
        paid: Option<ChargeGuard>,
    },
    /// The bank, for what a layer further in charges a key a layer further
    /// out admitted (and charged `paid`).
    Extra { charge: PendingCharge, more: More },
    /// The bank, giving back what a request refused after its charge paid;
    /// the refusal waits for it so the next request sees the balance whole.
    Refund {
        refund: PendingRefund,
        refusal: Refusal,
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
        if let Err((rejection, reason)) = check_scopes(settings, key.scopes(), req) {
            // A refused request costs no credits: what the layer further
            // out charged comes back.
            let refusal = Refusal {
                rejection,
                key: Some(key.id()),
                reason,
            };
            return refuse_and_refund(refusal, key.spent().map(|s| guard(shared, s)));
        }
        return charge_more(shared, key);
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
            Self::Credits {
                mut charge,
                entry,
                spend,
            } => match Pin::new(&mut charge).poll(cx) {
                Poll::Pending => ControlFlow::Continue(Self::Credits {
                    charge,
                    entry,
                    spend,
                }),
                Poll::Ready(charged) => ControlFlow::Break(paid(shared, entry, spend, charged)),
            },
            Self::Limiter {
                mut check,
                entry,
                paid,
            } => match Pin::new(&mut check).poll(cx) {
                Poll::Pending => ControlFlow::Continue(Self::Limiter { check, entry, paid }),
                Poll::Ready(result) => ControlFlow::Break(limited(shared, entry, &result, paid)),
            },
            Self::Extra { mut charge, more } => match Pin::new(&mut charge).poll(cx) {
                Poll::Pending => ControlFlow::Continue(Self::Extra { charge, more }),
                Poll::Ready(charged) => ControlFlow::Break(paid_more(shared, more, charged)),
            },
            Self::Refund {
                mut refund,
                refusal,
            } => match Pin::new(&mut refund).poll(cx) {
                Poll::Pending => ControlFlow::Continue(Self::Refund { refund, refusal }),
                Poll::Ready(()) => ControlFlow::Break(Next::Refuse(refusal)),
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
/// expiry): the IP allowlist, scope, credits and quota, all at the time of
/// its checks.
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
        return refuse_key(&entry, rejection, reason, now);
    }
    if let Err((rejection, reason)) = check_scopes(settings, &entry.info().scopes, req) {
        return refuse_key(&entry, rejection, reason, now);
    }
    match entry.credit_account() {
        Some(account) if settings.credit_cost > 0 => charge(shared, entry, account, now),
        _ => check_limit(shared, entry, now, None),
    }
}

/// Step 6's credits, before the quota: a charge the rate limit then
/// refuses is given back, where a rate-limit charge could not be.
fn charge(shared: &Shared, entry: Arc<CachedKey>, account: KeyId, now: OffsetDateTime) -> Next {
    let settings = &shared.settings;
    let cost = settings.credit_cost;
    if let Some(hints) = entry.credit_hints() {
        // A flood from a key its quota refuses, or whose balance cannot pay,
        // is refused here, without a round trip to the bank per request.
        if let Some(decision) = hints.limited(now)
            && quotas(settings, &entry).is_some()
        {
            let rejection = Rejection::RateLimited { decision };
            return refuse_key(&entry, rejection, Reason::RateLimited, now);
        }
        if let Some(charge) = hints.exhausted(cost, now) {
            let rejection = usage_exceeded(&charge, cost, now);
            return refuse_key(&entry, rejection, Reason::UsageExceeded, now);
        }
    }
    let spend = Spend { account, cost };
    match credits::charge(&shared.runtime.credits, account, cost, now) {
        Charging::Ready(charged) => paid(shared, entry, spend, charged),
        Charging::Pending(charge) => Next::Wait(Wait::Credits {
            charge,
            entry,
            spend,
        }),
    }
}

/// What a metered request is charged, and to which account.
#[derive(Clone, Copy, Debug)]
pub(super) struct Spend {
    account: KeyId,
    cost: u64,
}

/// Step 6's credits, once the bank has answered: the quota next if the
/// key paid.
fn paid(shared: &Shared, entry: Arc<CachedKey>, spend: Spend, charged: Charged) -> Next {
    let Spend { account, cost } = spend;
    let now = shared.settings.clock.now();
    let id = Some(entry.info().id);
    let charge = match charged {
        Err(err) => {
            tracing::error!(target: audit::TARGET, error = %err, "credit bank unavailable");
            let rejection = unavailable(&shared.settings);
            return Next::refuse(rejection, id, Reason::CreditsUnavailable);
        }
        Ok(charge) => charge.unwrap_or(NO_ACCOUNT),
    };
    if !charge.admitted {
        if let Some(hints) = entry.credit_hints() {
            hints.note_exhausted(charge, now);
        }
        let rejection = usage_exceeded(&charge, cost, now);
        return refuse_key(&entry, rejection, Reason::UsageExceeded, now);
    }
    let spent = Spent {
        account,
        cost,
        remaining: charge.remaining,
        period: charge.period,
    };
    let paid = Some(ChargeGuard::new(&shared.runtime.credits, spent));
    if entry.expires_at().is_some_and(|at| now >= at) {
        return expired_meanwhile(&entry, now, paid);
    }
    check_limit(shared, entry, now, paid)
}

/// What a metered key without an account gets from the bank: nothing to
/// spend.
const NO_ACCOUNT: Charge = Charge {
    admitted: false,
    remaining: 0,
    next_refill: None,
    period: None,
};

/// A key that expired while the bank or a remote limiter answered: the
/// round trip took time, and expiry is exact. What it paid comes back.
fn expired_meanwhile(entry: &CachedKey, now: OffsetDateTime, paid: Option<ChargeGuard>) -> Next {
    let reason = Reason::Expired;
    if let Some(kind) = reason.refusal_kind() {
        entry.record_refusal(kind, now);
    }
    let refusal = Refusal {
        rejection: Rejection::ExpiredKey,
        key: Some(entry.info().id),
        reason,
    };
    refuse_and_refund(refusal, paid)
}

/// The quotas a key is held to: its own, or the layer's default.
fn quotas<'a>(settings: &'a Settings, entry: &'a CachedKey) -> Option<&'a keygate_core::Quotas> {
    entry.rate_limit().or(settings.default_quota.as_ref())
}

/// Step 6's quota, for a key that passed every other check and paid what
/// it owes.
fn check_limit(
    shared: &Shared,
    entry: Arc<CachedKey>,
    now: OffsetDateTime,
    paid: Option<ChargeGuard>,
) -> Next {
    let Some(quotas) = quotas(&shared.settings, &entry) else {
        return Next::Admit(Admission {
            entry,
            decision: None,
            paid,
            now,
        });
    };
    match shared.runtime.limiter.check(entry.info().family, quotas) {
        Check::Ready(result) => limit_outcome(shared, entry, &result, paid, now),
        Check::Pending(check) => Next::Wait(Wait::Limiter { check, entry, paid }),
    }
}

/// Step 6's end, once a remote limiter has answered.
fn limited(
    shared: &Shared,
    entry: Arc<CachedKey>,
    result: &Result<Decision, LimiterUnavailable>,
    paid: Option<ChargeGuard>,
) -> Next {
    let now = shared.settings.clock.now();
    if matches!(result, Ok(d) if d.allowed) && entry.expires_at().is_some_and(|at| now >= at) {
        return expired_meanwhile(&entry, now, paid);
    }
    limit_outcome(shared, entry, result, paid, now)
}

/// What the limiter's answer makes of a request: admitted with what it
/// paid, or refused with its credits given back.
fn limit_outcome(
    shared: &Shared,
    entry: Arc<CachedKey>,
    result: &Result<Decision, LimiterUnavailable>,
    paid: Option<ChargeGuard>,
    now: OffsetDateTime,
) -> Next {
    match limit_verdict(&shared.settings, result) {
        Ok(decision) => Next::Admit(Admission {
            entry,
            decision: Some(decision),
            paid,
            now,
        }),
        Err((rejection, reason)) => {
            if let (Rejection::RateLimited { decision }, Some(hints)) =
                (&rejection, entry.credit_hints())
            {
                hints.note_limited(*decision, now);
            }
            if let Some(kind) = reason.refusal_kind() {
                entry.record_refusal(kind, now);
            }
            let refusal = Refusal {
                rejection,
                key: Some(entry.info().id),
                reason,
            };
            refuse_and_refund(refusal, paid)
        }
    }
}

/// A refusal of `entry`'s holder (its secret matched), counted in its
/// usage history.
fn refuse_key(
    entry: &CachedKey,
    rejection: Rejection,
    reason: Reason,
    now: OffsetDateTime,
) -> Next {
    if let Some(kind) = reason.refusal_kind() {
        entry.record_refusal(kind, now);
    }
    Next::refuse(rejection, Some(entry.info().id), reason)
}

/// A refusal that first gives back what the request paid, if anything.
fn refuse_and_refund(refusal: Refusal, paid: Option<ChargeGuard>) -> Next {
    match paid.and_then(ChargeGuard::give_back) {
        Some(refund) => Next::Wait(Wait::Refund { refund, refusal }),
        None => Next::Refuse(refusal),
    }
}

/// What a nested layer charges on top of what a layer further out did.
pub(super) struct More {
    account: KeyId,
    key: KeyId,
    /// The key's refusal hints.
    hints: Option<Arc<keygate_core::CreditHints>>,
    /// What the layer further out charged.
    paid: Option<Spent>,
    extra: u64,
}

/// A nested layer's charge: what its cost adds to what a layer further out
/// charged the metered key it admitted. A balance known to be too low for
/// the whole cost refuses at once, giving back what was paid further out.
fn charge_more(shared: &Shared, key: &ApiKey) -> Next {
    let Some(account) = key.info().credit_account else {
        return Next::Pass(None);
    };
    let cost = shared.settings.credit_cost;
    let paid = key.spent();
    let extra = cost.saturating_sub(paid.map_or(0, |p| p.cost));
    if extra == 0 {
        return Next::Pass(None);
    }
    let now = shared.settings.clock.now();
    let hints = key.credit_hints().cloned();
    // No usage count here: the layer further out counted the request as
    // admitted.
    if let Some(known) = hints.as_ref().and_then(|h| h.exhausted(cost, now)) {
        let refusal = Refusal {
            rejection: usage_exceeded(&known, cost, now),
            key: Some(key.id()),
            reason: Reason::UsageExceeded,
        };
        return refuse_and_refund(refusal, paid.map(|p| guard(shared, p)));
    }
    let more = More {
        account,
        key: key.id(),
        hints,
        paid,
        extra,
    };
    match credits::charge(&shared.runtime.credits, account, extra, now) {
        Charging::Ready(charged) => paid_more(shared, more, charged),
        Charging::Pending(charge) => Next::Wait(Wait::Extra { charge, more }),
    }
}

/// A nested layer's charge, once the bank has answered: passed on with what
/// the key has paid in all, or refused with everything it paid given back
/// (and the balance remembered, as a refused charge is).
fn paid_more(shared: &Shared, more: More, charged: Charged) -> Next {
    let More {
        account,
        key,
        hints,
        paid,
        extra,
    } = more;
    let now = shared.settings.clock.now();
    let charge = match charged {
        Err(err) => {
            tracing::error!(target: audit::TARGET, error = %err, "credit bank unavailable");
            let refusal = Refusal {
                rejection: unavailable(&shared.settings),
                key: Some(key),
                reason: Reason::CreditsUnavailable,
            };
            return refuse_and_refund(refusal, paid.map(|p| guard(shared, p)));
        }
        Ok(charge) => charge.unwrap_or(NO_ACCOUNT),
    };
    let before = paid.map_or(0, |p| p.cost);
    if charge.admitted {
        return Next::Pass(Some(Spent {
            account,
            cost: before + extra,
            remaining: charge.remaining,
            period: charge.period,
        }));
    }
    // What the outer layer paid comes back (if no refill came between).
    let refunded = paid
        .filter(|p| p.period == charge.period)
        .map_or(0, |p| p.cost);
    let shown = Charge {
        remaining: charge.remaining.saturating_add(refunded),
        ..charge
    };
    if let Some(hints) = &hints {
        hints.note_exhausted(shown, now);
    }
    let refusal = Refusal {
        rejection: usage_exceeded(&shown, before + extra, now),
        key: Some(key),
        reason: Reason::UsageExceeded,
    };
    refuse_and_refund(refusal, paid.map(|p| guard(shared, p)))
}

fn guard(shared: &Shared, spent: Spent) -> ChargeGuard {
    ChargeGuard::new(&shared.runtime.credits, spent)
}

/// The 429 for a balance that cannot pay `cost`.
fn usage_exceeded(charge: &Charge, cost: u64, now: OffsetDateTime) -> Rejection {
    Rejection::UsageExceeded {
        remaining: charge.remaining,
        cost,
        retry_after: charge
            .next_refill
            .and_then(|at| std::time::Duration::try_from(at - now).ok()),
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
        paid,
        now,
    } = admission;
    let spent = paid.and_then(ChargeGuard::keep);
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
    // A metered key's refusal hints go along, for layers further in that
    // charge more; other keys pay nothing for them.
    let hints = spent.and_then(|_| entry.credit_hints().cloned());
    req.extensions_mut().insert(ApiKey::new(
        Arc::clone(entry.info()),
        shared.runtime.instance,
        spent,
        hints,
    ));
    attach_renderer(settings, req);
    AddedHeaders {
        decision: decision.filter(|_| settings.rate_limit_headers),
        sunset,
        credits: spent.map(|s| s.remaining),
    }
}

/// A request a layer further out admitted, passed on by this one: with
/// what the key has paid in all if this layer charged more.
pub(super) fn pass<B>(req: &mut Request<B>, spent: Option<Spent>) -> AddedHeaders {
    let Some(spent) = spent else {
        return AddedHeaders::default();
    };
    if let Some(key) = req.extensions_mut().get_mut::<ApiKey>() {
        key.set_spent(spent);
    }
    AddedHeaders {
        credits: Some(spent.remaining),
        ..AddedHeaders::default()
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
    credits: Option<u64>,
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
        if let Some(remaining) = self.credits {
            // A layer further in that charged more knows the later balance,
            // and set the header first.
            headers
                .entry(CREDITS_REMAINING)
                .or_insert_with(|| remaining.into());
        }
    }
}

#[cfg(test)]
mod tests;
