//! Verification: the cache in front of the store, and the checks a presented
//! key must pass.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ipnet::IpNet;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::{
    KeyDigest, KeyHasher, KeyId, KeyInfo, KeyRecord, Quota, StoreError, record::ip_allowed,
    store::BoxFuture,
};

/// What the verifier keeps per key: everything the request path checks, and
/// the shared [`KeyInfo`] handed to handlers. Never the key.
pub struct CachedKey {
    info: Arc<KeyInfo>,
    digest: KeyDigest,
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    allowed_ips: Box<[IpNet]>,
    quota: Option<Quota>,
}

impl CachedKey {
    /// Builds the cache entry for a record.
    pub fn new(record: &KeyRecord) -> Self {
        Self {
            info: Arc::new(KeyInfo::from(record)),
            digest: record.digest,
            revoked_at: record.revoked_at,
            expires_at: record.expires_at,
            allowed_ips: record.allowed_ips.clone().into_boxed_slice(),
            quota: record.rate_limit,
        }
    }

    /// The key's public information.
    pub fn info(&self) -> &Arc<KeyInfo> {
        &self.info
    }

    /// The key's own quota, if it has one.
    pub fn quota(&self) -> Option<Quota> {
        self.quota
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
    /// How long a positive entry lives before it is re-read from the store
    /// (default 5 min). Revocations made through keygate invalidate
    /// entries at once; this is only the backstop for changes made behind
    /// keygate's back.
    pub ttl: Duration,
    /// Most unknown ids remembered (default 100 000).
    pub negative_capacity: u64,
    /// How long an unknown id is remembered (default 60 s): a flood of
    /// requests with unknown keys causes at most one store query per id per
    /// this period.
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(300),
            negative_capacity: 100_000,
            negative_ttl: Duration::from_secs(60),
        }
    }
}

type Loaded = Result<Option<Arc<CachedKey>>, Arc<StoreError>>;

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
/// Holds a bounded positive cache (moka, with a TTL as backstop), a negative
/// cache of unknown ids, and the set of store queries in flight so that
/// concurrent misses for one id cost one query.
pub struct Verifier {
    store: Arc<dyn crate::DynKeyStore>,
    hasher: KeyHasher,
    cache: moka::sync::Cache<KeyId, Arc<CachedKey>>,
    negative: moka::sync::Cache<KeyId, ()>,
    inflight: Mutex<HashMap<KeyId, Arc<OnceCell<Loaded>>>>,
    // Bumped by every invalidation, so a load that read the store before an
    // invalidation does not put its stale answer into the cache after it.
    generation: AtomicU64,
    store_queries: AtomicU64,
}

impl Verifier {
    /// A verifier over `store`, hashing with `hasher`.
    pub fn new(store: Arc<dyn crate::DynKeyStore>, hasher: KeyHasher, config: CacheConfig) -> Self {
        Self {
            store,
            hasher,
            cache: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
            negative: moka::sync::Cache::builder()
                .max_capacity(config.negative_capacity)
                .time_to_live(config.negative_ttl)
                .build(),
            inflight: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            store_queries: AtomicU64::new(0),
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

    /// How many store lookups the verifier has made (for tests and metrics).
    pub fn store_queries(&self) -> u64 {
        self.store_queries.load(Ordering::Relaxed)
    }

    /// Looks up `id` in the cache; on a miss, returns the store lookup to await.
    pub fn lookup(self: &Arc<Self>, id: KeyId) -> Lookup {
        if let Some(hit) = self.cache.get(&id) {
            return Lookup::Hit(hit);
        }
        if self.negative.contains_key(&id) {
            return Lookup::Unknown;
        }
        let this = Arc::clone(self);
        Lookup::Miss(Pending(Box::pin(async move { this.load(id).await })))
    }

    /// Looks up `id`, from the cache or the store.
    ///
    /// # Errors
    ///
    /// The store's error, shared among the requests that waited for it.
    pub async fn find(self: &Arc<Self>, id: KeyId) -> Loaded {
        match self.lookup(id) {
            Lookup::Hit(k) => Ok(Some(k)),
            Lookup::Unknown => Ok(None),
            Lookup::Miss(p) => p.0.await,
        }
    }

    async fn load(&self, id: KeyId) -> Loaded {
        let cell = {
            let mut inflight = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(inflight.entry(id).or_default())
        };
        let result = cell.get_or_init(|| self.fetch(id)).await.clone();
        let mut inflight = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inflight.get(&id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&id);
        }
        result
    }

    async fn fetch(&self, id: KeyId) -> Loaded {
        let generation = self.generation.load(Ordering::Acquire);
        self.store_queries.fetch_add(1, Ordering::Relaxed);
        let found = self.store.find(id).await.map_err(Arc::new)?;
        let still_current = self.generation.load(Ordering::Acquire) == generation;
        Ok(match found {
            Some(record) => {
                let entry = Arc::new(CachedKey::new(&record));
                if still_current {
                    self.cache.insert(id, Arc::clone(&entry));
                }
                Some(entry)
            }
            None => {
                if still_current {
                    self.negative.insert(id, ());
                }
                None
            }
        })
    }

    /// Forgets what the cache knows about `id`, so the next request reads the
    /// store. Called on every revoke, update and create made through keygate.
    pub fn invalidate(&self, id: KeyId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(&id);
        self.negative.invalidate(&id);
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }

    /// Forgets everything, e.g. after losing an invalidation feed.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
        self.negative.invalidate_all();
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Number of keys in the positive cache (approximate, as moka counts).
    pub fn cached_keys(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::{Environment, KeyFormat, KeyStore, MemoryStore, Owner, Page, Scopes};

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
        };
        (key.expose_secret().to_owned(), rec)
    }

    /// A store that counts lookups and can be slowed down.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        finds: AtomicUsize,
        delay: Duration,
    }

    impl KeyStore for Counting {
        async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
            self.finds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.inner.find(id).await
        }
        async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
            self.inner.insert(r).await
        }
        async fn update(&self, r: &KeyRecord) -> Result<(), StoreError> {
            self.inner.update(r).await
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
    }

    #[tokio::test]
    async fn hits_unknowns_and_invalidation() {
        let format = KeyFormat::new("t").unwrap();
        let hasher = KeyHasher::sha256();
        let store = Arc::new(Counting::default());
        let (key, rec) = record(&format, &hasher);
        store.insert(&rec).await.unwrap();
        let v = Arc::new(Verifier::new(
            store.clone(),
            hasher.clone(),
            CacheConfig::default(),
        ));

        let k = v.find(rec.id).await.unwrap().unwrap();
        assert!(
            k.check(&hasher.digest(&key), OffsetDateTime::now_utc(), None)
                .is_ok()
        );
        assert!(matches!(v.lookup(rec.id), Lookup::Hit(_)));
        assert_eq!(store.finds.load(Ordering::SeqCst), 1);

        let unknown: KeyId = "ZZZZZZZZZZ".parse().unwrap();
        assert!(v.find(unknown).await.unwrap().is_none());
        assert!(matches!(v.lookup(unknown), Lookup::Unknown));
        assert_eq!(store.finds.load(Ordering::SeqCst), 2);

        store
            .revoke(rec.id, OffsetDateTime::now_utc())
            .await
            .unwrap();
        v.invalidate(rec.id);
        let k = v.find(rec.id).await.unwrap().unwrap();
        assert_eq!(
            k.check(&hasher.digest(&key), OffsetDateTime::now_utc(), None),
            Err(Denied::Revoked)
        );
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_query() {
        let format = KeyFormat::new("t").unwrap();
        let hasher = KeyHasher::sha256();
        let store = Arc::new(Counting {
            delay: Duration::from_millis(20),
            ..Default::default()
        });
        let (_, rec) = record(&format, &hasher);
        store.insert(&rec).await.unwrap();
        let v = Arc::new(Verifier::new(store.clone(), hasher, CacheConfig::default()));
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
        let k = CachedKey::new(&rec);
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
            CachedKey::new(&rec).check(&good, before, None),
            Err(Denied::Revoked)
        );
    }
}
