use std::{sync::Arc, time::Duration};

use super::*;
use crate::{FakeClock, KeyStore, Limits, MemoryStore, Quota, Scope, Scopes, test_util};

fn manager() -> (KeyManager, MemoryStore, FakeClock) {
    let clock = FakeClock::starting_now();
    let (m, store) = test_util::manager(Arc::new(clock.clone()));
    (m, store, clock)
}

fn manage() -> Scopes {
    Scopes::from([Scope::READ, Scope::from_static("keys:manage")])
}

async fn parent(m: &KeyManager) -> KeyRecord {
    m.create(
        NewKey::new(Owner::user("a"), "parent")
            .scopes(manage())
            .rate_limit(Quota::per_second(2))
            .expires_in(Duration::from_secs(3600)),
    )
    .await
    .unwrap()
    .record
}

fn child(name: &str) -> NewKey {
    NewKey::new(Owner::user("a"), name)
        .scopes([Scope::READ])
        .rate_limit(Quota::per_second(1))
        .expires_in(Duration::from_secs(60))
}

#[tokio::test]
async fn revoking_a_creator_revokes_its_children_transitively_and_only_them() {
    let (m, store, _) = manager();
    let p = parent(&m).await;
    let g = Grantor::new(&p, None);
    let c = m
        .create_as(&g, child("child").scopes(manage()))
        .await
        .unwrap()
        .record;
    assert_eq!(c.created_by, Some(p.family));
    let gc = m
        .create_as(&Grantor::new(&c, None), child("grandchild"))
        .await
        .unwrap()
        .record;
    let bystander = m.create(child("bystander")).await.unwrap().record;
    m.revoke(p.id).await.unwrap();
    for id in [c.id, gc.id] {
        assert!(store.find(id).await.unwrap().unwrap().is_revoked());
    }
    assert!(
        !store
            .find(bystander.id)
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );
}

#[tokio::test]
async fn a_rotated_away_key_keeps_its_children_but_its_successor_takes_them_down() {
    let (m, store, _) = manager();
    let p = parent(&m).await;
    let c = m
        .create_as(&Grantor::new(&p, None), child("child"))
        .await
        .unwrap()
        .record;
    let successor = m
        .rotate(p.id, Duration::from_secs(60))
        .await
        .unwrap()
        .record;
    // Finishing the switch: the old key goes, the children stay.
    m.revoke(p.id).await.unwrap();
    assert!(!store.find(c.id).await.unwrap().unwrap().is_revoked());
    // A rotated child stays a child.
    let c2 = m.rotate(c.id, Duration::ZERO).await.unwrap().record;
    assert_eq!(c2.created_by, Some(p.family));
    m.revoke(successor.id).await.unwrap();
    assert!(store.find(c2.id).await.unwrap().unwrap().is_revoked());
}

#[tokio::test]
async fn a_child_created_by_a_revoked_creator_does_not_survive() {
    let (m, store, _) = manager();
    let p = parent(&m).await;
    // The grantor as the request saw it, before a concurrent revocation
    // that found no children yet.
    let g = Grantor::new(&p, None);
    m.revoke(p.id).await.unwrap();
    assert!(matches!(
        m.create_as(&g, child("late")).await,
        Err(ManageError::CreatorRevoked)
    ));
    let owned = m
        .list(&Owner::user("a"), crate::Page::first(10))
        .await
        .unwrap();
    assert_eq!(owned.len(), 2);
    assert!(owned.iter().all(KeyRecord::is_revoked), "{owned:?}");
    let _ = store;
}

#[tokio::test]
async fn delegated_changes_cannot_exceed_the_grantor_or_lift_its_own_limits() {
    let (m, store, _) = manager();
    let p = parent(&m).await;
    let g = Grantor::new(&p, None);
    let lift = KeyUpdate {
        rate_limit: Some(Some(Quota::per_second(100_000).into())),
        allowed_ips: Some(Vec::new()),
        expires_at: Some(None),
        ..KeyUpdate::default()
    };
    match m.update_as(&g, p.id, lift).await {
        Err(ManageError::NotGrantable(v)) => {
            let dims: Vec<_> = v.iter().map(|v| v.dimension).collect();
            assert_eq!(
                dims,
                [
                    crate::GrantDimension::Expiry,
                    crate::GrantDimension::RateLimit
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.find(p.id).await.unwrap().unwrap(), p);
    // Narrowing itself is fine.
    let narrower = KeyUpdate {
        rate_limit: Some(Some(Quota::per_second(1).into())),
        ..KeyUpdate::default()
    };
    m.update_as(&g, p.id, narrower).await.unwrap();
    // Another owner's key is out of reach even if it is weaker.
    let theirs = m
        .create(child("theirs").metadata(Default::default()))
        .await
        .unwrap()
        .record;
    let moved = NewKey::new(Owner::user("b"), "x")
        .scopes([Scope::READ])
        .rate_limit(Quota::per_second(1))
        .expires_in(Duration::from_secs(1));
    assert!(matches!(
        m.create_as(&g, moved).await,
        Err(ManageError::NotGrantable(_))
    ));
    // Rotating a key more powerful than the grantor would hand it out.
    let admin = m
        .create(NewKey::new(Owner::user("a"), "admin").scopes([Scope::ADMIN]))
        .await
        .unwrap()
        .record;
    assert!(matches!(
        m.rotate_as(&g, admin.id, Duration::ZERO).await,
        Err(ManageError::NotGrantable(_))
    ));
    let _ = theirs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_apply_to_everyone_and_hold_under_concurrency() {
    let (m, store, _) = manager();
    let m = m.with_limits(Limits {
        max_keys_per_owner: 3,
        max_metadata_bytes: 16,
        max_allowed_ips: 1,
        max_rotation_grace: Duration::from_secs(60),
        ..Limits::default()
    });
    let mut big = crate::Metadata::new();
    big.insert("note".into(), "x".repeat(20).into());
    let over = |r: Result<CreatedKey, ManageError>, want: Cap| match r {
        Err(ManageError::OverCap { cap, .. }) => assert_eq!(cap, want),
        other => panic!("{other:?}"),
    };
    over(
        m.create(NewKey::new(Owner::user("a"), "k").metadata(big))
            .await,
        Cap::MetadataBytes,
    );
    let two: Vec<crate::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    over(
        m.create(NewKey::new(Owner::user("a"), "k").allowed_ips(two))
            .await,
        Cap::AllowedIps,
    );
    let k = m.create(NewKey::new(Owner::user("a"), "k")).await.unwrap();
    over(
        m.rotate(k.record.id, Duration::from_secs(61)).await,
        Cap::RotationGrace,
    );
    // Ten concurrent creations for an owner with room for two more:
    // never more than the cap end up live.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                m.create(NewKey::new(Owner::user("a"), format!("n{i}")))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await.unwrap();
    }
    let now = crate::Clock::now(&crate::SystemClock);
    assert!(
        store
            .count_active_by_owner(&Owner::user("a"), now)
            .await
            .unwrap()
            <= 3
    );
    over(
        m.create(NewKey::new(Owner::user("a"), "one more")).await,
        Cap::KeysPerOwner,
    );
    // Revoking one makes room again.
    m.revoke(k.record.id).await.unwrap();
    m.create(NewKey::new(Owner::user("a"), "again"))
        .await
        .unwrap();
}

/// What a service lets people hand out in these tests: `read`, anywhere,
/// forever, unlimited, no metadata.
fn ceiling() -> KeySettings {
    KeySettings {
        scopes: Scopes::from([Scope::READ, Scope::ADMIN]),
        environment: crate::Environment::Live,
        expires_at: None,
        rate_limit: None,
        allowed_ips: Vec::new(),
        metadata: crate::Metadata::default(),
    }
}

#[tokio::test]
async fn a_person_makes_and_rotates_only_their_own_keys_under_the_ceiling() {
    let (m, _, _) = manager();
    let alice = Grantor::person(Owner::user("a"), ceiling(), None);
    assert_eq!(alice.id(), None);
    // Under the ceiling: made, with no creator (nothing revokes a person).
    let mine = m
        .create_as(
            &alice,
            NewKey::new(Owner::user("a"), "laptop").scopes([Scope::READ]),
        )
        .await
        .unwrap()
        .record;
    assert_eq!(mine.created_by, None);
    // `admin` was taken out of the ceiling; `write` was never in it;
    // another owner is another owner.
    for new in [
        NewKey::new(Owner::user("a"), "x").scopes([Scope::ADMIN]),
        NewKey::new(Owner::user("a"), "x").scopes([Scope::WRITE]),
        NewKey::new(Owner::user("b"), "x").scopes([Scope::READ]),
    ] {
        assert!(matches!(
            m.create_as(&alice, new).await,
            Err(ManageError::NotGrantable(_))
        ));
    }
    // Any key of hers under the ceiling rotates, whoever made it; one above
    // it, or another owner's, does not.
    let by_operator = m
        .create(NewKey::new(Owner::user("a"), "ops").scopes([Scope::READ]))
        .await
        .unwrap()
        .record;
    let powerful = m
        .create(NewKey::new(Owner::user("a"), "ops").scopes([Scope::WRITE]))
        .await
        .unwrap()
        .record;
    let bobs = m
        .create(NewKey::new(Owner::user("b"), "bob").scopes([Scope::READ]))
        .await
        .unwrap()
        .record;
    let grace = Duration::from_secs(60);
    m.rotate_as(&alice, mine.id, grace).await.unwrap();
    m.rotate_as(&alice, by_operator.id, grace).await.unwrap();
    for id in [powerful.id, bobs.id] {
        assert!(matches!(
            m.rotate_as(&alice, id, grace).await,
            Err(ManageError::NotGrantable(_))
        ));
    }
    // Nor can a change lift a key above the ceiling.
    let lift = KeyUpdate {
        scopes: Some(Scopes::from([Scope::READ, Scope::WRITE])),
        ..KeyUpdate::default()
    };
    assert!(matches!(
        m.update_as(&alice, by_operator.id, lift).await,
        Err(ManageError::NotGrantable(_))
    ));
}
