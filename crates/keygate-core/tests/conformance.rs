//! The store conformance suite on `MemoryStore`, whose behaviour is the
//! reference every other store is held to.

keygate_test_support::store_conformance!(memory, keygate_test_support::fixture::memory);

// The credit-bank cases on `StoreCredits` over `MemoryStore`: the reference
// keygate-redis's `RedisCredits` is held to.
keygate_test_support::bank_conformance!(
    memory_bank,
    keygate_test_support::conformance::bank::memory
);
