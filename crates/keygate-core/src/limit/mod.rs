//! Per-key rate limiting: the [`RateLimiter`] trait and the in-process
//! [`GovernorLimiter`].

mod governor;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

pub use self::governor::GovernorLimiter;
use crate::{BoxError, KeyId, Quota, Quotas, store::BoxFuture};

/// The outcome of one rate-limit check, with what the `RateLimit-*` headers
/// need.
///
/// When a key has several quotas, the decision is the one of the quota that
/// binds: on admission the one closest to its limit, on rejection the one
/// that makes the caller wait longest (see [`Decision::combine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The quota this decision is about; its limit is `RateLimit-Limit`.
    pub quota: Quota,
    /// Requests left right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the quota is whole again (`RateLimit-Reset`).
    pub reset: Duration,
    /// When rejected: time until a request would be admitted (`Retry-After`).
    pub retry_after: Duration,
}

impl Decision {
    /// The decision for one request checked against two quotas at once:
    /// admitted only if both admit it. Of two admissions, the one with
    /// fewer requests remaining (then the longer reset) speaks, since the
    /// `RateLimit-*` headers should describe the limit the caller will hit
    /// first; of two rejections, the one with the longer wait, since the
    /// request needs both. Folding with it gives the decision for any number
    /// of quotas.
    #[must_use]
    pub fn combine(self, other: Decision) -> Decision {
        let other_binds = match (self.allowed, other.allowed) {
            (true, false) => true,
            (false, true) => false,
            (false, false) => other.retry_after > self.retry_after,
            (true, true) => (other.remaining, self.reset) < (self.remaining, other.reset),
        };
        if other_binds { other } else { self }
    }
}

/// The generic cell rate algorithm (GCRA) that governor runs, as arithmetic
/// on one number per quota, for [`RateLimiter`]s that keep their state
/// elsewhere (keygate-redis runs it in a Lua script). Every keygate limiter
/// decides with it, so a quota behaves the same on one node or many.
///
/// The state of a key under a quota is its *debt*: how far its theoretical
/// arrival time lies ahead of now, in nanoseconds (zero for a key never
/// seen or long idle). With emission interval `T = period / limit` and
/// tolerance `τ = T × (limit − 1)`, a request is admitted when
/// `debt ≤ τ`, and then the debt grows by `T`; it shrinks by the time that
/// passes. So a fresh key admits a burst of `limit`, then one request every
/// `T`.
///
/// ```
/// use keygate_core::{Gcra, Quota};
///
/// let gcra = Gcra::new(Quota::per_second(5));
/// assert_eq!(gcra.emission_interval(), 200_000_000);
/// let mut debt = 0;
/// for _ in 0..5 {
///     assert!(gcra.decide(debt).allowed);
///     debt += gcra.emission_interval();
/// }
/// let refused = gcra.decide(debt);
/// assert!(!refused.allowed);
/// assert_eq!(refused.retry_after.as_millis(), 200);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    quota: Quota,
    t: u64,
    tau: u64,
}

impl Gcra {
    /// The parameters of `quota`, as governor derives them (the interval is
    /// truncated to whole nanoseconds, at least one).
    pub fn new(quota: Quota) -> Self {
        // A period is at most 366 days, so its nanoseconds fit a u64.
        let t = u64::try_from(quota.replenish_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            quota,
            t,
            tau: t.saturating_mul(u64::from(quota.limit() - 1)),
        }
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// `T`: the debt one admitted request adds, in nanoseconds.
    pub fn emission_interval(&self) -> u64 {
        self.t
    }

    /// `τ`: the most debt at which a request is still admitted, in
    /// nanoseconds.
    pub fn tolerance(&self) -> u64 {
        self.tau
    }

    /// Whether a request that finds `debt` is admitted.
    pub fn admits(&self, debt: u64) -> bool {
        debt <= self.tau
    }

    /// The decision for a request that finds `debt` (before it is charged):
    /// if admitted, with what remains once it is.
    pub fn decide(&self, debt: u64) -> Decision {
        let limit = self.quota.limit();
        if self.admits(debt) {
            // governor: min(t0 + τ + T − tat', τ + T) / T with tat' = t0 + debt + T.
            let remaining = u32::try_from((self.tau - debt) / self.t)
                .unwrap_or(u32::MAX)
                .min(limit);
            Decision {
                allowed: true,
                quota: self.quota,
                remaining,
                reset: nanos(self.t.saturating_mul(u64::from(limit - remaining))),
                retry_after: Duration::ZERO,
            }
        } else {
            Decision {
                allowed: false,
                quota: self.quota,
                remaining: 0,
                reset: nanos(self.t.saturating_mul(u64::from(limit))),
                retry_after: nanos(debt - self.tau),
            }
        }
    }
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// The error a limiter returns when it cannot decide (e.g. its backend is
/// unreachable and its policy is to fail closed). The layer answers 503.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterUnavailable(#[source] pub BoxError);

/// A rate-limit decision, ready now or still on its way.
///
/// In-process limiters answer [`Check::Ready`], so the request path stays
/// synchronous; a distributed limiter returns [`Check::Pending`].
#[derive(Debug)]
pub enum Check {
    /// The decision is made.
    Ready(Result<Decision, LimiterUnavailable>),
    /// The decision needs I/O.
    Pending(PendingCheck),
}

/// A decision that needs I/O (see [`Check::Pending`]): a future resolving
/// to the decision, or to [`LimiterUnavailable`].
#[must_use = "futures do nothing unless polled"]
pub struct PendingCheck(BoxFuture<'static, Result<Decision, LimiterUnavailable>>);

impl PendingCheck {
    /// The decision `decide` will make, for a limiter that must ask a
    /// remote backend first.
    ///
    /// ```
    /// use keygate_core::{Check, Gcra, PendingCheck, Quota};
    ///
    /// let gcra = Gcra::new(Quota::per_second(5));
    /// let check = Check::Pending(PendingCheck::new(async move {
    ///     // A remote limiter would read the key's debt from its backend.
    ///     Ok(gcra.decide(0))
    /// }));
    /// # drop(check);
    /// ```
    pub fn new<F>(decide: F) -> Self
    where
        F: Future<Output = Result<Decision, LimiterUnavailable>> + Send + 'static,
    {
        Self(Box::pin(decide))
    }
}

impl Future for PendingCheck {
    type Output = Result<Decision, LimiterUnavailable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingCheck")
    }
}

/// Decides whether a key may make one more request.
///
/// `family` identifies the key's rotation family (see
/// [`KeyRecord::family`](crate::KeyRecord::family)), so a rotated key shares
/// its predecessor's state.
pub trait RateLimiter: Send + Sync + fmt::Debug + 'static {
    /// Counts one request against every quota in `quotas` for `family`,
    /// all-or-nothing: admitted only if every quota admits it, and then
    /// charged to all; rejected otherwise, and then charged to none. The
    /// decision is the binding quota's ([`Decision::combine`]).
    ///
    /// Most keys have a single quota ([`Quotas::single`]); a limiter can
    /// take a faster path for them.
    fn check(&self, family: KeyId, quotas: &Quotas) -> Check;
}
