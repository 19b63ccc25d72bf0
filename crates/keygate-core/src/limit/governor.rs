//! [`GovernorLimiter`]: in-process GCRA with governor.

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

use super::{Check, Decision, Gcra, RateLimiter};
use crate::{KeyId, Quota, Quotas, verify::IdHashBuilder};

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
