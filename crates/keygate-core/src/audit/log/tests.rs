use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::*;
use crate::{AuditQuery, AuditStore, KeyId};

/// Refuses events whose detail is `"refuse"`, and goes down for good
/// once it has refused `down_after` of them.
#[derive(Default)]
struct Picky {
    kept: Mutex<Vec<AuditEvent>>,
    refused: AtomicU64,
    calls: AtomicU64,
    down_after: Option<u64>,
}

impl AuditStore for Picky {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self
            .down_after
            .is_some_and(|n| self.refused.load(Ordering::Relaxed) >= n)
        {
            return Err(StoreError::unavailable("down"));
        }
        if events.iter().any(|e| e.detail.as_deref() == Some("refuse")) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Rejected("cannot keep it".into()));
        }
        self.kept.lock().unwrap().extend_from_slice(events);
        Ok(())
    }

    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self.kept.lock().unwrap().clone())
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut kept = self.kept.lock().unwrap();
        let n = kept.len();
        kept.retain(|e| e.at >= before);
        Ok((n - kept.len()) as u64)
    }
}

fn events(details: &[&str]) -> Vec<AuditEvent> {
    let id: KeyId = "AuditKey01".parse().unwrap();
    details
        .iter()
        .map(|d| AuditEvent {
            detail: Some((*d).to_owned()),
            ..AuditEvent::manage(time::OffsetDateTime::UNIX_EPOCH, AuditAction::Create, id)
        })
        .collect()
}

fn refusal(at: OffsetDateTime, reason: &str) -> AuditEvent {
    AuditEvent {
        at,
        action: AuditAction::Authenticate,
        outcome: "invalid_key".to_owned(),
        detail: Some(reason.to_owned()),
        key_id: None,
        actor: None,
        method: Some("GET".to_owned()),
        path: Some("/".to_owned()),
        peer: None,
    }
}

#[tokio::test]
async fn a_flood_of_requests_never_pushes_out_a_management_event() {
    let store = Arc::new(Picky::default());
    let config = AuditConfig {
        capacity: 8,
        rejections_per_reason: u32::MAX,
        ..AuditConfig::default()
    };
    let log = AuditLog::spawn_with(store.clone(), config);
    let id: KeyId = "AuditKey01".parse().unwrap();
    let t = OffsetDateTime::UNIX_EPOCH;
    // The writer cannot run until this test awaits: the request queue
    // is full after eight events, and stays full.
    for _ in 0..1000 {
        log.record(refusal(t, "unknown_key"));
    }
    log.record(AuditEvent::manage(t, AuditAction::Revoke, id));
    for _ in 0..1000 {
        log.record(refusal(t, "unknown_key"));
    }
    log.flush().await;
    assert_eq!(log.dropped(), 2000 - 8);
    let kept = store.kept.lock().unwrap();
    assert_eq!(kept.len(), 9);
    assert_eq!(kept[0].action, AuditAction::Revoke, "written first");
}

#[tokio::test]
async fn refusals_are_persisted_at_a_bounded_rate_per_reason_and_summarised() {
    let store = Arc::new(Picky::default());
    let config =
        AuditConfig::with_capacity(100_000).rejections_per_reason(10, Duration::from_secs(1));
    let log = AuditLog::spawn_with(store.clone(), config);
    let t = OffsetDateTime::UNIX_EPOCH;
    for i in 0..1000 {
        log.record(refusal(t + Duration::from_micros(i), "checksum"));
        log.record(refusal(t + Duration::from_micros(i), "unknown_key"));
    }
    // Admissions are not thinned.
    for _ in 0..50 {
        log.record(AuditEvent {
            outcome: "ok".to_owned(),
            ..refusal(t, "ok")
        });
    }
    // A new window for `checksum`: the last one's summary is written.
    log.record(refusal(t + Duration::from_secs(1), "checksum"));
    log.flush().await;
    assert_eq!(log.suppressed(), 2 * 990);
    assert_eq!(log.dropped(), 0);
    let kept = store.kept.lock().unwrap();
    let count = |detail: &str| {
        kept.iter()
            .filter(|e| e.detail.as_deref() == Some(detail))
            .count()
    };
    assert_eq!(count("checksum"), 11);
    assert_eq!(count("unknown_key"), 10);
    assert_eq!(count("ok"), 50);
    assert_eq!(count("checksum; 990 more not recorded"), 1);
    assert_eq!(count("unknown_key; 990 more not recorded"), 1);
    assert_eq!(kept.len(), 11 + 10 + 50 + 2);
    let summary = kept
        .iter()
        .find(|e| e.detail.as_deref() == Some("checksum; 990 more not recorded"))
        .unwrap();
    assert_eq!((summary.at, summary.outcome.as_str()), (t, "invalid_key"));
}

#[tokio::test]
async fn prune_removes_only_older_events() {
    let store = Arc::new(Picky::default());
    let log = AuditLog::spawn(store.clone(), 16);
    let t = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1000);
    let id: KeyId = "AuditKey01".parse().unwrap();
    for at in [t - Duration::from_secs(1), t, t + Duration::from_secs(1)] {
        log.record(AuditEvent::manage(at, AuditAction::Create, id));
    }
    log.flush().await;
    assert_eq!(log.prune(t).await.unwrap(), 1);
    let left: Vec<_> = store.kept.lock().unwrap().iter().map(|e| e.at).collect();
    assert_eq!(left, [t, t + Duration::from_secs(1)]);
}

#[tokio::test]
async fn a_refused_event_is_lost_alone() {
    let store = Picky::default();
    let failed = AtomicU64::new(0);
    let mut batch = events(&["a", "refuse", "b"]);
    write(&store, &mut batch, &failed).await;
    assert_eq!(failed.load(Ordering::Relaxed), 1);
    let kept = store.kept.lock().unwrap();
    let kept: Vec<_> = kept.iter().map(|e| e.detail.as_deref().unwrap()).collect();
    assert_eq!(kept, ["a", "b"]);
    assert!(batch.is_empty());
}

#[tokio::test]
async fn a_store_that_fails_meanwhile_is_not_retried_per_event() {
    let store = Picky {
        down_after: Some(1),
        ..Picky::default()
    };
    let failed = AtomicU64::new(0);
    let mut batch = events(&["refuse", "a", "b", "c", "d"]);
    write(&store, &mut batch, &failed).await;
    // The whole batch (refused), then the first event alone, which
    // finds the store down: no attempt for the four others.
    assert_eq!(store.calls.load(Ordering::Relaxed), 2);
    assert_eq!(failed.load(Ordering::Relaxed), 5);
    assert!(store.kept.lock().unwrap().is_empty());
}
