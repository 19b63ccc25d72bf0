//! Listings: live ids, children, an owner's keys and expiring keys.

use keygate_core::{
    Cursor, Environment, KeyFilter, KeyId, KeyRecord, KeyStore, KeyUpdate, Owner, Page,
    StatusFilter,
};
use time::{Duration, OffsetDateTime};

use super::{T0, id, minimal, secs};

/// Checks that list live ids lists every unrevoked key up to the limit.
pub async fn list_live_ids_lists_every_unrevoked_key_up_to_the_limit(store: &impl KeyStore) {
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

/// Checks that created by survives writes and lists children and counts live keys.
pub async fn created_by_survives_writes_and_lists_children_and_counts_live_keys(
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

/// Checks that list by owner pages newest first per owner.
pub async fn list_by_owner_pages_newest_first_per_owner(store: &impl KeyStore) {
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

/// Checks that list expiring is soonest first without revoked or unexpiring.
pub async fn list_expiring_is_soonest_first_without_revoked_or_unexpiring(store: &impl KeyStore) {
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

/// Checks that `list_keys` filters by owner, environment and status in the
/// store, as [`KeyFilter::matches`] states, newest first, and pages through
/// a filtered listing with the cursor without losing or repeating a key.
pub async fn list_keys_filters_by_owner_environment_and_status_and_pages(store: &impl KeyStore) {
    let now = T0 + secs(1_000);
    let (ann, bob) = (Owner::user("ann"), Owner::service("bob"));
    let key = |k: &str, owner: &Owner, age: i64| minimal(k, owner, now - secs(age));
    let test = |r: KeyRecord| KeyRecord {
        environment: Environment::Test,
        ..r
    };
    let expires = |r: KeyRecord, at: OffsetDateTime| KeyRecord {
        expires_at: Some(at),
        ..r
    };
    let records = [
        // Active, never expiring.
        key("AnnLive001", &ann, 10),
        test(key("AnnTest001", &ann, 20)),
        key("BobLive001", &bob, 30),
        // Expiring within a day: active too. One expires right at the end
        // of the window, one a microsecond after it.
        expires(key("AnnSoon001", &ann, 40), now + secs(3_600)),
        test(expires(key("BobSoon001", &bob, 50), now + secs(86_400))),
        expires(
            key("AnnLater01", &ann, 60),
            now + secs(86_400) + Duration::microseconds(1),
        ),
        // Expired: at `now` exactly, and long ago.
        expires(key("AnnGone001", &ann, 70), now),
        test(expires(key("BobGone001", &bob, 80), now - secs(500))),
        // Revoked: one that had also expired since, one a rotated key in
        // its grace period, and one live.
        expires(key("AnnRevExp1", &ann, 90), now - secs(5)),
        key("BobRevoked", &bob, 100),
        KeyRecord {
            superseded_by: Some(id("AnnLive001")),
            ..expires(key("AnnGrace01", &ann, 110), now + secs(60))
        },
    ];
    for r in &records {
        store.insert(r).await.unwrap();
    }
    let mut records = records.to_vec();
    for k in ["AnnRevExp1", "BobRevoked"] {
        let revoked = store.revoke(id(k), now - secs(1)).await.unwrap().unwrap();
        let revoked_id = revoked.id;
        *records.iter_mut().find(|r| r.id == revoked_id).unwrap() = revoked;
    }
    let day = StatusFilter::Expiring {
        within: std::time::Duration::from_secs(86_400),
    };
    let names = |rs: &[KeyRecord]| rs.iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
    let list = |filter: KeyFilter| async move {
        store
            .list_keys(&filter, now, Page::first(100))
            .await
            .unwrap()
    };
    let status = |s| KeyFilter {
        status: Some(s),
        ..KeyFilter::all()
    };

    // What an operator reads: the exact keys of each state, newest first.
    assert_eq!(
        names(&list(status(StatusFilter::Active)).await),
        [
            "AnnLive001",
            "AnnTest001",
            "BobLive001",
            "AnnSoon001",
            "BobSoon001",
            "AnnLater01",
            "AnnGrace01"
        ]
    );
    assert_eq!(
        names(&list(status(day)).await),
        ["AnnSoon001", "BobSoon001", "AnnGrace01"]
    );
    assert_eq!(
        names(&list(status(StatusFilter::Expired)).await),
        ["AnnGone001", "BobGone001"]
    );
    assert_eq!(
        names(&list(status(StatusFilter::Revoked)).await),
        ["AnnRevExp1", "BobRevoked"]
    );
    let all = list(KeyFilter::all()).await;
    let mut newest_first = records.clone();
    newest_first.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    assert_eq!(all, newest_first, "no filter: every key, whole");

    // Every combination agrees with the rule, and pages the same way.
    let statuses = [
        None,
        Some(StatusFilter::Active),
        Some(day),
        Some(StatusFilter::Expired),
        Some(StatusFilter::Revoked),
    ];
    for owner in [
        None,
        Some(ann.clone()),
        Some(bob.clone()),
        Some(Owner::user("nobody")),
    ] {
        for environment in [None, Some(Environment::Live), Some(Environment::Test)] {
            for status in statuses {
                let filter = KeyFilter {
                    owner: owner.clone(),
                    environment,
                    status,
                };
                let want: Vec<KeyRecord> = newest_first
                    .iter()
                    .filter(|r| filter.matches(r, now))
                    .cloned()
                    .collect();
                assert_eq!(list(filter.clone()).await, want, "{filter:?}");
                let mut paged = Vec::new();
                let mut page = Page::first(2);
                loop {
                    let got = store.list_keys(&filter, now, page).await.unwrap();
                    assert!(got.len() <= 2);
                    let Some(last) = got.last() else { break };
                    let cursor: Cursor = Cursor::after(last).to_string().parse().unwrap();
                    page.cursor = Some(cursor);
                    paged.extend(got);
                }
                assert_eq!(paged, want, "paged {filter:?}");
            }
        }
    }
    assert!(
        store
            .list_keys(&KeyFilter::all(), now, Page::first(0))
            .await
            .unwrap()
            .is_empty()
    );
}
