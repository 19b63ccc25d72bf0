//! The cache in front of the store: moka's bounded positive cache, the hot
//! mirror warm hits read, the negative cache of unknown ids, the ids known
//! to exist, and the epoch that distrusts everything at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::{notification::RemovalCause, policy::EvictionPolicy};
use time::OffsetDateTime;

use super::CachedKey;
use crate::KeyId;

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

/// Seeded per process, so hash flooding needs the seed; fast on 10-byte ids.
pub(crate) type IdHashBuilder = foldhash::fast::RandomState;

/// The hot tier: every entry of the moka cache, readable in ~10 ns.
type Hot = Arc<dashmap::DashMap<KeyId, Arc<CachedKey>, IdHashBuilder>>;

/// What the cache can say about an id at some time.
pub(super) enum Probe {
    /// Cached, recent and trusted: serve it.
    Fresh(Arc<CachedKey>),
    /// Cached and trusted but older than the TTL: serve it, and re-read it
    /// in the background.
    Aging(Arc<CachedKey>),
    /// Recently looked up and not in the store.
    Unknown,
    /// The store must be asked. `fallback` is a suspect entry still within
    /// `max_stale`, to serve if the store cannot answer; `known` says
    /// whether the id has reason to exist.
    Load {
        fallback: Option<Arc<CachedKey>>,
        known: bool,
    },
}

/// The verifier's cache. Fills and invalidations are ordered by the
/// verifier's in-flight lock (see `Flights`), not here.
pub(super) struct Cache {
    // In nanoseconds, the unit entries are aged in.
    ttl: i128,
    max_stale: i128,
    entries: moka::sync::Cache<KeyId, Arc<CachedKey>>,
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
    // Ids with reason to exist beyond the positive cache: ones it let go
    // (evicted, invalidated), and ones named by a change made through
    // keygate, by an invalidation feed or by the preload. A real key that
    // is merely uncached does not compete with forged ids for the
    // unknown-lookup permits. An id the positive cache holds is not copied
    // here: that would cost every cached key a second moka entry.
    known: moka::sync::Cache<KeyId, ()>,
    // Bumped by `distrust_all`: entries of older epochs must be re-read.
    epoch: AtomicU64,
}

/// `d`, at most what moka accepts: it panics on durations over 1 000
/// years, and a configured "forever" (`Duration::MAX`) means the same as a
/// century here.
fn moka_duration(d: Duration) -> Duration {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    d.min(CENTURY)
}

impl Cache {
    /// A cache sized by `config` that hands every entry it lets go (evicted,
    /// replaced, invalidated) to `retire`.
    pub(super) fn new(
        config: &CacheConfig,
        retire: impl Fn(Arc<CachedKey>) + Send + Sync + 'static,
    ) -> Self {
        let hot: Hot = Arc::new(dashmap::DashMap::with_hasher(IdHashBuilder::default()));
        let hot_evicted = Arc::clone(&hot);
        // Least recently used goes first: nothing reads this cache through
        // `get`, so moka's default (TinyLFU) would see every id as never
        // used and, once full, refuse every new one, keeping the first ids
        // it saw instead of the latest. Only ids the store returned or
        // keygate named reach it, so a forger cannot flush it.
        let known: moka::sync::Cache<KeyId, ()> = moka::sync::Cache::builder()
            .max_capacity(config.capacity)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        let known_evicted = known.clone();
        let to_nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
        Self {
            ttl: to_nanos(config.ttl),
            max_stale: to_nanos(config.max_stale.max(config.ttl)),
            entries: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                // Unused entries go once they are too stale to serve anyway.
                .time_to_idle(moka_duration(config.max_stale.max(config.ttl)))
                // moka stops calling a listener that panics once, and the
                // mirror would then outgrow the cache: nothing here panics.
                .eviction_listener(move |id, entry: Arc<CachedKey>, cause| {
                    // A cached key existed: once it leaves the cache (and
                    // before the mirror stops serving it), its id is known,
                    // so its next lookup is not counted as a forger's. A
                    // replaced entry's id stays cached.
                    if cause != RemovalCause::Replaced {
                        known_evicted.insert(*id, ());
                    }
                    // Only if it is still this entry: a replacement must stay.
                    hot_evicted.remove_if(&*id, |_, e| Arc::ptr_eq(e, &entry));
                    retire(entry);
                })
                .build(),
            hot,
            touch_every: i64::try_from((config.ttl / 10).as_secs())
                .unwrap_or(i64::MAX)
                .max(1),
            negative: moka::sync::Cache::builder()
                .max_capacity(config.negative_capacity)
                .time_to_live(moka_duration(config.negative_ttl))
                .build(),
            known,
            epoch: AtomicU64::new(0),
        }
    }

    /// What the cache says about `id` at `now`.
    #[inline]
    pub(super) fn probe(&self, id: KeyId, now: OffsetDateTime) -> Probe {
        // One calendar computation; the rest is integer arithmetic.
        let now_secs = now.unix_timestamp();
        let Some(hit) = self.get(id, now_secs) else {
            if self.negative.contains_key(&id) {
                return Probe::Unknown;
            }
            return Probe::Load {
                fallback: None,
                known: self.known.contains_key(&id),
            };
        };
        let now_nanos = i128::from(now_secs) * 1_000_000_000 + i128::from(now.nanosecond());
        let age = now_nanos - hit.loaded_nanos;
        let suspect = hit.epoch != self.epoch();
        if !suspect && age < self.ttl {
            return Probe::Fresh(hit);
        }
        if !suspect && age < self.max_stale {
            return Probe::Aging(hit);
        }
        // Suspect (the feed lost messages) or too stale to vouch for: wait
        // for the store. If the store cannot answer, a suspect entry still
        // within max_stale is better than refusing every caller. The id was
        // cached, so it existed: it is worth a query from the shared capacity.
        Probe::Load {
            fallback: Some(hit).filter(|_| age < self.max_stale),
            known: true,
        }
    }

    /// The entry for `id` at unix second `t`, from the hot mirror (telling
    /// moka about the read at most once per `touch_every`).
    ///
    /// Every entry moka holds is mirrored: `fill` puts it in both, and
    /// whatever takes it out of either (eviction, a refused admission,
    /// invalidation) takes it out of the other. So a miss here is a miss,
    /// and an unknown id or a cold key costs no moka read.
    #[inline]
    fn get(&self, id: KeyId, t: i64) -> Option<Arc<CachedKey>> {
        let hit = self.hot.get(&id).map(|e| Arc::clone(e.value()))?;
        if hit.touched.load(Ordering::Relaxed) <= t - self.touch_every {
            hit.touched.store(t, Ordering::Relaxed);
            let _ = self.entries.get(&id);
        }
        Some(hit)
    }

    /// The current epoch, which new entries are read in.
    #[inline]
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether `id` is cached or otherwise known to exist.
    pub(super) fn knows(&self, id: KeyId) -> bool {
        self.entries.contains_key(&id) || self.known.contains_key(&id)
    }

    /// Notes that `id` has reason to exist.
    pub(super) fn mark_known(&self, id: KeyId) {
        self.known.insert(id, ());
    }

    /// Puts what the store answered for `id` in the cache: the entry, or
    /// (for `None`) that there is none.
    pub(super) fn fill(&self, id: KeyId, entry: Option<&Arc<CachedKey>>) {
        if let Some(entry) = entry {
            // moka admits a new entry to a full cache only if it has been
            // read more often than what it would evict, and lookups read
            // the mirror, not moka: count this load as a read, or a full
            // cache would never take in another key, and every request for
            // one would go to the store.
            let _ = self.entries.get(&id);
            // The mirror first: moka may refuse the entry (its admission
            // policy, at capacity) inside `insert`, and its listener must
            // then find the entry in the mirror to take it out.
            self.hot.insert(id, Arc::clone(entry));
            self.entries.insert(id, Arc::clone(entry));
        } else {
            self.evict(id);
            // If moka's housekeeping on another thread let go of an older
            // entry for `id` and calls its listener only now, the id comes
            // back as known: harmless, as the negative cache answers for it
            // and its next miss here clears it again.
            self.known.invalidate(&id);
            self.negative.insert(id, ());
        }
    }

    /// Forgets what is cached about `id`, which was just created or changed
    /// (and so exists, or did: its next lookup is not one of a forger's).
    pub(super) fn forget(&self, id: KeyId) {
        self.evict(id);
        self.negative.invalidate(&id);
        self.known.insert(id, ());
    }

    /// Drops `id`'s positive entry only, as moka's own eviction would.
    pub(super) fn evict(&self, id: KeyId) {
        self.entries.invalidate(&id);
        self.hot.remove(&id);
    }

    /// Makes every entry suspect (to be re-read before it is served again)
    /// and forgets every unknown id.
    pub(super) fn distrust_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate_all();
    }

    /// Number of positive entries (approximate, as moka counts), once moka
    /// has processed its pending work.
    pub(super) fn len(&self) -> u64 {
        self.settle();
        self.entries.entry_count()
    }

    /// Number of entries in the hot mirror, once moka has processed its
    /// pending work.
    #[cfg(test)]
    pub(super) fn mirrored(&self) -> usize {
        self.settle();
        self.hot.len()
    }

    /// Lets moka process pending evictions, so their entries are retired.
    pub(super) fn settle(&self) {
        self.entries.run_pending_tasks();
        self.known.run_pending_tasks();
    }

    /// Every positive entry.
    pub(super) fn entries(&self) -> impl Iterator<Item = Arc<CachedKey>> + '_ {
        self.entries.iter().map(|(_, entry)| entry)
    }
}
