//! Per-key rate limiting: the [`RateLimiter`] trait and the in-process
//! [`GovernorLimiter`].

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use governor::{
    clock::{Clock as GovernorClock, DefaultClock, Reference as _},
    middleware::StateInformationMiddleware,
    state::keyed::DashMapStateStore,
};

use crate::{BoxError, KeyId, Quota, Quotas, store::BoxFuture, verify::IdHashBuilder};

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

/// A decision that needs I/O (see [`Check::Pending`]).
pub struct PendingCheck(pub BoxFuture<'static, Result<Decision, LimiterUnavailable>>);

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

type Keyed<C> = governor::RateLimiter<
    KeyId,
    DashMapStateStore<KeyId, IdHashBuilder>,
    C,
    StateInformationMiddleware,
>;

/// In-process GCRA rate limiting with governor, one limiter per distinct
/// quota, keyed by key family.
///
/// A key with several quotas is checked against all of them under one lock
/// on its family's state, with the same algorithm ([`Gcra`]), so a request
/// one quota refuses is charged to none. That state is separate from the
/// single-quota state: changing a key from one quota to several starts it
/// afresh.
///
/// Memory stays bounded on its own: a background task (started on the first
/// check, on the current tokio runtime) drops state that has become
/// indistinguishable from a fresh key's, and stops when the limiter is
/// dropped.
pub struct GovernorLimiter<C: GovernorClock = DefaultClock> {
    inner: Arc<Inner<C>>,
    housekeeping: AtomicBool,
    interval: Duration,
}

struct Inner<C: GovernorClock> {
    by_quota: RwLock<HashMap<Quota, Arc<Keyed<C>>>>,
    // The first quota's limiter — in most services the default quota, used
    // by nearly every request — reachable without a lock or a hash.
    first: std::sync::OnceLock<(Quota, Arc<Keyed<C>>)>,
    // Families with several quotas: each quota's theoretical arrival time,
    // in nanoseconds since `start`, checked and charged under the map
    // shard's lock.
    multi: DashMap<KeyId, Vec<(Quota, u64)>, IdHashBuilder>,
    start: C::Instant,
    clock: C,
}

impl GovernorLimiter<DefaultClock> {
    /// A limiter on the default (monotonic) clock.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl Default for GovernorLimiter<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> GovernorLimiter<C>
where
    C: GovernorClock + Clone + Send + Sync + 'static,
{
    /// A limiter on the given governor clock (e.g. `FakeRelativeClock` in
    /// tests).
    pub fn with_clock(clock: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                by_quota: RwLock::new(HashMap::new()),
                first: std::sync::OnceLock::new(),
                multi: DashMap::with_hasher(IdHashBuilder::default()),
                start: clock.now(),
                clock,
            }),
            housekeeping: AtomicBool::new(false),
            interval: Duration::from_secs(60),
        }
    }

    /// How often idle state is dropped (default: every 60 s).
    #[must_use]
    pub fn housekeeping_interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(10));
        self
    }

    /// Number of key families with live state, across all quotas.
    pub fn tracked_keys(&self) -> usize {
        let single: usize = self.inner.limiters().iter().map(|l| l.len()).sum();
        single + self.inner.multi.len()
    }

    /// Drops the state of every key family whose state is the same as a fresh
    /// one's. The background task does this periodically; tests and
    /// applications without a tokio runtime can call it directly.
    pub fn retain_recent(&self) {
        self.inner.retain_recent();
    }

    fn limiter_for(&self, quota: Quota) -> Arc<Keyed<C>> {
        if let Some(l) = self.inner.read().get(&quota) {
            return Arc::clone(l);
        }
        let mut map = crate::sync::write(&self.inner.by_quota);
        let limiter = Arc::clone(map.entry(quota).or_insert_with(|| {
            Arc::new(Keyed::new(
                quota.to_governor(),
                DashMapStateStore::with_hasher(IdHashBuilder::default()),
                self.inner.clock.clone(),
            ))
        }));
        let _ = self.inner.first.set((quota, Arc::clone(&limiter)));
        limiter
    }

    fn start_housekeeping(&self) {
        // A plain load first: this runs on every check.
        if self.housekeeping.load(Ordering::Relaxed)
            || self.housekeeping.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime here; try again on a later check.
            self.housekeeping.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<Inner<C>> = Arc::downgrade(&self.inner);
        handle.spawn(crate::periodic::every(weak, self.interval, |inner| {
            inner.retain_recent();
            std::future::ready(())
        }));
    }
}

impl<C: GovernorClock> Inner<C> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Quota, Arc<Keyed<C>>>> {
        crate::sync::read(&self.by_quota)
    }

    fn limiters(&self) -> Vec<Arc<Keyed<C>>> {
        self.read().values().cloned().collect()
    }

    fn retain_recent(&self) {
        for l in self.limiters() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = self.nanos_now();
        self.multi.retain(|_, state| {
            state.retain(|&(_, tat)| tat > now);
            !state.is_empty()
        });
        self.multi.shrink_to_fit();
    }

    fn nanos_now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// All-or-nothing over several quotas: read every debt, decide, and
    /// charge all or none, holding the family's shard lock throughout.
    fn check_many(&self, family: KeyId, quotas: &[Quota]) -> Decision {
        let now = self.nanos_now();
        let mut state = self.multi.entry(family).or_default();
        // Quotas the key no longer has, whose debt is paid off, go.
        state.retain(|&(q, tat)| tat > now || quotas.contains(&q));
        let mut decision: Option<Decision> = None;
        let mut debts = [0u64; Quotas::MAX];
        for (&q, debt) in quotas.iter().zip(&mut debts) {
            let tat = state.iter().find(|(sq, _)| *sq == q).map_or(0, |&(_, t)| t);
            *debt = tat.saturating_sub(now);
            let this = Gcra::new(q).decide(*debt);
            decision = Some(decision.map_or(this, |d| d.combine(this)));
        }
        let Some(decision) = decision else {
            unreachable!("`Quotas` is never empty")
        };
        if decision.allowed {
            for (&q, debt) in quotas.iter().zip(debts) {
                let tat = now + debt + Gcra::new(q).emission_interval();
                match state.iter_mut().find(|(sq, _)| *sq == q) {
                    Some(slot) => slot.1 = tat,
                    None => state.push((q, tat)),
                }
            }
        }
        decision
    }
}

impl<C> RateLimiter for GovernorLimiter<C>
where
    C: GovernorClock + Clone + Send + Sync + 'static,
{
    fn check(&self, family: KeyId, quotas: &Quotas) -> Check {
        self.start_housekeeping();
        let Some(quota) = quotas.single() else {
            return Check::Ready(Ok(self.inner.check_many(family, quotas.as_slice())));
        };
        let other;
        let limiter: &Keyed<C> = match self.inner.first.get() {
            Some((first, limiter)) if *first == quota => limiter,
            _ => {
                other = self.limiter_for(quota);
                &other
            }
        };
        let limit = quota.limit();
        let per_request = quota.replenish_interval();
        let decision = match limiter.check_key(&family) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    quota,
                    remaining,
                    reset: per_request * (limit - remaining.min(limit)),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.inner.clock.now());
                Decision {
                    allowed: false,
                    quota,
                    remaining: 0,
                    reset: per_request * limit,
                    retry_after: wait,
                }
            }
        };
        Check::Ready(Ok(decision))
    }
}

impl<C: GovernorClock> fmt::Debug for GovernorLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorLimiter")
            .field("quotas", &self.inner.read().len())
            .field("housekeeping_interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn id(s: &str) -> KeyId {
        s.parse().unwrap()
    }

    fn ready(c: Check) -> Decision {
        match c {
            Check::Ready(d) => d.unwrap(),
            Check::Pending(_) => panic!("governor answers synchronously"),
        }
    }

    #[test]
    fn admits_exactly_the_quota_then_refills() {
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone());
        let q = Quota::per_second(5);
        let k = id("AAAAAAAAAA");
        for left in (0..5).rev() {
            let d = ready(lim.check(k, &q.into()));
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.quota, q);
        }
        let d = ready(lim.check(k, &q.into()));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(200));
        clock.advance(Duration::from_millis(200));
        assert!(ready(lim.check(k, &q.into())).allowed);
        assert!(!ready(lim.check(k, &q.into())).allowed);
    }

    #[test]
    fn keys_and_quotas_are_independent() {
        let lim = GovernorLimiter::with_clock(FakeRelativeClock::default());
        let q1 = Quota::per_hour(1);
        assert!(ready(lim.check(id("AAAAAAAAAA"), &q1.into())).allowed);
        assert!(!ready(lim.check(id("AAAAAAAAAA"), &q1.into())).allowed);
        assert!(ready(lim.check(id("BBBBBBBBBB"), &q1.into())).allowed);
        assert!(ready(lim.check(id("AAAAAAAAAA"), &Quota::per_hour(2).into())).allowed);
    }

    #[test]
    fn several_quotas_are_all_or_nothing() {
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone());
        let (sec, min) = (Quota::per_second(2), Quota::per_minute(3));
        let both = sec.and(min);
        let k = id("AAAAAAAAAA");
        let d = ready(lim.check(k, &both));
        // The per-second quota is closer to its limit, so it speaks.
        assert_eq!((d.allowed, d.quota, d.remaining), (true, sec, 1));
        let d = ready(lim.check(k, &both));
        assert_eq!((d.allowed, d.remaining), (true, 0));
        // Refused by the per-second quota: the per-minute one is not
        // charged, so after a second the third request still gets in.
        for _ in 0..10 {
            let d = ready(lim.check(k, &both));
            assert_eq!((d.allowed, d.quota), (false, sec));
            assert_eq!(d.retry_after, Duration::from_millis(500));
        }
        clock.advance(Duration::from_secs(1));
        let d = ready(lim.check(k, &both));
        assert_eq!((d.allowed, d.quota, d.remaining), (true, min, 0));
        // Now the per-minute quota refuses, with the longer wait.
        clock.advance(Duration::from_secs(1));
        let d = ready(lim.check(k, &both));
        assert_eq!((d.allowed, d.quota), (false, min));
        assert_eq!(d.retry_after, Duration::from_secs(18));
    }

    #[test]
    fn several_quotas_decide_like_one_quota_each() {
        // Against one quota, the multi-quota path and governor agree on
        // every field, over a burst, a refusal and partial refills.
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone());
        let q = Quota::per_second(4);
        let huge = Quota::per_day(1_000_000);
        let (a, b) = (id("AAAAAAAAAA"), id("BBBBBBBBBB"));
        for step in [0, 0, 0, 0, 0, 100, 150, 0, 400, 0, 0, 1_000] {
            clock.advance(Duration::from_millis(step));
            let single = ready(lim.check(a, &q.into()));
            let multi = ready(lim.check(b, &q.and(huge)));
            assert_eq!(multi.allowed, single.allowed);
            assert_eq!(multi.quota, single.quota);
            assert_eq!(multi.remaining, single.remaining);
            assert_eq!(multi.reset, single.reset);
            assert_eq!(multi.retry_after, single.retry_after);
        }
    }

    #[test]
    fn concurrent_requests_never_exceed_any_quota() {
        let lim = Arc::new(GovernorLimiter::with_clock(FakeRelativeClock::default()));
        let both = Quota::per_minute(50).and(Quota::per_hour(1_000));
        let admitted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if ready(lim.check(id("AAAAAAAAAA"), &both)).allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 50);
    }

    #[test]
    fn combine_picks_the_binding_decision() {
        let g = |q| Gcra::new(q);
        let (sec, day) = (Quota::per_second(10), Quota::per_day(100));
        let a = g(sec).decide(0);
        let b = g(day).decide(g(day).emission_interval() * 95);
        assert_eq!(a.combine(b), b);
        assert_eq!(b.combine(a), b);
        let refused_soon = g(sec).decide(g(sec).tolerance() + 1);
        let refused_late = g(day).decide(g(day).tolerance() + 1_000_000_000);
        assert_eq!(a.combine(refused_soon), refused_soon);
        assert_eq!(refused_soon.combine(refused_late), refused_late);
        assert_eq!(refused_late.combine(refused_soon), refused_late);
    }

    #[test]
    fn idle_state_is_dropped() {
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone());
        let q = Quota::per_second(10);
        for i in 0..100u32 {
            let k: KeyId = format!("K{i:09}").parse().unwrap();
            let _ = lim.check(k, &q.into());
        }
        let both = q.and(Quota::per_hour(100));
        let _ = lim.check(id("MULTIPLEQ1"), &both);
        assert_eq!(lim.tracked_keys(), 101);
        clock.advance(Duration::from_secs(2));
        lim.retain_recent();
        // The per-hour debt (36 s) is not paid off yet.
        assert_eq!(lim.tracked_keys(), 1);
        clock.advance(Duration::from_secs(60));
        lim.retain_recent();
        assert_eq!(lim.tracked_keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn housekeeping_runs_by_itself() {
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone())
            .housekeeping_interval(Duration::from_millis(50));
        let _ = lim.check(id("AAAAAAAAAA"), &Quota::per_second(10).into());
        assert_eq!(lim.tracked_keys(), 1);
        clock.advance(Duration::from_secs(1));
        // The paused tokio clock drives the housekeeping timer; governor's
        // fake clock decides what counts as idle.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(lim.tracked_keys(), 0);
    }
}
