use std::time::Duration;

use time::macros::datetime;

use super::*;

fn daily(amount: u64) -> Refill {
    Refill::daily(amount).unwrap()
}

#[test]
fn periods_start_at_fixed_utc_instants() {
    let t = datetime!(2030-05-17 13:45:12.5 UTC);
    assert_eq!(
        RefillInterval::Daily.period_start(t),
        datetime!(2030-05-17 00:00 UTC)
    );
    assert_eq!(
        RefillInterval::Monthly.period_start(t),
        datetime!(2030-05-01 00:00 UTC)
    );
    let six_hours = RefillInterval::every(Duration::from_secs(6 * 3600)).unwrap();
    assert_eq!(six_hours.period_start(t), datetime!(2030-05-17 12:00 UTC));
    // Other offsets mean the same instants.
    assert_eq!(
        RefillInterval::Daily.period_start(datetime!(2030-05-17 01:00 +03:00)),
        datetime!(2030-05-16 00:00 UTC)
    );
    assert_eq!(
        RefillInterval::Monthly.next_start(datetime!(2030-12-01 00:00 UTC)),
        datetime!(2031-01-01 00:00 UTC)
    );
    assert_eq!(
        RefillInterval::Monthly.next_start(datetime!(2032-02-01 00:00 UTC)),
        datetime!(2032-03-01 00:00 UTC)
    );
    assert_eq!(
        six_hours.next_start(datetime!(2030-05-17 12:00 UTC)),
        datetime!(2030-05-17 18:00 UTC)
    );
    // Times before the epoch round down too.
    assert_eq!(
        RefillInterval::Daily.period_start(datetime!(1969-12-31 23:00 UTC)),
        datetime!(1969-12-31 00:00 UTC)
    );
}

#[test]
fn refills_read_and_print_alike() {
    for (text, printed) in [
        ("20/day", "20/day"),
        ("20/daily", "20/day"),
        ("1000/month", "1000/month"),
        ("500/6h", "500/6h"),
        ("5/90s", "5/90s"),
        ("5/15min", "5/15min"),
        ("5/24h", "5/day"),
        ("5/7d", "5/7d"),
        (" 7 / day ", "7/day"),
    ] {
        let refill: Refill = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(refill.to_string(), printed);
        assert_eq!(printed.parse::<Refill>().unwrap(), refill);
        let stored = RefillInterval::from_seconds(refill.interval.as_seconds()).unwrap();
        assert_eq!(stored, refill.interval);
    }
    for bad in [
        "",
        "20",
        "0/day",
        "-1/day",
        "20/",
        "20/week",
        "20/0s",
        "20/1.5h",
        "20/367d",
        "1000000000000001/day",
        "20/99999999999999999999d",
        "20/18446744073709551615d",
    ] {
        assert!(bad.parse::<Refill>().is_err(), "{bad:?}");
    }
    assert!(RefillInterval::every(Duration::from_millis(1500)).is_err());
    assert!(RefillInterval::from_seconds(367 * 86_400).is_err());
}

#[test]
fn refills_deserialize_only_in_range() {
    let ok: Refill = serde_json::from_str(r#"{"amount":20,"interval":"day"}"#).unwrap();
    assert_eq!(ok, daily(20));
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"amount":20,"interval":"day"}"#
    );
    for bad in [
        r#"{"amount":0,"interval":"day"}"#,
        r#"{"amount":20,"interval":"fortnight"}"#,
        r#"{"amount":1000000000000001,"interval":"day"}"#,
    ] {
        assert!(serde_json::from_str::<Refill>(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_charge_is_all_or_nothing() {
    let now = datetime!(2030-05-17 13:00 UTC);
    let account = CreditAccount::new(3, None, now);
    let (account, charge) = charge(account, 2, now);
    assert!(charge.admitted);
    assert_eq!(charge.remaining, 1);
    assert_eq!(charge.next_refill, None);
    let (account, refused) = charge_of(account, 2, now);
    assert!(!refused.admitted);
    assert_eq!(refused.remaining, 1, "a refused charge takes nothing");
    let (_, last) = charge_of(account, 1, now);
    assert!(last.admitted);
    assert_eq!(last.remaining, 0);
}

fn charge(account: CreditAccount, cost: u64, now: OffsetDateTime) -> (CreditAccount, Charge) {
    charge_of(account, cost, now)
}

fn charge_of(account: CreditAccount, cost: u64, now: OffsetDateTime) -> (CreditAccount, Charge) {
    let applied = CreditOp::Charge(cost).apply(Some(account), now);
    let outcome = applied.outcome.unwrap();
    assert_eq!(applied.write.is_some(), outcome.admitted);
    (outcome.account, Charge::of(outcome))
}

#[test]
fn refills_top_up_to_the_amount_and_keep_a_larger_balance() {
    let day1 = datetime!(2030-05-17 13:00 UTC);
    let account = CreditAccount::new(20, Some(daily(20)), day1);
    let (account, c) = charge(account, 20, day1);
    assert_eq!(c.remaining, 0);
    assert_eq!(c.next_refill, Some(datetime!(2030-05-18 00:00 UTC)));
    let (account, refused) = charge(account, 1, datetime!(2030-05-17 23:59:59 UTC));
    assert!(!refused.admitted);
    assert_eq!(refused.next_refill, Some(datetime!(2030-05-18 00:00 UTC)));
    // Midnight: back to 20, whatever was spent.
    let (account, c) = charge(account, 1, datetime!(2030-05-18 00:00 UTC));
    assert!(c.admitted);
    assert_eq!(c.remaining, 19);
    // A top-up above the amount survives the next refill.
    let topped = account.update(&CreditUpdate::add(100), datetime!(2030-05-18 08:00 UTC));
    assert_eq!(topped.remaining, 119);
    let next_day = topped.balance(datetime!(2030-05-19 08:00 UTC));
    assert_eq!(next_day.remaining, 119);
    // Several idle periods refill once, not once per period.
    let idle = CreditAccount::new(0, Some(daily(5)), day1).balance(datetime!(2030-06-30 08:00 UTC));
    assert_eq!(idle.remaining, 5);
    assert_eq!(idle.next_refill, Some(datetime!(2030-07-01 00:00 UTC)));
}

#[test]
fn a_set_balance_is_not_overwritten_by_a_due_refill() {
    let day1 = datetime!(2030-05-17 13:00 UTC);
    let account = CreditAccount::new(20, Some(daily(20)), day1);
    let day2 = datetime!(2030-05-18 09:00 UTC);
    let set = account.update(&CreditUpdate::set(3), day2);
    assert_eq!(set.balance(day2).remaining, 3);
    assert_eq!(set.balance(datetime!(2030-05-19 00:00 UTC)).remaining, 20);
    // A new refill rule starts with the current period: no refill today.
    let ruled = CreditAccount::new(0, None, day1)
        .update(&CreditUpdate::default().with_refill(Some(daily(50))), day1);
    assert_eq!(ruled.balance(day1).remaining, 0);
    assert_eq!(ruled.balance(day2).remaining, 50);
    let unruled = ruled.update(&CreditUpdate::default().with_refill(None), day1);
    assert_eq!(unruled.balance(day2).remaining, 0);
    assert_eq!(unruled.balance(day2).next_refill, None);
}

#[test]
fn balances_saturate_at_the_maximum() {
    let now = datetime!(2030-05-17 13:00 UTC);
    let account = CreditAccount::new(u64::MAX, None, now);
    assert_eq!(account.remaining, MAX_CREDITS);
    let more = account.update(&CreditUpdate::add(u64::MAX), now);
    assert_eq!(more.remaining, MAX_CREDITS);
    let refunded = more.refund(u64::MAX, None);
    assert_eq!(refunded.remaining, MAX_CREDITS);
    assert!(
        !CreditOp::Charge(u64::MAX)
            .apply(Some(more), now)
            .outcome
            .unwrap()
            .admitted
    );
}

#[test]
fn a_refund_after_a_refill_is_dropped() {
    let day1 = datetime!(2030-05-17 13:00 UTC);
    let account = CreditAccount::new(20, Some(daily(20)), day1);
    let (account, c) = charge(account, 5, day1);
    assert_eq!(account.refund(5, c.period).remaining, 20);
    let (after_refill, _) = charge(account, 1, datetime!(2030-05-18 01:00 UTC));
    assert_eq!(after_refill.remaining, 19);
    assert_eq!(after_refill.refund(5, c.period).remaining, 19);
}

#[test]
fn operations_on_a_missing_account() {
    let now = datetime!(2030-05-17 13:00 UTC);
    for op in [
        CreditOp::Charge(1),
        CreditOp::Read,
        CreditOp::Refund {
            cost: 1,
            period: None,
        },
    ] {
        let applied = op.apply(None, now);
        assert_eq!(applied.outcome, None, "{op:?}");
        assert_eq!(applied.write, None, "{op:?}");
    }
    let created = CreditOp::Update(CreditUpdate::add(7)).apply(None, now);
    assert_eq!(created.write.unwrap().remaining, 7);
    assert_eq!(created.outcome.unwrap().account.remaining, 7);
}

#[test]
fn instants_outside_utc_have_a_period_and_never_panic() {
    // Representable at -23:59, not in UTC.
    let edge = time::PrimitiveDateTime::new(
        time::Date::from_calendar_date(9999, time::Month::December, 31).unwrap(),
        time::Time::from_hms(23, 59, 59).unwrap(),
    )
    .assume_offset(time::UtcOffset::from_hms(-23, 59, 0).unwrap());
    for interval in [RefillInterval::Daily, RefillInterval::Monthly] {
        let _ = interval.period_start(edge);
        let account = CreditAccount::new(1, Some(Refill::new(5, interval).unwrap()), edge);
        let _ = account.balance(edge);
    }
}

#[test]
fn hand_built_refills_are_checked() {
    let bad = [
        Refill {
            amount: 0,
            interval: RefillInterval::Daily,
        },
        Refill {
            amount: MAX_CREDITS + 1,
            interval: RefillInterval::Monthly,
        },
        Refill {
            amount: 5,
            interval: RefillInterval::Every(Duration::from_millis(1500)),
        },
        Refill {
            amount: 5,
            interval: RefillInterval::Every(Duration::ZERO),
        },
    ];
    for refill in bad {
        assert!(refill.checked().is_err(), "{refill:?}");
    }
    let day = Refill {
        amount: 5,
        interval: RefillInterval::Every(Duration::from_secs(86_400)),
    };
    assert_eq!(day.checked().unwrap(), daily(5));
}
