//! The live parts of one [`Keygate`](crate::Keygate): what every layer made
//! from it shares, whatever its settings.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use keygate_core::{AuditLog, CreditBank, KeyManager, RateLimiter, Verifier};

use crate::extract::AdmittedBy;

/// Numbers each built [`Keygate`](crate::Keygate), so its layers know the
/// keys they admitted.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The cache, the limiter's counters, the audit queue and the key manager
/// of one `Keygate`. Cloning it shares them.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    /// Where metered keys' balances are kept (the manager's bank too).
    pub(crate) credits: Arc<dyn CreditBank>,
    pub(crate) audit_log: Option<AuditLog>,
    pub(crate) manager: KeyManager,
    /// Which `Keygate` this is, stamped on the keys its layers admit.
    pub(crate) instance: AdmittedBy,
    /// Set once the "client address unknown" warning has been logged, so
    /// it is logged once per `Keygate`.
    peer_unknown_warned: Arc<AtomicBool>,
}

impl Runtime {
    pub(crate) fn new(
        verifier: Arc<Verifier>,
        limiter: Arc<dyn RateLimiter>,
        audit_log: Option<AuditLog>,
        manager: KeyManager,
    ) -> Self {
        Self {
            credits: Arc::clone(manager.credit_bank()),
            verifier,
            limiter,
            audit_log,
            manager,
            instance: AdmittedBy(NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)),
            peer_unknown_warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether this is the first call: true once per `Keygate`.
    pub(crate) fn first_peer_unknown(&self) -> bool {
        !self.peer_unknown_warned.load(Ordering::Relaxed)
            && !self.peer_unknown_warned.swap(true, Ordering::Relaxed)
    }
}
