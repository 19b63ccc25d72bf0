//! What `keygate serve` counts, in Prometheus' text format: decisions by
//! outcome, the auth endpoint's latency, store lookups and their latency,
//! and the cache.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use keygate_core::{
    CreditOp, CreditOutcome, DynKeyStore, InvalidationFeed, KeyFilter, KeyId, KeyRecord, KeyStore,
    KeyUpdate, Owner, Page, Replacement, Rotation, StoreError, UsageBucket, UsageDelta,
    time::OffsetDateTime,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The label of a decision: `admitted`, or the refusal's `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Refusal codes that come after the key was looked up: with admissions,
/// they are the requests the cache (or the store) had to answer.
const LOOKED_UP: &[&str] = &[
    "invalid_key",
    "revoked_key",
    "expired_key",
    "wrong_environment",
    "insufficient_scope",
    "ip_not_allowed",
    "rate_limited",
];

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    decisions: Family<Outcome, Counter>,
    auth_seconds: Histogram,
    store_lookups: Counter,
    store_lookup_seconds: Histogram,
    store_errors: Counter,
    cached_keys: Gauge,
    hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("keygate");
        let decisions = Family::<Outcome, Counter>::default();
        registry.register(
            "decisions",
            "Answers of the auth endpoint, by outcome: admitted, or the refusal's code",
            decisions.clone(),
        );
        // 50 µs to ~1.6 s.
        let auth_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "auth_duration_seconds",
            "Time the auth endpoint took to decide, from request to answer",
            auth_seconds.clone(),
        );
        let store_lookups = Counter::default();
        registry.register(
            "store_lookups",
            "Key lookups that missed the cache and asked the store",
            store_lookups.clone(),
        );
        let store_lookup_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "store_lookup_duration_seconds",
            "Time the store took to answer a key lookup",
            store_lookup_seconds.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Store operations that failed",
            store_errors.clone(),
        );
        let cached_keys = Gauge::default();
        registry.register(
            "cached_keys",
            "Keys in the verifier's cache",
            cached_keys.clone(),
        );
        let hit_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "cache_hit_ratio",
            "Share of key lookups since start answered from the cache, without the store",
            hit_ratio.clone(),
        );
        Self {
            registry,
            decisions,
            auth_seconds,
            store_lookups,
            store_lookup_seconds,
            store_errors,
            cached_keys,
            hit_ratio,
        }
    }

    /// Counts one answer of the auth endpoint.
    pub(crate) fn decided(&self, outcome: &'static str) {
        self.decisions.get_or_create(&Outcome { outcome }).inc();
    }

    /// Records how long one answer took.
    pub(crate) fn answered_in(&self, took: Duration) {
        self.auth_seconds.observe(took.as_secs_f64());
    }

    /// The text a scrape gets, with the cache figures read now.
    pub(crate) fn render(&self, cached_keys: u64) -> String {
        self.cached_keys
            .set(i64::try_from(cached_keys).unwrap_or(i64::MAX));
        let looked_up: u64 = std::iter::once("admitted")
            .chain(LOOKED_UP.iter().copied())
            .map(|outcome| self.decisions.get_or_create(&Outcome { outcome }).get())
            .sum();
        if looked_up > 0 {
            let misses = self.store_lookups.get().min(looked_up);
            #[allow(clippy::cast_precision_loss)] // a ratio: 2^53 requests is far off
            self.hit_ratio.set(1.0 - misses as f64 / looked_up as f64);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The server's store, timing the lookups the request path makes.
pub(crate) struct TimedStore {
    inner: Arc<dyn DynKeyStore>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub(crate) fn new(inner: Arc<dyn DynKeyStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.metrics.store_errors.inc();
        }
        result
    }
}

impl KeyStore for TimedStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let started = Instant::now();
        let result = self.inner.find(id).await;
        self.metrics.store_lookups.inc();
        self.metrics
            .store_lookup_seconds
            .observe(started.elapsed().as_secs_f64());
        self.counted(result)
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.counted(self.inner.insert(record).await)
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        self.counted(self.inner.update(id, changes).await)
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        self.counted(self.inner.rotate(id, replacement).await)
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        self.counted(self.inner.revoke(id, at).await)
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.counted(self.inner.list_by_owner(owner, page).await)
    }

    async fn list_keys(
        &self,
        filter: &KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.counted(self.inner.list_keys(filter, now, page).await)
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.counted(self.inner.list_expiring(before, limit).await)
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.counted(self.inner.record_usage(batch).await)
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.counted(self.inner.usage(family, since).await)
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.counted(self.inner.count_active_by_owner(owner, now).await)
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        self.counted(self.inner.list_created_by(family).await)
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        self.counted(self.inner.list_live_ids(limit).await)
    }

    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: Duration,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.counted(self.inner.claim_reminder(id, threshold, at).await)
    }

    async fn release_reminder(&self, id: KeyId, threshold: Duration) -> Result<(), StoreError> {
        self.counted(self.inner.release_reminder(id, threshold).await)
    }

    async fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<CreditOutcome>, StoreError> {
        self.counted(self.inner.credits(account, op, now).await)
    }

    fn subscribe(&self) -> Option<InvalidationFeed> {
        self.inner.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_every_series() {
        let m = Metrics::new();
        m.decided("admitted");
        m.decided("admitted");
        m.decided("missing_key");
        m.store_lookups.inc();
        m.answered_in(Duration::from_micros(120));
        let text = m.render(7);
        for line in [
            "keygate_decisions_total{outcome=\"admitted\"} 2",
            "keygate_decisions_total{outcome=\"missing_key\"} 1",
            "keygate_store_lookups_total 1",
            "keygate_cached_keys 7",
            "keygate_cache_hit_ratio 0.5",
            "keygate_auth_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
