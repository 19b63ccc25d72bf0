//! Usage accounting: hourly buckets and the latest use.

use keygate_core::{KeyRecord, KeyStore, Owner, UsageBucket, UsageDelta, usage_bucket};
use time::{Duration, OffsetDateTime};

use super::{T0, id, minimal};

/// Checks that record usage accumulates hourly and keeps the latest use.
pub async fn record_usage_accumulates_hourly_and_keeps_the_latest_use(store: &impl KeyStore) {
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
        refused: Default::default(),
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

    let bucket = |bucket, requests| UsageBucket {
        refused: Default::default(),
        bucket,
        requests,
    };
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

/// Checks that concurrent usage flushes lose nothing.
pub async fn concurrent_usage_flushes_lose_nothing(store: &impl KeyStore) {
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
                    refused: Default::default(),
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
                refused: Default::default(),
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

/// Checks that usage since starts at the hour and is oldest first.
pub async fn usage_since_starts_at_the_hour_and_is_oldest_first(store: &impl KeyStore) {
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
            refused: Default::default(),
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

/// Checks that a reminder is claimed once per key and threshold, by exactly
/// one of several concurrent claims, and can be claimed again once given
/// back.
pub async fn reminders_are_claimed_once_per_key_and_threshold_until_given_back(
    store: &impl KeyStore,
) {
    let day = std::time::Duration::from_secs(86_400);
    let (a, b) = (id("RemindKey1"), id("RemindKey2"));
    let claims = tokio::join!(
        store.claim_reminder(a, 3 * day, T0),
        store.claim_reminder(a, 3 * day, T0),
        store.claim_reminder(a, 3 * day, T0),
        store.claim_reminder(a, 3 * day, T0),
    );
    let won = [claims.0, claims.1, claims.2, claims.3]
        .into_iter()
        .map(Result::unwrap)
        .filter(|won| *won)
        .count();
    assert_eq!(won, 1, "exactly one concurrent claim wins");
    assert!(!store.claim_reminder(a, 3 * day, T0).await.unwrap());
    // Other thresholds and other keys are claims of their own.
    assert!(store.claim_reminder(a, day, T0).await.unwrap());
    assert!(store.claim_reminder(b, 3 * day, T0).await.unwrap());
    // Given back (a failed delivery): the next run may claim it again.
    store.release_reminder(a, 3 * day).await.unwrap();
    assert!(store.claim_reminder(a, 3 * day, T0).await.unwrap());
    assert!(!store.claim_reminder(a, day, T0).await.unwrap());
    // Giving back what was never claimed does nothing.
    store.release_reminder(b, day).await.unwrap();
    assert!(!store.claim_reminder(b, 3 * day, T0).await.unwrap());
}

/// Checks that refusals are added to the hour by reason, beside the
/// admitted requests, and that a key that was only refused is not "used".
pub async fn refusals_are_counted_by_reason_and_are_not_uses(store: &impl KeyStore) {
    use keygate_core::{RefusalKind, Refusals};

    let owner = Owner::user("refused");
    let key = minimal("RefusedKy1", &owner, T0);
    store.insert(&key).await.unwrap();
    let h0 = usage_bucket(T0);
    let refused = |pairs: &[(RefusalKind, u64)]| {
        let mut r = Refusals::default();
        for &(kind, n) in pairs {
            *r.get_mut(kind) = n;
        }
        r
    };
    let delta = |requests, refused, at| UsageDelta {
        key_id: key.id,
        family: key.family,
        bucket: h0,
        requests,
        refused,
        last_used_at: at,
    };
    // Refusals only: counted, and the key still has never been used.
    store
        .record_usage(&[delta(
            0,
            refused(&[(RefusalKind::Revoked, 2), (RefusalKind::UsageExceeded, 5)]),
            h0 + Duration::minutes(3),
        )])
        .await
        .unwrap();
    assert_eq!(
        store.find(key.id).await.unwrap().unwrap().last_used_at,
        None,
        "a refused key was not used"
    );
    let big = u64::try_from(i64::MAX).unwrap() - 1;
    store
        .record_usage(&[
            delta(
                4,
                refused(&[
                    (RefusalKind::Expired, 1),
                    (RefusalKind::Forbidden, 3),
                    (RefusalKind::RateLimited, big),
                    (RefusalKind::UsageExceeded, 1),
                ]),
                h0 + Duration::minutes(9),
            ),
            delta(1, Refusals::default(), h0 + Duration::minutes(8)),
        ])
        .await
        .unwrap();
    let buckets = store.usage(key.family, h0).await.unwrap();
    assert_eq!(
        buckets,
        vec![UsageBucket {
            bucket: h0,
            requests: 5,
            refused: refused(&[
                (RefusalKind::Revoked, 2),
                (RefusalKind::Expired, 1),
                (RefusalKind::Forbidden, 3),
                (RefusalKind::RateLimited, big),
                (RefusalKind::UsageExceeded, 6),
            ]),
        }]
    );
    assert_eq!(
        store.find(key.id).await.unwrap().unwrap().last_used_at,
        Some(h0 + Duration::minutes(9))
    );
}
