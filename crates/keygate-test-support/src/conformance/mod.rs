//! The store conformance suite: what every [`KeyStore`] and
//! [`AuditStore`] must do, as async functions over any store, and the
//! macros that turn them into one `#[tokio::test]` each; and the same for
//! every [`CreditBank`](keygate_core::CreditBank) ([`bank`]).
//!
//! `MemoryStore` holds the reference semantics; the SQL stores and
//! wrappers such as keygate-redis's `InvalidatingStore` must behave alike.
//! A case writes only ids of its own, so each test needs a fresh store (the
//! fixtures in [`crate::fixture`] give one per test).
//!
//! [`KeyStore`]: keygate_core::KeyStore
//! [`AuditStore`]: keygate_core::AuditStore

pub mod audit;
pub mod bank;
pub mod credits;
pub mod lists;
pub mod usage;
pub mod writes;

use keygate_core::{Environment, IpNet, KeyHasher, KeyId, KeyRecord, Owner, Quota, Scopes};
use serde_json::json;
use time::{Duration, OffsetDateTime, macros::datetime};

/// An instant with microseconds, the precision stores keep.
pub(crate) const T0: OffsetDateTime = datetime!(2031-03-04 05:06:07.123456 UTC);

/// The key id `s`.
pub(crate) fn id(s: &str) -> KeyId {
    s.parse().expect("test ids are 10 letters and digits")
}

/// `n` seconds.
pub(crate) fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

/// A record with nothing optional set.
pub(crate) fn minimal(key: &str, owner: &Owner, created_at: OffsetDateTime) -> KeyRecord {
    KeyRecord {
        name: format!("key {key}"),
        ..crate::record(key, owner, created_at)
    }
}

/// A record with every field set to something a store could get wrong.
pub(crate) fn full(key: &str) -> KeyRecord {
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
    let metadata = metadata.as_object().cloned().expect("a JSON object");
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
        credit_account: Some(id("CreditAcct")),
    }
}

/// [`minimal`], for `user:someone`.
pub(crate) fn minimal_at(key: &str, created_at: OffsetDateTime) -> KeyRecord {
    minimal(key, &Owner::user("someone"), created_at)
}

/// Runs the whole conformance suite (key store and audit store) against one
/// store, as a module of `#[tokio::test]`s named `$backend`.
///
/// `$open` is an async fn returning `Option<`[`Fixture<S>`](crate::fixture::Fixture)`>`,
/// called once per test; `None` skips the test (a backend that is not
/// configured, outside CI). The calling crate needs `tokio` (with `macros`
/// and a runtime) among its dev-dependencies.
///
/// ```ignore
/// keygate_test_support::store_conformance!(memory, keygate_test_support::fixture::memory);
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($backend:ident, $open:path) => {
        $crate::__conformance_module!($backend, $open, writes, lists, usage, credits, audit);
    };
}

/// As [`store_conformance!`], for a store that is a [`KeyStore`](keygate_core::KeyStore)
/// but no [`AuditStore`](keygate_core::AuditStore): every case but the audit ones.
#[macro_export]
macro_rules! key_store_conformance {
    ($backend:ident, $open:path) => {
        $crate::__conformance_module!($backend, $open, writes, lists, usage, credits);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_module {
    ($backend:ident, $open:path, $($group:ident),+) => {
        mod $backend {
            $( $crate::__conformance_group!($group, $open); )+
        }
    };
}

/// The cases of each group, listed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_group {
    (writes, $open:path) => {
        $crate::__conformance_tests!(
            writes,
            $open,
            insert_then_find_round_trips_every_field,
            duplicate_insert_is_rejected_and_keeps_the_original,
            update_changes_only_the_fields_it_sets,
            update_never_undoes_a_revocation_or_extends_a_grace_period,
            concurrent_updates_and_a_revoke_all_land,
            rotate_supersedes_atomically_or_writes_nothing,
            rotations_racing_a_revoke_leave_no_orphan,
            revoke_sets_the_time_once_and_ignores_unknown_keys,
        );
    };
    (lists, $open:path) => {
        $crate::__conformance_tests!(
            lists,
            $open,
            created_by_survives_writes_and_lists_children_and_counts_live_keys,
            list_live_ids_lists_every_unrevoked_key_up_to_the_limit,
            list_by_owner_pages_newest_first_per_owner,
            list_expiring_is_soonest_first_without_revoked_or_unexpiring,
            list_keys_filters_by_owner_environment_and_status_and_pages,
        );
    };
    (usage, $open:path) => {
        $crate::__conformance_tests!(
            usage,
            $open,
            record_usage_accumulates_hourly_and_keeps_the_latest_use,
            usage_since_starts_at_the_hour_and_is_oldest_first,
            concurrent_usage_flushes_lose_nothing,
            reminders_are_claimed_once_per_key_and_threshold_until_given_back,
            refusals_are_counted_by_reason_and_are_not_uses,
        );
    };
    (credits, $open:path) => {
        $crate::__conformance_tests!(
            credits,
            $open,
            credits_follow_the_reference_rules,
            concurrent_charges_admit_exactly_the_balance,
        );
    };
    (audit, $open:path) => {
        $crate::__conformance_tests!(
            audit,
            $open,
            audit_round_trips_every_field_newest_first,
            audit_queries_filter_by_key_and_time_and_limit,
            audit_is_newest_first_by_time_then_latest_written,
            prune_audit_removes_exactly_the_older_events,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($group:ident, $open:path, $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                let Some(fixture) = $open().await else { return };
                $crate::conformance::$group::$case(&fixture.store).await;
            }
        )+
    };
}
