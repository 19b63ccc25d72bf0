//! One suite, every store: `MemoryStore` (the reference semantics),
//! `SqliteStore` and `PostgresStore` must behave alike.
//!
//! PostgreSQL tests run against `KEYGATE_TEST_POSTGRES_URL`, each in a fresh
//! schema; without the variable they print `skipped <test>: …` and pass (outside CI).

mod common;

/// The store tests, as async functions over any [`KeyStore`] or
/// [`AuditStore`](keygate_core::AuditStore).
mod cases {
    use keygate_core::{
        AuditAction, AuditEvent, AuditQuery, AuditStore, Cursor, Environment, IpNet, KeyHasher,
        KeyId, KeyRecord, KeyStore, KeyUpdate, Owner, Page, Quota, Quotas, Replacement, Rotation,
        Scopes, StoreError, UsageBucket, UsageDelta, usage_bucket,
    };
    use serde_json::json;
    use time::{Duration, OffsetDateTime, macros::datetime};

    /// An instant with microseconds, the precision stores keep.
    const T0: OffsetDateTime = datetime!(2031-03-04 05:06:07.123456 UTC);

    fn id(s: &str) -> KeyId {
        s.parse().expect("test ids are 10 letters and digits")
    }

    fn secs(n: i64) -> Duration {
        Duration::seconds(n)
    }

    /// A record with nothing optional set.
    fn minimal(key: &str, owner: &Owner, created_at: OffsetDateTime) -> KeyRecord {
        KeyRecord {
            name: format!("key {key}"),
            ..crate::common::record(key, owner, created_at)
        }
    }

    /// A record with every field set to something a store could get wrong.
    fn full(key: &str) -> KeyRecord {
        let metadata = json!({
            "plan": "pro",
            "seats": 12,
            "ratio": 0.25,
            "big": 9_007_199_254_740_993_u64,
            "negative": -3,
            "flag": false,
            "none": null,
            "nested": {"list": [1, "two", null, true, {"deep": []}], "empty": {}},
            "unicode": "café ☕ — \"quoted\" \\ back\nslash",
        });
        let serde_json::Value::Object(metadata) = metadata else {
            unreachable!()
        };
        KeyRecord {
            id: id(key),
            family: id("FamilyRoot"),
            owner: Owner::service("billing:sync"),
            name: "nightly export ✓ 'quoted'".to_owned(),
            scopes: Scopes::parse_list("write read billing:read reports.export-v2").unwrap(),
            environment: Environment::Test,
            digest: KeyHasher::hmac_sha256(vec![7; 32]).unwrap().digest(key),
            created_at: T0,
            expires_at: Some(T0 + Duration::days(90) + Duration::microseconds(1)),
            revoked_at: Some(T0 + secs(30)),
            rate_limit: Some(Quota::per_minute(600).into()),
            allowed_ips: [
                "10.0.0.0/8",
                "192.168.1.7/32",
                "10.1.2.3/16",
                "2001:db8::/32",
                "::1/128",
                "::ffff:10.0.0.0/104",
            ]
            .iter()
            .map(|n| n.parse::<IpNet>().unwrap())
            .collect(),
            metadata,
            last_used_at: Some(T0 + secs(5) + Duration::microseconds(999_999)),
            superseded_by: Some(id("NextKey001")),
            created_by: Some(id("ParentFam1")),
        }
    }

    pub(crate) async fn insert_then_find_round_trips_every_field(store: &impl KeyStore) {
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

    fn minimal_at(key: &str, created_at: OffsetDateTime) -> KeyRecord {
        minimal(key, &Owner::user("someone"), created_at)
    }

    pub(crate) async fn duplicate_insert_is_rejected_and_keeps_the_original(store: &impl KeyStore) {
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

    pub(crate) async fn update_changes_only_the_fields_it_sets(store: &impl KeyStore) {
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

    pub(crate) async fn update_never_undoes_a_revocation_or_extends_a_grace_period(
        store: &impl KeyStore,
    ) {
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
    pub(crate) async fn concurrent_updates_and_a_revoke_all_land(store: &impl KeyStore) {
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
        }
    }

    pub(crate) async fn rotate_supersedes_atomically_or_writes_nothing(store: &impl KeyStore) {
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
    pub(crate) async fn rotations_racing_a_revoke_leave_no_orphan(store: &impl KeyStore) {
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

    pub(crate) async fn revoke_sets_the_time_once_and_ignores_unknown_keys(store: &impl KeyStore) {
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

    pub(crate) async fn list_live_ids_lists_every_unrevoked_key_up_to_the_limit(
        store: &impl KeyStore,
    ) {
        let owner = Owner::user("preloaded");
        let live = ["LiveKey001", "LiveKey002", "LiveKey003"];
        for key in live {
            store.insert(&minimal(key, &owner, T0)).await.unwrap();
        }
        let expired = KeyRecord {
            expires_at: Some(T0 + secs(1)),
            ..minimal("ExpiredKy1", &owner, T0)
        };
        store.insert(&expired).await.unwrap();
        store
            .insert(&minimal("RevokedKy1", &owner, T0))
            .await
            .unwrap();
        store.revoke(id("RevokedKy1"), T0 + secs(2)).await.unwrap();

        let mut ids = store.list_live_ids(100).await.unwrap();
        ids.sort();
        let mut want: Vec<KeyId> = live.iter().map(|k| id(k)).collect();
        want.push(id("ExpiredKy1"));
        want.sort();
        assert_eq!(ids, want, "unrevoked keys, expired ones included");
        assert_eq!(store.list_live_ids(2).await.unwrap().len(), 2);
        assert!(store.list_live_ids(0).await.unwrap().is_empty());
    }

    pub(crate) async fn created_by_survives_writes_and_lists_children_and_counts_live_keys(
        store: &impl KeyStore,
    ) {
        let owner = Owner::user("delegator");
        let parent = minimal("ParentKey1", &owner, T0);
        let child = |key: &str, expires_at, revoked_at| KeyRecord {
            created_by: Some(parent.family),
            expires_at,
            revoked_at,
            ..minimal(key, &owner, T0 + secs(1))
        };
        let live = child("ChildLive1", None, None);
        let expired = child("ChildExpir", Some(T0 + secs(50)), None);
        let revoked = child("ChildRevok", None, Some(T0 + secs(2)));
        let other = minimal("OtherOwner", &Owner::user("someone else"), T0);
        for r in [&parent, &live, &expired, &revoked, &other] {
            store.insert(r).await.unwrap();
        }
        // An update keeps the creator.
        let renamed = KeyRecord {
            name: "renamed".into(),
            ..live.clone()
        };
        let changes = KeyUpdate {
            name: Some("renamed".into()),
            ..KeyUpdate::default()
        };
        assert_eq!(store.update(live.id, &changes).await.unwrap(), renamed);
        assert_eq!(store.find(live.id).await.unwrap(), Some(renamed.clone()));
        let revoked_live = store.revoke(live.id, T0 + secs(3)).await.unwrap().unwrap();
        assert_eq!(revoked_live.created_by, Some(parent.family));

        let mut children: Vec<KeyId> = store
            .list_created_by(parent.family)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        children.sort();
        let mut want = vec![live.id, expired.id, revoked.id];
        want.sort();
        assert_eq!(children, want);
        assert!(store.list_created_by(live.id).await.unwrap().is_empty());

        // Before anything was revoked at T0 + 3s: the parent and two
        // children were live at T0 + 10s; at T0 + 50s the one expiring then
        // no longer counts, and the revoked ones never do.
        assert_eq!(
            store
                .count_active_by_owner(&owner, T0 + secs(10))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .count_active_by_owner(&owner, T0 + secs(50))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .count_active_by_owner(&Owner::user("nobody"), T0)
                .await
                .unwrap(),
            0
        );
    }

    pub(crate) async fn list_by_owner_pages_newest_first_per_owner(store: &impl KeyStore) {
        let alice = Owner::user("alice");
        let mut mine = Vec::new();
        for i in 0..5 {
            mine.push(minimal(&format!("Alice0000{i}"), &alice, T0 + secs(i)));
        }
        // Same instant: the id breaks the tie, bytewise (uppercase first).
        let tie = T0 + secs(10);
        for key in ["TieB000000", "Tiea000000", "TieA000000"] {
            mine.push(minimal(key, &alice, tie));
        }
        // One microsecond apart.
        mine.push(minimal(
            "AliceMicro",
            &alice,
            T0 + Duration::microseconds(1),
        ));
        mine.push(minimal("AliceOld00", &alice, T0 - Duration::days(400)));
        let others = [
            minimal("BobKey0001", &Owner::user("bob"), T0 + secs(3)),
            minimal("AliceSvc01", &Owner::service("alice"), T0 + secs(3)),
        ];
        for r in mine.iter().chain(&others) {
            store.insert(r).await.unwrap();
        }
        let revoked = store
            .revoke(id("Alice00002"), T0 + secs(50))
            .await
            .unwrap()
            .unwrap();
        let revoked_id = revoked.id;
        *mine.iter_mut().find(|r| r.id == revoked_id).unwrap() = revoked;

        let mut expected = mine.clone();
        expected.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        assert_eq!(
            expected
                .iter()
                .take(4)
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>(),
            ["Tiea000000", "TieB000000", "TieA000000", "Alice00004"],
        );

        let all = store.list_by_owner(&alice, Page::first(100)).await.unwrap();
        assert_eq!(all, expected);

        let mut paged = Vec::new();
        let mut page = Page::first(3);
        loop {
            let got = store.list_by_owner(&alice, page).await.unwrap();
            assert!(got.len() <= 3);
            let Some(last) = got.last() else { break };
            // Cursors travel as text through HTTP and the CLI.
            let cursor: Cursor = Cursor::after(last).to_string().parse().unwrap();
            page = Page {
                limit: 3,
                cursor: Some(cursor),
            };
            paged.extend(got);
        }
        assert_eq!(paged, expected);

        assert!(
            store
                .list_by_owner(&alice, Page::first(0))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .list_by_owner(&Owner::user("bob"), Page::default())
                .await
                .unwrap(),
            vec![others[0].clone()]
        );
        assert_eq!(
            store
                .list_by_owner(&Owner::service("alice"), Page::default())
                .await
                .unwrap(),
            vec![others[1].clone()]
        );
        assert!(
            store
                .list_by_owner(&Owner::user("nobody"), Page::default())
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub(crate) async fn list_expiring_is_soonest_first_without_revoked_or_unexpiring(
        store: &impl KeyStore,
    ) {
        let before = T0 + secs(100);
        let owner = Owner::user("exp");
        let expiring = |key: &str, at: Option<OffsetDateTime>| KeyRecord {
            expires_at: at,
            ..minimal(key, &owner, T0)
        };
        let records = [
            expiring("Expires050", Some(T0 + secs(50))),
            expiring("Expires010", Some(T0 + secs(10))),
            expiring("Exactly100", Some(before)),
            expiring("JustAfter1", Some(before + Duration::microseconds(1))),
            expiring("Expires01b", Some(T0 + secs(10))),
            expiring("LongGone01", Some(T0 - Duration::days(3))),
            expiring("NeverExpir", None),
            expiring("Revoked001", Some(T0 + secs(5))),
        ];
        for r in &records {
            store.insert(r).await.unwrap();
        }
        store.revoke(id("Revoked001"), T0).await.unwrap();

        let ids = |rs: Vec<KeyRecord>| rs.into_iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
        let all = store.list_expiring(before, 100).await.unwrap();
        assert_eq!(
            ids(all.clone()),
            [
                "LongGone01",
                "Expires010",
                "Expires01b",
                "Expires050",
                "Exactly100"
            ]
        );
        assert_eq!(all[0], records[5], "records come back whole");
        assert_eq!(
            ids(store.list_expiring(before, 2).await.unwrap()),
            ["LongGone01", "Expires010"]
        );
        assert!(
            store
                .list_expiring(T0 - Duration::days(4), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.list_expiring(before, 0).await.unwrap().is_empty());
    }

    pub(crate) async fn record_usage_accumulates_hourly_and_keeps_the_latest_use(
        store: &impl KeyStore,
    ) {
        let owner = Owner::user("usage");
        let k1 = minimal("UsedKey001", &owner, T0);
        // k2 is k1's rotation: same family.
        let k2 = KeyRecord {
            family: k1.id,
            ..minimal("UsedKey002", &owner, T0)
        };
        let k3 = minimal("UsedKey003", &owner, T0);
        for r in [&k1, &k2, &k3] {
            store.insert(r).await.unwrap();
        }
        let h0 = usage_bucket(T0);
        let h1 = h0 + Duration::hours(1);
        let min = Duration::minutes;
        let delta = |k: &KeyRecord, bucket, requests, last_used_at| UsageDelta {
            key_id: k.id,
            family: k.family,
            bucket,
            requests,
            last_used_at,
        };

        store.record_usage(&[]).await.unwrap();
        store
            .record_usage(&[
                delta(&k1, h0, 5, h0 + min(10)),
                delta(&k2, h0, 3, h0 + min(20) + Duration::microseconds(7)),
                delta(&k3, h1, 7, h1 + min(5)),
            ])
            .await
            .unwrap();
        let ghost = minimal("GhostUsage", &owner, T0);
        store
            .record_usage(&[
                // An older use does not move last_used_at back.
                delta(&k1, h0, 2, h0 + min(5)),
                delta(&k1, h1, 4, h1 + min(1)),
                // Twice in one batch: both count.
                delta(&k2, h1, 1, h1 + min(2)),
                delta(&k2, h1, 1, h1 + min(3)),
                // A key deleted meanwhile does not fail the batch.
                delta(&ghost, h0, 1, h0 + min(1)),
            ])
            .await
            .unwrap();

        let bucket = |bucket, requests| UsageBucket { bucket, requests };
        assert_eq!(
            store.usage(k1.family, h0).await.unwrap(),
            vec![bucket(h0, 10), bucket(h1, 6)]
        );
        assert_eq!(
            store.usage(k3.family, h0).await.unwrap(),
            vec![bucket(h1, 7)]
        );
        assert_eq!(
            store.usage(ghost.family, h0).await.unwrap(),
            vec![bucket(h0, 1)]
        );

        let find = |k: &KeyRecord| {
            let id = k.id;
            async move { store.find(id).await.unwrap().unwrap() }
        };
        assert_eq!(find(&k1).await.last_used_at, Some(h1 + min(1)));
        assert_eq!(find(&k2).await.last_used_at, Some(h1 + min(3)));
        assert_eq!(find(&k3).await.last_used_at, Some(h1 + min(5)));
        assert_eq!(store.find(ghost.id).await.unwrap(), None);
        // Nothing else about the keys changed.
        assert_eq!(
            find(&k1).await,
            KeyRecord {
                last_used_at: Some(h1 + min(1)),
                ..k1.clone()
            }
        );
    }

    pub(crate) async fn concurrent_usage_flushes_lose_nothing(store: &impl KeyStore) {
        let owner = Owner::user("busy");
        let keys = [
            minimal("Concurrnt1", &owner, T0),
            minimal("Concurrnt2", &owner, T0),
        ];
        for k in &keys {
            store.insert(k).await.unwrap();
        }
        let keys = &keys;
        let h0 = usage_bucket(T0);
        // Four flushers, each touching both keys (in opposite orders), at once.
        let flusher = |n: usize| async move {
            for i in 0..25 {
                let mut batch: Vec<UsageDelta> = keys
                    .iter()
                    .map(|k| UsageDelta {
                        key_id: k.id,
                        family: k.family,
                        bucket: h0,
                        requests: 1,
                        last_used_at: h0 + Duration::seconds(i64::try_from(n * 100 + i).unwrap()),
                    })
                    .collect();
                if (n + i) % 2 == 1 {
                    batch.reverse();
                }
                store.record_usage(&batch).await.unwrap();
            }
        };
        tokio::join!(flusher(0), flusher(1), flusher(2), flusher(3));
        for k in keys {
            assert_eq!(
                store.usage(k.family, h0).await.unwrap(),
                vec![UsageBucket {
                    bucket: h0,
                    requests: 100
                }]
            );
            assert_eq!(
                store.find(k.id).await.unwrap().unwrap().last_used_at,
                Some(h0 + Duration::seconds(324))
            );
        }
    }

    pub(crate) async fn usage_since_starts_at_the_hour_and_is_oldest_first(store: &impl KeyStore) {
        let k = minimal("Counted001", &Owner::user("u"), T0);
        store.insert(&k).await.unwrap();
        let h0 = usage_bucket(T0);
        let hours: Vec<OffsetDateTime> = (0..5).map(|i| h0 + Duration::hours(i)).collect();
        // Written newest first, read oldest first.
        let batch: Vec<UsageDelta> = hours
            .iter()
            .rev()
            .zip(1..)
            .map(|(&bucket, n)| UsageDelta {
                key_id: k.id,
                family: k.family,
                bucket,
                requests: n,
                last_used_at: bucket + Duration::minutes(59),
            })
            .collect();
        store.record_usage(&batch).await.unwrap();

        let buckets = |since| async move {
            store
                .usage(k.family, since)
                .await
                .unwrap()
                .into_iter()
                .map(|b| (b.bucket, b.requests))
                .collect::<Vec<_>>()
        };
        let all: Vec<_> = hours.iter().copied().zip([5, 4, 3, 2, 1]).collect();
        assert_eq!(buckets(h0 - Duration::days(1)).await, all);
        assert_eq!(buckets(h0).await, all);
        // `since` in the middle of an hour includes that hour.
        assert_eq!(buckets(hours[2] + Duration::minutes(30)).await, all[2..]);
        assert_eq!(buckets(hours[4] + Duration::minutes(59)).await, all[4..]);
        assert!(buckets(hours[4] + Duration::hours(1)).await.is_empty());
        assert!(store.usage(id("OtherFamly"), h0).await.unwrap().is_empty());
    }

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

    pub(crate) async fn audit_round_trips_every_field_newest_first(store: &impl AuditStore) {
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

    pub(crate) async fn audit_queries_filter_by_key_and_time_and_limit(store: &impl AuditStore) {
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

    pub(crate) async fn audit_is_newest_first_by_time_then_latest_written(store: &impl AuditStore) {
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

    pub(crate) async fn prune_audit_removes_exactly_the_older_events(store: &impl AuditStore) {
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
}

/// Runs every case in [`cases`] against one store, as a module of tests.
///
/// `$open` is an async fn returning `Option<common::Fixture<S>>`; `None`
/// skips (a backend that is not configured outside CI).
macro_rules! store_conformance {
    ($backend:ident, $open:path) => {
        store_conformance!(
            @module $backend, $open,
            insert_then_find_round_trips_every_field,
            duplicate_insert_is_rejected_and_keeps_the_original,
            update_changes_only_the_fields_it_sets,
            update_never_undoes_a_revocation_or_extends_a_grace_period,
            concurrent_updates_and_a_revoke_all_land,
            rotate_supersedes_atomically_or_writes_nothing,
            rotations_racing_a_revoke_leave_no_orphan,
            revoke_sets_the_time_once_and_ignores_unknown_keys,
            created_by_survives_writes_and_lists_children_and_counts_live_keys,
            list_live_ids_lists_every_unrevoked_key_up_to_the_limit,
            list_by_owner_pages_newest_first_per_owner,
            list_expiring_is_soonest_first_without_revoked_or_unexpiring,
            record_usage_accumulates_hourly_and_keeps_the_latest_use,
            usage_since_starts_at_the_hour_and_is_oldest_first,
            concurrent_usage_flushes_lose_nothing,
            audit_round_trips_every_field_newest_first,
            audit_queries_filter_by_key_and_time_and_limit,
            audit_is_newest_first_by_time_then_latest_written,
            prune_audit_removes_exactly_the_older_events,
        );
    };
    (@module $backend:ident, $open:path, $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(fixture) = $open().await else { return };
                    crate::cases::$case(&fixture.store).await;
                }
            )+
        }
    };
}

store_conformance!(memory, crate::common::memory);
store_conformance!(sqlite, crate::common::sqlite);
store_conformance!(postgres, crate::common::postgres);
