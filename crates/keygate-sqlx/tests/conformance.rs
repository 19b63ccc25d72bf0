//! One suite, every store: the SQL stores must behave as `MemoryStore`
//! (the reference semantics, checked in keygate-core's own tests) does.
//! The suite lives in `keygate_test_support::conformance`.
//!
//! PostgreSQL tests run against `KEYGATE_TEST_POSTGRES_URL`, each in a fresh
//! schema; without the variable they print `skipped <test>: …` and pass (outside CI).

keygate_test_support::store_conformance!(sqlite, keygate_test_support::sql::sqlite);
keygate_test_support::store_conformance!(postgres, keygate_test_support::sql::postgres);
