use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use super::*;
use crate::{FakeClock, KeyStore as _, MemoryStore, NewKey, test_util::manager};

const DAY: Duration = Duration::from_secs(86_400);

/// Records what it is given; fails the first `fail` deliveries.
#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Reminder>>,
    fail: AtomicUsize,
}

impl Inbox {
    fn failing(n: usize) -> Self {
        Self {
            fail: AtomicUsize::new(n),
            ..Self::default()
        }
    }

    fn take(&self) -> Vec<(KeyId, ReminderKind, u64)> {
        let mut got = self.got.lock().unwrap();
        got.drain(..)
            .map(|r| (r.key_id, r.kind, r.threshold.as_secs() / 86_400))
            .collect()
    }
}

impl Notifier for Inbox {
    fn notify<'a>(&'a self, reminder: &'a Reminder) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err("the mail server is down".into());
            }
            self.got.lock().unwrap().push(reminder.clone());
            Ok(())
        })
    }
}

#[tokio::test]
async fn each_threshold_is_reminded_once_as_time_passes() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let key = m
        .create(NewKey::new(Owner::user("alice"), "laptop").expires_in(20 * DAY))
        .await
        .unwrap()
        .record
        .id;
    m.create(NewKey::new(Owner::user("bob"), "forever"))
        .await
        .unwrap();
    let policy = ReminderPolicy::default();
    let inbox = Inbox::default();

    // 20 days ahead: nothing due.
    assert!(
        m.send_reminders(&policy, &inbox)
            .await
            .unwrap()
            .sent
            .is_empty()
    );
    // 13 days ahead: the 14-day reminder, once however often the job runs.
    clock.advance(7 * DAY);
    for _ in 0..3 {
        m.send_reminders(&policy, &inbox).await.unwrap();
    }
    assert_eq!(inbox.take(), [(key, ReminderKind::Expiring, 14)]);
    // 2 days ahead: the 3-day one.
    clock.advance(11 * DAY);
    let report = m.send_reminders(&policy, &inbox).await.unwrap();
    assert_eq!(report.sent.len(), 1);
    assert_eq!(report.sent[0].key_head, format!("t_live_{key}"));
    m.send_reminders(&policy, &inbox).await.unwrap();
    assert_eq!(inbox.take(), [(key, ReminderKind::Expiring, 3)]);
    // Hours ahead: the 1-day one; then expired: nothing more.
    clock.advance(DAY + DAY / 2);
    m.send_reminders(&policy, &inbox).await.unwrap();
    assert_eq!(inbox.take(), [(key, ReminderKind::Expiring, 1)]);
    clock.advance(DAY);
    m.send_reminders(&policy, &inbox).await.unwrap();
    assert!(inbox.take().is_empty());
}

#[tokio::test]
async fn a_key_first_seen_late_gets_only_the_most_urgent_reminder() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let key = m
        .create(NewKey::new(Owner::user("a"), "k").expires_in(2 * DAY))
        .await
        .unwrap()
        .record
        .id;
    let inbox = Inbox::default();
    m.send_reminders(&ReminderPolicy::default(), &inbox)
        .await
        .unwrap();
    assert_eq!(inbox.take(), [(key, ReminderKind::Expiring, 3)]);
}

#[tokio::test]
async fn rotated_keys_are_reminded_of_their_grace_period_and_revoked_ones_never() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let old = m
        .create(NewKey::new(Owner::user("a"), "rotated"))
        .await
        .unwrap()
        .record
        .id;
    let new = m.rotate(old, 2 * DAY).await.unwrap().record.id;
    let revoked = m
        .create(NewKey::new(Owner::user("a"), "gone").expires_in(DAY / 2))
        .await
        .unwrap()
        .record
        .id;
    m.revoke(revoked).await.unwrap();
    let inbox = Inbox::default();
    let report = m
        .send_reminders(&ReminderPolicy::default(), &inbox)
        .await
        .unwrap();
    assert_eq!(report.sent[0].superseded_by, Some(new));
    assert_eq!(inbox.take(), [(old, ReminderKind::RotationGrace, 3)]);
}

#[tokio::test]
async fn a_failed_delivery_is_tried_again_by_the_next_run() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let key = m
        .create(NewKey::new(Owner::user("a"), "k").expires_in(DAY / 2))
        .await
        .unwrap()
        .record
        .id;
    let inbox = Inbox::failing(2);
    let policy = ReminderPolicy::default();
    for failed in [1, 1] {
        let report = m.send_reminders(&policy, &inbox).await.unwrap();
        assert_eq!((report.sent.len(), report.failed), (0, failed));
    }
    let report = m.send_reminders(&policy, &inbox).await.unwrap();
    assert_eq!((report.sent.len(), report.failed), (1, 0));
    m.send_reminders(&policy, &inbox).await.unwrap();
    assert_eq!(inbox.take(), [(key, ReminderKind::Expiring, 1)]);
}

#[tokio::test]
async fn overlapping_runs_on_several_nodes_remind_once() {
    let clock = FakeClock::starting_now();
    let store = MemoryStore::new();
    let node = || {
        KeyManager::new(
            Arc::new(store.clone()),
            crate::KeyFormat::new("kg").unwrap(),
            crate::KeyHasher::sha256(),
            Arc::new(clock.clone()),
        )
    };
    let (a, b, c) = (node(), node(), node());
    for i in 0..20 {
        a.create(NewKey::new(Owner::user("a"), format!("k{i}")).expires_in(DAY / 2))
            .await
            .unwrap();
    }
    let inbox = Inbox::default();
    let policy = ReminderPolicy::default();
    let (ra, rb, rc) = tokio::join!(
        a.send_reminders(&policy, &inbox),
        b.send_reminders(&policy, &inbox),
        c.send_reminders(&policy, &inbox),
    );
    let sent = ra.unwrap().sent.len() + rb.unwrap().sent.len() + rc.unwrap().sent.len();
    let mut got = inbox.take();
    assert_eq!((sent, got.len()), (20, 20));
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 20, "a key reminded twice");
}

#[tokio::test]
async fn a_store_claim_is_atomic_and_can_be_given_back() {
    let store = MemoryStore::new();
    let id: KeyId = "Ab3Cd5Ef7G".parse().unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(store.claim_reminder(id, DAY, now).await.unwrap());
    assert!(!store.claim_reminder(id, DAY, now).await.unwrap());
    assert!(store.claim_reminder(id, 3 * DAY, now).await.unwrap());
    store.release_reminder(id, DAY).await.unwrap();
    assert!(store.claim_reminder(id, DAY, now).await.unwrap());
}

#[test]
fn policies_keep_sorted_distinct_nonzero_thresholds() {
    assert_eq!(
        ReminderPolicy::default().lead_times(),
        [DAY, 3 * DAY, 14 * DAY]
    );
    let p = ReminderPolicy::default().thresholds([DAY, Duration::ZERO, 7 * DAY, DAY]);
    assert_eq!(p.lead_times(), [DAY, 7 * DAY]);
    assert_eq!(p.due(DAY / 2), Some(DAY));
    assert_eq!(p.due(2 * DAY), Some(7 * DAY));
    assert_eq!(p.due(8 * DAY), None);
    assert_eq!(lead(3 * DAY), "3d");
    assert_eq!(lead(Duration::from_secs(5400)), "90m");
    assert_eq!(lead(Duration::from_secs(61)), "61s");
}
