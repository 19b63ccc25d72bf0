//! Credit accounts ([`KeyStore::credits`]): the rules of
//! [`CreditOp::apply`], kept atomically however many callers race.

use keygate_core::{Charge, CreditBalance, CreditOp, CreditUpdate, KeyStore, MAX_CREDITS, Refill};
use time::{Duration, macros::datetime};

use super::{T0, id};

/// Checks that a store keeps an account as `CreditOp::apply` says: created
/// by an update, charged all or nothing, refilled at the next period,
/// refunded only within the period of the charge, set and topped up.
pub async fn credits_follow_the_reference_rules(store: &impl KeyStore) {
    let account = id("CreditAcc1");
    let t = datetime!(2031-03-04 13:00:00.123456 UTC);
    let charge = |cost: u64, at| async move {
        let outcome = store
            .credits(account, CreditOp::Charge(cost), at)
            .await
            .unwrap()
            .expect("the account exists");
        Charge::of(outcome)
    };
    // No account: nothing to charge, read or refund.
    for op in [
        CreditOp::Charge(1),
        CreditOp::Read,
        CreditOp::Refund {
            cost: 1,
            period: None,
        },
    ] {
        assert_eq!(store.credits(account, op, t).await.unwrap(), None, "{op:?}");
    }
    let daily = Refill::daily(10).unwrap();
    let opened = CreditUpdate::set(4).with_refill(Some(daily));
    let outcome = store
        .credits(account, CreditOp::Update(opened), t)
        .await
        .unwrap()
        .expect("an update creates the account");
    assert_eq!(outcome.account.remaining, 4);
    let first = charge(3, t).await;
    assert!(first.admitted);
    assert_eq!(first.remaining, 1);
    assert_eq!(first.next_refill, Some(datetime!(2031-03-05 00:00 UTC)));
    let refused = charge(2, t).await;
    assert!(!refused.admitted, "all or nothing");
    assert_eq!(refused.remaining, 1);
    // A refund in the charge's period gives the credits back.
    let refund = CreditOp::Refund {
        cost: 3,
        period: first.period,
    };
    store.credits(account, refund, t).await.unwrap();
    assert_eq!(balance(store, account, t).await.remaining, 4);
    // The next day: topped up to 10, and the old charge's refund is dropped.
    let tomorrow = t + Duration::days(1);
    assert_eq!(balance(store, account, tomorrow).await.remaining, 10);
    let next = charge(1, tomorrow).await;
    assert_eq!(next.remaining, 9);
    store.credits(account, refund, tomorrow).await.unwrap();
    assert_eq!(balance(store, account, tomorrow).await.remaining, 9);
    // A top-up above the refill amount survives the next refill.
    let topped = store
        .credits(account, CreditOp::Update(CreditUpdate::add(100)), tomorrow)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(topped.account.remaining, 109);
    let later = tomorrow + Duration::days(3);
    let read = balance(store, account, later).await;
    assert_eq!(read.remaining, 109);
    assert_eq!(read.refill, Some(daily));
    assert_eq!(read.next_refill, Some(datetime!(2031-03-09 00:00 UTC)));
    // Set, and the largest balance round-trips.
    let set = CreditUpdate::set(MAX_CREDITS).with_refill(None);
    store
        .credits(account, CreditOp::Update(set), later)
        .await
        .unwrap();
    let read = balance(store, account, later + Duration::days(400)).await;
    assert_eq!(read.remaining, MAX_CREDITS);
    assert_eq!((read.refill, read.next_refill), (None, None));
    assert!(charge(MAX_CREDITS, later).await.admitted);
    assert_eq!(balance(store, account, later).await.remaining, 0);
    // A set cuts off what was charged before it: a refund of an earlier
    // charge does not raise the set balance, refill or not.
    for (name, refill) in [("CreditAcc5", None), ("CreditAcc6", Some(daily))] {
        let cut = id(name);
        let open = CreditUpdate::set(1).with_refill(refill);
        store.credits(cut, CreditOp::Update(open), t).await.unwrap();
        let paid = Charge::of(
            store
                .credits(cut, CreditOp::Charge(1), t + Duration::seconds(1))
                .await
                .unwrap()
                .unwrap(),
        );
        assert!(paid.admitted);
        let zero = CreditOp::Update(CreditUpdate::set(0));
        store
            .credits(cut, zero, t + Duration::seconds(2))
            .await
            .unwrap();
        let late = CreditOp::Refund {
            cost: 1,
            period: paid.period,
        };
        store
            .credits(cut, late, t + Duration::seconds(3))
            .await
            .unwrap();
        assert_eq!(
            balance(store, cut, t + Duration::seconds(3))
                .await
                .remaining,
            0,
            "{name}: a refund after a set is dropped"
        );
    }
    // Other accounts are untouched.
    let other = id("CreditAcc2");
    assert_eq!(store.credits(other, CreditOp::Read, t).await.unwrap(), None);
}

async fn balance(
    store: &impl KeyStore,
    account: keygate_core::KeyId,
    at: time::OffsetDateTime,
) -> CreditBalance {
    store
        .credits(account, CreditOp::Read, at)
        .await
        .unwrap()
        .expect("the account exists")
        .account
        .balance(at)
}

/// Checks that concurrent charges of one account admit exactly as many as
/// the balance pays for, and that concurrent first top-ups all land.
pub async fn concurrent_charges_admit_exactly_the_balance(store: &impl KeyStore) {
    let account = id("CreditAcc3");
    let update = |u| CreditOp::Update(u);
    store
        .credits(account, update(CreditUpdate::set(25)), T0)
        .await
        .unwrap();
    let charges = (0..60).map(|_| store.credits(account, CreditOp::Charge(1), T0));
    let admitted = futures_util::future::join_all(charges)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().unwrap().admitted)
        .count();
    assert_eq!(admitted, 25, "25 credits admit exactly 25 charges");
    assert_eq!(balance(store, account, T0).await.remaining, 0);

    let fresh = id("CreditAcc4");
    let top_ups = (0..10).map(|_| store.credits(fresh, update(CreditUpdate::add(5)), T0));
    for r in futures_util::future::join_all(top_ups).await {
        r.unwrap();
    }
    assert_eq!(
        balance(store, fresh, T0).await.remaining,
        50,
        "no first top-up is lost to another"
    );
}
