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

use governor::{
    clock::{Clock as GovernorClock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DashMapStateStore,
};

use crate::{BoxError, KeyId, Quota, store::BoxFuture};

/// The outcome of one rate-limit check, with what the `RateLimit-*` headers
/// need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The quota's limit (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the quota is whole again (`RateLimit-Reset`).
    pub reset: Duration,
    /// When rejected: time until a request would be admitted (`Retry-After`).
    pub retry_after: Duration,
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
    /// Counts one request against `quota` for `family`.
    fn check(&self, family: KeyId, quota: Quota) -> Check;
}

type Keyed<C> = governor::RateLimiter<
    KeyId,
    DashMapStateStore<KeyId, crate::verify::IdHashBuilder>,
    C,
    StateInformationMiddleware,
>;

/// In-process GCRA rate limiting with governor, one limiter per distinct
/// quota, keyed by key family.
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
        self.inner.limiters().iter().map(|l| l.len()).sum()
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
        let mut map = self
            .inner
            .by_quota
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let limiter = Arc::clone(map.entry(quota).or_insert_with(|| {
            Arc::new(Keyed::new(
                quota.to_governor(),
                DashMapStateStore::with_hasher(crate::verify::IdHashBuilder::default()),
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
        let every = self.interval;
        handle.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.retain_recent();
            }
        });
    }
}

impl<C: GovernorClock> Inner<C> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Quota, Arc<Keyed<C>>>> {
        self.by_quota
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn limiters(&self) -> Vec<Arc<Keyed<C>>> {
        self.read().values().cloned().collect()
    }

    fn retain_recent(&self) {
        for l in self.limiters() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

impl<C> RateLimiter for GovernorLimiter<C>
where
    C: GovernorClock + Clone + Send + Sync + 'static,
{
    fn check(&self, family: KeyId, quota: Quota) -> Check {
        self.start_housekeeping();
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
                    limit,
                    remaining,
                    reset: per_request * (limit - remaining.min(limit)),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.inner.clock.now());
                Decision {
                    allowed: false,
                    limit,
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
            let d = ready(lim.check(k, q));
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.limit, 5);
        }
        let d = ready(lim.check(k, q));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(200));
        clock.advance(Duration::from_millis(200));
        assert!(ready(lim.check(k, q)).allowed);
        assert!(!ready(lim.check(k, q)).allowed);
    }

    #[test]
    fn keys_and_quotas_are_independent() {
        let lim = GovernorLimiter::with_clock(FakeRelativeClock::default());
        let q1 = Quota::per_hour(1);
        assert!(ready(lim.check(id("AAAAAAAAAA"), q1)).allowed);
        assert!(!ready(lim.check(id("AAAAAAAAAA"), q1)).allowed);
        assert!(ready(lim.check(id("BBBBBBBBBB"), q1)).allowed);
        assert!(ready(lim.check(id("AAAAAAAAAA"), Quota::per_hour(2))).allowed);
    }

    #[test]
    fn idle_state_is_dropped() {
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone());
        let q = Quota::per_second(10);
        for i in 0..100u32 {
            let k: KeyId = format!("K{i:09}").parse().unwrap();
            let _ = lim.check(k, q);
        }
        assert_eq!(lim.tracked_keys(), 100);
        clock.advance(Duration::from_secs(2));
        lim.retain_recent();
        assert_eq!(lim.tracked_keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn housekeeping_runs_by_itself() {
        let clock = FakeRelativeClock::default();
        let lim = GovernorLimiter::with_clock(clock.clone())
            .housekeeping_interval(Duration::from_millis(50));
        let _ = lim.check(id("AAAAAAAAAA"), Quota::per_second(10));
        assert_eq!(lim.tracked_keys(), 1);
        clock.advance(Duration::from_secs(1));
        // The paused tokio clock drives the housekeeping timer; governor's
        // fake clock decides what counts as idle.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(lim.tracked_keys(), 0);
    }
}
