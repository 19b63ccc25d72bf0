//! Tests against a real Redis at `KEYGATE_TEST_REDIS_URL`.
//!
//! Without the variable each test that needs Redis says so on stderr and
//! passes; with `CI=true` it fails instead, as it does whenever the variable
//! is set but the server does not answer. Each test writes under a prefix of
//! its own (pid + time) and deletes its keys when done; every state key
//! also expires by itself. Traffic goes to 127.0.0.1 only, bounded in count
//! and time.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keygate_core::{
    Check, Decision, GovernorLimiter, Invalidation, KeyId, LimiterUnavailable, Quota, Quotas,
    RateLimiter,
};
use keygate_redis::{
    FallbackPolicy, RedisInvalidation, RedisLimiter,
    redis::{self, Client, ConnectionAddr},
};
use keygate_test_support::redis::{clean_up, test_redis, unique_prefix};
use tokio::{
    net::{TcpSocket, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// Held by the tests that measure time, so they do not measure each other.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn pttl(client: &Client, key: &str) -> i64 {
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn id(s: &str) -> KeyId {
    s.parse().unwrap()
}

async fn decide(
    limiter: &impl RateLimiter,
    family: KeyId,
    quotas: impl Into<Quotas>,
) -> Result<Decision, LimiterUnavailable> {
    match limiter.check(family, &quotas.into()) {
        Check::Ready(result) => result,
        Check::Pending(pending) => pending.await,
    }
}

fn governor_decide(limiter: &GovernorLimiter, family: KeyId, quota: Quota) -> Decision {
    match limiter.check(family, &quota.into()) {
        Check::Ready(result) => result.unwrap(),
        Check::Pending(_) => unreachable!("governor answers at once"),
    }
}

fn limiter(client: &Client, prefix: &str) -> RedisLimiter {
    RedisLimiter::builder(client.clone())
        .key_prefix(prefix)
        // Generous: these tests are about Redis's answers, on a busy
        // two-core machine running a debug build.
        .timeout(Duration::from_secs(1))
        .fallback(FallbackPolicy::Reject)
        .build()
        .unwrap()
}

#[tokio::test]
async fn admits_exactly_the_quota_with_governors_headers() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "exact");
    let limiter = limiter(&client, &prefix);
    limiter.ping().await.unwrap();
    let local = GovernorLimiter::new();
    // One request per 6 s: nothing refills during the test.
    let quota = Quota::per_minute(10);
    let family = id("AAAAAAAAAA");

    for left in (0..10).rev() {
        let d = decide(&limiter, family, quota).await.unwrap();
        let g = governor_decide(&local, family, quota);
        assert!(d.allowed, "request {} of 10 rejected", 10 - left);
        assert_eq!(d.remaining, left);
        assert_eq!(d.quota, quota);
        // Same fields as the in-process limiter: same RateLimit-* headers.
        assert_eq!(
            (d.allowed, d.quota, d.remaining, d.reset),
            (g.allowed, g.quota, g.remaining, g.reset)
        );
    }
    let d = decide(&limiter, family, quota).await.unwrap();
    let g = governor_decide(&local, family, quota);
    assert!(!d.allowed, "the 11th request was admitted");
    assert!(
        d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_secs(6),
        "{d:?}"
    );
    assert_eq!((d.remaining, d.reset), (0, Duration::from_secs(60)));
    assert_eq!((d.remaining, d.reset), (g.remaining, g.reset));
    let skew = d.retry_after.abs_diff(g.retry_after);
    assert!(
        skew < Duration::from_millis(500),
        "redis {d:?} vs governor {g:?}"
    );

    // A rejection charges nothing: the wait does not grow.
    let again = decide(&limiter, family, quota).await.unwrap();
    assert!(!again.allowed);
    assert!(again.retry_after <= d.retry_after);

    // Another key is untouched, and the state expires by itself when the
    // key would be fresh again (10 × 6 s).
    assert!(
        decide(&limiter, id("BBBBBBBBBB"), quota)
            .await
            .unwrap()
            .allowed
    );
    let ttl = pttl(&client, &format!("{prefix}:{{AAAAAAAAAA}}:10/min")).await;
    assert!(ttl > 50_000 && ttl <= 60_000, "PTTL {ttl}");
    assert_eq!(limiter.stats().redis_decisions, 13);
    assert_eq!(limiter.stats().fallback_decisions, 0);
    clean_up(&client, &prefix).await;
}

#[tokio::test]
async fn short_quotas_refill_and_expire() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "refill");
    let limiter = limiter(&client, &prefix);
    let quota = Quota::new(2, Duration::from_millis(200)).unwrap();
    let family = id("AAAAAAAAAA");
    assert!(decide(&limiter, family, quota).await.unwrap().allowed);
    assert!(decide(&limiter, family, quota).await.unwrap().allowed);
    let d = decide(&limiter, family, quota).await.unwrap();
    assert!(!d.allowed);
    assert!(d.retry_after <= Duration::from_millis(100));
    tokio::time::sleep(d.retry_after + Duration::from_millis(5)).await;
    assert!(decide(&limiter, family, quota).await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let key = format!("{prefix}:{{AAAAAAAAAA}}:2/200ms");
    assert_eq!(
        pttl(&client, &key).await,
        -2,
        "state outlived the quota's period"
    );
    clean_up(&client, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_limit_under_load() {
    let Some(client) = test_redis().await else {
        return;
    };
    let _serial = TIMING.lock().await;
    let prefix = unique_prefix("keygate-test", "nodes");
    let quota = Quota::new(100, Duration::from_secs(2)).unwrap();
    let interval = quota.replenish_interval();
    let family = id("SharedKey1");
    // Three nodes: three limiters, three connections.
    let nodes: Vec<RedisLimiter> = (0..3).map(|_| limiter(&client, &prefix)).collect();
    for n in &nodes {
        n.ping().await.unwrap();
    }

    const TASKS_PER_NODE: usize = 6;
    const MAX_REQUESTS_PER_TASK: u64 = 50_000;
    let run_for = Duration::from_secs(3);
    let admitted = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = JoinSet::new();
    for node in &nodes {
        for _ in 0..TASKS_PER_NODE {
            let (node, admitted, sent) = (node.clone(), Arc::clone(&admitted), Arc::clone(&sent));
            tasks.spawn(async move {
                for _ in 0..MAX_REQUESTS_PER_TASK {
                    if Instant::now() >= deadline {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    if decide(&node, family, quota).await.unwrap().allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let elapsed = start.elapsed();
    let admitted = admitted.load(Ordering::Relaxed);
    let sent = sent.load(Ordering::Relaxed);
    for n in &nodes {
        assert_eq!(
            n.stats().fallback_decisions,
            0,
            "a decision fell back: {:?}",
            n.stats()
        );
    }
    // GCRA from a fresh key: the burst, then one per interval.
    let theoretical = f64::from(quota.limit()) + elapsed.as_secs_f64() / interval.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let ratio = admitted as f64 / theoretical;
    eprintln!(
        "three nodes, {quota} over {elapsed:.2?}: {sent} requests, {admitted} admitted, \
         theoretical max {theoretical:.1}, ratio {ratio:.4}"
    );
    assert!(
        sent > 10 * admitted,
        "the load did not saturate the limit: {sent} requests"
    );
    assert!(
        ratio <= 1.01,
        "admitted {admitted}, more than 1% over the limit ({theoretical:.1})"
    );
    assert!(
        ratio >= 0.95,
        "admitted {admitted}, under 95% of the limit ({theoretical:.1})"
    );
    clean_up(&client, &prefix).await;
}

#[tokio::test]
async fn several_limits_are_all_or_nothing() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "multi");
    let limiter = limiter(&client, &prefix);
    let tight = Quota::per_minute(3);
    let loose = Quota::per_hour(10);
    let both = Quotas::new([loose, tight, tight]).unwrap();
    assert_eq!(both.as_slice(), [tight, loose], "duplicates are dropped");
    let family = id("MultiKey01");

    for left in (0..3).rev() {
        let d = decide(&limiter, family, both.clone()).await.unwrap();
        assert!(d.allowed);
        // The binding limit speaks.
        assert_eq!((d.quota, d.remaining), (tight, left));
    }
    for _ in 0..5 {
        let d = decide(&limiter, family, both.clone()).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.quota, tight);
        assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_secs(20));
    }
    // The five rejected requests took nothing from the loose limit: 10 - 3
    // charged, and this one.
    let d = decide(&limiter, family, loose).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 10 - 3 - 1);

    // And the other way round: when the loose limit is the one that is out,
    // the tight one is not charged.
    let family = id("MultiKey02");
    let hourly = Quota::per_hour(2);
    let secondly = Quota::per_second(50);
    let pair = secondly.and(hourly);
    assert!(
        decide(&limiter, family, pair.clone())
            .await
            .unwrap()
            .allowed
    );
    assert!(
        decide(&limiter, family, pair.clone())
            .await
            .unwrap()
            .allowed
    );
    for _ in 0..5 {
        let d = decide(&limiter, family, pair.clone()).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.quota, hourly, "the rejecting limit speaks");
        assert!(d.retry_after > Duration::from_secs(1_000));
    }
    let d = decide(&limiter, family, secondly).await.unwrap();
    assert_eq!(d.remaining, 50 - 2 - 1);
    clean_up(&client, &prefix).await;
}

#[tokio::test]
async fn an_unreachable_redis_falls_back_fast() {
    // No Redis needed: nothing listens on port 1.
    let _serial = TIMING.lock().await;
    let closed = Client::open("redis://127.0.0.1:1/").unwrap();
    let local = RedisLimiter::builder(closed.clone())
        .fallback(FallbackPolicy::Local)
        .build()
        .unwrap();
    let quota = Quota::per_minute(5);
    let family = id("AAAAAAAAAA");
    let mut slowest = Duration::ZERO;
    let mut admitted = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let d = decide(&local, family, quota).await.unwrap();
        slowest = slowest.max(t.elapsed());
        admitted += u32::from(d.allowed);
    }
    // The local limiter decided, exactly.
    assert_eq!(admitted, 5);
    assert!(
        slowest < Duration::from_millis(100),
        "a decision took {slowest:?}"
    );
    let stats = local.stats();
    assert_eq!(stats.redis_decisions, 0);
    assert_eq!(stats.fallback_decisions, 50);
    assert!(stats.breaker_open);
    // Redis is skipped: only the first few decisions tried it.
    assert!(stats.redis_failures <= 5, "{stats:?}");
    assert!(matches!(
        local.check(family, &quota.into()),
        Check::Ready(Ok(_))
    ));

    let reject = RedisLimiter::builder(closed)
        .fallback(FallbackPolicy::Reject)
        .build()
        .unwrap();
    for _ in 0..10 {
        let t = Instant::now();
        let err = decide(&reject, family, quota).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(100));
        let source = std::error::Error::source(&err).unwrap();
        assert!(
            source.downcast_ref::<keygate_redis::Error>().is_some(),
            "{err}"
        );
    }
    let multi = quota.and(Quota::per_day(100));
    assert!(decide(&reject, family, multi).await.is_err());
}

/// A loopback TCP proxy to Redis that can be stopped and started again on
/// the same port, to cut the connection mid-run.
struct Proxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let mut proxy = Self {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream,
            task: None,
        };
        proxy.resume();
        proxy
    }

    fn resume(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.listen).unwrap();
        let listener = socket.listen(64).unwrap();
        self.listen = listener.local_addr().unwrap();
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) closes every
            // connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn client(&self, real: &Client) -> Client {
        let info = real
            .get_connection_info()
            .clone()
            .set_addr(ConnectionAddr::Tcp("127.0.0.1".into(), self.listen.port()));
        Client::open(info).unwrap()
    }
}

async fn upstream(client: &Client) -> SocketAddr {
    let ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr() else {
        panic!("the proxy tests need a TCP Redis URL");
    };
    let addr = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .unwrap()
        .next()
        .unwrap();
    assert!(
        addr.ip().is_loopback(),
        "the proxy tests only talk to loopback"
    );
    addr
}

#[tokio::test]
async fn fails_over_and_recovers_when_the_connection_comes_back() {
    let Some(client) = test_redis().await else {
        return;
    };
    let _serial = TIMING.lock().await;
    let prefix = unique_prefix("keygate-test", "recover");
    let mut proxy = Proxy::start(upstream(&client).await).await;
    let build = |policy| {
        RedisLimiter::builder(proxy.client(&client))
            .key_prefix(&prefix)
            .timeout(Duration::from_millis(50))
            .failure_threshold(3)
            .cooldown(Duration::from_millis(100))
            .fallback(policy)
            .build()
            .unwrap()
    };
    let local = build(FallbackPolicy::Local);
    let reject = build(FallbackPolicy::Reject);
    let quota = Quota::per_minute(1_000);
    let family = id("Recover001");

    for _ in 0..20 {
        assert!(decide(&local, family, quota).await.unwrap().allowed);
        assert!(decide(&reject, family, quota).await.unwrap().allowed);
    }
    assert_eq!(local.stats().redis_decisions, 20);

    // Cut the connection: decisions keep coming, fast.
    proxy.stop().await;
    let mut slowest = Duration::ZERO;
    let mut rejected = 0;
    for _ in 0..40 {
        let t = Instant::now();
        assert!(decide(&local, family, quota).await.unwrap().allowed);
        slowest = slowest.max(t.elapsed());
        let t = Instant::now();
        rejected += u32::from(decide(&reject, family, quota).await.is_err());
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        slowest < Duration::from_millis(100),
        "a decision took {slowest:?}"
    );
    assert_eq!(rejected, 40, "the Reject policy admitted without Redis");
    let during = local.stats();
    assert!(during.breaker_open, "{during:?}");
    assert!(during.fallback_decisions >= 40);
    // The cooldown spares most requests the timeout.
    assert!(during.redis_failures < 20, "{during:?}");

    // Bring it back: both limiters return to Redis by themselves.
    proxy.resume();
    let back = Instant::now();
    let mut recovered = false;
    while back.elapsed() < Duration::from_secs(10) {
        let l = decide(&local, family, quota).await.unwrap();
        let r = decide(&reject, family, quota).await;
        assert!(l.allowed);
        if r.is_ok()
            && local.stats().redis_decisions > during.redis_decisions
            && !local.stats().breaker_open
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        recovered,
        "no recovery within 10 s: {:?} / {:?}",
        local.stats(),
        reject.stats()
    );
    eprintln!("recovered {:?} after the proxy came back", back.elapsed());
    proxy.stop().await;
    clean_up(&client, &prefix).await;
}

async fn next(feed: &mut keygate_core::InvalidationFeed) -> Invalidation {
    tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("no invalidation within 5 s")
        .expect("the feed closed")
}

#[tokio::test]
async fn invalidations_cross_nodes_and_reconnects_say_all() {
    let Some(client) = test_redis().await else {
        return;
    };
    let channel = unique_prefix("keygate-test", "invalidate");
    let mut proxy = Proxy::start(upstream(&client).await).await;
    // The subscriber goes through the proxy, the publisher does not.
    let subscriber = RedisInvalidation::with_channel(proxy.client(&client), &channel);
    let publisher = RedisInvalidation::with_channel(client.clone(), &channel);
    let mut feed = subscriber.subscribe().unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::All, "subscribed");

    let key = id("Revoked001");
    publisher.publish(key).await.unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::Key(key));
    publisher.publish_all().await.unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::All);

    // Lose the subscription, and get it back: messages published meanwhile
    // are lost, so the feed says "all".
    proxy.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.publish(id("LostMsg001")).await.unwrap();
    proxy.resume();
    assert_eq!(next(&mut feed).await, Invalidation::All, "resubscribed");
    publisher.publish(key).await.unwrap();
    assert_eq!(next(&mut feed).await, Invalidation::Key(key));
    proxy.stop().await;
}

/// `InvalidatingStore` passes every store operation through, including the
/// ones revocation and preloading depend on: revoking a delegating key
/// through it revokes the keys that key created, and a process starting on
/// it knows the live keys.
#[tokio::test]
async fn an_invalidating_store_keeps_cascades_and_preloads() {
    use keygate_core::{
        Grantor, KeyFormat, KeyHasher, KeyManager, KeyStore, MemoryStore, NewKey, Owner, Scope,
        SystemClock,
    };
    use keygate_redis::InvalidatingStore;

    let Some(client) = test_redis().await else {
        return;
    };
    let channel = unique_prefix("keygate-test", "cascade");
    let store = Arc::new(InvalidatingStore::new(
        MemoryStore::new(),
        RedisInvalidation::with_channel(client, &channel),
    ));
    let manager = KeyManager::new(
        Arc::clone(&store) as Arc<dyn keygate_core::DynKeyStore>,
        KeyFormat::new("kg").unwrap(),
        KeyHasher::sha256(),
        Arc::new(SystemClock),
    );
    let owner = Owner::user("delegator");
    let parent = manager
        .create(
            NewKey::new(owner.clone(), "parent")
                .scopes([Scope::READ, Scope::from_static("keys:manage")]),
        )
        .await
        .unwrap();
    let grantor = Grantor::new(&parent.record, None);
    let child = manager
        .create_as(&grantor, NewKey::new(owner, "child").scopes([Scope::READ]))
        .await
        .unwrap();
    assert_eq!(child.record.created_by, Some(parent.record.family));

    let mut live = store.list_live_ids(10).await.unwrap();
    live.sort();
    let mut want = vec![parent.record.id, child.record.id];
    want.sort();
    assert_eq!(live, want);

    manager.revoke(parent.record.id).await.unwrap();
    let child_now = store.find(child.record.id).await.unwrap().unwrap();
    assert!(
        child_now.revoked_at.is_some(),
        "the child died with its parent"
    );
    assert!(store.list_live_ids(10).await.unwrap().is_empty());
}
