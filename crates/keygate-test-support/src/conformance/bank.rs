//! Credit banks ([`CreditBank`]): the rules of [`CreditOp::apply`] as a
//! bank's callers (the layer, `KeyManager`) see them, kept exactly however
//! many callers, and however many nodes, race.
//!
//! [`StoreCredits`] over a [`MemoryStore`] is the reference
//! ([`memory`] opens it); keygate-redis's `RedisCredits` runs the same
//! cases. Every case but [`two_nodes_admit_exactly_the_balance`] takes one
//! bank; that one takes two handles on the same balances, as two nodes hold
//! them ([`Banks`]). A case writes only accounts of its own, so one pair of
//! banks may serve several cases, but each test should get a fresh one
//! ([`bank_conformance!`](crate::bank_conformance) does).

use std::{collections::HashMap, sync::Arc};

use futures_util::future::join_all;
use keygate_core::{
    Charge, CreditAccount, CreditBalance, CreditBank, CreditOp, CreditUpdate, KeyId, MAX_CREDITS,
    MemoryStore, Refill, RefillInterval, StoreCredits,
};
use time::{Duration, OffsetDateTime, macros::datetime};

use super::{T0, id};
use crate::Fixture;

/// Two handles on one set of balances, as two nodes of a service hold them:
/// for Redis, two banks built separately (two connections) with one key
/// prefix; for the reference, two [`StoreCredits`] over one store.
#[derive(Debug)]
pub struct Banks {
    /// The first node's bank.
    pub a: Arc<dyn CreditBank>,
    /// The second node's bank.
    pub b: Arc<dyn CreditBank>,
}

/// The reference: two [`StoreCredits`] over one fresh [`MemoryStore`].
/// Always `Some`.
pub async fn memory() -> Option<Fixture<Banks>> {
    let store = Arc::new(MemoryStore::new());
    let banks = Banks {
        a: Arc::new(StoreCredits::new(store.clone())),
        b: Arc::new(StoreCredits::new(store)),
    };
    Some(Fixture::new(banks, || {}))
}

/// Runs every bank case against one bank, as a module of `#[tokio::test]`s
/// named `$backend`.
///
/// `$open` is an async fn returning `Option<`[`Fixture`]`<`[`Banks`]`>>`,
/// called once per test; `None` skips the test (a backend that is not
/// configured, outside CI). The calling crate needs `tokio` (with `macros`
/// and a runtime) among its dev-dependencies.
///
/// ```ignore
/// keygate_test_support::bank_conformance!(memory_bank, keygate_test_support::conformance::bank::memory);
/// ```
#[macro_export]
macro_rules! bank_conformance {
    ($backend:ident, $open:path) => {
        mod $backend {
            $crate::__bank_tests!(
                $open;
                bank_follows_the_reference_rules,
                periods_start_where_period_start_says,
                bank_matches_the_reference_model,
                concurrent_charges_admit_exactly_the_balance,
                hostile_amounts_saturate_and_never_wrap;
                two_nodes_admit_exactly_the_balance,
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bank_tests {
    ($open:path; $($one:ident),+; $($two:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $one() {
                let Some(fixture) = $open().await else { return };
                $crate::conformance::bank::$one(&*fixture.store.a).await;
            }
        )+
        $(
            #[::tokio::test]
            async fn $two() {
                let Some(fixture) = $open().await else { return };
                $crate::conformance::bank::$two(&*fixture.store.a, &*fixture.store.b).await;
            }
        )+
    };
}

async fn charge(bank: &dyn CreditBank, account: KeyId, cost: u64, at: OffsetDateTime) -> Charge {
    bank.charge(account, cost, at)
        .await
        .unwrap()
        .expect("the account exists")
}

async fn balance(bank: &dyn CreditBank, account: KeyId, at: OffsetDateTime) -> CreditBalance {
    bank.balance(account, at)
        .await
        .unwrap()
        .expect("the account exists")
}

async fn update(
    bank: &dyn CreditBank,
    account: KeyId,
    update: CreditUpdate,
    at: OffsetDateTime,
) -> CreditBalance {
    bank.update(account, &update, at).await.unwrap()
}

/// Checks the rules through the bank: no account until an update creates
/// one, charges all or nothing, refunds within the charge's period only, a
/// refill at the period boundary and not a second earlier, top-ups above
/// the refill amount kept, a set balance that the refill due the same
/// period does not overwrite, a removed refill rule.
pub async fn bank_follows_the_reference_rules(bank: &dyn CreditBank) {
    let account = id("BankRules1");
    let t = datetime!(2031-03-04 13:00:00.123456 UTC);
    // No account: nothing to charge or read, and a refund creates none.
    assert_eq!(bank.charge(account, 1, t).await.unwrap(), None);
    assert_eq!(bank.charge(account, 0, t).await.unwrap(), None);
    assert_eq!(bank.balance(account, t).await.unwrap(), None);
    bank.refund(account, 1, None).await.unwrap();
    assert_eq!(bank.balance(account, t).await.unwrap(), None);

    let daily = Refill::daily(10).unwrap();
    let midnight = datetime!(2031-03-05 00:00 UTC);
    let opened = update(
        bank,
        account,
        CreditUpdate::set(4).with_refill(Some(daily)),
        t,
    )
    .await;
    let want = CreditBalance {
        remaining: 4,
        refill: Some(daily),
        next_refill: Some(midnight),
    };
    assert_eq!(opened, want);
    let first = charge(bank, account, 3, t).await;
    let want = Charge {
        admitted: true,
        remaining: 1,
        next_refill: Some(midnight),
        // The set's instant, to the second: a refund after another set or
        // a refill is dropped.
        period: Some(datetime!(2031-03-04 13:00:00 UTC)),
    };
    assert_eq!(first, want);
    let refused = charge(bank, account, 2, t).await;
    assert_eq!(
        refused,
        Charge {
            admitted: false,
            ..first
        },
        "all or nothing"
    );
    // A refund in the charge's period gives the credits back.
    bank.refund(account, 3, first.period).await.unwrap();
    assert_eq!(balance(bank, account, t).await.remaining, 4);
    // Not a second early...
    let last = datetime!(2031-03-04 23:59:59.999999 UTC);
    assert_eq!(balance(bank, account, last).await.remaining, 4);
    assert!(!charge(bank, account, 5, last).await.admitted);
    // ...and at midnight: topped up to 10.
    let read = balance(bank, account, midnight).await;
    assert_eq!(read.remaining, 10);
    assert_eq!(read.next_refill, Some(datetime!(2031-03-06 00:00 UTC)));
    let next = charge(bank, account, 1, midnight).await;
    assert_eq!((next.remaining, next.period), (9, Some(midnight)));
    // The old charge's refund is dropped: the refill made the balance whole.
    bank.refund(account, 3, first.period).await.unwrap();
    assert_eq!(balance(bank, account, midnight).await.remaining, 9);
    // A refund without a period is no refund for a balance that refills.
    bank.refund(account, 3, None).await.unwrap();
    assert_eq!(balance(bank, account, midnight).await.remaining, 9);

    // A top-up above the refill amount survives the next refills.
    let topped = update(bank, account, CreditUpdate::add(100), midnight).await;
    assert_eq!(topped.remaining, 109);
    let later = midnight + Duration::days(3) + Duration::hours(5);
    let read = balance(bank, account, later).await;
    assert_eq!(read.remaining, 109);
    assert_eq!(read.refill, Some(daily));
    assert_eq!(read.next_refill, Some(datetime!(2031-03-09 00:00 UTC)));
    // But not forever: spent below the amount, the next refill tops up.
    assert!(charge(bank, account, 105, later).await.admitted);
    let day_after = datetime!(2031-03-09 00:00:01 UTC);
    assert_eq!(balance(bank, account, day_after).await.remaining, 10);

    // A balance set by hand is this period's: no refill on top of it.
    let set = update(bank, account, CreditUpdate::set(2), day_after).await;
    assert_eq!(set.remaining, 2);
    assert_eq!(balance(bank, account, day_after).await.remaining, 2);
    assert!(charge(bank, account, 2, day_after).await.admitted);
    assert!(!charge(bank, account, 1, day_after).await.admitted);
    // A new refill rule starts its period now: nothing is due at once.
    let monthly = Refill::monthly(50).unwrap();
    let ruled = update(
        bank,
        account,
        CreditUpdate::default().with_refill(Some(monthly)),
        day_after,
    )
    .await;
    assert_eq!(ruled.remaining, 0);
    assert_eq!(ruled.next_refill, Some(datetime!(2031-04-01 00:00 UTC)));
    assert_eq!(
        balance(bank, account, datetime!(2031-04-01 00:00 UTC))
            .await
            .remaining,
        50
    );

    // Set with the refill removed; the largest balance round-trips.
    let none = CreditUpdate::set(MAX_CREDITS).with_refill(None);
    update(bank, account, none, day_after).await;
    let read = balance(bank, account, day_after + Duration::days(400)).await;
    assert_eq!(read.remaining, MAX_CREDITS);
    assert_eq!((read.refill, read.next_refill), (None, None));
    let all = charge(bank, account, MAX_CREDITS, day_after).await;
    assert_eq!(
        (all.admitted, all.remaining, all.period),
        (true, 0, Some(day_after)),
        "no refill: the period is the set's instant"
    );
    // A refund with an older period, or none, no longer lands: the balance
    // was set since.
    bank.refund(account, 7, None).await.unwrap();
    assert_eq!(balance(bank, account, day_after).await.remaining, 0);
    bank.refund(account, 7, all.period).await.unwrap();
    assert_eq!(balance(bank, account, day_after).await.remaining, 7);
    // A set to 0 (a customer cut off) is not undone by a refund of a
    // charge made before it.
    let paid = charge(bank, account, 1, day_after).await;
    update(
        bank,
        account,
        CreditUpdate::set(0),
        day_after + Duration::seconds(1),
    )
    .await;
    bank.refund(account, 1, paid.period).await.unwrap();
    assert_eq!(balance(bank, account, day_after).await.remaining, 0);

    // Other accounts are untouched.
    assert_eq!(bank.balance(id("BankRules2"), t).await.unwrap(), None);
}

/// Checks that monthly periods start on the first of the month at midnight
/// UTC (across a year's end and a leap February, whatever the offset `now`
/// is given in), and other periods on multiples of the period since the
/// Unix epoch, before 1970 too — exactly where
/// [`RefillInterval::period_start`] says.
pub async fn periods_start_where_period_start_says(bank: &dyn CreditBank) {
    let account = id("Monthly001");
    let monthly = Refill::monthly(100).unwrap();
    let mid_dec = datetime!(2031-12-15 12:00 UTC);
    let opened = update(
        bank,
        account,
        CreditUpdate::set(5).with_refill(Some(monthly)),
        mid_dec,
    )
    .await;
    assert_eq!(opened.next_refill, Some(datetime!(2032-01-01 00:00 UTC)));
    let eve = datetime!(2031-12-31 23:59:59.999999 UTC);
    let spent = charge(bank, account, 5, eve).await;
    assert_eq!(
        (spent.admitted, spent.period),
        (true, Some(mid_dec)),
        "the set's instant"
    );
    assert!(!charge(bank, account, 1, eve).await.admitted);
    let new_year = charge(bank, account, 1, datetime!(2032-01-01 00:00 UTC)).await;
    assert_eq!(
        new_year,
        Charge {
            admitted: true,
            remaining: 99,
            next_refill: Some(datetime!(2032-02-01 00:00 UTC)),
            period: Some(datetime!(2032-01-01 00:00 UTC)),
        }
    );
    // The last second of a leap February, then March.
    let leap = charge(bank, account, 1, datetime!(2032-02-29 23:59:59 UTC)).await;
    assert_eq!(leap.remaining, 99);
    assert_eq!(leap.next_refill, Some(datetime!(2032-03-01 00:00 UTC)));
    // Months without a charge do not add up: one refill, to the amount.
    let july = balance(bank, account, datetime!(2032-07-04 00:00 UTC)).await;
    assert_eq!(july.remaining, 100);
    assert_eq!(july.next_refill, Some(datetime!(2032-08-01 00:00 UTC)));
    // 01:30 on the first at +02:00 is still July in UTC.
    let local = datetime!(2032-08-01 01:30 +02:00);
    let july = charge(bank, account, 100, local).await;
    assert_eq!(july.period, Some(datetime!(2032-07-01 00:00 UTC)));
    assert!(!charge(bank, account, 1, local).await.admitted);
    assert!(
        charge(bank, account, 1, datetime!(2032-08-01 02:00 +02:00))
            .await
            .admitted
    );

    // Periods counted from the epoch: 90 s, and before 1970.
    let account = id("Epoch90s01");
    let every = Refill::every(3, std::time::Duration::from_secs(90)).unwrap();
    let t = datetime!(1969-12-31 23:58:00 UTC); // -120 s: the period from -180 s
    let opened = update(
        bank,
        account,
        CreditUpdate::set(0).with_refill(Some(every)),
        t,
    )
    .await;
    assert_eq!(opened.next_refill, Some(datetime!(1969-12-31 23:58:30 UTC)));
    assert!(
        !charge(bank, account, 1, datetime!(1969-12-31 23:58:29.999999 UTC))
            .await
            .admitted
    );
    let refilled = charge(bank, account, 1, datetime!(1969-12-31 23:58:30 UTC)).await;
    assert_eq!(
        (refilled.admitted, refilled.remaining, refilled.period),
        (true, 2, Some(datetime!(1969-12-31 23:58:30 UTC)))
    );
    // Across the epoch itself: -90..0, then 0..90.
    let at = datetime!(1969-12-31 23:59:59 UTC);
    assert_eq!(
        charge(bank, account, 3, at).await.period,
        Some(datetime!(1969-12-31 23:58:30 UTC))
    );
    let epoch = charge(bank, account, 3, OffsetDateTime::UNIX_EPOCH).await;
    assert_eq!(
        (epoch.admitted, epoch.period),
        (true, Some(OffsetDateTime::UNIX_EPOCH))
    );
    // And every case agrees with the reference function, at times a
    // float could get wrong: the far future, just before a boundary.
    for (n, at) in [
        datetime!(2031-03-04 05:06:07.123456 UTC),
        datetime!(9999-12-31 23:59:59.999999 UTC),
        datetime!(-9999-01-01 00:00 UTC),
        datetime!(-9999-01-01 23:59:59 UTC),
        datetime!(2106-02-07 06:28:15 UTC),
        datetime!(2286-11-20 17:46:39 UTC),
        datetime!(1901-12-13 20:45:52 UTC),
    ]
    .into_iter()
    .enumerate()
    {
        for (r, refill) in [
            Refill::daily(1).unwrap(),
            Refill::monthly(1).unwrap(),
            Refill::every(1, std::time::Duration::from_secs(7)).unwrap(),
            Refill::every(1, std::time::Duration::from_secs(366 * 86_400)).unwrap(),
        ]
        .into_iter()
        .enumerate()
        {
            let account = id(&format!("Period{n}R{r}x"));
            // Opened more than a period before, so a refill is due at `at`
            // and the bank computes its period; a set marks its own
            // instant instead.
            let (opened, refilled) = match at.checked_sub(Duration::days(400)) {
                Some(before) => (before, refill.interval.period_start(at)),
                None => (at, at.replace_nanosecond(0).unwrap()),
            };
            update(
                bank,
                account,
                CreditUpdate::set(0).with_refill(Some(refill)),
                opened,
            )
            .await;
            let c = charge(bank, account, 0, at).await;
            assert_eq!(c.period, Some(refilled), "{refill} at {at}");
        }
    }
}

/// A small deterministic generator (xorshift64*), so a failing run is the
/// same run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        let len = u64::try_from(from.len()).expect("a short list");
        from[usize::try_from(self.next() % len).expect("an index")]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Checks a bank against the reference model — `Option<CreditAccount>` per
/// account and [`CreditOp::apply`], answered as [`StoreCredits`] answers —
/// over a few thousand generated operations: charges of every size
/// (0, [`MAX_CREDITS`], `u64::MAX`), refunds with right, wrong and
/// sub-second periods, sets and top-ups up to `u64::MAX`, every kind of
/// refill rule, times that step over period boundaries, go back (a node
/// whose clock is behind) and start before 1970 or in year 9999.
pub async fn bank_matches_the_reference_model(bank: &dyn CreditBank) {
    let starts = [
        datetime!(1969-12-31 23:58:00 UTC),
        datetime!(2031-01-31 23:59:58.5 UTC),
        datetime!(2032-02-28 22:00 +05:30),
        datetime!(2031-12-31 23:59:59.999999 UTC),
        datetime!(9999-10-01 0:00 UTC),
    ];
    let steps = [
        Duration::ZERO,
        Duration::ZERO,
        Duration::seconds(1),
        Duration::milliseconds(400),
        Duration::seconds(29),
        Duration::seconds(89),
        Duration::hours(1),
        Duration::hours(6),
        Duration::days(1),
        Duration::days(2),
        Duration::days(27),
        Duration::days(31),
        Duration::days(45),
        Duration::seconds(-1),
        Duration::days(-1),
    ];
    let amounts = [1, 2, 5, 10, 1_000, MAX_CREDITS];
    let intervals = [
        RefillInterval::Daily,
        RefillInterval::Monthly,
        RefillInterval::every(std::time::Duration::from_secs(1)).unwrap(),
        RefillInterval::every(std::time::Duration::from_secs(90)).unwrap(),
        RefillInterval::every(std::time::Duration::from_secs(7 * 86_400)).unwrap(),
        RefillInterval::every(std::time::Duration::from_secs(366 * 86_400)).unwrap(),
    ];
    let costs = [
        0,
        1,
        1,
        1,
        2,
        3,
        5,
        10,
        100,
        MAX_CREDITS,
        MAX_CREDITS + 1,
        u64::MAX,
    ];
    let counts = [0, 1, 3, 10, 1_000, MAX_CREDITS - 1, MAX_CREDITS, u64::MAX];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ops = 0;
    for (s, start) in starts.into_iter().enumerate() {
        let accounts: Vec<KeyId> = (0..3).map(|a| id(&format!("Model{s}Acc{a}"))).collect();
        let mut model: HashMap<KeyId, CreditAccount> = HashMap::new();
        let mut periods: HashMap<KeyId, Option<OffsetDateTime>> = HashMap::new();
        let mut now = start;
        for step in 0..300 {
            now = now.checked_add(rng.pick(&steps)).unwrap_or(now);
            let account = rng.pick(&accounts);
            let before = model.get(&account).copied();
            let what = rng.next() % 100;
            let context = || {
                format!("start {s}, step {step}, account {account}, at {now}, before {before:?}")
            };
            let apply = |op: CreditOp| op.apply(before, now);
            let applied = if what < 45 {
                let cost = rng.pick(&costs);
                let op = CreditOp::Charge(cost);
                let applied = apply(op);
                let want = applied.outcome.map(Charge::of);
                let got = bank.charge(account, cost, now).await.unwrap();
                assert_eq!(got, want, "{op:?}: {}", context());
                if let Some(c) = got.filter(|c| c.admitted) {
                    periods.insert(account, c.period);
                }
                applied
            } else if what < 60 {
                let applied = apply(CreditOp::Read);
                let want = applied.outcome.map(|o| o.account.balance(now));
                let got = bank.balance(account, now).await.unwrap();
                assert_eq!(got, want, "read: {}", context());
                applied
            } else if what < 72 {
                let cost = rng.pick(&costs);
                let period = match rng.next() % 4 {
                    0 => periods.get(&account).copied().flatten(),
                    1 => None,
                    2 => Some(now),
                    _ => before.and_then(|b| b.refilled_at),
                };
                let op = CreditOp::Refund { cost, period };
                bank.refund(account, cost, period).await.unwrap();
                apply(op)
            } else {
                let mut change = match rng.next() % 3 {
                    0 => CreditUpdate::set(rng.pick(&counts)),
                    1 => CreditUpdate::add(rng.pick(&counts)),
                    _ => CreditUpdate::default(),
                };
                if change.balance.is_none() || rng.chance(40) {
                    let refill = rng
                        .chance(80)
                        .then(|| Refill::new(rng.pick(&amounts), rng.pick(&intervals)).unwrap());
                    change = change.with_refill(refill);
                }
                let applied = apply(CreditOp::Update(change));
                let want = applied.outcome.map(|o| o.account.balance(now));
                let got = bank.update(account, &change, now).await.unwrap();
                assert_eq!(Some(got), want, "{change:?}: {}", context());
                applied
            };
            if let Some(write) = applied.write {
                model.insert(account, write);
            }
            ops += 1;
        }
        // Whatever was written, every account reads as the model says.
        for account in accounts {
            let want = model.get(&account).map(|a| a.balance(now));
            assert_eq!(bank.balance(account, now).await.unwrap(), want, "{account}");
        }
    }
    assert_eq!(ops, 1_500);
}

/// Checks that concurrent charges admit exactly as many as the balance pays
/// for (25 credits, 60 charges: 25), that a refill due when many charges
/// race is applied once, and that concurrent first top-ups all land.
pub async fn concurrent_charges_admit_exactly_the_balance(bank: &dyn CreditBank) {
    let account = id("BankConc01");
    update(bank, account, CreditUpdate::set(25), T0).await;
    let charges = (0..60).map(|_| bank.charge(account, 1, T0));
    let admitted = join_all(charges)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().unwrap().admitted)
        .count();
    assert_eq!(admitted, 25, "25 credits admit exactly 25 charges");
    assert_eq!(balance(bank, account, T0).await.remaining, 0);

    let refilling = id("BankConc02");
    let daily = CreditUpdate::set(0).with_refill(Some(Refill::daily(10).unwrap()));
    update(bank, refilling, daily, T0).await;
    let tomorrow = T0 + Duration::days(1);
    let charges = (0..40).map(|_| bank.charge(refilling, 1, tomorrow));
    let admitted = join_all(charges)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().unwrap().admitted)
        .count();
    assert_eq!(admitted, 10, "the refill is applied once, not per charge");

    let fresh = id("BankConc03");
    let add = CreditUpdate::add(5);
    let top_ups = (0..10).map(|_| bank.update(fresh, &add, T0));
    for r in join_all(top_ups).await {
        r.unwrap();
    }
    assert_eq!(
        balance(bank, fresh, T0).await.remaining,
        50,
        "no first top-up is lost to another"
    );
}

/// Checks that hostile amounts saturate at [`MAX_CREDITS`] and never wrap
/// or admit for free: charges of 0 and `u64::MAX`, top-ups, sets and
/// refunds of `u64::MAX`.
pub async fn hostile_amounts_saturate_and_never_wrap(bank: &dyn CreditBank) {
    let account = id("Hostile001");
    let t = T0;
    let most = update(bank, account, CreditUpdate::add(u64::MAX), t).await;
    assert_eq!(most.remaining, MAX_CREDITS);
    for n in [u64::MAX, 1, MAX_CREDITS] {
        let b = update(bank, account, CreditUpdate::add(n), t).await;
        assert_eq!(b.remaining, MAX_CREDITS, "add {n}");
    }
    for cost in [u64::MAX, u64::MAX / 2, MAX_CREDITS + 1] {
        let c = charge(bank, account, cost, t).await;
        assert!(!c.admitted, "cost {cost}");
        assert_eq!(c.remaining, MAX_CREDITS);
    }
    let free = charge(bank, account, 0, t).await;
    assert_eq!((free.admitted, free.remaining), (true, MAX_CREDITS));
    let c = charge(bank, account, MAX_CREDITS - 1, t).await;
    assert_eq!((c.admitted, c.remaining), (true, 1));
    let c = charge(bank, account, 1, t).await;
    assert_eq!((c.admitted, c.remaining), (true, 0));
    let c = charge(bank, account, 0, t).await;
    assert_eq!((c.admitted, c.remaining), (true, 0), "a cost of 0 is free");
    assert!(!charge(bank, account, 1, t).await.admitted);
    bank.refund(account, u64::MAX, None).await.unwrap();
    assert_eq!(balance(bank, account, t).await.remaining, MAX_CREDITS);
    bank.refund(account, u64::MAX, None).await.unwrap();
    assert_eq!(balance(bank, account, t).await.remaining, MAX_CREDITS);
    let set = update(bank, account, CreditUpdate::set(u64::MAX), t).await;
    assert_eq!(set.remaining, MAX_CREDITS);
    let set = update(bank, account, CreditUpdate::set(0), t).await;
    assert_eq!(set.remaining, 0);
    // The largest refill, and a refund of everything after it.
    let huge = Refill::daily(MAX_CREDITS).unwrap();
    update(
        bank,
        account,
        CreditUpdate::default().with_refill(Some(huge)),
        t,
    )
    .await;
    let tomorrow = t + Duration::days(1);
    let c = charge(bank, account, MAX_CREDITS, tomorrow).await;
    assert_eq!((c.admitted, c.remaining), (true, 0));
    bank.refund(account, u64::MAX, c.period).await.unwrap();
    assert_eq!(
        balance(bank, account, tomorrow).await.remaining,
        MAX_CREDITS
    );
    // A refund for a period that is no period of this account's changes
    // nothing.
    update(bank, account, CreditUpdate::set(1), tomorrow).await;
    for period in [
        None,
        Some(t),
        Some(tomorrow),
        Some(OffsetDateTime::UNIX_EPOCH),
    ] {
        bank.refund(account, u64::MAX, period).await.unwrap();
        assert_eq!(
            balance(bank, account, tomorrow).await.remaining,
            1,
            "{period:?}"
        );
    }
}

/// Checks that two nodes sharing the balances admit exactly the balance
/// between them (40 credits, 100 charges spread over both: 40), and that a
/// top-up or a refund made on one node is seen by the other at once:
/// nothing is leased or cached per node.
pub async fn two_nodes_admit_exactly_the_balance(a: &dyn CreditBank, b: &dyn CreditBank) {
    let account = id("TwoNodes01");
    update(a, account, CreditUpdate::set(40), T0).await;
    assert_eq!(balance(b, account, T0).await.remaining, 40);
    let charges = (0..100).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        node.charge(account, 1, T0)
    });
    let admitted = join_all(charges)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().unwrap().admitted)
        .count();
    assert_eq!(
        admitted, 40,
        "40 credits admit exactly 40 charges across nodes"
    );
    assert_eq!(balance(a, account, T0).await.remaining, 0);
    assert_eq!(balance(b, account, T0).await.remaining, 0);

    // A top-up on one node is spendable on the other at once.
    update(b, account, CreditUpdate::add(3), T0).await;
    assert!(charge(a, account, 3, T0).await.admitted);
    assert!(!charge(b, account, 1, T0).await.admitted);

    // A refund on one node of a charge made on the other.
    let daily = CreditUpdate::set(5).with_refill(Some(Refill::daily(5).unwrap()));
    update(a, account, daily, T0).await;
    let c = charge(b, account, 3, T0).await;
    assert!(c.admitted);
    a.refund(account, 3, c.period).await.unwrap();
    assert_eq!(balance(b, account, T0).await.remaining, 5);

    // Clocks that disagree at midnight: the node ahead refills, the node
    // behind does not refill again, and the day's 5 credits admit 5
    // charges between them.
    assert!(charge(a, account, 5, T0).await.admitted);
    let midnight = datetime!(2031-03-05 00:00 UTC);
    let ahead = midnight + Duration::milliseconds(300);
    let behind = midnight - Duration::milliseconds(700);
    let charges = (0..20).map(|i| {
        if i % 2 == 0 {
            a.charge(account, 1, ahead)
        } else {
            b.charge(account, 1, behind)
        }
    });
    let admitted = join_all(charges)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().unwrap().admitted)
        .count();
    assert!(admitted <= 5, "{admitted} admitted: refilled twice");
    // What the node behind admits depends on whether the refill came
    // first; the node ahead then takes the rest.
    let rest = (0..10).map(|_| a.charge(account, 1, ahead));
    let rest = join_all(rest)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().unwrap().admitted)
        .count();
    assert_eq!(admitted + rest, 5, "one refill of 5 between both nodes");
}
