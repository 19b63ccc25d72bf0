use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use time::OffsetDateTime;

use super::{CacheConfig, CachedKey, Denied, Lookup, Pending, Verification, Verifier};
use crate::{
    Clock, FakeClock, Invalidation, KeyFormat, KeyHasher, KeyId, KeyRecord, KeyStore, SystemClock,
    sync::lock,
    test_util::{TestStore, eventually, record},
};

/// A store holding one fresh `t_` key (SHA-256): the store, the key, its
/// record.
async fn one_key(store: TestStore) -> (Arc<TestStore>, String, KeyRecord) {
    let (key, rec) = record(&KeyFormat::new("t").unwrap(), &KeyHasher::sha256());
    store.insert(&rec).await.unwrap();
    (Arc::new(store), key, rec)
}

/// The default cache, allowing `n` lookups of unknown ids at once.
fn unknown_lookups(n: usize) -> CacheConfig {
    CacheConfig {
        max_unknown_lookups: n,
        ..CacheConfig::default()
    }
}

fn verifier(store: Arc<TestStore>, clock: Arc<dyn Clock>, config: CacheConfig) -> Arc<Verifier> {
    Arc::new(Verifier::new(store, KeyHasher::sha256(), clock, config))
}

#[tokio::test]
async fn hits_unknowns_and_invalidation() {
    let hasher = KeyHasher::sha256();
    let (store, key, rec) = one_key(TestStore::default()).await;
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
    let (store, _, rec) = one_key(TestStore::slow(Duration::from_millis(20))).await;
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
    let (store, _, rec) = one_key(TestStore::default()).await;
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
        Lookup::Miss(p) => assert!(p.await.is_err()),
        other => panic!("expected a miss, got {other:?}"),
    }
    // The store comes back: service recovers by itself.
    store.down.store(false, Ordering::SeqCst);
    assert!(v.find(rec.id).await.unwrap().is_some());
}

#[tokio::test]
async fn usage_is_flushed_in_batches_and_survives_eviction_and_failures() {
    let (store, _, rec) = one_key(TestStore::default()).await;
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
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let store = Arc::new(TestStore::with_feed(rx));
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
    assert!(is_hit(&v, rec.id));
    announce_all(&tx, &v).await;
    // Everything is suspect: the next lookup goes to the store...
    let before = store.finds.load(Ordering::SeqCst);
    match v.lookup(rec.id, OffsetDateTime::now_utc()) {
        Lookup::Miss(p) => assert!(p.await.unwrap().is_some()),
        other => panic!("expected a miss after All, got {other:?}"),
    }
    assert_eq!(store.finds.load(Ordering::SeqCst), before + 1);
    assert!(is_hit(&v, rec.id));
    // ...but if the store is down then, the suspect entry still serves.
    announce_all(&tx, &v).await;
    store.down.store(true, Ordering::SeqCst);
    assert!(v.find(rec.id).await.unwrap().is_some());
}

/// Sends `Invalidation::All` down the feed and waits until the verifier
/// has applied it.
async fn announce_all(tx: &tokio::sync::mpsc::Sender<Invalidation>, v: &Verifier) {
    let epoch = v.cache.epoch();
    tx.send(Invalidation::All).await.unwrap();
    eventually(|| v.cache.epoch() > epoch).await;
}

fn is_hit(v: &Arc<Verifier>, id: KeyId) -> bool {
    matches!(v.lookup(id, OffsetDateTime::now_utc()), Lookup::Hit(_))
}

/// Polls a pending lookup once, as a request does before its client
/// goes away; true if it is still waiting. Outside tokio's cooperative
/// budget, which would otherwise stop thousands of polls in one task
/// short of reaching the store.
fn poll_once(p: &mut Pending) -> impl Future<Output = bool> + '_ {
    tokio::task::unconstrained(std::future::poll_fn(move |cx| {
        std::task::Poll::Ready(Pin::new(&mut *p).poll(cx).is_pending())
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
    // A store that does not answer within the test.
    let (store, _, rec) = one_key(TestStore::slow(Duration::from_secs(3600))).await;
    let config = unknown_lookups(10_000);
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
    // Written behind the verifier's back: nothing says it exists yet.
    let (store, _, rec) = one_key(TestStore::slow(Duration::from_secs(3600))).await;
    let config = unknown_lookups(2);
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
    let (store, _, rec) = one_key(TestStore::default()).await;
    let config = unknown_lookups(1);
    let v = verifier(store.clone(), Arc::new(SystemClock), config);
    let now = OffsetDateTime::now_utc();
    v.find(rec.id).await.unwrap().unwrap();
    // Evicted from the positive cache by a change made elsewhere.
    v.cache.evict(rec.id);
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
    let hasher = KeyHasher::sha256();
    let (store, key, rec) = one_key(TestStore::default()).await;
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
    let old = pending.await.unwrap().unwrap();
    assert!(old.check(&hasher.digest(&key), now, None).is_ok());
    // ...but nobody after it: the pre-revocation record is not cached.
    let fresh = match v.lookup(rec.id, now) {
        Lookup::Miss(p) => p.await.unwrap().unwrap(),
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

#[tokio::test]
async fn verify_hashes_looks_up_and_checks_in_one_call() {
    let format = KeyFormat::new("t").unwrap();
    let hasher = KeyHasher::sha256();
    let store = Arc::new(TestStore::default());
    let (key, mut rec) = record(&format, &hasher);
    rec.allowed_ips = vec!["10.0.0.0/8".parse().unwrap()];
    store.insert(&rec).await.unwrap();
    let v = verifier(store.clone(), Arc::new(SystemClock), CacheConfig::default());
    let now = OffsetDateTime::now_utc();
    let parsed = format.parse(&key).unwrap();

    // A miss asks the store, then checks what it read.
    let Verification::Loading(pending) = v.verify(&parsed, now) else {
        panic!("expected a load");
    };
    let checked = pending.await.unwrap().unwrap();
    // Everything passed but the allowlist, which needs the client address.
    assert_eq!(checked.outcome(), Err(Denied::PeerUnknown));
    let entry = checked.entry();
    assert_eq!(entry.check_peer(Some("10.1.2.3".parse().unwrap())), Ok(()));
    assert_eq!(
        entry.check_peer(Some("192.168.0.1".parse().unwrap())),
        Err(Denied::IpNotAllowed)
    );

    // A hit checks at once.
    let Verification::Found(checked) = v.verify(&parsed, now) else {
        panic!("expected a hit");
    };
    assert_eq!(checked.outcome(), Err(Denied::PeerUnknown));
    assert_eq!(checked.into_entry().info().id, rec.id);
    assert_eq!(store.finds.load(Ordering::SeqCst), 1);

    // A key whose id matches a record but whose secret does not.
    let (forged, mut other) = record(&format, &hasher);
    other.digest = hasher.digest("something else");
    store.insert(&other).await.unwrap();
    v.invalidate(other.id);
    match v.verify(&format.parse(&forged).unwrap(), now) {
        Verification::Loading(p) => assert_eq!(
            p.await.unwrap().unwrap().outcome(),
            Err(Denied::DigestMismatch)
        ),
        other => panic!("expected a load, got {other:?}"),
    }

    // Unknown ids are remembered.
    let (stranger, _) = record(&format, &hasher);
    let stranger = format.parse(&stranger).unwrap();
    match v.verify(&stranger, now) {
        Verification::Loading(p) => assert!(p.await.unwrap().is_none()),
        other => panic!("expected a load, got {other:?}"),
    }
    assert!(matches!(v.verify(&stranger, now), Verification::Unknown));
}

#[tokio::test]
async fn verify_is_busy_when_unknown_lookups_are_exhausted() {
    let format = KeyFormat::new("t").unwrap();
    let store = Arc::new(TestStore::slow(Duration::from_secs(3600)));
    let config = unknown_lookups(1);
    let v = verifier(store, Arc::new(SystemClock), config);
    let now = OffsetDateTime::now_utc();
    let (a, _) = record(&format, &KeyHasher::sha256());
    let (b, _) = record(&format, &KeyHasher::sha256());
    let _held = v.verify(&format.parse(&a).unwrap(), now);
    assert!(matches!(
        v.verify(&format.parse(&b).unwrap(), now),
        Verification::Busy
    ));
}

/// An entry that never made it into the cache (its load was overtaken by
/// an invalidation, such as an invalidation feed's first `All`), or that
/// left it between the lookup and the count, still has its requests
/// written: `record_use` on an entry nobody flushes would lose them.
#[tokio::test]
async fn usage_counted_on_entries_outside_the_cache_is_flushed() {
    let (store, _, rec) = one_key(TestStore::slow(Duration::from_millis(50))).await;
    let v = verifier(store.clone(), Arc::new(SystemClock), CacheConfig::default());
    // A load overtaken by an invalidation: answered, but not cached.
    let load = {
        let v = Arc::clone(&v);
        tokio::spawn(async move { v.find(rec.id).await.unwrap().unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    v.invalidate_all();
    let orphan = load.await.unwrap();
    v.flush_usage().await.unwrap();
    orphan.record_use(OffsetDateTime::now_utc());
    // A cached entry replaced between its lookup and its count.
    let cached = v.find(rec.id).await.unwrap().unwrap();
    v.invalidate(rec.id);
    v.flush_usage().await.unwrap();
    cached.record_use(OffsetDateTime::now_utc());
    cached.record_use(OffsetDateTime::now_utc());
    drop((orphan, cached));
    v.flush_usage().await.unwrap();
    let total: u64 = store
        .usage(rec.family, OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .iter()
        .map(|b| b.requests)
        .sum();
    assert_eq!(total, 3, "no request lost");
}

/// `n` fresh keys in a test store, and their ids.
async fn keys_in_store(n: usize) -> (Arc<TestStore>, Vec<KeyId>) {
    let format = KeyFormat::new("t").unwrap();
    let hasher = KeyHasher::sha256();
    let store = Arc::new(TestStore::default());
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let (key, rec) = record(&format, &hasher);
        store.insert(&rec).await.unwrap();
        ids.push(format.parse(&key).unwrap().id());
    }
    (store, ids)
}

/// A verifier over `store` whose cache holds `capacity` keys, and that
/// knows no id before it has looked it up.
fn cache_of(store: Arc<TestStore>, capacity: u64) -> Arc<Verifier> {
    let config = CacheConfig {
        capacity,
        preload_known_ids: false,
        ..CacheConfig::default()
    };
    verifier(store, Arc::new(SystemClock), config)
}

/// Real keys beyond the cache's capacity: moka refuses or evicts most of
/// them, and the hot mirror must let go of every entry moka does, or it
/// would grow without bound (and serve entries moka no longer ages out).
/// Every key still verifies.
#[tokio::test]
async fn the_hot_mirror_holds_no_more_than_moka() {
    let (store, ids) = keys_in_store(600).await;
    let v = cache_of(store, 40);
    for round in 0..3 {
        for id in &ids {
            let found = v.find(*id).await.unwrap();
            assert!(found.is_some(), "round {round}: every key is found");
        }
    }
    let (cached, mirrored) = (v.cache.len(), v.cache.mirrored());
    assert!(cached <= 40, "moka holds {cached}");
    assert!(
        mirrored as u64 <= cached,
        "the mirror holds {mirrored} entries, moka {cached}"
    );
}

/// A key the cache had to let go of is still known to exist (up to as many
/// ids again as the cache holds keys), so its next lookup draws on the
/// shared store capacity, not on the small share left to ids a forger may
/// have made up; an id never seen is not known.
#[tokio::test]
async fn keys_the_cache_let_go_stay_known() {
    let (store, ids) = keys_in_store(36).await;
    let v = cache_of(store, 20);
    for id in &ids {
        assert!(v.find(*id).await.unwrap().is_some());
    }
    let cached = v.cache.len();
    assert!(cached <= 20, "the cache let keys go ({cached} kept)");
    for id in &ids {
        assert!(v.knows(*id), "{id:?} was found in the store");
    }
    let (_, never) = keys_in_store(1).await;
    assert!(!v.knows(never[0]), "an id never looked up is not known");
}

/// A full cache still takes in a key that keeps being asked for: moka
/// admits a newcomer only once it has been read more often than what it
/// would evict, so the way to the store must count as a read. Otherwise a
/// full cache (an attacker's own keys, kept warm) would send every request
/// of every other key to the store, from the capacity kept for known keys.
#[tokio::test]
async fn a_full_cache_still_admits_a_key_in_demand() {
    let (store, ids) = keys_in_store(5).await;
    let v = cache_of(store, 4);
    // Four keys fill the cache and are read now and then.
    for _ in 0..3 {
        for id in &ids[..4] {
            assert!(v.find(*id).await.unwrap().is_some());
        }
        v.cache.settle();
    }
    // A fifth key in demand, one request at a time.
    let before = v.store_queries();
    for _ in 0..20 {
        assert!(v.find(ids[4]).await.unwrap().is_some());
        v.cache.settle();
    }
    let queries = v.store_queries() - before;
    assert!(
        queries < 10,
        "the fifth key should be cached after a few loads, not read {queries} times of 20"
    );
}

/// The ids the cache let go most recently are known, however many it let
/// go before: the known-ids cache keeps the newest, not the first it saw.
#[tokio::test]
async fn the_latest_key_the_cache_let_go_is_known() {
    let (store, ids) = keys_in_store(121).await;
    let v = cache_of(store, 20);
    // Far more keys than both caches hold: the known ids fill up.
    for id in &ids[..120] {
        assert!(v.find(*id).await.unwrap().is_some());
        v.cache.settle();
    }
    let last = ids[120];
    assert!(v.find(last).await.unwrap().is_some());
    v.cache.evict(last);
    v.cache.settle();
    assert!(v.knows(last), "the key just let go is known");
}

/// "Forever" in the cache's settings builds a working verifier: moka
/// refuses durations over 1 000 years, so they must never reach it as is.
#[tokio::test]
async fn durations_of_forever_are_accepted() {
    let (store, _key, rec) = one_key(TestStore::default()).await;
    let config = CacheConfig {
        ttl: Duration::MAX,
        max_stale: Duration::MAX,
        negative_ttl: Duration::MAX,
        ..CacheConfig::default()
    };
    let v = verifier(store, Arc::new(SystemClock), config);
    assert!(v.find(rec.id).await.unwrap().is_some());
    assert!(
        v.find(rec.id).await.unwrap().is_some(),
        "and served from the cache"
    );
}
