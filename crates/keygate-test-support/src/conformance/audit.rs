//! The audit trail: round trips, queries, order and pruning.

use keygate_core::{AuditAction, AuditEvent, AuditQuery, AuditStore};
use time::{Duration, OffsetDateTime, macros::datetime};

use super::{T0, id, secs};

/// A management event for `key` at `at`.
fn event(key: &str, action: AuditAction, at: OffsetDateTime) -> AuditEvent {
    AuditEvent {
        actor: Some("cli".to_owned()),
        ..AuditEvent::manage(at, action, id(key))
    }
}

/// Events matching `query`, as read back.
async fn audit(store: &impl AuditStore, query: AuditQuery) -> Vec<AuditEvent> {
    store.query_audit(&query).await.unwrap()
}

/// Checks that audit round trips every field newest first.
pub async fn audit_round_trips_every_field_newest_first(store: &impl AuditStore) {
    let full = AuditEvent {
        at: T0,
        action: AuditAction::Authenticate,
        outcome: "invalid_key".to_owned(),
        detail: Some("digest_mismatch — \"quoted\" \\ back\nslash ☕".to_owned()),
        key_id: Some(id("AuditFull1")),
        actor: Some("user:a:b".to_owned()),
        method: Some("PATCH".to_owned()),
        path: Some("/notes/café/'1'".to_owned()),
        peer: Some("2001:db8::7".parse().unwrap()),
    };
    // Nothing optional: an anonymous request with no key at all.
    let bare = AuditEvent {
        at: T0 + Duration::microseconds(1),
        action: AuditAction::Authenticate,
        outcome: "missing_key".to_owned(),
        detail: None,
        key_id: None,
        actor: None,
        method: None,
        path: None,
        peer: None,
    };
    let v4 = AuditEvent {
        peer: Some("203.0.113.9".parse().unwrap()),
        ..event("AuditFull1", AuditAction::Create, T0 + secs(1))
    };
    // An IPv4 client on a dual-stack socket stays an IPv6 address.
    let mapped = AuditEvent {
        peer: Some("::ffff:10.1.2.3".parse().unwrap()),
        ..event("AuditFull1", AuditAction::Update, T0 + secs(2))
    };
    let loopback6 = AuditEvent {
        peer: Some("::1".parse().unwrap()),
        ..event("AuditFull1", AuditAction::Revoke, T0 + secs(3))
    };
    let rotate = AuditEvent {
        detail: Some("AuditNext1".to_owned()),
        ..event("AuditFull1", AuditAction::Rotate, T0 + secs(4))
    };
    let before_epoch = event(
        "AuditOld01",
        AuditAction::Create,
        datetime!(1969-07-20 20:17:40.000001 UTC),
    );
    let written = [before_epoch, full, bare, v4, mapped, loopback6, rotate];

    store.append_audit(&[]).await.unwrap();
    store.append_audit(&written[..3]).await.unwrap();
    store.append_audit(&written[3..]).await.unwrap();

    let mut newest_first = written.to_vec();
    newest_first.reverse();
    assert_eq!(audit(store, AuditQuery::default()).await, newest_first);
}

/// Checks that audit queries filter by key and time and limit.
pub async fn audit_queries_filter_by_key_and_time_and_limit(store: &impl AuditStore) {
    let keys = ["AuditKeyA1", "AuditKeyB1", "AuditKeyC1"];
    // 120 events, one a second, cycling through the three keys.
    let written: Vec<AuditEvent> = (0..120)
        .map(|i| {
            event(
                keys[usize::try_from(i).unwrap() % 3],
                AuditAction::Update,
                T0 + secs(i),
            )
        })
        .collect();
    // In one batch larger than the defaults, as AuditLog writes them.
    store.append_audit(&written).await.unwrap();
    let newest = |filter: &dyn Fn(&AuditEvent) -> bool, n: usize| -> Vec<AuditEvent> {
        written
            .iter()
            .rev()
            .filter(|e| filter(e))
            .take(n)
            .cloned()
            .collect()
    };

    // A limit of 0 means 100.
    assert_eq!(
        audit(store, AuditQuery::default()).await,
        newest(&|_| true, 100)
    );
    let query = |key_id: Option<&str>, since: Option<OffsetDateTime>, limit| AuditQuery {
        key_id: key_id.map(id),
        since,
        limit,
    };
    assert_eq!(
        audit(store, query(None, None, 1000)).await,
        newest(&|_| true, 1000)
    );
    assert_eq!(
        audit(store, query(None, None, 3)).await,
        newest(&|_| true, 3)
    );

    let b = Some(id(keys[1]));
    let of_b = audit(store, query(Some(keys[1]), None, 1000)).await;
    assert_eq!(of_b.len(), 40);
    assert_eq!(of_b, newest(&|e| e.key_id == b, 1000));
    assert_eq!(
        audit(store, query(Some(keys[1]), None, 5)).await,
        newest(&|e| e.key_id == b, 5)
    );

    // `since` is inclusive, to the microsecond.
    let since = T0 + secs(100);
    let recent = audit(store, query(None, Some(since), 1000)).await;
    assert_eq!(recent.len(), 20);
    assert_eq!(recent.last().unwrap().at, since);
    let just_after = since + Duration::microseconds(1);
    assert_eq!(
        audit(store, query(None, Some(just_after), 1000))
            .await
            .len(),
        19
    );
    assert_eq!(
        audit(store, query(Some(keys[1]), Some(since), 2)).await,
        newest(&|e| e.key_id == b && e.at >= since, 2)
    );

    assert!(
        audit(store, query(Some("AuditNone1"), None, 10))
            .await
            .is_empty()
    );
    assert!(
        audit(store, query(None, Some(T0 + secs(120)), 10))
            .await
            .is_empty()
    );
}

/// Checks that audit is newest first by time then latest written.
pub async fn audit_is_newest_first_by_time_then_latest_written(store: &impl AuditStore) {
    let at = |s| T0 + secs(s);
    let key = "AuditOrder";
    // A later batch may hold older events (several nodes, one table).
    store
        .append_audit(&[
            event(key, AuditAction::Create, at(10)),
            event(key, AuditAction::Rotate, at(30)),
        ])
        .await
        .unwrap();
    store
        .append_audit(&[
            event(key, AuditAction::Update, at(20)),
            // Three events of one microsecond: the last written comes first.
            AuditEvent {
                detail: Some("first".into()),
                ..event(key, AuditAction::Update, at(40))
            },
            AuditEvent {
                detail: Some("second".into()),
                ..event(key, AuditAction::Update, at(40))
            },
        ])
        .await
        .unwrap();
    store
        .append_audit(&[AuditEvent {
            detail: Some("third".into()),
            ..event(key, AuditAction::Revoke, at(40))
        }])
        .await
        .unwrap();
    let got: Vec<(i64, Option<String>)> = audit(store, AuditQuery::default())
        .await
        .into_iter()
        .map(|e| ((e.at - T0).whole_seconds(), e.detail))
        .collect();
    let d = |s: &str| Some(s.to_owned());
    assert_eq!(
        got,
        [
            (40, d("third")),
            (40, d("second")),
            (40, d("first")),
            (30, None),
            (20, None),
            (10, None),
        ]
    );
}

/// Checks that prune audit removes exactly the older events.
pub async fn prune_audit_removes_exactly_the_older_events(store: &impl AuditStore) {
    let key = "AuditPrune";
    let cut = T0 + secs(3600);
    let just_before = cut - time::Duration::microseconds(1);
    store
        .append_audit(&[
            event(key, AuditAction::Create, T0),
            event(key, AuditAction::Update, just_before),
            event(key, AuditAction::Rotate, cut),
            event(key, AuditAction::Revoke, cut + secs(1)),
        ])
        .await
        .unwrap();
    assert_eq!(store.prune_audit(cut).await.unwrap(), 2);
    let left: Vec<_> = audit(store, AuditQuery::default())
        .await
        .into_iter()
        .map(|e| (e.action, e.at))
        .collect();
    assert_eq!(
        left,
        [
            (AuditAction::Revoke, cut + secs(1)),
            (AuditAction::Rotate, cut)
        ]
    );
    assert_eq!(
        store.prune_audit(cut).await.unwrap(),
        0,
        "nothing left to prune"
    );
}
