//! The usage ledger (the usage recorder): counts on each cached entry,
//! entries that left the cache with counts not yet written, counts a failed
//! write could not deliver, and the periodic flush to the store.

use std::{
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;

use super::{CachedKey, Verifier};
use crate::{DynKeyStore, RefusalKind, Refusals, StoreError, UsageDelta, sync::lock, usage_bucket};

/// Most usage deltas kept across failing flushes before the oldest are
/// dropped (and logged).
const MAX_UNFLUSHED: usize = 100_000;

/// One key's usage since the last flush.
#[derive(Debug)]
pub(super) struct UsageCounter {
    requests: AtomicU64,
    last_used: AtomicI64,
    // Allocated at a key's first refusal: most keys are never refused, and
    // every cached key pays for what is inline.
    refused: OnceLock<Box<RefusalCounter>>,
}

/// One key's refusals since the last flush.
#[derive(Debug)]
struct RefusalCounter {
    counts: [AtomicU64; RefusalKind::ALL.len()],
    last: AtomicI64,
}

impl Default for UsageCounter {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            last_used: AtomicI64::new(i64::MIN),
            refused: OnceLock::new(),
        }
    }
}

impl UsageCounter {
    /// Counts one request at `now`.
    #[inline]
    pub(super) fn record(&self, now: OffsetDateTime) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let t = now.unix_timestamp();
        // Written at most once a second per key, to keep a hot key's cache
        // line from bouncing between cores.
        if self.last_used.load(Ordering::Relaxed) < t {
            self.last_used.store(t, Ordering::Relaxed);
        }
    }

    /// Counts one refusal of the key's holder at `now`.
    pub(super) fn refuse(&self, kind: RefusalKind, now: OffsetDateTime) {
        let counter = self.refused.get_or_init(|| {
            Box::new(RefusalCounter {
                counts: Default::default(),
                last: AtomicI64::new(i64::MIN),
            })
        });
        counter.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        counter
            .last
            .fetch_max(now.unix_timestamp(), Ordering::Relaxed);
    }

    /// Whether requests or refusals were counted since the last flush.
    fn is_pending(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
            || self
                .refused
                .get()
                .is_some_and(|r| r.counts.iter().any(|n| n.load(Ordering::Relaxed) > 0))
    }

    /// Takes the refusals counted since the last call, and the latest
    /// one's time (unix seconds).
    fn take_refusals(&self) -> (Refusals, i64) {
        let mut refused = Refusals::default();
        let Some(counter) = self.refused.get() else {
            return (refused, i64::MIN);
        };
        for kind in RefusalKind::ALL {
            *refused.get_mut(kind) = counter.counts[kind.index()].swap(0, Ordering::AcqRel);
        }
        (refused, counter.last.load(Ordering::Relaxed))
    }
}

impl CachedKey {
    /// Takes the usage counted on this entry since the last call.
    fn take_usage(&self) -> Option<UsageDelta> {
        let requests = self.usage.requests.swap(0, Ordering::AcqRel);
        let (refused, last_refused) = self.usage.take_refusals();
        if requests == 0 && refused.is_empty() {
            return None;
        }
        let last_used = self.usage.last_used.load(Ordering::Relaxed);
        let at = |secs: i64| OffsetDateTime::from_unix_timestamp(secs).unwrap_or(self.loaded_at);
        Some(UsageDelta {
            key_id: self.info.id,
            family: self.info.family,
            // The hour of the latest event counted, admitted or refused.
            bucket: usage_bucket(at(last_used.max(last_refused))),
            requests,
            refused,
            last_used_at: at(last_used),
        })
    }
}

/// Usage not yet written to the store, beyond what the cached entries hold.
#[derive(Debug, Default)]
pub(super) struct UsageLedger {
    // Entries that left the cache (evicted, replaced, invalidated) with
    // usage possibly still uncounted; drained by the next flush.
    retired: Arc<Mutex<Vec<Arc<CachedKey>>>>,
    // Usage a failed flush could not write; retried by the next one.
    unflushed: Mutex<Vec<UsageDelta>>,
}

impl UsageLedger {
    /// What the cache calls with every entry it lets go (see
    /// [`retire`](Self::retire)).
    pub(super) fn retirer(&self) -> impl Fn(Arc<CachedKey>) + Send + Sync + 'static {
        let retired = Arc::clone(&self.retired);
        move |entry| retire(&retired, entry)
    }

    /// Keeps an entry that is not (or no longer) in the cache for the next
    /// flush, if it has uncounted usage or a request still holds it (and may
    /// yet count a use on it): a load an invalidation overtook, an entry
    /// evicted or replaced between a request's lookup and its count.
    pub(super) fn retire(&self, entry: Arc<CachedKey>) {
        retire(&self.retired, entry);
    }

    /// Takes the usage counted since the last call: what failed to be
    /// written before, then retired entries', then the `live` entries'.
    /// Retired entries a request still holds stay for the next flush.
    fn take(&self, live: impl Iterator<Item = Arc<CachedKey>>) -> Vec<UsageDelta> {
        let retired = std::mem::take(&mut *lock(&self.retired));
        let mut out = std::mem::take(&mut *lock(&self.unflushed));
        let mut held = Vec::new();
        for entry in retired {
            out.extend(entry.take_usage());
            // Ours is one reference; any other is a request's.
            if Arc::strong_count(&entry) > 1 {
                held.push(entry);
            }
        }
        if !held.is_empty() {
            lock(&self.retired).extend(held);
        }
        out.extend(live.filter_map(|e| e.take_usage()));
        out
    }

    /// Writes the usage counted so far (see [`take`](Self::take)) to `store`
    /// in one batch; on failure keeps it, up to a bound, for the next flush.
    pub(super) async fn flush(
        &self,
        store: &dyn DynKeyStore,
        live: impl Iterator<Item = Arc<CachedKey>>,
    ) -> Result<usize, StoreError> {
        let batch = self.take(live);
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_usage(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                self.keep(batch);
                Err(e)
            }
        }
    }

    fn keep(&self, batch: Vec<UsageDelta>) {
        let mut unflushed = lock(&self.unflushed);
        unflushed.extend(batch);
        if unflushed.len() > MAX_UNFLUSHED {
            let dropped = unflushed.len() - MAX_UNFLUSHED;
            unflushed.drain(..dropped);
            tracing::error!(
                target: "keygate::usage",
                dropped,
                "usage could not be written for too long; oldest counts dropped"
            );
        }
    }
}

fn retire(retired: &Mutex<Vec<Arc<CachedKey>>>, entry: Arc<CachedKey>) {
    if entry.usage.is_pending() || Arc::strong_count(&entry) > 1 {
        lock(retired).push(entry);
    }
}

/// Flushes `verifier`'s usage every `period` until it is dropped.
pub(super) async fn flush_every(verifier: Weak<Verifier>, period: Duration) {
    crate::periodic::every(verifier, period, |v| async move {
        if let Err(e) = v.flush_usage().await {
            tracing::warn!(target: "keygate::usage", error = %e, "usage flush failed; will retry");
        }
    })
    .await;
}
