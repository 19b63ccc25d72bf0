//! `InvalidatingStore` is a store like any other: the key-store
//! conformance suite on a memory store wrapped in one, publishing on a
//! channel of each test's own.
//!
//! Needs `KEYGATE_TEST_REDIS_URL`; without it each test prints
//! `skipped <test>: …` and passes (outside CI).

keygate_test_support::key_store_conformance!(
    invalidating,
    keygate_test_support::redis::invalidating
);
