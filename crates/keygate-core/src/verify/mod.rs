//! Verification: the cache in front of the store, and the checks a presented
//! key must pass.
//!
//! [`Verifier`] is the façade; its parts live beside it:
//!
//! * `entry`: [`CachedKey`], what is kept per key, and its checks;
//! * `cache`: moka's positive cache, the hot mirror, the negative cache and
//!   the ids known to exist;
//! * `flight`: store lookups in flight, shared and bounded;
//! * `lookup`: what lookups and verifications answer, and their futures;
//! * `ledger`: usage accounting and its periodic flush;
//! * `listen`: the invalidation feed and the preload of known ids.

mod cache;
mod entry;
mod flight;
mod ledger;
mod listen;
mod lookup;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;

pub(crate) use self::cache::IdHashBuilder;
pub use self::{
    cache::CacheConfig,
    entry::{CachedKey, Checked, Denied},
    lookup::{Lookup, Pending, PendingVerification, Verification},
};
use self::{
    cache::{Cache, Probe},
    flight::Flights,
    ledger::UsageLedger,
    lookup::Miss,
};
use crate::{Clock, DynKeyStore, KeyHasher, KeyId, ParsedKey, StoreError};

/// What a store lookup answers (see [`Pending`] and
/// [`Verifier::find`]): the key's entry, `None` if the store has no key
/// with the id, or the store's error, shared among the requests that
/// waited for it.
pub type Loaded = Result<Option<Arc<CachedKey>>, Arc<StoreError>>;

/// Finds keys by id: cache first, store on a miss.
///
/// Holds a bounded positive cache (moka), a negative cache of unknown ids,
/// and the set of store queries in flight so that concurrent misses for one
/// id cost one query. Entries older than [`CacheConfig::ttl`] are re-read in
/// the background while they keep serving; if the store cannot answer, they
/// serve until [`CacheConfig::max_stale`]. Usage is counted on the entries
/// and written to the store in batches by [`flush_usage`](Self::flush_usage).
pub struct Verifier {
    store: Arc<dyn DynKeyStore>,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    cache: Cache,
    flights: Flights,
    ledger: UsageLedger,
    store_queries: AtomicU64,
    background: AtomicBool,
}

/// What the cache's answer asks of the verifier.
enum Step {
    Hit(Arc<CachedKey>),
    Unknown,
    Load(Miss),
    Busy,
}

impl Verifier {
    /// A verifier over `store`, hashing with `hasher`, telling time by `clock`.
    pub fn new(
        store: Arc<dyn DynKeyStore>,
        hasher: KeyHasher,
        clock: Arc<dyn Clock>,
        config: CacheConfig,
    ) -> Self {
        let ledger = UsageLedger::default();
        Self {
            store,
            hasher,
            clock,
            cache: Cache::new(&config, ledger.retirer()),
            flights: Flights::new(config.max_unknown_lookups),
            ledger,
            config,
            store_queries: AtomicU64::new(0),
            background: AtomicBool::new(false),
        }
    }

    /// The hasher keys are checked with.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn DynKeyStore> {
        &self.store
    }

    /// The cache configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// How many store lookups the verifier has made (for tests and metrics).
    pub fn store_queries(&self) -> u64 {
        self.store_queries.load(Ordering::Relaxed)
    }

    /// Verifies a parsed key at `now`: hashes it, looks its id up (cache
    /// first) and checks it against the entry — digest, revocation, expiry
    /// and, if the key has an IP allowlist, [`Denied::PeerUnknown`] for the
    /// caller to settle with [`CachedKey::check_peer`] once it knows the
    /// client's address.
    ///
    /// Costs what hashing, [`lookup`](Self::lookup) and
    /// [`CachedKey::check`] cost: on a cache hit, no allocation and no lock.
    #[inline]
    pub fn verify(self: &Arc<Self>, key: &ParsedKey<'_>, now: OffsetDateTime) -> Verification {
        let presented = self.hasher.digest(key.expose_secret());
        match self.step(key.id(), now) {
            Step::Hit(entry) => Verification::Found(Checked::new(entry, &presented, now)),
            Step::Unknown => Verification::Unknown,
            Step::Load(miss) => Verification::Loading(PendingVerification::new(miss, presented)),
            Step::Busy => Verification::Busy,
        }
    }

    /// Looks up `id` in the cache at time `now`; on a miss, returns the store
    /// lookup to await.
    #[inline]
    pub fn lookup(self: &Arc<Self>, id: KeyId, now: OffsetDateTime) -> Lookup {
        match self.step(id, now) {
            Step::Hit(entry) => Lookup::Hit(entry),
            Step::Unknown => Lookup::Unknown,
            Step::Load(miss) => Lookup::Miss(Pending::new(miss)),
            Step::Busy => Lookup::Busy,
        }
    }

    #[inline]
    fn step(self: &Arc<Self>, id: KeyId, now: OffsetDateTime) -> Step {
        match self.cache.probe(id, now) {
            Probe::Fresh(entry) => Step::Hit(entry),
            Probe::Aging(entry) => {
                self.refresh_in_background(&entry);
                Step::Hit(entry)
            }
            Probe::Unknown => Step::Unknown,
            // An id is worth a store query from the shared capacity if it is
            // known to exist; anything else may be forged, and gets only the
            // small `max_unknown_lookups` share.
            Probe::Load { fallback, known } => match self.join(id, known) {
                Some(joined) => Step::Load(Miss { joined, fallback }),
                None => Step::Busy,
            },
        }
    }

    /// Looks up `id`, from the cache or the store.
    ///
    /// # Errors
    ///
    /// The store's error, shared among the requests that waited for it;
    /// [`StoreError::Unavailable`] without asking the store when the id is
    /// not known to exist and [`CacheConfig::max_unknown_lookups`] lookups
    /// of such ids are in flight ([`Lookup::Busy`]).
    pub async fn find(self: &Arc<Self>, id: KeyId) -> Loaded {
        match self.lookup(id, self.clock.now()) {
            Lookup::Hit(k) => Ok(Some(k)),
            Lookup::Unknown => Ok(None),
            Lookup::Miss(p) => p.await,
            Lookup::Busy => Err(Arc::new(StoreError::unavailable(
                "too many lookups of unknown key ids in flight",
            ))),
        }
    }

    /// Whether `id` is known to exist: cached, found in the store before,
    /// preloaded at start, or created, changed or announced through this
    /// verifier. Lookups of known ids do not count against
    /// [`CacheConfig::max_unknown_lookups`].
    pub fn knows(&self, id: KeyId) -> bool {
        self.cache.knows(id)
    }

    /// Store lookups in flight (distinct ids), for tests and metrics. A
    /// lookup whose every waiter went away (a cancelled request, a timeout)
    /// is not counted: it was cancelled with them.
    pub fn lookups_in_flight(&self) -> usize {
        self.flights.len()
    }

    fn refresh_in_background(self: &Arc<Self>, entry: &Arc<CachedKey>) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            entry.refreshing.store(false, Ordering::Release);
            return;
        };
        // A cached id is known: joining never fails for it.
        let Some(joined) = self.join(entry.info.id, true) else {
            entry.refreshing.store(false, Ordering::Release);
            return;
        };
        let entry = Arc::clone(entry);
        handle.spawn(async move {
            if let Err(e) = joined.wait().await {
                tracing::warn!(
                    target: "keygate::cache",
                    key_id = entry.info.id.as_str(),
                    error = %e,
                    "could not refresh a cached key; serving the cached entry until max_stale"
                );
            }
            entry.refreshing.store(false, Ordering::Release);
        });
    }

    /// Forgets what the cache knows about `id`, so the next request reads the
    /// store. Called on every revoke, update and create made through keygate,
    /// and for every message of an invalidation feed.
    ///
    /// A lookup of `id` already in flight still answers the requests waiting
    /// for it, but never fills the cache: it may have read the store before
    /// the change this invalidation announces.
    pub fn invalidate(&self, id: KeyId) {
        self.flights.invalidate(id, || self.cache.forget(id));
    }

    /// Distrusts everything cached, e.g. after an invalidation feed lost
    /// messages: every entry must be re-read from the store before it is
    /// served again. Entries are kept only as a fallback for when the store
    /// cannot answer (within [`CacheConfig::max_stale`]), so a feed that drops
    /// during a database outage does not turn every request into a 503.
    pub fn invalidate_all(&self) {
        self.flights.invalidate_all(|| self.cache.distrust_all());
    }

    /// Number of keys in the positive cache (approximate, as moka counts).
    pub fn cached_keys(&self) -> u64 {
        self.cache.len()
    }

    /// Writes the usage counted so far to the store, in one batch. Returns
    /// the number of deltas written. On failure the counts are kept (up to a
    /// bound) for the next flush.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        // Evictions moka has not processed yet hand their entries over first.
        self.cache.settle();
        self.ledger
            .flush(self.store.as_ref(), self.cache.entries())
            .await
    }

    /// Starts the background work — the periodic usage flush and, if the
    /// store offers one, the invalidation feed — on the current tokio
    /// runtime. Idempotent; a no-op outside a runtime (call it again from
    /// within one). The tasks stop when the verifier is dropped.
    pub fn start_background(self: &Arc<Self>) {
        // A plain load first: this runs on every request until it succeeds.
        if self.background.load(Ordering::Relaxed) || self.background.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.background.store(false, Ordering::Release);
            return;
        };
        let every = self
            .config
            .usage_flush_interval
            .max(Duration::from_millis(10));
        handle.spawn(ledger::flush_every(Arc::downgrade(self), every));
        if self.config.preload_known_ids {
            handle.spawn(listen::preload_known(Arc::downgrade(self)));
        }
        if let Some(feed) = self.store.subscribe() {
            handle.spawn(listen::listen(Arc::downgrade(self), feed));
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hasher", &self.hasher)
            .field("store_queries", &self.store_queries())
            .finish_non_exhaustive()
    }
}
