use std::sync::{Arc, atomic::Ordering};

use ::governor::clock::FakeRelativeClock;

use super::*;

fn id(s: &str) -> KeyId {
    s.parse().unwrap()
}

fn ready(c: Check) -> Decision {
    match c {
        Check::Ready(d) => d.unwrap(),
        Check::Pending(_) => panic!("governor answers synchronously"),
    }
}

#[test]
fn admits_exactly_the_quota_then_refills() {
    let clock = FakeRelativeClock::default();
    let lim = GovernorLimiter::with_clock(clock.clone());
    let q = Quota::per_second(5);
    let k = id("AAAAAAAAAA");
    for left in (0..5).rev() {
        let d = ready(lim.check(k, &q.into()));
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
        assert_eq!(d.quota, q);
    }
    let d = ready(lim.check(k, &q.into()));
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Duration::from_millis(200));
    clock.advance(Duration::from_millis(200));
    assert!(ready(lim.check(k, &q.into())).allowed);
    assert!(!ready(lim.check(k, &q.into())).allowed);
}

#[test]
fn keys_and_quotas_are_independent() {
    let lim = GovernorLimiter::with_clock(FakeRelativeClock::default());
    let q1 = Quota::per_hour(1);
    assert!(ready(lim.check(id("AAAAAAAAAA"), &q1.into())).allowed);
    assert!(!ready(lim.check(id("AAAAAAAAAA"), &q1.into())).allowed);
    assert!(ready(lim.check(id("BBBBBBBBBB"), &q1.into())).allowed);
    assert!(ready(lim.check(id("AAAAAAAAAA"), &Quota::per_hour(2).into())).allowed);
}

#[test]
fn several_quotas_are_all_or_nothing() {
    let clock = FakeRelativeClock::default();
    let lim = GovernorLimiter::with_clock(clock.clone());
    let (sec, min) = (Quota::per_second(2), Quota::per_minute(3));
    let both = sec.and(min);
    let k = id("AAAAAAAAAA");
    let d = ready(lim.check(k, &both));
    // The per-second quota is closer to its limit, so it speaks.
    assert_eq!((d.allowed, d.quota, d.remaining), (true, sec, 1));
    let d = ready(lim.check(k, &both));
    assert_eq!((d.allowed, d.remaining), (true, 0));
    // Refused by the per-second quota: the per-minute one is not
    // charged, so after a second the third request still gets in.
    for _ in 0..10 {
        let d = ready(lim.check(k, &both));
        assert_eq!((d.allowed, d.quota), (false, sec));
        assert_eq!(d.retry_after, Duration::from_millis(500));
    }
    clock.advance(Duration::from_secs(1));
    let d = ready(lim.check(k, &both));
    assert_eq!((d.allowed, d.quota, d.remaining), (true, min, 0));
    // Now the per-minute quota refuses, with the longer wait.
    clock.advance(Duration::from_secs(1));
    let d = ready(lim.check(k, &both));
    assert_eq!((d.allowed, d.quota), (false, min));
    assert_eq!(d.retry_after, Duration::from_secs(18));
}

#[test]
fn several_quotas_decide_like_one_quota_each() {
    // Against one quota, the multi-quota path and governor agree on
    // every field, over a burst, a refusal and partial refills.
    let clock = FakeRelativeClock::default();
    let lim = GovernorLimiter::with_clock(clock.clone());
    let q = Quota::per_second(4);
    let huge = Quota::per_day(1_000_000);
    let (a, b) = (id("AAAAAAAAAA"), id("BBBBBBBBBB"));
    for step in [0, 0, 0, 0, 0, 100, 150, 0, 400, 0, 0, 1_000] {
        clock.advance(Duration::from_millis(step));
        let single = ready(lim.check(a, &q.into()));
        let multi = ready(lim.check(b, &q.and(huge)));
        assert_eq!(multi.allowed, single.allowed);
        assert_eq!(multi.quota, single.quota);
        assert_eq!(multi.remaining, single.remaining);
        assert_eq!(multi.reset, single.reset);
        assert_eq!(multi.retry_after, single.retry_after);
    }
}

#[test]
fn concurrent_requests_never_exceed_any_quota() {
    let lim = Arc::new(GovernorLimiter::with_clock(FakeRelativeClock::default()));
    let both = Quota::per_minute(50).and(Quota::per_hour(1_000));
    let admitted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100 {
                    if ready(lim.check(id("AAAAAAAAAA"), &both)).allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 50);
}

#[test]
fn combine_picks_the_binding_decision() {
    let g = |q| Gcra::new(q);
    let (sec, day) = (Quota::per_second(10), Quota::per_day(100));
    let a = g(sec).decide(0);
    let b = g(day).decide(g(day).emission_interval() * 95);
    assert_eq!(a.combine(b), b);
    assert_eq!(b.combine(a), b);
    let refused_soon = g(sec).decide(g(sec).tolerance() + 1);
    let refused_late = g(day).decide(g(day).tolerance() + 1_000_000_000);
    assert_eq!(a.combine(refused_soon), refused_soon);
    assert_eq!(refused_soon.combine(refused_late), refused_late);
    assert_eq!(refused_late.combine(refused_soon), refused_late);
}

#[test]
fn idle_state_is_dropped() {
    let clock = FakeRelativeClock::default();
    let lim = GovernorLimiter::with_clock(clock.clone());
    let q = Quota::per_second(10);
    for i in 0..100u32 {
        let k: KeyId = format!("K{i:09}").parse().unwrap();
        let _ = lim.check(k, &q.into());
    }
    let both = q.and(Quota::per_hour(100));
    let _ = lim.check(id("MULTIPLEQ1"), &both);
    assert_eq!(lim.tracked_keys(), 101);
    clock.advance(Duration::from_secs(2));
    lim.retain_recent();
    // The per-hour debt (36 s) is not paid off yet.
    assert_eq!(lim.tracked_keys(), 1);
    clock.advance(Duration::from_secs(60));
    lim.retain_recent();
    assert_eq!(lim.tracked_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn housekeeping_runs_by_itself() {
    let clock = FakeRelativeClock::default();
    let lim =
        GovernorLimiter::with_clock(clock.clone()).housekeeping_interval(Duration::from_millis(50));
    let _ = lim.check(id("AAAAAAAAAA"), &Quota::per_second(10).into());
    assert_eq!(lim.tracked_keys(), 1);
    clock.advance(Duration::from_secs(1));
    // The paused tokio clock drives the housekeeping timer; governor's
    // fake clock decides what counts as idle.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(lim.tracked_keys(), 0);
}
