//! The store conformance suite on `MemoryStore`, whose behaviour is the
//! reference every other store is held to.

keygate_test_support::store_conformance!(memory, keygate_test_support::fixture::memory);
