//! Writes: insert, update, rotate and revoke, alone and racing.

use keygate_core::{
    KeyHasher, KeyId, KeyRecord, KeyStore, KeyUpdate, Owner, Page, Quota, Quotas, Replacement,
    Rotation, Scopes, StoreError,
};
use serde_json::json;
use time::{Duration, OffsetDateTime, macros::datetime};

use super::{T0, full, id, minimal, minimal_at, secs};

/// Checks that insert then find round trips every field.
pub async fn insert_then_find_round_trips_every_field(store: &impl KeyStore) {
    let full = full("FullRecord");
    let minimal = minimal("MiniRecord", &Owner::user("a:b"), T0);
    let before_epoch = minimal_at("OldRecord1", datetime!(1969-07-20 20:17:40.000001 UTC));
    for r in [&full, &minimal, &before_epoch] {
        store.insert(r).await.unwrap();
    }
    for r in [&full, &minimal, &before_epoch] {
        assert_eq!(store.find(r.id).await.unwrap().as_ref(), Some(r));
    }
    assert_eq!(store.find(id("Nonexisten")).await.unwrap(), None);
    let thirty_secs = Quota::new(10, std::time::Duration::from_secs(30)).unwrap();
    for (i, quotas) in [
        Quota::per_second(5).into(),
        Quota::per_hour(10_000).into(),
        Quota::per_day(1).into(),
        Quota::new(3, std::time::Duration::from_millis(250))
            .unwrap()
            .into(),
        Quotas::from(thirty_secs),
        Quota::per_second(10).and(Quota::per_day(10_000)),
        Quotas::new((1..=8).map(Quota::per_minute)).unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = minimal_at(&format!("Quota{i:05}"), T0);
        r.rate_limit = Some(quotas.clone());
        store.insert(&r).await.unwrap();
        assert_eq!(
            store.find(r.id).await.unwrap().unwrap().rate_limit,
            Some(quotas)
        );
    }
}

/// Checks that duplicate insert is rejected and keeps the original.
pub async fn duplicate_insert_is_rejected_and_keeps_the_original(store: &impl KeyStore) {
    let original = full("Duplicate1");
    store.insert(&original).await.unwrap();
    let mut again = minimal("Duplicate1", &Owner::user("mallory"), T0 + secs(1));
    again.name = "impostor".into();
    match store.insert(&again).await {
        Err(StoreError::Duplicate(dup)) => assert_eq!(dup, original.id),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(store.find(original.id).await.unwrap(), Some(original));
    let mallory = store
        .list_by_owner(&Owner::user("mallory"), Page::default())
        .await
        .unwrap();
    assert!(mallory.is_empty(), "{mallory:?}");
}

/// Checks that update changes only the fields it sets.
pub async fn update_changes_only_the_fields_it_sets(store: &impl KeyStore) {
    let before = KeyRecord {
        revoked_at: None,
        superseded_by: None,
        ..full("UpdateMe01")
    };
    store.insert(&before).await.unwrap();
    let other = minimal("Untouched1", &before.owner, T0);
    store.insert(&other).await.unwrap();

    // Each field on its own: the rest of the record stays as it was.
    let mut metadata = keygate_core::Metadata::new();
    metadata.insert("k".into(), json!([1, 2]));
    let changes = [
        KeyUpdate {
            name: Some("renamed".into()),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            scopes: Some(Scopes::parse_list("admin").unwrap()),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            rate_limit: Some(Some(Quota::per_second(1).into())),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            rate_limit: Some(None),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            allowed_ips: Some(vec!["2001:db8::1/128".parse().unwrap()]),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            metadata: Some(metadata),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            expires_at: Some(Some(T0 + secs(10))),
            ..KeyUpdate::default()
        },
        KeyUpdate {
            expires_at: Some(None),
            ..KeyUpdate::default()
        },
        KeyUpdate::default(),
    ];
    let mut expected = before.clone();
    for change in &changes {
        change.apply_to(&mut expected);
        let answered = store.update(before.id, change).await.unwrap();
        assert_eq!(answered, expected, "{change:?}");
        assert_eq!(store.find(before.id).await.unwrap(), Some(expected.clone()));
    }
    assert_eq!(expected.name, "renamed");
    assert_eq!(expected.expires_at, None);
    assert_eq!(store.find(other.id).await.unwrap(), Some(other.clone()));

    let ghost: KeyId = id("GhostKey01");
    for change in [&changes[0], &KeyUpdate::default()] {
        match store.update(ghost, change).await {
            Err(StoreError::NotFound(missing)) => assert_eq!(missing, ghost),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(store.find(ghost).await.unwrap(), None);
}

/// Checks that update never undoes a revocation or extends a grace period.
pub async fn update_never_undoes_a_revocation_or_extends_a_grace_period(store: &impl KeyStore) {
    // Revoked, and rotated with a grace period ending at `grace_end`.
    let rotated = full("Rotated001");
    let grace_end = rotated.expires_at.unwrap();
    store.insert(&rotated).await.unwrap();
    let later = KeyUpdate {
        name: Some("still revoked".into()),
        expires_at: Some(Some(grace_end + Duration::days(365))),
        ..KeyUpdate::default()
    };
    let after = store.update(rotated.id, &later).await.unwrap();
    assert_eq!(after.revoked_at, rotated.revoked_at);
    assert_eq!(after.superseded_by, rotated.superseded_by);
    assert_eq!(after.expires_at, Some(grace_end), "grace period extended");
    assert_eq!(after.name, "still revoked");
    let never = KeyUpdate {
        expires_at: Some(None),
        ..KeyUpdate::default()
    };
    let after = store.update(rotated.id, &never).await.unwrap();
    assert_eq!(after.expires_at, Some(grace_end), "grace period removed");
    let sooner = KeyUpdate {
        expires_at: Some(Some(grace_end - secs(60))),
        ..KeyUpdate::default()
    };
    let after = store.update(rotated.id, &sooner).await.unwrap();
    assert_eq!(after.expires_at, Some(grace_end - secs(60)));
    assert_eq!(store.find(rotated.id).await.unwrap(), Some(after.clone()));
    assert_eq!(after.revoked_at, rotated.revoked_at);

    // A rotated key with no expiry of its own (written by hand) takes
    // the one asked for.
    let bare = KeyRecord {
        expires_at: None,
        revoked_at: None,
        ..full("Rotated002")
    };
    store.insert(&bare).await.unwrap();
    let after = store.update(bare.id, &sooner).await.unwrap();
    assert_eq!(after.expires_at, Some(grace_end - secs(60)));
    let after = store.update(bare.id, &never).await.unwrap();
    assert_eq!(after.expires_at, Some(grace_end - secs(60)));
}

/// Updates of different fields racing one revocation: the revocation
/// and every update all land.
/// Checks that concurrent updates and a revoke all land.
pub async fn concurrent_updates_and_a_revoke_all_land(store: &impl KeyStore) {
    for round in 0..5 {
        let key = minimal(&format!("Racing{round:04}"), &Owner::user("racer"), T0);
        store.insert(&key).await.unwrap();
        let k = key.id;
        let rename = |n: usize| async move {
            let change = KeyUpdate {
                name: Some(format!("name {n}")),
                ..KeyUpdate::default()
            };
            store.update(k, &change).await.unwrap();
        };
        let rescope = async {
            let change = KeyUpdate {
                scopes: Some(Scopes::parse_list("read").unwrap()),
                ..KeyUpdate::default()
            };
            store.update(k, &change).await.unwrap();
        };
        let expire = async {
            let change = KeyUpdate {
                expires_at: Some(Some(T0 + secs(3600))),
                ..KeyUpdate::default()
            };
            store.update(k, &change).await.unwrap();
        };
        let revoke = async { store.revoke(k, T0 + secs(1)).await.unwrap().unwrap() };
        let ((), (), (), (), (), (), revoked) = tokio::join!(
            rename(0),
            rename(1),
            rescope,
            rename(2),
            expire,
            rename(3),
            revoke
        );
        assert_eq!(revoked.revoked_at, Some(T0 + secs(1)));
        let now = store.find(k).await.unwrap().unwrap();
        assert_eq!(now.revoked_at, Some(T0 + secs(1)), "revocation undone");
        assert!(now.name.starts_with("name "), "{}", now.name);
        assert_eq!(now.scopes, Scopes::parse_list("read").unwrap());
        assert_eq!(now.expires_at, Some(T0 + secs(3600)));
    }
}

fn replacement(new: &str, at: OffsetDateTime, grace_end: OffsetDateTime) -> Replacement {
    Replacement {
        id: id(new),
        digest: KeyHasher::sha256().digest(new),
        at,
        grace_end,
        default_expiry: None,
        max_expiry: None,
    }
}

/// Checks that rotate supersedes atomically or writes nothing.
pub async fn rotate_supersedes_atomically_or_writes_nothing(store: &impl KeyStore) {
    let owner = Owner::service("rotator");
    let old = KeyRecord {
        scopes: Scopes::parse_list("read write").unwrap(),
        rate_limit: Some(Quota::per_minute(60).into()),
        expires_at: Some(T0 + secs(1000)),
        last_used_at: Some(T0),
        family: id("FamilyRot1"),
        ..minimal("RotateOld1", &owner, T0 - secs(100))
    };
    store.insert(&old).await.unwrap();
    let r = replacement("RotateNew1", T0, T0 + secs(100));
    let Rotation::Rotated {
        old: superseded,
        new,
    } = store.rotate(old.id, &r).await.unwrap()
    else {
        panic!("a live key is rotatable")
    };
    let (want_old, want_new) = r.apply(&old).unwrap();
    assert_eq!((&superseded, &new), (&want_old, &want_new));
    assert_eq!(superseded.superseded_by, Some(new.id));
    assert_eq!(superseded.expires_at, Some(T0 + secs(100)));
    assert_eq!(new.family, old.family);
    assert_eq!(new.expires_at, old.expires_at);
    assert_eq!(new.last_used_at, None);
    assert_eq!(store.find(old.id).await.unwrap(), Some(superseded.clone()));
    assert_eq!(store.find(new.id).await.unwrap(), Some(new.clone()));

    // Not again, and not a revoked or an expired key: nothing written.
    let again = replacement("RotateNew2", T0, T0 + secs(100));
    assert_eq!(
        store.rotate(old.id, &again).await.unwrap(),
        Rotation::NotRotatable(superseded.clone())
    );
    let revoked = store.revoke(new.id, T0 + secs(1)).await.unwrap().unwrap();
    assert_eq!(
        store.rotate(new.id, &again).await.unwrap(),
        Rotation::NotRotatable(revoked)
    );
    let expiring = KeyRecord {
        expires_at: Some(T0),
        ..minimal("Expiring01", &owner, T0 - secs(100))
    };
    store.insert(&expiring).await.unwrap();
    assert_eq!(
        store.rotate(expiring.id, &again).await.unwrap(),
        Rotation::NotRotatable(expiring.clone())
    );
    assert_eq!(store.find(again.id).await.unwrap(), None);

    // A taken new id: nothing written, the old key still rotatable.
    let live = minimal("RotateOld3", &owner, T0 - secs(100));
    store.insert(&live).await.unwrap();
    let taken = replacement("RotateNew1", T0, T0 + secs(100));
    match store.rotate(live.id, &taken).await {
        Err(StoreError::Duplicate(dup)) => assert_eq!(dup, taken.id),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(store.find(live.id).await.unwrap(), Some(live.clone()));
    assert_eq!(store.find(new.id).await.unwrap(), Some(revoked_new(&new)));
    // A grace period longer than the key's own life keeps its expiry.
    let short = KeyRecord {
        expires_at: Some(T0 + secs(10)),
        ..minimal("RotateOld4", &owner, T0 - secs(100))
    };
    store.insert(&short).await.unwrap();
    let long = replacement("RotateNew4", T0, T0 + secs(100));
    let Rotation::Rotated { old: s, .. } = store.rotate(short.id, &long).await.unwrap() else {
        panic!("rotatable")
    };
    assert_eq!(s.expires_at, Some(T0 + secs(10)));

    let ghost = id("GhostKey02");
    match store
        .rotate(ghost, &replacement("RotateNew5", T0, T0))
        .await
    {
        Err(StoreError::NotFound(missing)) => assert_eq!(missing, ghost),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.find(id("RotateNew5")).await.unwrap(), None);
}

fn revoked_new(new: &KeyRecord) -> KeyRecord {
    KeyRecord {
        revoked_at: Some(T0 + secs(1)),
        ..new.clone()
    }
}

/// Rotations racing a revocation of the same key: either the rotation
/// happened first (one new key, old key superseded and revoked) or the
/// revocation did (no new key at all). Never a new key for a key that
/// was revoked when it was rotated, never a lost revocation.
/// Checks that rotations racing a revoke leave no orphan.
pub async fn rotations_racing_a_revoke_leave_no_orphan(store: &impl KeyStore) {
    let owner = Owner::user("rotation-race");
    for round in 0..5 {
        let old = minimal(&format!("RaceOld{round:03}"), &owner, T0 - secs(10));
        store.insert(&old).await.unwrap();
        let rotate = |n: usize| {
            let r = replacement(&format!("RaceNew{round}{n:02}"), T0, T0 + secs(60));
            async move { store.rotate(old.id, &r).await.unwrap() }
        };
        let revoke = async { store.revoke(old.id, T0 + secs(1)).await.unwrap().unwrap() };
        let patch = async {
            let change = KeyUpdate {
                name: Some("patched".into()),
                expires_at: Some(None),
                ..KeyUpdate::default()
            };
            store.update(old.id, &change).await.unwrap()
        };
        let (a, b, _, _, c) = tokio::join!(rotate(0), rotate(1), revoke, patch, rotate(2));
        let rotated: Vec<KeyRecord> = [a, b, c]
            .into_iter()
            .filter_map(|r| match r {
                Rotation::Rotated { new, .. } => Some(new),
                Rotation::NotRotatable(_) => None,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(rotated.len() <= 1, "rotated twice: {rotated:?}");
        let now = store.find(old.id).await.unwrap().unwrap();
        assert_eq!(now.revoked_at, Some(T0 + secs(1)), "revocation lost");
        assert_eq!(now.name, "patched", "update lost");
        for n in 0..3 {
            let new_id = id(&format!("RaceNew{round}{n:02}"));
            let stored = store.find(new_id).await.unwrap();
            if rotated.iter().any(|r| r.id == new_id) {
                assert_eq!(now.superseded_by, Some(new_id));
                assert_eq!(now.expires_at, Some(T0 + secs(60)), "grace wiped");
                assert!(stored.is_some());
            } else {
                assert_eq!(stored, None, "a refused rotation left a key");
            }
        }
        if rotated.is_empty() {
            assert_eq!(now.superseded_by, None);
        }
    }
}

/// Checks that revoke sets the time once and ignores unknown keys.
pub async fn revoke_sets_the_time_once_and_ignores_unknown_keys(store: &impl KeyStore) {
    let live = full("RevokeMe01");
    let live = KeyRecord {
        revoked_at: None,
        ..live
    };
    store.insert(&live).await.unwrap();
    let first = T0 + secs(100);
    let revoked = store.revoke(live.id, first).await.unwrap().unwrap();
    let expected = KeyRecord {
        revoked_at: Some(first),
        ..live.clone()
    };
    assert_eq!(revoked, expected);
    assert_eq!(store.find(live.id).await.unwrap(), Some(expected.clone()));

    for later in [first + secs(60), first - secs(60)] {
        let again = store.revoke(live.id, later).await.unwrap().unwrap();
        assert_eq!(
            again.revoked_at,
            Some(first),
            "the first revocation time stays"
        );
    }
    assert_eq!(store.find(live.id).await.unwrap(), Some(expected));
    assert_eq!(store.revoke(id("NoSuchKey1"), first).await.unwrap(), None);
    assert_eq!(store.find(id("NoSuchKey1")).await.unwrap(), None);
}
