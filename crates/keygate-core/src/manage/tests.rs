use super::*;
use crate::{
    FakeClock, KeyHasher, MemoryStore, Quota, Scope, Scopes, StoreError, SystemClock,
    test_util::manager,
};

#[tokio::test]
async fn create_stores_only_the_digest() {
    let (m, store) = manager(Arc::new(SystemClock));
    let created = m
        .create(NewKey::new(Owner::user("u1"), "laptop").scopes([Scope::READ]))
        .await
        .unwrap();
    let secret = created.key.expose_secret().to_owned();
    let stored = m.get(created.key.id()).await.unwrap().unwrap();
    assert_eq!(stored, created.record);
    assert_eq!(stored.digest, KeyHasher::sha256().digest(&secret));
    let dump = format!("{stored:?} {}", serde_json::to_string(&stored).unwrap());
    assert!(!dump.contains(&secret));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn list_is_newest_first_and_paged_per_owner() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = m
            .create(NewKey::new(Owner::user("a"), format!("k{i}")))
            .await
            .unwrap();
        ids.push(c.record.id);
        clock.advance(Duration::from_secs(1));
    }
    m.create(NewKey::new(Owner::user("b"), "other"))
        .await
        .unwrap();
    let first = m.list(&Owner::user("a"), Page::first(2)).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let cursor = crate::Cursor::after(&first[1]);
    let cursor: crate::Cursor = cursor.to_string().parse().unwrap();
    let next = m
        .list(
            &Owner::user("a"),
            Page {
                limit: 10,
                cursor: Some(cursor),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]]
    );
}

#[tokio::test]
async fn update_changes_only_what_is_set_and_revoke_keeps_first_time() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let c = m
        .create(NewKey::new(Owner::user("a"), "k").rate_limit(Quota::per_second(5)))
        .await
        .unwrap();
    let updated = m
        .update(
            c.record.id,
            KeyUpdate {
                name: Some("renamed".into()),
                scopes: Some(Scopes::from([Scope::WRITE])),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.owner, Owner::user("a"));
    assert_eq!(updated.rate_limit, Some(Quota::per_second(5).into()));
    assert!(updated.scopes.contains(&Scope::WRITE));
    let cleared = m
        .update(
            c.record.id,
            KeyUpdate {
                rate_limit: Some(None),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.rate_limit, None);
    assert!(matches!(
        m.update(
            c.record.id,
            KeyUpdate {
                name: Some(" ".into()),
                ..KeyUpdate::default()
            }
        )
        .await,
        Err(ManageError::InvalidName)
    ));

    let first = m.revoke(c.record.id).await.unwrap().revoked_at;
    clock.advance(Duration::from_secs(5));
    assert_eq!(m.revoke(c.record.id).await.unwrap().revoked_at, first);
    assert!(matches!(
        m.revoke("ZZZZZZZZZZ".parse().unwrap()).await,
        Err(ManageError::Store(StoreError::NotFound(_)))
    ));
}

#[tokio::test]
async fn rotate_keeps_settings_and_family_and_bounds_the_old_key() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let old = m
        .create(
            NewKey::new(Owner::service("ci"), "deploy")
                .scopes([Scope::WRITE])
                .rate_limit(Quota::per_minute(10))
                .expires_in(Duration::from_secs(86_400 * 30)),
        )
        .await
        .unwrap();
    let new = m
        .rotate(old.record.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_ne!(new.record.id, old.record.id);
    assert_ne!(new.key.expose_secret(), old.key.expose_secret());
    assert_eq!(new.record.family, old.record.family);
    assert_eq!(new.record.scopes, old.record.scopes);
    assert_eq!(new.record.rate_limit, old.record.rate_limit);
    assert_eq!(new.record.expires_at, old.record.expires_at);
    let old_now = m.get(old.record.id).await.unwrap().unwrap();
    assert_eq!(old_now.superseded_by, Some(new.record.id));
    assert_eq!(
        old_now.expires_at,
        Some(checked_utc(clock.now()).unwrap() + Duration::from_secs(3600))
    );
    assert!(matches!(
        m.rotate(old.record.id, Duration::from_secs(60)).await,
        Err(ManageError::NotRotatable(_))
    ));
    // The new key can be rotated in turn and stays in the family.
    let third = m.rotate(new.record.id, Duration::ZERO).await.unwrap();
    assert_eq!(third.record.family, old.record.family);
}

#[tokio::test]
async fn expiring_lists_soonest_first() {
    let clock = FakeClock::starting_now();
    let (m, _) = manager(Arc::new(clock.clone()));
    let day = Duration::from_secs(86_400);
    let late = m
        .create(NewKey::new(Owner::user("a"), "late").expires_in(day * 20))
        .await
        .unwrap();
    let soon = m
        .create(NewKey::new(Owner::user("a"), "soon").expires_in(day * 2))
        .await
        .unwrap();
    m.create(NewKey::new(Owner::user("a"), "never"))
        .await
        .unwrap();
    let gone = m
        .create(NewKey::new(Owner::user("a"), "gone").expires_in(day))
        .await
        .unwrap();
    m.revoke(gone.record.id).await.unwrap();
    let ids: Vec<_> = m
        .expiring(day * 7, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![soon.record.id]);
    let ids: Vec<_> = m
        .expiring(day * 30, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![soon.record.id, late.record.id]);
}

#[tokio::test]
async fn changes_reach_the_persisted_audit_log_with_their_actor() {
    let store = MemoryStore::new();
    let log = AuditLog::spawn(Arc::new(store.clone()), 16);
    let m = KeyManager::new(
        Arc::new(store.clone()),
        KeyFormat::new("t").unwrap(),
        KeyHasher::sha256(),
        Arc::new(SystemClock),
    )
    .with_audit_log(log.clone())
    .as_actor("cli");
    let c = m.create(NewKey::new(Owner::user("a"), "k")).await.unwrap();
    m.revoke(c.record.id).await.unwrap();
    log.flush().await;
    let events = crate::AuditStore::query_audit(
        &store,
        &crate::AuditQuery {
            key_id: Some(c.record.id),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action).collect();
    assert_eq!(actions, vec![AuditAction::Revoke, AuditAction::Create]);
    assert!(events.iter().all(|e| e.actor.as_deref() == Some("cli")));
    assert_eq!(log.dropped(), 0);
}

#[tokio::test]
async fn names_and_expiry_are_checked() {
    let (m, _) = manager(Arc::new(SystemClock));
    assert!(matches!(
        m.create(NewKey::new(Owner::user("a"), "")).await,
        Err(ManageError::InvalidName)
    ));
    assert!(matches!(
        m.create(NewKey::new(Owner::user("a"), "k").expires_in(Duration::MAX))
            .await,
        Err(ManageError::ExpiryOutOfRange)
    ));
}

/// The lifetime policy on every way a key is made or changed: create with
/// and without an expiry, update, and rotation chains, with huge and
/// boundary values.
#[tokio::test]
async fn the_lifetime_policy_binds_creates_changes_and_rotation_chains() {
    const DAY: Duration = Duration::from_secs(86_400);
    let clock = FakeClock::starting_now();
    let (m, store) = manager(Arc::new(clock.clone()));
    // A key from before the policy: no expiry.
    let legacy = m
        .create(NewKey::new(Owner::user("a"), "legacy"))
        .await
        .unwrap()
        .record;
    assert_eq!(legacy.expires_at, None);
    let m = m.with_limits(crate::Limits {
        default_key_lifetime: Some(90 * DAY),
        max_key_lifetime: Some(365 * DAY),
        ..crate::Limits::default()
    });
    let lifetime = |r: &KeyRecord| r.expires_at.map(|at| at - r.created_at);
    let over = |r: Result<CreatedKey, ManageError>| {
        assert!(
            matches!(
                r,
                Err(ManageError::OverCap { cap: crate::Cap::KeyLifetime, max }) if max == 365 * 86_400
            ),
            "{r:?}"
        );
    };

    // No expiry asked: the default. Exactly the maximum: accepted.
    let plain = m
        .create(NewKey::new(Owner::user("a"), "plain"))
        .await
        .unwrap();
    assert_eq!(lifetime(&plain.record), Some(time::Duration::days(90)));
    let longest = m
        .create(NewKey::new(Owner::user("a"), "max").expires_in(365 * DAY))
        .await
        .unwrap();
    assert_eq!(lifetime(&longest.record), Some(time::Duration::days(365)));
    // One second more, huge, and overflowing durations: refused, nothing stored.
    let before = store.len();
    for asked in [
        365 * DAY + Duration::from_secs(1),
        100_000 * DAY,
        Duration::MAX,
    ] {
        over(
            m.create(NewKey::new(Owner::user("a"), "long").expires_in(asked))
                .await,
        );
    }
    assert_eq!(store.len(), before);

    // Changes: the maximum counts from creation, so waiting and extending
    // again cannot stretch a key's life; no expiry at all is refused; an
    // expiry in the past (ending the key now) is a change like any other.
    let id = plain.record.id;
    let created = plain.record.created_at;
    let change = |at: Option<time::OffsetDateTime>| KeyUpdate {
        expires_at: Some(at),
        ..KeyUpdate::default()
    };
    clock.advance(200 * DAY);
    let latest = created + time::Duration::days(365);
    assert_eq!(
        m.update(id, change(Some(latest))).await.unwrap().expires_at,
        Some(latest)
    );
    for bad in [
        Some(latest + time::Duration::microseconds(1)),
        Some(crate::MAX_TIME),
        None,
    ] {
        let refused = m.update(id, change(bad)).await;
        assert!(
            matches!(
                refused,
                Err(ManageError::OverCap {
                    cap: crate::Cap::KeyLifetime,
                    ..
                })
            ),
            "{bad:?}: {refused:?}"
        );
    }
    assert_eq!(m.get(id).await.unwrap().unwrap().expires_at, Some(latest));
    let past = m.now() - time::Duration::days(1);
    assert_eq!(
        m.update(id, change(Some(past))).await.unwrap().expires_at,
        Some(past)
    );

    // Rotation: the successor keeps its key's expiry, so a chain of
    // rotations never outlives the first key's maximum...
    let mut current = longest.record;
    let first_end = current.expires_at.unwrap();
    for _ in 0..5 {
        clock.advance(30 * DAY);
        let next = m.rotate(current.id, Duration::ZERO).await.unwrap().record;
        assert_eq!(next.expires_at, Some(first_end));
        current = next;
    }
    // ...and a key from before the policy gets the default from now, never
    // "no expiry".
    let successor = m.rotate(legacy.id, Duration::ZERO).await.unwrap().record;
    assert_eq!(lifetime(&successor), Some(time::Duration::days(90)));

    // A default longer than the maximum is cut to it; a maximum alone is
    // the default.
    let cut = crate::Limits {
        default_key_lifetime: Some(1_000 * DAY),
        max_key_lifetime: Some(10 * DAY),
        ..crate::Limits::default()
    };
    assert_eq!(cut.key_lifetime(None).unwrap(), Some(10 * DAY));
    let max_only = crate::Limits {
        max_key_lifetime: Some(10 * DAY),
        ..crate::Limits::default()
    };
    assert_eq!(max_only.key_lifetime(None).unwrap(), Some(10 * DAY));
    assert_eq!(crate::Limits::default().key_lifetime(None).unwrap(), None);
}
