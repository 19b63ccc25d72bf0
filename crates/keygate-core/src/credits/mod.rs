//! Usage credits: a balance a metered key spends, one request (or a
//! route's cost) at a time, with an optional refill.
//!
//! The balance lives in a [`CreditBank`]: the key store by default
//! ([`StoreCredits`]; SQLite, PostgreSQL, memory), or Redis for services
//! that run on many nodes and keep their keys elsewhere. Every charge is one
//! atomic conditional decrement in the bank, so `N` credits admit at most
//! `N` requests however many processes share the bank, and exactly `N` on
//! one node; nothing is leased or batched, so nothing is lost or refunded
//! when a process stops.
//!
//! A key is metered when its record names a credit *account*
//! ([`KeyRecord::credit_account`](crate::KeyRecord::credit_account)): its
//! own rotation family for a key with credits of its own, or its creator's
//! account for a key a metered key delegated, so sub-keys spend their
//! parent's balance instead of minting their own.

mod interval;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::interval::{InvalidRefill, Refill, RefillInterval};
use crate::{BoxFuture, DynKeyStore, KeyId, StoreError};

/// The largest balance an account can hold: 10¹⁵, below 2⁵³ so that every
/// balance survives a round trip through JSON numbers and SQL `BIGINT`s.
pub const MAX_CREDITS: u64 = 1_000_000_000_000_000;

/// The largest cost one request can declare (see
/// [`MAX_CREDITS`]).
pub const MAX_COST: u64 = MAX_CREDITS;

/// An account's balance as its bank holds it, with any refill that is due
/// at the time it was read applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CreditBalance {
    /// Credits left.
    pub remaining: u64,
    /// How the balance refills, if it does.
    pub refill: Option<Refill>,
    /// When the next refill is due, if the balance refills.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_refill: Option<OffsetDateTime>,
}

/// The state one account keeps in a bank, and the rules every bank applies
/// to it: [`StoreCredits`]' stores and keygate-redis's Lua script compute
/// exactly this.
///
/// `refilled_at` is the start of the refill period in which the balance was
/// last topped up (or set); a refill is due once `now` falls in a later
/// period, and then tops the balance up *to* the refill amount: a balance
/// above it (after a top-up) is kept, and overuse is never forgiven by a
/// reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditAccount {
    /// Credits left, as last written.
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<Refill>,
    /// The start of the period of the last refill (or of the last `set`).
    pub refilled_at: Option<OffsetDateTime>,
}

impl CreditAccount {
    /// An account holding `remaining` credits that refill as `refill` says,
    /// set at `now` (so the first refill is due at the next period).
    pub fn new(remaining: u64, refill: Option<Refill>, now: OffsetDateTime) -> Self {
        Self {
            remaining: remaining.min(MAX_CREDITS),
            refill,
            refilled_at: Some(whole_seconds(now)),
        }
    }

    /// The account at `now`: with the refill that is due applied.
    #[must_use]
    pub fn at(self, now: OffsetDateTime) -> Self {
        let Some(refill) = self.refill else {
            return self;
        };
        let period = refill.interval.period_start(now);
        match self.refilled_at {
            Some(at) if at >= period => self,
            _ => Self {
                remaining: self.remaining.max(refill.amount),
                refill: self.refill,
                refilled_at: Some(period),
            },
        }
    }

    /// What the account looks like to people: its balance at `now`.
    pub fn balance(self, now: OffsetDateTime) -> CreditBalance {
        let now_state = self.at(now);
        CreditBalance {
            remaining: now_state.remaining,
            refill: self.refill,
            next_refill: now_state.next_refill(),
        }
    }

    /// When the next refill is due: the start of the period after the one
    /// of the last refill (or set); `None` if the balance does not refill.
    pub fn next_refill(self) -> Option<OffsetDateTime> {
        let refill = self.refill?;
        let interval = refill.interval;
        Some(interval.next_start(interval.period_start(self.refilled_at?)))
    }
}

/// One thing a bank does to an account, as [`KeyStore::credits`]
/// receives it; [`CreditOp::apply`] is its meaning, which every store
/// carries out in one atomic step (a transaction holding the account's
/// row, a lock).
///
/// [`KeyStore::credits`]: crate::KeyStore::credits
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditOp {
    /// Take this many credits, all or nothing.
    Charge(u64),
    /// Give back what a charge in `period` took (see [`Charge::period`]),
    /// unless the balance was refilled, set or given a new refill rule
    /// since.
    Refund {
        /// The credits the charge took.
        cost: u64,
        /// [`Charge::period`] of the charge.
        period: Option<OffsetDateTime>,
    },
    /// Read the balance.
    Read,
    /// Change the balance or the refill, creating the account if needed.
    Update(CreditUpdate),
}

/// What [`CreditOp::apply`] found: the account after the operation (with
/// any due refill applied), and whether a charge was paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditOutcome {
    /// The account after the operation, as of `now`.
    pub account: CreditAccount,
    /// For [`CreditOp::Charge`]: whether the account paid.
    pub admitted: bool,
}

/// [`CreditOp::apply`]'s answer: the outcome, and what the store must
/// write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `None` if there is no such account (and the operation does not
    /// create one).
    pub outcome: Option<CreditOutcome>,
    /// The account to write back, if the operation changed it.
    pub write: Option<CreditAccount>,
}

impl CreditOp {
    /// What the operation does to `account` (`None`: there is none) at
    /// `now`. Stores read the account, call this, and write
    /// [`Applied::write`], all in one atomic step.
    pub fn apply(self, account: Option<CreditAccount>, now: OffsetDateTime) -> Applied {
        let account = match (self, account) {
            (Self::Update(_), None) => CreditAccount {
                remaining: 0,
                refill: None,
                refilled_at: None,
            },
            (_, Some(a)) => a,
            (_, None) => {
                return Applied {
                    outcome: None,
                    write: None,
                };
            }
        };
        let (after, admitted, changed) = match self {
            Self::Charge(cost) => {
                let state = account.at(now);
                if state.remaining >= cost {
                    let paid = CreditAccount {
                        remaining: state.remaining - cost,
                        ..state
                    };
                    (paid, true, true)
                } else {
                    // Nothing to write: a refill due now is applied again by
                    // the next operation.
                    (state, false, false)
                }
            }
            Self::Refund { cost, period } => {
                let after = account.refund(cost, period);
                (after, false, after != account)
            }
            Self::Read => (account.at(now), false, false),
            Self::Update(update) => (account.update(&update, now), false, true),
        };
        Applied {
            outcome: Some(CreditOutcome {
                account: after,
                admitted,
            }),
            write: changed.then_some(after),
        }
    }
}

impl CreditAccount {
    /// Gives back `cost` credits a charge made in `period` took (see
    /// [`Charge::period`]), unless the balance was refilled (or set) since:
    /// the refill already made the balance whole, and adding the credits on
    /// top would hand out more than the account has.
    #[must_use]
    pub fn refund(self, cost: u64, period: Option<OffsetDateTime>) -> Self {
        if self.refilled_at != period {
            return self;
        }
        Self {
            remaining: self.remaining.saturating_add(cost).min(MAX_CREDITS),
            ..self
        }
    }

    /// Applies `update` at `now`: a due refill first, then the new balance,
    /// then the new refill rule.
    ///
    /// A set balance or a new rule marks the account with the instant it
    /// was made (`refilled_at`, whole seconds): the refill due now must not
    /// overwrite it, and a refund of a charge made before it is dropped, as
    /// after a refill — a balance set to 0 to cut a customer off stays 0.
    #[must_use]
    pub fn update(self, update: &CreditUpdate, now: OffsetDateTime) -> Self {
        let mut state = self.at(now);
        let mark = Some(whole_seconds(now));
        match update.balance {
            Some(BalanceChange::Set(n)) => {
                state.remaining = n.min(MAX_CREDITS);
                state.refilled_at = mark;
            }
            Some(BalanceChange::Add(n)) => {
                state.remaining = state.remaining.saturating_add(n).min(MAX_CREDITS);
            }
            None => {}
        }
        if let Some(refill) = update.refill {
            state.refill = refill;
            state.refilled_at = mark;
        }
        state
    }
}

/// `t` without its fraction of a second: what every bank keeps (Redis
/// keeps whole seconds), and at or after the start of the period `t` falls
/// in, since periods start on whole seconds.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// What a charge told the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    /// Whether the account could pay, and paid.
    pub admitted: bool,
    /// Credits left after the charge (or, if refused, before it).
    pub remaining: u64,
    /// When the balance next refills, if it does: a refused request's
    /// `Retry-After`.
    pub next_refill: Option<OffsetDateTime>,
    /// The refill period the charge was made in, for
    /// [`CreditBank::refund`]: a refund after the next refill is dropped.
    pub period: Option<OffsetDateTime>,
}

impl Charge {
    /// What a charge whose outcome is `outcome` tells the request.
    pub fn of(outcome: CreditOutcome) -> Self {
        Self {
            admitted: outcome.admitted,
            remaining: outcome.account.remaining,
            next_refill: outcome.account.next_refill(),
            period: outcome.account.refilled_at,
        }
    }
}

/// A change to an account's balance or refill, made by
/// [`CreditBank::update`]. A refill that is due is applied first, then the
/// balance change, then the new refill rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CreditUpdate {
    /// The new balance, or credits to add to it.
    pub balance: Option<BalanceChange>,
    /// The new refill rule (`Some(None)` removes it).
    pub refill: Option<Option<Refill>>,
}

impl CreditUpdate {
    /// Sets the balance to `n` credits.
    pub fn set(n: u64) -> Self {
        Self {
            balance: Some(BalanceChange::Set(n)),
            refill: None,
        }
    }

    /// Adds `n` credits to the balance (a top-up).
    pub fn add(n: u64) -> Self {
        Self {
            balance: Some(BalanceChange::Add(n)),
            refill: None,
        }
    }

    /// Also sets the refill rule (`None`: the balance no longer refills).
    #[must_use]
    pub fn with_refill(mut self, refill: Option<Refill>) -> Self {
        self.refill = Some(refill);
        self
    }

    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.balance.is_none() && self.refill.is_none()
    }
}

/// How [`CreditUpdate`] changes a balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceChange {
    /// The balance becomes this many credits.
    Set(u64),
    /// This many credits are added to the balance.
    Add(u64),
}

/// Where metered keys' balances live. Every method is atomic in the bank,
/// so processes sharing it never admit more than a balance holds.
///
/// [`StoreCredits`] keeps balances in the key store; `keygate-redis` has a
/// Redis bank.
pub trait CreditBank: Send + Sync + fmt::Debug + 'static {
    /// Charges `cost` credits to `account` at `now`, all or nothing, after
    /// any refill that is due. `Ok(None)` if the account does not exist (the
    /// layer refuses the request as if the balance were empty).
    fn charge(
        &self,
        account: KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Charge>, StoreError>>;

    /// Gives back what an admitted [`Charge`] took, for a request refused
    /// afterwards (by the rate limiter, say), unless the balance was refilled
    /// or set since `period` ([`CreditAccount::refund`]).
    fn refund(
        &self,
        account: KeyId,
        cost: u64,
        period: Option<OffsetDateTime>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The balance of `account` at `now`; `None` if there is no such account.
    fn balance(
        &self,
        account: KeyId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<CreditBalance>, StoreError>>;

    /// Changes `account` as `update` says at `now`, creating it (with no
    /// credits and no refill before the update) if it does not exist, and
    /// returns its balance after the change.
    fn update<'a>(
        &'a self,
        account: KeyId,
        update: &'a CreditUpdate,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<CreditBalance, StoreError>>;
}

/// The default [`CreditBank`]: balances kept in the key store itself
/// (`KeyStore::charge_credits` and the methods beside it).
#[derive(Clone)]
pub struct StoreCredits {
    store: Arc<dyn DynKeyStore>,
}

impl StoreCredits {
    /// A bank over `store`.
    pub fn new(store: Arc<dyn DynKeyStore>) -> Self {
        Self { store }
    }
}

impl fmt::Debug for StoreCredits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreCredits")
    }
}

impl CreditBank for StoreCredits {
    fn charge(
        &self,
        account: KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Charge>, StoreError>> {
        Box::pin(async move {
            let outcome = self
                .store
                .credits(account, CreditOp::Charge(cost), now)
                .await?;
            Ok(outcome.map(Charge::of))
        })
    }

    fn refund(
        &self,
        account: KeyId,
        cost: u64,
        period: Option<OffsetDateTime>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // The time only matters to refills, which a refund never makes.
            let op = CreditOp::Refund { cost, period };
            self.store
                .credits(account, op, OffsetDateTime::UNIX_EPOCH)
                .await?;
            Ok(())
        })
    }

    fn balance(
        &self,
        account: KeyId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<CreditBalance>, StoreError>> {
        Box::pin(async move {
            let outcome = self.store.credits(account, CreditOp::Read, now).await?;
            Ok(outcome.map(|o| o.account.balance(now)))
        })
    }

    fn update<'a>(
        &'a self,
        account: KeyId,
        update: &'a CreditUpdate,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<CreditBalance, StoreError>> {
        Box::pin(async move {
            let outcome = self
                .store
                .credits(account, CreditOp::Update(*update), now)
                .await?;
            outcome
                .map(|o| o.account.balance(now))
                .ok_or_else(|| StoreError::Corrupt("a credit update created no account".into()))
        })
    }
}

/// How long a layer trusts a refused charge's balance before asking the
/// bank again: a top-up made on another node is seen within this time.
pub const EXHAUSTED_HINT_TTL: time::Duration = time::Duration::seconds(1);

/// What a layer remembers of a metered key's last refusals, so that a flood
/// from a key that cannot pay, or that its rate limit refuses, costs no
/// round trip to the bank per request (see [`CachedKey::credit_hints`]).
///
/// A rate limit's refusal is trusted until its `Retry-After`, before which
/// a GCRA limiter admits nothing. An exhausted balance is trusted for at
/// most [`EXHAUSTED_HINT_TTL`] and never past its next refill; within that
/// second it may refuse a request the bank would now admit, after a refund
/// or a top-up made through another key of the same account (a top-up
/// through this key replaces its cache entry, and the hint with it).
///
/// [`CachedKey::credit_hints`]: crate::CachedKey::credit_hints
#[derive(Debug, Default)]
pub struct CreditHints {
    state: std::sync::Mutex<Hints>,
}

#[derive(Debug, Default)]
struct Hints {
    exhausted: Option<(OffsetDateTime, Charge)>,
    limited: Option<(OffsetDateTime, crate::Decision)>,
}

impl CreditHints {
    /// The refusal a charge of `cost` at `now` would get, if a recent one
    /// already told: the refused [`Charge`], with its balance.
    pub fn exhausted(&self, cost: u64, now: OffsetDateTime) -> Option<Charge> {
        let hints = crate::sync::lock(&self.state);
        let (until, charge) = hints.exhausted?;
        (now < until && cost > charge.remaining).then_some(charge)
    }

    /// Remembers a refused charge, made at `now`.
    pub fn note_exhausted(&self, charge: Charge, now: OffsetDateTime) {
        let mut until = now + EXHAUSTED_HINT_TTL;
        if let Some(refill) = charge.next_refill {
            until = until.min(refill);
        }
        crate::sync::lock(&self.state).exhausted = Some((until, charge));
    }

    /// Forgets a remembered refused charge: credits were added here.
    pub fn forget_exhausted(&self) {
        crate::sync::lock(&self.state).exhausted = None;
    }

    /// The rate limiter's refusal still in force at `now`, with its
    /// `Retry-After` shortened by the time since.
    pub fn limited(&self, now: OffsetDateTime) -> Option<crate::Decision> {
        let hints = crate::sync::lock(&self.state);
        let (until, decision) = hints.limited?;
        let left = until - now;
        (left > time::Duration::ZERO).then(|| crate::Decision {
            retry_after: left.try_into().unwrap_or(decision.retry_after),
            ..decision
        })
    }

    /// Remembers the rate limiter's refusal at `now`.
    pub fn note_limited(&self, decision: crate::Decision, now: OffsetDateTime) {
        let Ok(wait) = time::Duration::try_from(decision.retry_after) else {
            return;
        };
        crate::sync::lock(&self.state).limited = Some((now.saturating_add(wait), decision));
    }
}

/// A shared bank is a bank: `Arc<dyn CreditBank>` can be handed to
/// anything that takes one.
impl<B: CreditBank + ?Sized> CreditBank for Arc<B> {
    fn charge(
        &self,
        account: KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Charge>, StoreError>> {
        (**self).charge(account, cost, now)
    }

    fn refund(
        &self,
        account: KeyId,
        cost: u64,
        period: Option<OffsetDateTime>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).refund(account, cost, period)
    }

    fn balance(
        &self,
        account: KeyId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<CreditBalance>, StoreError>> {
        (**self).balance(account, now)
    }

    fn update<'a>(
        &'a self,
        account: KeyId,
        update: &'a CreditUpdate,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<CreditBalance, StoreError>> {
        (**self).update(account, update, now)
    }
}
