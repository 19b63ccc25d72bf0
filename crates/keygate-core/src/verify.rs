//! Verification: the cache in front of the store, and the checks a presented
//! key must pass.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;
use time::OffsetDateTime;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::{
    Clock, Invalidation, InvalidationFeed, KeyDigest, KeyHasher, KeyId, KeyInfo, KeyRecord, Quotas,
    StoreError, UsageDelta, record::ip_allowed, store::BoxFuture, usage_bucket,
};

/// What the verifier keeps per key: everything the request path checks, and
/// the shared [`KeyInfo`] handed to handlers. Never the key.
pub struct CachedKey {
    info: Arc<KeyInfo>,
    digest: KeyDigest,
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    allowed_ips: Box<[IpNet]>,
    rate_limit: Option<Quotas>,
    superseded: bool,
    loaded_at: OffsetDateTime,
    // The verifier's epoch when this entry was read; an older epoch means
    // an invalidation feed lost messages since, so the entry is suspect.
    epoch: u64,
    refreshing: AtomicBool,
    // Usage since the last flush: counted here, on the entry the request
    // already holds, so accounting costs one atomic add and no lookup.
    requests: AtomicU64,
    last_used: AtomicI64,
    // When moka was last told about a read of this entry (unix seconds).
    touched: AtomicI64,
}

impl CachedKey {
    /// Builds the cache entry for a record read at `loaded_at`.
    pub fn new(record: &KeyRecord, loaded_at: OffsetDateTime) -> Self {
        Self {
            info: Arc::new(KeyInfo::from(record)),
            digest: record.digest,
            revoked_at: record.revoked_at,
            expires_at: record.expires_at,
            allowed_ips: record.allowed_ips.clone().into_boxed_slice(),
            rate_limit: record.rate_limit.clone(),
            superseded: record.superseded_by.is_some(),
            loaded_at,
            epoch: 0,
            refreshing: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            last_used: AtomicI64::new(i64::MIN),
            touched: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether the key was replaced in a rotation and is in its grace period.
    pub fn is_superseded(&self) -> bool {
        self.superseded
    }

    /// Counts one admitted request at `now` towards the key's usage.
    pub fn record_use(&self, now: OffsetDateTime) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let t = now.unix_timestamp();
        // Written at most once a second per key, to keep a hot key's cache
        // line from bouncing between cores.
        if self.last_used.load(Ordering::Relaxed) < t {
            self.last_used.store(t, Ordering::Relaxed);
        }
    }

    fn take_usage(&self) -> Option<UsageDelta> {
        let requests = self.requests.swap(0, Ordering::AcqRel);
        if requests == 0 {
            return None;
        }
        let last = OffsetDateTime::from_unix_timestamp(self.last_used.load(Ordering::Relaxed))
            .unwrap_or(self.loaded_at);
        Some(UsageDelta {
            key_id: self.info.id,
            family: self.info.family,
            bucket: usage_bucket(last),
            requests,
            last_used_at: last,
        })
    }

    /// The key's public information.
    pub fn info(&self) -> &Arc<KeyInfo> {
        &self.info
    }

    /// The key's own quotas, if it has any (otherwise the layer's default
    /// applies).
    pub fn rate_limit(&self) -> Option<&Quotas> {
        self.rate_limit.as_ref()
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }

    /// Checks a presented key's digest, then revocation, expiry at `now` and
    /// the IP allowlist.
    ///
    /// The digest is checked first, in constant time, so that only a holder
    /// of the real key learns that it is revoked or expired.
    ///
    /// # Errors
    ///
    /// The first [`Denied`] reason.
    pub fn check(
        &self,
        presented: &KeyDigest,
        now: OffsetDateTime,
        peer: Option<IpAddr>,
    ) -> Result<(), Denied> {
        if !self.digest.ct_eq(presented) {
            return Err(Denied::DigestMismatch);
        }
        if self.revoked_at.is_some() {
            return Err(Denied::Revoked);
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(Denied::Expired);
        }
        if !self.allowed_ips.is_empty() {
            match peer {
                Some(ip) if ip_allowed(&self.allowed_ips, ip) => {}
                Some(_) => return Err(Denied::IpNotAllowed),
                None => return Err(Denied::PeerUnknown),
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CachedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKey")
            .field("id", &self.info.id)
            .field("revoked", &self.revoked_at.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a well-formed key with a known id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The id exists but the rest of the key does not match: a forgery or a
    /// corrupted copy. Reported to clients exactly like an unknown key.
    #[error("the key does not match")]
    DigestMismatch,
    /// The key was revoked.
    #[error("the key has been revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("the key has expired")]
    Expired,
    /// The key may not be used from the client's address.
    #[error("the key may not be used from this address")]
    IpNotAllowed,
    /// The key has an IP allowlist but the client's address is unknown
    /// (no `ConnectInfo`, no trusted forwarding header).
    #[error("the key has an IP allowlist but the client address is unknown")]
    PeerUnknown,
}

/// Cache sizes and lifetimes.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// Most keys kept in the positive cache (default 100 000).
    pub capacity: u64,
    /// How long a positive entry is served before it is re-read from the
    /// store (default 5 min). The re-read happens in the background while
    /// the entry keeps serving. Revocations made through keygate (and, with
    /// an invalidation feed, on other nodes) invalidate entries at once; this
    /// is only the backstop for changes made behind keygate's back.
    pub ttl: Duration,
    /// How long after its last successful read an entry may still be served
    /// when the store cannot answer (default 15 min). Past that, requests
    /// with the key get 503 until the store is back.
    pub max_stale: Duration,
    /// How often usage counts are written to the store (default 5 s).
    pub usage_flush_interval: Duration,
    /// Most unknown ids remembered (default 100 000).
    pub negative_capacity: u64,
    /// How long an unknown id is remembered (default 60 s): a flood of
    /// requests with unknown keys causes at most one store query per id per
    /// this period.
    pub negative_ttl: Duration,
    /// Most store lookups in flight at once for ids this verifier has no
    /// reason to believe exist (default 4): ids it has never found in the
    /// store, nor seen created, changed or announced by an invalidation feed.
    /// Anyone can mint well-formed keys with fresh ids, and each costs one
    /// store query; past this bound such lookups fail at once with
    /// 503 `unavailable` (never 401) instead of queueing for a connection.
    /// Ids known to exist and background refreshes are not counted, so keep
    /// this below the store's connection pool size (PostgreSQL's default is
    /// 10) and they always find capacity. 0 is treated as 1.
    pub max_unknown_lookups: usize,
    /// Read the ids of the store's live keys (up to `capacity`) once at
    /// start, so they count as known from the first request (default on):
    /// without it, a forged-id flood right after a restart makes every real
    /// key not yet looked up share the forgers' `max_unknown_lookups`.
    pub preload_known_ids: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(300),
            max_stale: Duration::from_secs(900),
            usage_flush_interval: Duration::from_secs(5),
            negative_capacity: 100_000,
            negative_ttl: Duration::from_secs(60),
            max_unknown_lookups: 4,
            preload_known_ids: true,
        }
    }
}

type Loaded = Result<Option<Arc<CachedKey>>, Arc<StoreError>>;

/// Seeded per process, so hash flooding needs the seed; fast on 10-byte ids.
pub(crate) type IdHashBuilder = foldhash::fast::RandomState;

/// The hot tier: every entry of the moka cache, readable in ~10 ns.
type Hot = Arc<dashmap::DashMap<KeyId, Arc<CachedKey>, IdHashBuilder>>;

/// The result of looking an id up in the cache.
#[derive(Debug)]
pub enum Lookup {
    /// Cached.
    Hit(Arc<CachedKey>),
    /// Recently looked up and not in the store.
    Unknown,
    /// Not cached: the future asks the store (concurrent misses for one id
    /// share one query) and fills the cache.
    Miss(Pending),
    /// Not cached, not known to exist, and
    /// [`CacheConfig::max_unknown_lookups`] such lookups are already in
    /// flight: answer 503 (the store's capacity is being held by lookups
    /// of ids that are probably forged), never 401.
    Busy,
}

/// A store lookup in progress (see [`Lookup::Miss`]).
pub struct Pending(pub BoxFuture<'static, Loaded>);

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// Finds keys by id: cache first, store on a miss.
///
/// Holds a bounded positive cache (moka), a negative cache of unknown ids,
/// and the set of store queries in flight so that concurrent misses for one
/// id cost one query. Entries older than [`CacheConfig::ttl`] are re-read in
/// the background while they keep serving; if the store cannot answer, they
/// serve until [`CacheConfig::max_stale`]. Usage is counted on the entries
/// and written to the store in batches by [`flush_usage`](Self::flush_usage).
pub struct Verifier {
    store: Arc<dyn crate::DynKeyStore>,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    ttl: time::Duration,
    max_stale: time::Duration,
    cache: moka::sync::Cache<KeyId, Arc<CachedKey>>,
    // moka decides what stays (size bound, idle timeout, eviction); a read
    // through moka records the access and reads the clock, 150+ ns. Warm
    // hits read this mirror instead and tell moka at most once per
    // `touch_every` per key, so its policy still sees the key in use.
    hot: Hot,
    // Seconds between the reads moka is told about, per key: a tenth of the
    // TTL (at least 1 s). moka evicts idle entries after max_stale, so this
    // is plenty; once a second made a million randomly used keys pay a moka
    // read on nearly every request.
    touch_every: i64,
    negative: moka::sync::Cache<KeyId, ()>,
    // Ids with reason to exist: found in the store, or named by a change made
    // through keygate or by an invalidation feed. Outlives the positive
    // cache (eviction, invalidation), so a real key that is merely uncached
    // does not compete with forged ids for `unknown_lookups`.
    known: moka::sync::Cache<KeyId, ()>,
    // Permits for store lookups of ids not in `known`.
    unknown_lookups: Arc<Semaphore>,
    // One entry per id being read from the store. Every change to this map
    // and to a flight's `waiters` happens under this lock, and so does every
    // cache fill by a flight, so an invalidation is never undone by a load
    // that began before it.
    inflight: Mutex<HashMap<KeyId, Arc<Flight>>>,
    // Entries that left the cache (evicted, replaced, invalidated) with
    // usage possibly still uncounted; drained by the next flush.
    retired: Arc<Mutex<Vec<Arc<CachedKey>>>>,
    // Usage a failed flush could not write; retried by the next one.
    unflushed: Mutex<Vec<UsageDelta>>,
    // Bumped by `invalidate_all`: entries of older epochs must be re-read.
    epoch: AtomicU64,
    store_queries: AtomicU64,
    background: AtomicBool,
}

/// One store lookup in progress, shared by every request waiting for its id.
struct Flight {
    cell: OnceCell<Loaded>,
    // How many `Joined` wait on this flight; changed only under
    // `Verifier::inflight`, so the last one to leave knows it is the last.
    waiters: AtomicUsize,
    // Set under `Verifier::inflight` when the id is invalidated: the answer
    // may predate the change, so it must not fill the cache.
    stale: AtomicBool,
    // For an id not known to exist: held until the last waiter leaves, so
    // the bound counts every query that may still be running.
    _permit: Option<OwnedSemaphorePermit>,
}

/// A request's place in a [`Flight`]. However it leaves — answered, or
/// dropped mid-load by a client reset, an HTTP/2 `RST_STREAM` or a timeout —
/// the last one out removes the flight, so cancelled lookups leave nothing
/// behind (and release their share of `max_unknown_lookups`).
struct Joined {
    verifier: Arc<Verifier>,
    id: KeyId,
    flight: Arc<Flight>,
}

impl Joined {
    async fn wait(self) -> Loaded {
        let result = self
            .flight
            .cell
            .get_or_init(|| self.verifier.fetch(self.id, &self.flight))
            .await
            .clone();
        // Answered: later requests find the cache filled, or (after an
        // error) must ask the store again rather than reuse this answer.
        self.verifier.end_flight(self.id, &self.flight);
        result
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let mut inflight = lock(&self.verifier.inflight);
        if self.flight.waiters.fetch_sub(1, Ordering::Relaxed) == 1
            && inflight
                .get(&self.id)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            inflight.remove(&self.id);
        }
    }
}

/// Most usage deltas kept across failing flushes before the oldest are
/// dropped (and logged).
const MAX_UNFLUSHED: usize = 100_000;

impl Verifier {
    /// A verifier over `store`, hashing with `hasher`, telling time by `clock`.
    pub fn new(
        store: Arc<dyn crate::DynKeyStore>,
        hasher: KeyHasher,
        clock: Arc<dyn Clock>,
        config: CacheConfig,
    ) -> Self {
        let retired: Arc<Mutex<Vec<Arc<CachedKey>>>> = Arc::default();
        let sink = Arc::clone(&retired);
        let hot: Hot = Arc::new(dashmap::DashMap::with_hasher(IdHashBuilder::default()));
        let hot_evicted = Arc::clone(&hot);
        let to_time = |d: Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        Self {
            store,
            hasher,
            clock,
            ttl: to_time(config.ttl),
            max_stale: to_time(config.max_stale.max(config.ttl)),
            cache: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                // Unused entries go once they are too stale to serve anyway.
                .time_to_idle(config.max_stale.max(config.ttl))
                .eviction_listener(move |id, entry: Arc<CachedKey>, _cause| {
                    // Only if it is still this entry: a replacement must stay.
                    hot_evicted.remove_if(&*id, |_, e| Arc::ptr_eq(e, &entry));
                    if entry.requests.load(Ordering::Relaxed) > 0 {
                        lock(&sink).push(entry);
                    }
                })
                .build(),
            negative: moka::sync::Cache::builder()
                .max_capacity(config.negative_capacity)
                .time_to_live(config.negative_ttl)
                .build(),
            known: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                .build(),
            unknown_lookups: Arc::new(Semaphore::new(config.max_unknown_lookups.max(1))),
            touch_every: i64::try_from((config.ttl / 10).as_secs())
                .unwrap_or(i64::MAX)
                .max(1),
            config,
            hot,
            inflight: Mutex::new(HashMap::new()),
            retired,
            unflushed: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            store_queries: AtomicU64::new(0),
            background: AtomicBool::new(false),
        }
    }

    /// The hasher keys are checked with.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn crate::DynKeyStore> {
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

    /// Looks up `id` in the cache at time `now`; on a miss, returns the store
    /// lookup to await.
    pub fn lookup(self: &Arc<Self>, id: KeyId, now: OffsetDateTime) -> Lookup {
        let mut fallback = None;
        let hit = match self.hot.get(&id).map(|e| Arc::clone(e.value())) {
            Some(hit) => {
                let t = now.unix_timestamp();
                if hit.touched.load(Ordering::Relaxed) <= t - self.touch_every {
                    hit.touched.store(t, Ordering::Relaxed);
                    let _ = self.cache.get(&id);
                }
                Some(hit)
            }
            None => self.cache.get(&id),
        };
        let cached = hit.is_some();
        if let Some(hit) = hit {
            let age = now - hit.loaded_at;
            let suspect = hit.epoch != self.epoch.load(Ordering::Acquire);
            if !suspect && age < self.ttl {
                return Lookup::Hit(hit);
            }
            if !suspect && age < self.max_stale {
                self.refresh_in_background(&hit);
                return Lookup::Hit(hit);
            }
            // Suspect (the feed lost messages) or too stale to vouch for:
            // wait for the store. If the store cannot answer, a suspect entry
            // still within max_stale is better than refusing every caller.
            if age < self.max_stale {
                fallback = Some(hit);
            }
        } else if self.negative.contains_key(&id) {
            return Lookup::Unknown;
        }
        // An id is worth a store query from the shared capacity if it was
        // cached (it existed) or is otherwise known to exist; anything else
        // may be forged, and gets only the small `max_unknown_lookups` share.
        let known = cached || self.known.contains_key(&id);
        let Some(joined) = self.join(id, known) else {
            return Lookup::Busy;
        };
        Lookup::Miss(Pending(Box::pin(async move {
            match (joined.wait().await, fallback) {
                (Err(e), Some(entry)) => {
                    tracing::warn!(
                        target: "keygate::cache",
                        key_id = id.as_str(),
                        error = %e,
                        "store unavailable; serving the cached entry until max_stale"
                    );
                    Ok(Some(entry))
                }
                (result, _) => result,
            }
        })))
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
            Lookup::Miss(p) => p.0.await,
            Lookup::Busy => Err(Arc::new(StoreError::unavailable(
                "too many lookups of unknown key ids in flight",
            ))),
        }
    }

    fn end_flight(&self, id: KeyId, flight: &Arc<Flight>) {
        let mut inflight = lock(&self.inflight);
        if inflight.get(&id).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            inflight.remove(&id);
        }
    }

    /// Whether `id` is known to exist: cached, found in the store before,
    /// preloaded at start, or created, changed or announced through this
    /// verifier. Lookups of known ids do not count against
    /// [`CacheConfig::max_unknown_lookups`].
    pub fn knows(&self, id: KeyId) -> bool {
        self.cache.contains_key(&id) || self.known.contains_key(&id)
    }

    /// Store lookups in flight (distinct ids), for tests and metrics. A
    /// lookup whose every waiter went away (a cancelled request, a timeout)
    /// is not counted: it was cancelled with them.
    pub fn lookups_in_flight(&self) -> usize {
        lock(&self.inflight).len()
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

    /// Joins the store lookup in flight for `id`, or starts one. `None` if a
    /// new lookup of an id not `known` to exist would exceed
    /// [`CacheConfig::max_unknown_lookups`]; joining an existing lookup is
    /// always allowed, as it costs the store nothing.
    fn join(self: &Arc<Self>, id: KeyId, known: bool) -> Option<Joined> {
        let mut inflight = lock(&self.inflight);
        let flight = match inflight.get(&id) {
            Some(flight) => Arc::clone(flight),
            None => {
                let permit = if known {
                    None
                } else {
                    Some(Arc::clone(&self.unknown_lookups).try_acquire_owned().ok()?)
                };
                let flight = Arc::new(Flight {
                    cell: OnceCell::new(),
                    waiters: AtomicUsize::new(0),
                    stale: AtomicBool::new(false),
                    _permit: permit,
                });
                inflight.insert(id, Arc::clone(&flight));
                flight
            }
        };
        flight.waiters.fetch_add(1, Ordering::Relaxed);
        Some(Joined {
            verifier: Arc::clone(self),
            id,
            flight,
        })
    }

    async fn fetch(&self, id: KeyId, flight: &Flight) -> Loaded {
        self.store_queries.fetch_add(1, Ordering::Relaxed);
        let found = self.store.find(id).await.map_err(Arc::new)?;
        // Built before taking the lock, which must not wait on a clock or
        // an allocator longer than it has to.
        let entry = found.map(|record| {
            Arc::new(CachedKey {
                epoch: self.epoch.load(Ordering::Acquire),
                ..CachedKey::new(&record, self.clock.now())
            })
        });
        // Checking `stale` and filling the cache under the lock that
        // `invalidate` holds to set it: an invalidation either comes first
        // (and this answer, possibly read before the change, is not cached)
        // or comes after (and removes what this puts in).
        let _inflight = lock(&self.inflight);
        if !flight.stale.load(Ordering::Relaxed) {
            if let Some(entry) = &entry {
                self.cache.insert(id, Arc::clone(entry));
                self.hot.insert(id, Arc::clone(entry));
                self.known.insert(id, ());
            } else {
                self.cache.invalidate(&id);
                self.hot.remove(&id);
                self.known.invalidate(&id);
                self.negative.insert(id, ());
            }
        }
        Ok(entry)
    }

    /// Forgets what the cache knows about `id`, so the next request reads the
    /// store. Called on every revoke, update and create made through keygate,
    /// and for every message of an invalidation feed.
    ///
    /// A lookup of `id` already in flight still answers the requests waiting
    /// for it, but never fills the cache: it may have read the store before
    /// the change this invalidation announces.
    pub fn invalidate(&self, id: KeyId) {
        let mut inflight = lock(&self.inflight);
        if let Some(flight) = inflight.remove(&id) {
            flight.stale.store(true, Ordering::Relaxed);
        }
        self.cache.invalidate(&id);
        self.hot.remove(&id);
        self.negative.invalidate(&id);
        // Only keygate's own changes and the store's feed call this: the id
        // was just created or changed, so it exists (or did); its next
        // lookup is not one of a forger's.
        self.known.insert(id, ());
    }

    /// Distrusts everything cached, e.g. after an invalidation feed lost
    /// messages: every entry must be re-read from the store before it is
    /// served again. Entries are kept only as a fallback for when the store
    /// cannot answer (within [`CacheConfig::max_stale`]), so a feed that drops
    /// during a database outage does not turn every request into a 503.
    pub fn invalidate_all(&self) {
        let mut inflight = lock(&self.inflight);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for (_, flight) in inflight.drain() {
            flight.stale.store(true, Ordering::Relaxed);
        }
        self.negative.invalidate_all();
    }

    /// Number of keys in the positive cache (approximate, as moka counts).
    pub fn cached_keys(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Takes the usage counted since the last call, from cached and retired
    /// entries.
    fn take_usage(&self) -> Vec<UsageDelta> {
        self.cache.run_pending_tasks();
        let retired = std::mem::take(&mut *lock(&self.retired));
        let mut out = std::mem::take(&mut *lock(&self.unflushed));
        out.extend(retired.iter().filter_map(|e| e.take_usage()));
        out.extend(self.cache.iter().filter_map(|(_, e)| e.take_usage()));
        out
    }

    /// Writes the usage counted so far to the store, in one batch. Returns
    /// the number of deltas written. On failure the counts are kept (up to a
    /// bound) for the next flush.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        let batch = self.take_usage();
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.record_usage(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
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
                Err(e)
            }
        }
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
        let weak = Arc::downgrade(self);
        let every = self
            .config
            .usage_flush_interval
            .max(Duration::from_millis(10));
        handle.spawn(flush_loop(weak, every));
        if self.config.preload_known_ids {
            handle.spawn(preload_known(Arc::downgrade(self)));
        }
        if let Some(feed) = self.store.subscribe() {
            handle.spawn(listen(Arc::downgrade(self), feed));
        }
    }
}

/// Reads the ids of the store's live keys into `known`, once.
async fn preload_known(verifier: Weak<Verifier>) {
    let Some(v) = verifier.upgrade() else { return };
    let limit = usize::try_from(v.config.capacity).unwrap_or(usize::MAX);
    match v.store.list_live_ids(limit).await {
        Ok(ids) => {
            let count = ids.len();
            for id in ids {
                v.known.insert(id, ());
            }
            tracing::debug!(target: "keygate::cache", count, "ids of live keys preloaded");
        }
        Err(err) => tracing::warn!(
            target: "keygate::cache",
            error = %err,
            "could not preload the ids of live keys; they become known as they are used"
        ),
    }
}

async fn flush_loop(verifier: Weak<Verifier>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(v) = verifier.upgrade() else { break };
        if let Err(e) = v.flush_usage().await {
            tracing::warn!(target: "keygate::usage", error = %e, "usage flush failed; will retry");
        }
    }
}

async fn listen(verifier: Weak<Verifier>, mut feed: InvalidationFeed) {
    while let Some(msg) = feed.recv().await {
        let Some(v) = verifier.upgrade() else { break };
        match msg {
            Invalidation::Key(id) => v.invalidate(id),
            Invalidation::All => v.invalidate_all(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hasher", &self.hasher)
            .field("store_queries", &self.store_queries())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::{
        Environment, FakeClock, KeyFormat, KeyStore, KeyUpdate, MemoryStore, Owner, Page,
        Replacement, Rotation, Scopes, SystemClock, UsageBucket,
    };

    fn record(format: &KeyFormat, hasher: &KeyHasher) -> (String, KeyRecord) {
        let key = format.generate(Environment::Live).unwrap();
        let now = OffsetDateTime::now_utc();
        let rec = KeyRecord {
            id: key.id(),
            family: key.id(),
            owner: Owner::user("u1"),
            name: "test".into(),
            scopes: Scopes::parse_list("read").unwrap(),
            environment: Environment::Live,
            digest: hasher.digest(key.expose_secret()),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            allowed_ips: vec![],
            metadata: Default::default(),
            last_used_at: None,
            superseded_by: None,
            created_by: None,
        };
        (key.expose_secret().to_owned(), rec)
    }

    /// A store that counts lookups, can be slowed down, and can fail.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        finds: AtomicUsize,
        delay: Duration,
        down: AtomicBool,
    }

    impl Counting {
        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                Err(StoreError::unavailable("connection refused"))
            } else {
                Ok(())
            }
        }
    }

    impl KeyStore for Counting {
        async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
            self.finds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.check()?;
            self.inner.find(id).await
        }
        async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
            self.inner.insert(r).await
        }
        async fn update(&self, id: KeyId, c: &KeyUpdate) -> Result<KeyRecord, StoreError> {
            self.inner.update(id, c).await
        }
        async fn rotate(&self, id: KeyId, r: &Replacement) -> Result<Rotation, StoreError> {
            self.inner.rotate(id, r).await
        }
        async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
            self.inner.list_created_by(family).await
        }
        async fn revoke(
            &self,
            id: KeyId,
            at: OffsetDateTime,
        ) -> Result<Option<KeyRecord>, StoreError> {
            self.inner.revoke(id, at).await
        }
        async fn list_by_owner(&self, o: &Owner, p: Page) -> Result<Vec<KeyRecord>, StoreError> {
            self.inner.list_by_owner(o, p).await
        }
        async fn list_expiring(
            &self,
            before: OffsetDateTime,
            limit: usize,
        ) -> Result<Vec<KeyRecord>, StoreError> {
            self.inner.list_expiring(before, limit).await
        }
        async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
            self.check()?;
            self.inner.record_usage(batch).await
        }
        async fn usage(
            &self,
            family: KeyId,
            since: OffsetDateTime,
        ) -> Result<Vec<UsageBucket>, StoreError> {
            self.inner.usage(family, since).await
        }
    }

    /// Waits (at most 5 s) for a background task's effect, then fails.
    async fn eventually(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "background work did not happen"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn verifier(store: Arc<Counting>, clock: Arc<dyn Clock>, config: CacheConfig) -> Arc<Verifier> {
        Arc::new(Verifier::new(store, KeyHasher::sha256(), clock, config))
    }

    #[tokio::test]
    async fn hits_unknowns_and_invalidation() {
        let format = KeyFormat::new("t").unwrap();
        let hasher = KeyHasher::sha256();
        let store = Arc::new(Counting::default());
        let (key, rec) = record(&format, &hasher);
        store.insert(&rec).await.unwrap();
        let v = verifier(store.clone(), Arc::new(SystemClock), CacheConfig::default());
        let now = OffsetDateTime::now_utc;

        let k = v.find(rec.id).await.unwrap().unwrap();
        assert!(k.check(&hasher.digest(&key), now(), None).is_ok());
        assert!(matches!(v.lookup(rec.id, now()), Lookup::Hit(_)));
        assert_eq!(store.finds.load(Ordering::SeqCst), 1);

        let unknown: KeyId = "ZZZZZZZZZZ".parse().unwrap();
        assert!(v.find(unknown).await.unwrap().is_none());
        assert!(matches!(v.lookup(unknown, now()), Lookup::Unknown));
        assert_eq!(store.finds.load(Ordering::SeqCst), 2);

        store.revoke(rec.id, now()).await.unwrap();
        v.invalidate(rec.id);
        let k = v.find(rec.id).await.unwrap().unwrap();
        assert_eq!(
            k.check(&hasher.digest(&key), now(), None),
            Err(Denied::Revoked)
        );
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_query() {
        let format = KeyFormat::new("t").unwrap();
        let store = Arc::new(Counting {
            delay: Duration::from_millis(20),
            ..Default::default()
        });
        let (_, rec) = record(&format, &KeyHasher::sha256());
        store.insert(&rec).await.unwrap();
        let v = verifier(store.clone(), Arc::new(SystemClock), CacheConfig::default());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let v = Arc::clone(&v);
                tokio::spawn(async move { v.find(rec.id).await.unwrap().is_some() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(store.finds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_entries_refresh_in_background_and_survive_an_outage_until_max_stale() {
        let format = KeyFormat::new("t").unwrap();
        let store = Arc::new(Counting::default());
        let (_, rec) = record(&format, &KeyHasher::sha256());
        store.insert(&rec).await.unwrap();
        let clock = FakeClock::starting_now();
        let config = CacheConfig {
            ttl: Duration::from_secs(60),
            max_stale: Duration::from_secs(600),
            ..CacheConfig::default()
        };
        let v = verifier(store.clone(), Arc::new(clock.clone()), config);
        v.find(rec.id).await.unwrap().unwrap();
        assert_eq!(store.finds.load(Ordering::SeqCst), 1);

        // Past the TTL: still a hit, and one background refresh.
        clock.advance(Duration::from_secs(61));
        assert!(matches!(v.lookup(rec.id, clock.now()), Lookup::Hit(_)));
        assert!(matches!(v.lookup(rec.id, clock.now()), Lookup::Hit(_)));
        eventually(|| store.finds.load(Ordering::SeqCst) >= 2).await;
        assert_eq!(
            store.finds.load(Ordering::SeqCst),
            2,
            "one refresh, not one per hit"
        );

        // Store down: the refreshed entry serves until max_stale...
        store.down.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(500));
        assert!(matches!(v.lookup(rec.id, clock.now()), Lookup::Hit(_)));
        // ...and past it, the request must wait for the store, which fails.
        clock.advance(Duration::from_secs(200));
        match v.lookup(rec.id, clock.now()) {
            Lookup::Miss(p) => assert!(p.0.await.is_err()),
            other => panic!("expected a miss, got {other:?}"),
        }
        // The store comes back: service recovers by itself.
        store.down.store(false, Ordering::SeqCst);
        assert!(v.find(rec.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn usage_is_flushed_in_batches_and_survives_eviction_and_failures() {
        let format = KeyFormat::new("t").unwrap();
        let store = Arc::new(Counting::default());
        let (_, rec) = record(&format, &KeyHasher::sha256());
        store.insert(&rec).await.unwrap();
        let v = verifier(store.clone(), Arc::new(SystemClock), CacheConfig::default());
        let now = OffsetDateTime::now_utc();

        let k = v.find(rec.id).await.unwrap().unwrap();
        for _ in 0..3 {
            k.record_use(now);
        }
        // Invalidation retires the entry; its counts must not be lost.
        v.invalidate(rec.id);
        let k = v.find(rec.id).await.unwrap().unwrap();
        k.record_use(now);

        store.down.store(true, Ordering::SeqCst);
        assert!(v.flush_usage().await.is_err());
        store.down.store(false, Ordering::SeqCst);
        k.record_use(now);
        assert!(v.flush_usage().await.unwrap() >= 1);
        assert_eq!(v.flush_usage().await.unwrap(), 0);

        let usage = store
            .usage(rec.family, now - Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(usage.iter().map(|b| b.requests).sum::<u64>(), 5);
        let stored = store.find(rec.id).await.unwrap().unwrap();
        assert_eq!(
            stored.last_used_at.map(OffsetDateTime::unix_timestamp),
            Some(now.unix_timestamp())
        );
    }

    #[tokio::test]
    async fn an_invalidation_feed_drops_entries() {
        struct Feeding(Counting, Mutex<Option<InvalidationFeed>>);
        impl KeyStore for Feeding {
            async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
                self.0.find(id).await
            }
            async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
                self.0.insert(r).await
            }
            async fn update(&self, id: KeyId, c: &KeyUpdate) -> Result<KeyRecord, StoreError> {
                self.0.update(id, c).await
            }
            async fn rotate(&self, id: KeyId, r: &Replacement) -> Result<Rotation, StoreError> {
                self.0.rotate(id, r).await
            }
            async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
                self.0.list_created_by(family).await
            }
            async fn revoke(
                &self,
                id: KeyId,
                at: OffsetDateTime,
            ) -> Result<Option<KeyRecord>, StoreError> {
                self.0.revoke(id, at).await
            }
            async fn list_by_owner(
                &self,
                o: &Owner,
                p: Page,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                self.0.list_by_owner(o, p).await
            }
            async fn list_expiring(
                &self,
                b: OffsetDateTime,
                l: usize,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                self.0.list_expiring(b, l).await
            }
            async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
                self.0.record_usage(batch).await
            }
            async fn usage(
                &self,
                f: KeyId,
                s: OffsetDateTime,
            ) -> Result<Vec<UsageBucket>, StoreError> {
                self.0.usage(f, s).await
            }
            fn subscribe(&self) -> Option<InvalidationFeed> {
                lock(&self.1).take()
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let store = Arc::new(Feeding(Counting::default(), Mutex::new(Some(rx))));
        let (_, rec) = record(&KeyFormat::new("t").unwrap(), &KeyHasher::sha256());
        store.insert(&rec).await.unwrap();
        let v = Arc::new(Verifier::new(
            store.clone(),
            KeyHasher::sha256(),
            Arc::new(SystemClock),
            CacheConfig::default(),
        ));
        v.start_background();
        v.find(rec.id).await.unwrap().unwrap();
        assert_eq!(v.cached_keys(), 1);
        tx.send(Invalidation::Key(rec.id)).await.unwrap();
        eventually(|| v.cached_keys() == 0).await;
        v.find(rec.id).await.unwrap().unwrap();
        assert!(matches!(
            v.lookup(rec.id, OffsetDateTime::now_utc()),
            Lookup::Hit(_)
        ));
        let epoch = v.epoch.load(Ordering::SeqCst);
        tx.send(Invalidation::All).await.unwrap();
        eventually(|| v.epoch.load(Ordering::SeqCst) > epoch).await;
        // Everything is suspect: the next lookup goes to the store...
        let before = store.0.finds.load(Ordering::SeqCst);
        match v.lookup(rec.id, OffsetDateTime::now_utc()) {
            Lookup::Miss(p) => assert!(p.0.await.unwrap().is_some()),
            other => panic!("expected a miss after All, got {other:?}"),
        }
        assert_eq!(store.0.finds.load(Ordering::SeqCst), before + 1);
        assert!(matches!(
            v.lookup(rec.id, OffsetDateTime::now_utc()),
            Lookup::Hit(_)
        ));
        // ...but if the store is down then, the suspect entry still serves.
        let epoch = v.epoch.load(Ordering::SeqCst);
        tx.send(Invalidation::All).await.unwrap();
        eventually(|| v.epoch.load(Ordering::SeqCst) > epoch).await;
        store.0.down.store(true, Ordering::SeqCst);
        assert!(v.find(rec.id).await.unwrap().is_some());
    }

    /// Polls a pending lookup once, as a request does before its client
    /// goes away; true if it is still waiting. Outside tokio's cooperative
    /// budget, which would otherwise stop thousands of polls in one task
    /// short of reaching the store.
    fn poll_once(p: &mut Pending) -> impl Future<Output = bool> + '_ {
        tokio::task::unconstrained(std::future::poll_fn(move |cx| {
            std::task::Poll::Ready(p.0.as_mut().poll(cx).is_pending())
        }))
    }

    fn miss(lookup: Lookup) -> Pending {
        match lookup {
            Lookup::Miss(p) => p,
            other => panic!("expected a miss, got {other:?}"),
        }
    }

    fn forged_id(i: u32) -> KeyId {
        format!("F{i:0>9}").parse().unwrap()
    }

    #[tokio::test]
    async fn cancelled_lookups_leave_nothing_behind() {
        let format = KeyFormat::new("t").unwrap();
        // A store that does not answer within the test.
        let store = Arc::new(Counting {
            delay: Duration::from_secs(3600),
            ..Default::default()
        });
        let (_, rec) = record(&format, &KeyHasher::sha256());
        store.insert(&rec).await.unwrap();
        let config = CacheConfig {
            max_unknown_lookups: 10_000,
            ..CacheConfig::default()
        };
        let v = verifier(store.clone(), Arc::new(SystemClock), config);
        let now = OffsetDateTime::now_utc();

        let mut pending: Vec<Pending> = (0..5000)
            .map(|i| miss(v.lookup(forged_id(i), now)))
            .collect();
        // Two requests for one id share its lookup.
        let mut first = miss(v.lookup(rec.id, now));
        let mut second = miss(v.lookup(rec.id, now));
        for p in &mut pending {
            assert!(poll_once(p).await);
        }
        assert!(poll_once(&mut first).await);
        assert!(poll_once(&mut second).await);
        assert_eq!(store.finds.load(Ordering::SeqCst), 5001);
        assert_eq!(v.lookups_in_flight(), 5001);

        // Every client goes away mid-load.
        drop(pending);
        assert_eq!(v.lookups_in_flight(), 1);
        // One of two waiters leaving keeps the lookup for the other...
        drop(first);
        assert_eq!(v.lookups_in_flight(), 1);
        assert!(poll_once(&mut second).await);
        // ...and the last one leaving removes it.
        drop(second);
        assert_eq!(v.lookups_in_flight(), 0);

        // Lookups dropped before they were ever polled leave nothing either.
        let never_polled: Vec<_> = (0..1000).map(|i| v.lookup(forged_id(i), now)).collect();
        assert_eq!(v.lookups_in_flight(), 1000);
        drop(never_polled);
        assert_eq!(v.lookups_in_flight(), 0);
    }

    #[tokio::test]
    async fn lookups_of_unknown_ids_are_bounded_and_known_ids_are_not() {
        let format = KeyFormat::new("t").unwrap();
        let store = Arc::new(Counting {
            delay: Duration::from_secs(3600),
            ..Default::default()
        });
        let (_, rec) = record(&format, &KeyHasher::sha256());
        // Written behind the verifier's back: nothing says it exists yet.
        store.insert(&rec).await.unwrap();
        let config = CacheConfig {
            max_unknown_lookups: 2,
            ..CacheConfig::default()
        };
        let v = verifier(store.clone(), Arc::new(SystemClock), config);
        let now = OffsetDateTime::now_utc();

        let a = miss(v.lookup(forged_id(1), now));
        let b = miss(v.lookup(forged_id(2), now));
        assert!(matches!(v.lookup(forged_id(3), now), Lookup::Busy));
        assert!(matches!(v.lookup(rec.id, now), Lookup::Busy));
        assert!(
            v.find(forged_id(3)).await.is_err(),
            "busy is an error, not None"
        );
        // Joining a lookup in flight costs the store nothing: allowed.
        let a2 = miss(v.lookup(forged_id(1), now));
        // A key created (or changed) through keygate is known to exist, and
        // gets its query whatever the flood.
        v.invalidate(rec.id);
        let real = miss(v.lookup(rec.id, now));
        // Cancelled lookups give their share back.
        drop((a, a2));
        let c = miss(v.lookup(forged_id(3), now));
        assert!(matches!(v.lookup(forged_id(4), now), Lookup::Busy));
        drop((b, c, real));
        assert_eq!(v.lookups_in_flight(), 0);
        assert!(matches!(v.lookup(forged_id(4), now), Lookup::Miss(_)));
    }

    #[tokio::test]
    async fn ids_found_in_the_store_stay_known_after_they_leave_the_cache() {
        let format = KeyFormat::new("t").unwrap();
        let store = Arc::new(Counting::default());
        let (_, rec) = record(&format, &KeyHasher::sha256());
        store.insert(&rec).await.unwrap();
        let config = CacheConfig {
            max_unknown_lookups: 1,
            ..CacheConfig::default()
        };
        let v = verifier(store.clone(), Arc::new(SystemClock), config);
        let now = OffsetDateTime::now_utc();
        v.find(rec.id).await.unwrap().unwrap();
        // Evicted from the positive cache by a change made elsewhere.
        v.cache.invalidate(&rec.id);
        v.hot.remove(&rec.id);
        let _flood = miss(v.lookup(forged_id(1), now));
        assert!(matches!(v.lookup(forged_id(2), now), Lookup::Busy));
        assert!(v.find(rec.id).await.unwrap().is_some());
    }

    /// A clock that runs a hook the next time it is read.
    #[derive(Default)]
    struct HookClock(Mutex<Option<Box<dyn FnOnce() + Send>>>);

    impl fmt::Debug for HookClock {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("HookClock")
        }
    }

    impl Clock for HookClock {
        fn now(&self) -> OffsetDateTime {
            let hook = lock(&self.0).take();
            if let Some(hook) = hook {
                hook();
            }
            OffsetDateTime::now_utc()
        }
    }

    #[tokio::test]
    async fn a_load_that_began_before_an_invalidation_never_fills_the_cache() {
        let format = KeyFormat::new("t").unwrap();
        let hasher = KeyHasher::sha256();
        let store = Arc::new(Counting::default());
        let (key, rec) = record(&format, &hasher);
        store.insert(&rec).await.unwrap();
        let clock = Arc::new(HookClock::default());
        let v = verifier(store.clone(), clock.clone(), CacheConfig::default());
        let now = OffsetDateTime::now_utc();

        let pending = miss(v.lookup(rec.id, now));
        // The load has read the record; before it fills the cache (the
        // clock is read in between), the key is revoked and invalidated.
        let (s, weak) = (Arc::clone(&store), Arc::downgrade(&v));
        *lock(&clock.0) = Some(Box::new(move || {
            let mut revoke = std::pin::pin!(s.revoke(rec.id, now));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(revoke.as_mut().poll(&mut cx).is_ready());
            weak.upgrade().unwrap().invalidate(rec.id);
        }));
        // The request that started before the revocation may see the key
        // as it was...
        let old = pending.0.await.unwrap().unwrap();
        assert!(old.check(&hasher.digest(&key), now, None).is_ok());
        // ...but nobody after it: the pre-revocation record is not cached.
        let fresh = match v.lookup(rec.id, now) {
            Lookup::Miss(p) => p.0.await.unwrap().unwrap(),
            Lookup::Hit(_) => panic!("the pre-revocation record was cached"),
            other => panic!("expected a miss, got {other:?}"),
        };
        assert_eq!(
            fresh.check(&hasher.digest(&key), now, None),
            Err(Denied::Revoked)
        );
    }

    #[test]
    fn checks_run_in_order() {
        let format = KeyFormat::new("t").unwrap();
        let hasher = KeyHasher::sha256();
        let (key, mut rec) = record(&format, &hasher);
        let now = OffsetDateTime::now_utc();
        let good = hasher.digest(&key);
        let bad = hasher.digest("something else");

        rec.expires_at = Some(now);
        rec.allowed_ips = vec!["10.0.0.0/8".parse().unwrap()];
        let k = CachedKey::new(&rec, now);
        assert_eq!(k.check(&bad, now, None), Err(Denied::DigestMismatch));
        assert_eq!(k.check(&good, now, None), Err(Denied::Expired));
        let before = now - Duration::from_nanos(1);
        assert_eq!(k.check(&good, before, None), Err(Denied::PeerUnknown));
        assert_eq!(
            k.check(&good, before, Some("192.168.0.1".parse().unwrap())),
            Err(Denied::IpNotAllowed)
        );
        assert_eq!(
            k.check(&good, before, Some("10.9.9.9".parse().unwrap())),
            Ok(())
        );
        rec.revoked_at = Some(now);
        assert_eq!(
            CachedKey::new(&rec, now).check(&good, before, None),
            Err(Denied::Revoked)
        );
    }
}
