//! A circuit breaker in front of Redis, so a dead server costs one timed-out
//! probe per cooldown instead of a timeout on every request.
//!
//! Closed: every decision goes to Redis. After `threshold` consecutive
//! failures it opens: decisions skip Redis for `cooldown`. Then it is
//! half-open: one decision at a time probes Redis while the others still
//! skip; a success closes it, a failure opens it for another cooldown.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Open-until value meaning "closed".
const CLOSED: u64 = 0;

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Nanoseconds after `epoch` (plus one, so 0 means closed) until which
    /// Redis is skipped.
    open_until: AtomicU64,
    probing: AtomicBool,
}

/// Whether a decision may go to Redis.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Go to Redis; with a probe guard when the breaker is half-open.
    Go(Option<Probe>),
    /// Skip Redis: the breaker is open, or another decision is probing.
    Skip,
}

/// The right to probe a half-open breaker; released when dropped, so a
/// cancelled request cannot keep every later one from probing.
#[derive(Debug)]
pub(crate) struct Probe(Arc<Breaker>);

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

/// What a finished decision did to the breaker, for logging transitions once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Closed,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(CLOSED),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != CLOSED
    }

    pub(crate) fn admit(self: &Arc<Self>) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == CLOSED {
            return Admit::Go(None);
        }
        if self.now() < until {
            return Admit::Skip;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Admit::Go(Some(Probe(Arc::clone(self))))
        } else {
            Admit::Skip
        }
    }

    pub(crate) fn success(&self) -> Transition {
        // Loads first: on a healthy Redis every decision lands here, and
        // unconditional writes would bounce this line between all cores.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Acquire) == CLOSED
            || self.open_until.swap(CLOSED, Ordering::AcqRel) == CLOSED
        {
            Transition::None
        } else {
            Transition::Closed
        }
    }

    pub(crate) fn failure(&self, probe: Option<&Probe>) -> Transition {
        let reopen = self.now().saturating_add(duration_nanos(self.cooldown));
        if probe.is_some() {
            self.open_until.store(reopen, Ordering::Release);
            return Transition::None;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= self.threshold
            && self
                .open_until
                .compare_exchange(CLOSED, reopen, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            Transition::Opened
        } else {
            Transition::None
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(b: &Arc<Breaker>) -> Option<Option<Probe>> {
        match b.admit() {
            Admit::Go(p) => Some(p),
            Admit::Skip => None,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let b = Arc::new(Breaker::new(3, Duration::from_millis(30)));
        assert_eq!(b.failure(None), Transition::None);
        assert_eq!(b.success(), Transition::None);
        assert_eq!(b.failure(None), Transition::None);
        assert_eq!(b.failure(None), Transition::None);
        assert_eq!(b.failure(None), Transition::Opened);
        assert!(b.is_open());
        assert!(go(&b).is_none(), "open: skip");

        std::thread::sleep(Duration::from_millis(40));
        let probe = go(&b)
            .expect("half-open: one probe")
            .expect("a probe guard");
        assert!(go(&b).is_none(), "only one probe at a time");
        assert_eq!(b.failure(Some(&probe)), Transition::None);
        drop(probe);
        assert!(go(&b).is_none(), "a failed probe opens it again");

        std::thread::sleep(Duration::from_millis(40));
        let probe = go(&b).unwrap().unwrap();
        assert_eq!(b.success(), Transition::Closed);
        drop(probe);
        assert!(!b.is_open());
        assert!(matches!(go(&b), Some(None)));
    }

    #[test]
    fn a_dropped_probe_lets_the_next_one_through() {
        let b = Arc::new(Breaker::new(1, Duration::ZERO));
        assert_eq!(b.failure(None), Transition::Opened);
        let probe = go(&b).unwrap().unwrap();
        drop(probe);
        assert!(go(&b).unwrap().is_some());
    }
}
