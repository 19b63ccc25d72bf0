//! `RedisCredits` against a real Redis at `KEYGATE_TEST_REDIS_URL`: the bank
//! conformance cases (the same ones `StoreCredits` over `MemoryStore`, the
//! reference, passes in keygate-core), two nodes under load, cancelled
//! charges, failures and corrupt data.
//!
//! Without the variable each test that needs Redis says so on stderr and
//! passes; with `CI=true` it fails instead, as it does whenever the variable
//! is set but the server does not answer. Each test writes under a key
//! prefix of its own (pid + time) and deletes its keys when done, failed
//! or not. Traffic
//! goes to 127.0.0.1 only, bounded in count and time.

use std::{
    future::Future,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use keygate_core::{
    CreditBank, CreditUpdate, KeyId, MAX_CREDITS, Refill, RefillInterval, StoreError,
};
use keygate_redis::{
    RedisCredits,
    redis::{self, Client},
};
use keygate_test_support::redis::{clean_up_blocking, test_redis, unique_prefix};
use time::{OffsetDateTime, macros::datetime};
use tokio::task::JoinSet;

keygate_test_support::bank_conformance!(conformance, keygate_test_support::redis::credit_banks);

/// Deletes a test's keys when dropped: when the test ends, passed or not.
struct Cleanup(Client, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        clean_up_blocking(&self.0, &self.1);
    }
}

/// Held by the tests that measure time, so they do not measure each other.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const T0: OffsetDateTime = datetime!(2031-03-04 05:06:07.123456 UTC);

fn id(s: &str) -> KeyId {
    s.parse().unwrap()
}

fn bank(client: &Client, prefix: &str) -> RedisCredits {
    RedisCredits::builder(client.clone())
        .key_prefix(prefix)
        // Generous: these tests are about Redis's answers, on a busy
        // two-core machine running a debug build.
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

async fn raw(client: &Client) -> redis::aio::MultiplexedConnection {
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Polls `fut` once and drops it: a request cancelled mid-flight.
async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

/// Two nodes (two banks, two connections, one prefix), each with several
/// tasks charging one account as fast as they can until it refuses them:
/// the nodes admit exactly the balance between them, first with charges of
/// 1 credit, then with mixed costs, where what they admitted and what is
/// left add up to the balance exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_under_load_admit_exactly_the_balance() {
    let Some(client) = test_redis().await else {
        return;
    };
    let _serial = TIMING.lock().await;
    let prefix = unique_prefix("keygate-test", "credit-nodes");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let nodes = [bank(&client, &prefix), bank(&client, &prefix)];
    for n in &nodes {
        n.ping().await.unwrap();
    }
    const TASKS_PER_NODE: usize = 4;

    for (round, (balance, costs)) in [(3_000_u64, &[1_u64][..]), (5_000, &[1, 2, 3, 5, 7, 13])]
        .into_iter()
        .enumerate()
    {
        let account = id(&format!("LoadRound{round}"));
        nodes[0]
            .update(account, &CreditUpdate::set(balance), T0)
            .await
            .unwrap();
        let spent = Arc::new(AtomicU64::new(0));
        let admitted = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for (n, node) in nodes.iter().enumerate() {
            for t in 0..TASKS_PER_NODE {
                let node = node.clone();
                let (spent, admitted, sent) = (spent.clone(), admitted.clone(), sent.clone());
                let costs = costs.to_vec();
                tasks.spawn(async move {
                    // Each task cycles through the costs from its own offset
                    // and stops at its first refusal.
                    for i in (n * TASKS_PER_NODE + t).. {
                        let cost = costs[i % costs.len()];
                        sent.fetch_add(1, Ordering::Relaxed);
                        let charge = node.charge(account, cost, T0).await.unwrap().unwrap();
                        if !charge.admitted {
                            break;
                        }
                        admitted.fetch_add(1, Ordering::Relaxed);
                        spent.fetch_add(cost, Ordering::Relaxed);
                    }
                });
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let elapsed = start.elapsed();
        let left = nodes[1]
            .balance(account, T0)
            .await
            .unwrap()
            .unwrap()
            .remaining;
        let (spent, admitted, sent) = (
            spent.load(Ordering::Relaxed),
            admitted.load(Ordering::Relaxed),
            sent.load(Ordering::Relaxed),
        );
        #[allow(clippy::cast_precision_loss)]
        let rate = sent as f64 / elapsed.as_secs_f64();
        eprintln!(
            "two nodes × {TASKS_PER_NODE} tasks, balance {balance}, costs {costs:?}: {sent} charges \
             in {elapsed:.2?} ({rate:.0}/s), {admitted} admitted spending {spent}, {left} left"
        );
        assert_eq!(spent + left, balance, "over- or under-admission");
        if costs == [1] {
            assert_eq!(spent, balance, "every credit was spent");
            assert_eq!(left, 0);
        } else {
            assert!(left < 13, "a task stopped while {left} credits were left");
        }
    }
}

/// Charges cancelled mid-flight (dropped after their first poll, or by a
/// timeout of a few microseconds) never admit for free: what the callers saw
/// admitted plus what is left is at most the balance. The difference is the
/// credits of cancelled charges that Redis carried out anyway: spent on
/// requests that were not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_charges_never_admit_for_free() {
    let Some(client) = test_redis().await else {
        return;
    };
    let _serial = TIMING.lock().await;
    let prefix = unique_prefix("keygate-test", "credit-cancel");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let node = bank(&client, &prefix);
    node.ping().await.unwrap();
    let account = id("Cancelled1");

    // One charge, polled once and dropped: sent or not, never admitted.
    node.update(account, &CreditUpdate::set(10), T0)
        .await
        .unwrap();
    let dropped = poll_once(node.charge(account, 1, T0)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = node.balance(account, T0).await.unwrap().unwrap().remaining;
    eprintln!(
        "a charge dropped after its first poll: balance 10 -> {after_drop} (answered: {dropped:?})"
    );
    match dropped {
        // On a loaded machine the whole round trip can fit in one poll.
        Some(answered) => {
            assert!(answered.unwrap().unwrap().admitted);
            assert_eq!(after_drop, 9);
        }
        None => assert!(after_drop == 9 || after_drop == 10),
    }

    // Many, cancelled at random points.
    let balance = 200;
    node.update(account, &CreditUpdate::set(balance), T0)
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..600_u64 {
        let node = node.clone();
        tasks.spawn(async move {
            let charge = node.charge(account, 1, T0);
            let outcome = match i % 3 {
                0 => poll_once(charge).await,
                1 => tokio::time::timeout(Duration::from_micros(i % 300), charge)
                    .await
                    .ok(),
                _ => Some(charge.await),
            };
            match outcome {
                Some(result) => u64::from(result.unwrap().unwrap().admitted),
                None => 0,
            }
        });
    }
    let mut seen = 0;
    while let Some(done) = tasks.join_next().await {
        seen += done.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left = node.balance(account, T0).await.unwrap().unwrap().remaining;
    let lost = balance - seen - left;
    eprintln!(
        "600 charges of a balance of {balance}, 400 of them cancelled: {seen} seen admitted, \
         {left} left, {lost} spent by cancelled charges"
    );
    assert!(
        seen + left <= balance,
        "a cancelled charge admitted for free"
    );
}

async fn expect_unavailable<T: std::fmt::Debug>(
    what: &str,
    op: impl Future<Output = Result<T, StoreError>>,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    let result = op.await;
    let took = start.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: {result:?}"
    );
    assert!(took <= within, "{what} took {took:?}");
    took
}

/// A Redis nobody listens for: every operation fails with `Unavailable`,
/// within the timeout, without a panic; after a few failures the breaker
/// answers at once.
#[tokio::test]
async fn an_unreachable_redis_is_unavailable_within_the_timeout() {
    let _serial = TIMING.lock().await;
    // No Redis needed: nothing listens on port 1.
    let closed = Client::open("redis://127.0.0.1:1/").unwrap();
    let timeout = Duration::from_millis(200);
    let bank = RedisCredits::builder(closed)
        .timeout(timeout)
        .failure_threshold(3)
        .cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    let account = id("Nowhere001");
    // Generous: timers fire late on a loaded two-core machine; what matters
    // is that nothing waits for a connection that never comes.
    let within = timeout + Duration::from_secs(1);
    let update = CreditUpdate::set(5);
    for _ in 0..2 {
        expect_unavailable("charge", bank.charge(account, 1, T0), within).await;
        expect_unavailable("balance", bank.balance(account, T0), within).await;
        expect_unavailable("refund", bank.refund(account, 1, None), within).await;
        expect_unavailable("update", bank.update(account, &update, T0), within).await;
    }
    assert!(bank.breaker_open());
    let fast = expect_unavailable("charge", bank.charge(account, 1, T0), within).await;
    assert!(
        fast < Duration::from_millis(100),
        "the open breaker took {fast:?}"
    );
    let err = bank.charge(account, 1, T0).await.unwrap_err();
    let StoreError::Unavailable(source) = &err else {
        unreachable!()
    };
    assert!(
        matches!(
            source.downcast_ref::<keygate_redis::Error>(),
            Some(keygate_redis::Error::CircuitOpen)
        ),
        "{err}"
    );
}

/// A Redis that accepts connections and never answers: the operation fails
/// with `Unavailable` (a timeout) when its timeout is up.
#[tokio::test]
async fn a_silent_redis_times_out() {
    let _serial = TIMING.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(150);
    let bank = RedisCredits::builder(Client::open(format!("redis://127.0.0.1:{port}/")).unwrap())
        .timeout(timeout)
        .build()
        .unwrap();
    let account = id("Silence001");
    // Generous upper bound (timers fire late on a loaded machine); the
    // error's source below shows it was this timeout that fired, not the
    // connection's own (500 ms).
    let took = expect_unavailable(
        "charge",
        bank.charge(account, 1, T0),
        timeout + Duration::from_secs(1),
    )
    .await;
    assert!(took >= timeout, "gave up after {took:?}");
    let err = bank.balance(account, T0).await.unwrap_err();
    let StoreError::Unavailable(source) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.downcast_ref::<keygate_redis::Error>(),
            Some(keygate_redis::Error::Timeout(_))
        ),
        "{err}"
    );
    silent.abort();
}

/// A hash this bank did not write — negative, non-numeric, too large or
/// fractional counts, half a refill rule, a bad period or time, no balance,
/// or a key of another type — is `Corrupt` for every operation, and is left
/// as it was.
#[tokio::test]
async fn corrupt_accounts_are_corrupt_and_left_alone() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "credit-corrupt");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let bank = bank(&client, &prefix);
    let mut conn = raw(&client).await;
    let account = id("Corrupt001");
    let key = bank.account_key(account);
    assert_eq!(key, format!("{prefix}:credits:Corrupt001"));
    let hashes: &[&[(&str, &str)]] = &[
        &[("remaining", "-5")],
        &[("remaining", "abc")],
        &[("remaining", "")],
        &[("remaining", "1e3")],
        &[("remaining", "2.5")],
        &[("remaining", " 5")],
        &[("remaining", "1000000000000001")],
        &[("remaining", "5\u{0}")],
        &[("remaining", "0x10")],
        &[("remaining", "99999999999999999999999")],
        &[("refill_amount", "5")],
        &[("remaining", "5"), ("refill_amount", "5")],
        &[("remaining", "5"), ("refill_seconds", "86400")],
        &[
            ("remaining", "5"),
            ("refill_amount", "0"),
            ("refill_seconds", "86400"),
        ],
        &[
            ("remaining", "5"),
            ("refill_amount", "-1"),
            ("refill_seconds", "86400"),
        ],
        &[
            ("remaining", "5"),
            ("refill_amount", "5"),
            ("refill_seconds", "31622401"),
        ],
        &[
            ("remaining", "5"),
            ("refill_amount", "5"),
            ("refill_seconds", "-86400"),
        ],
        &[("remaining", "5"), ("refilled_at", "yesterday")],
        &[("remaining", "5"), ("refilled_at", "1.5")],
        &[("remaining", "5"), ("refilled_at", "99999999999999999")],
        // Parses, but no `time` instant is that far out.
        &[("remaining", "5"), ("refilled_at", "999999999999999")],
    ];
    let update = CreditUpdate::add(1);
    for fields in hashes {
        let _: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: i64 = redis::cmd("HSET")
            .arg(&key)
            .arg(*fields)
            .query_async(&mut conn)
            .await
            .unwrap();
        let results = [
            bank.charge(account, 1, T0).await.map(|_| ()),
            bank.balance(account, T0).await.map(|_| ()),
            bank.refund(account, 1, None).await,
            bank.update(account, &update, T0).await.map(|_| ()),
        ];
        for r in results {
            assert!(
                matches!(r, Err(StoreError::Corrupt(_))),
                "{fields:?}: {r:?}"
            );
        }
        let mut now: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        now.sort();
        let mut want: Vec<(String, String)> = fields
            .iter()
            .map(|&(f, v)| (f.to_owned(), v.to_owned()))
            .collect();
        want.sort();
        assert_eq!(now, want, "the corrupt hash was rewritten");
    }
    // A key of another type.
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("100")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = bank.charge(account, 1, T0).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(why) if why.contains("string")),
        "{err:?}"
    );
    assert!(matches!(
        bank.update(account, &update, T0).await,
        Err(StoreError::Corrupt(_))
    ));
    // Fields the bank does not know are kept and ignored.
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg(&[("remaining", "5"), ("note", "set by hand")])
        .query_async(&mut conn)
        .await
        .unwrap();
    let c = bank.charge(account, 2, T0).await.unwrap().unwrap();
    assert_eq!((c.admitted, c.remaining), (true, 3));
}

/// An account is a plain hash under `{prefix}:credits:{account}` with no
/// TTL, and every number is written in full, never in Lua's 14-digit
/// `tostring` form.
#[tokio::test]
async fn accounts_are_plain_hashes_without_a_ttl() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "credit-layout");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let bank = bank(&client, &prefix);
    let mut conn = raw(&client).await;
    let account = id("Layout0001");
    let refill = Refill::every(MAX_CREDITS, std::time::Duration::from_secs(7 * 86_400)).unwrap();
    let at = datetime!(2255-06-05 23:47:34.740992 UTC);
    bank.update(
        account,
        &CreditUpdate::set(MAX_CREDITS - 1).with_refill(Some(refill)),
        at,
    )
    .await
    .unwrap();
    let key = format!("{prefix}:credits:Layout0001");
    assert_eq!(bank.account_key(account), key);
    let mut fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    fields.sort();
    // A set marks its instant, in whole seconds.
    let set_at = at.unix_timestamp();
    assert_eq!(
        fields,
        [
            ("refill_amount".to_owned(), "1000000000000000".to_owned()),
            ("refill_seconds".to_owned(), "604800".to_owned()),
            ("refilled_at".to_owned(), set_at.to_string()),
            ("remaining".to_owned(), "999999999999999".to_owned()),
        ]
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "balances must not expire");
    // Removing the refill removes its fields (but for the mark of the
    // change).
    let c = bank
        .charge(account, 999_999_999_999_998, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.admitted, c.remaining), (true, 1));
    bank.update(account, &CreditUpdate::default().with_refill(None), at)
        .await
        .unwrap();
    let mut fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    fields.sort();
    // The change is marked with its instant, like a set.
    assert_eq!(fields, ["refilled_at", "remaining"]);
}

/// A refill built by hand that no store could read back (an amount of 0 or
/// above `MAX_CREDITS`, a period of 0, a fraction of a second or over 366
/// days) is `Rejected`, and nothing is written.
#[tokio::test]
async fn refills_no_store_can_keep_are_rejected() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "credit-reject");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let bank = bank(&client, &prefix);
    let account = id("Rejected01");
    for refill in [
        Refill {
            amount: 0,
            interval: RefillInterval::Daily,
        },
        Refill {
            amount: u64::MAX,
            interval: RefillInterval::Monthly,
        },
        Refill {
            amount: 1,
            interval: RefillInterval::Every(Duration::ZERO),
        },
        Refill {
            amount: 1,
            interval: RefillInterval::Every(Duration::from_millis(2_500)),
        },
        Refill {
            amount: 1,
            interval: RefillInterval::Every(Duration::from_secs(400 * 86_400)),
        },
    ] {
        let update = CreditUpdate::set(5).with_refill(Some(refill));
        let r = bank.update(account, &update, T0).await;
        assert!(
            matches!(r, Err(StoreError::Rejected(_))),
            "{refill:?}: {r:?}"
        );
    }
    assert_eq!(bank.balance(account, T0).await.unwrap(), None);
}

#[test]
fn building_outside_a_runtime_fails() {
    let client = Client::open("redis://127.0.0.1:1/").unwrap();
    assert!(matches!(
        RedisCredits::new(client),
        Err(keygate_redis::Error::NoRuntime)
    ));
}

/// The script's reply reads the same over RESP3 (where Lua's `false` would
/// be a boolean, not a nil: the script returns integers only).
#[tokio::test]
async fn speaks_resp3_too() {
    let Some(client) = test_redis().await else {
        return;
    };
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let resp3 = Client::open(info.set_redis_settings(settings)).unwrap();
    let prefix = unique_prefix("keygate-test", "credit-resp3");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let bank = bank(&resp3, &prefix);
    keygate_test_support::conformance::bank::bank_follows_the_reference_rules(&bank).await;
    keygate_test_support::conformance::bank::bank_matches_the_reference_model(&bank).await;
}

/// Redis forgetting its scripts (`SCRIPT FLUSH`, a restart, a failover)
/// costs one reload, not a failed charge.
#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "credit-flush");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let bank = bank(&client, &prefix);
    let account = id("Flushed001");
    bank.update(account, &CreditUpdate::set(2), T0)
        .await
        .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw(&client).await)
        .await
        .unwrap();
    let c = bank.charge(account, 1, T0).await.unwrap().unwrap();
    assert_eq!((c.admitted, c.remaining), (true, 1));
}

/// Two nodes charging, refunding and topping up one account (without a
/// refill, so every refund lands) all at once: the balance ends exactly at
/// what the operations that were answered add up to — none lost to a race
/// between the nodes, none applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_mixing_charges_refunds_and_top_ups_lose_nothing() {
    let Some(client) = test_redis().await else {
        return;
    };
    let _serial = TIMING.lock().await;
    let prefix = unique_prefix("keygate-test", "credit-mixed");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let nodes = [bank(&client, &prefix), bank(&client, &prefix)];
    let account = id("MixedOps01");
    let start = 1_000;
    nodes[0]
        .update(account, &CreditUpdate::set(start), T0)
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..3_u64 {
            let node = node.clone();
            let seed = u64::try_from(n).unwrap() * 3 + t;
            tasks.spawn(async move {
                // (charged, refunded, added) by this task.
                let (mut charged, mut refunded, mut added) = (0, 0, 0);
                for i in 0..400_u64 {
                    match (i * 7 + seed) % 5 {
                        0..=2 => {
                            let cost = 1 + (i + seed) % 4;
                            let c = node.charge(account, cost, T0).await.unwrap().unwrap();
                            if c.admitted {
                                charged += cost;
                                if i % 3 == 0 {
                                    node.refund(account, cost, c.period).await.unwrap();
                                    refunded += cost;
                                }
                            }
                        }
                        3 => {
                            let n = (i + seed) % 3;
                            node.update(account, &CreditUpdate::add(n), T0)
                                .await
                                .unwrap();
                            added += n;
                        }
                        _ => {
                            node.balance(account, T0).await.unwrap().unwrap();
                        }
                    }
                }
                (charged, refunded, added)
            });
        }
    }
    let (mut charged, mut refunded, mut added) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        let (c, r, a) = done.unwrap();
        charged += c;
        refunded += r;
        added += a;
    }
    let left = nodes[1]
        .balance(account, T0)
        .await
        .unwrap()
        .unwrap()
        .remaining;
    eprintln!(
        "mixed ops on two nodes: {start} + {added} added - {charged} charged + {refunded} \
         refunded = {left}"
    );
    assert_eq!(start + added + refunded - charged, left);
}

/// A `now` that `time` can hold but not in UTC (year 10000 there) is
/// `Rejected` by every operation that computes a period, without a panic
/// and without a write.
#[tokio::test]
async fn times_out_of_range_in_utc_are_rejected() {
    let Some(client) = test_redis().await else {
        return;
    };
    let prefix = unique_prefix("keygate-test", "credit-times");
    let _clean = Cleanup(client.clone(), prefix.clone());
    let bank = bank(&client, &prefix);
    let account = id("FarFuture1");
    let daily = CreditUpdate::set(5).with_refill(Some(Refill::daily(5).unwrap()));
    bank.update(account, &daily, T0).await.unwrap();
    let hostile = datetime!(9999-12-31 23:59:59 -23:59);
    let rejected = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Rejected(_)));
    assert!(rejected(bank.charge(account, 1, hostile).await.map(|_| ())));
    assert!(rejected(bank.balance(account, hostile).await.map(|_| ())));
    assert!(rejected(
        bank.update(account, &daily, hostile).await.map(|_| ())
    ));
    // A refund takes no time, and no charge was made in such a period.
    bank.refund(account, 1, Some(hostile)).await.unwrap();
    let b = bank.balance(account, T0).await.unwrap().unwrap();
    assert_eq!(b.remaining, 5);
    // The edges themselves are fine.
    for at in [
        datetime!(9999-12-31 23:59:59.999999 UTC),
        datetime!(-9999-01-01 00:00 UTC),
        datetime!(9999-12-31 23:59:59 +00:00),
    ] {
        bank.charge(account, 0, at).await.unwrap().unwrap();
    }
}
