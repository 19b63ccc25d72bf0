//! Redis backends for [keygate](https://docs.rs/keygate): rate limits shared
//! by every node, and cache invalidation for stores without a feed.
//!
//! * [`RedisLimiter`] — a distributed GCRA (the algorithm governor runs in
//!   process), one atomic Lua script per decision, with the time taken from
//!   Redis. Several limits per key ([`Quotas`](keygate_core::Quotas)) are
//!   checked all-or-nothing in the same script. A
//!   [timeout](RedisLimiterBuilder::timeout)
//!   on every decision, a [`FallbackPolicy`] for when Redis fails, and a
//!   circuit breaker so an outage adds no latency.
//! * [`RedisInvalidation`], [`InvalidatingStore`] — publish and subscribe to
//!   key invalidations over Redis pub/sub, so a key revoked on one node is
//!   dropped from every node's cache.
//! * [`RedisCredits`] — a [`CreditBank`](keygate_core::CreditBank): usage
//!   credit balances in Redis hashes, one atomic Lua script per charge,
//!   refund, read or update, following exactly the rules of the key-store
//!   bank, so `N` credits admit at most `N` requests across every node.
//!   Redis must persist its data (AOF or RDB): balances have no TTL and no
//!   other copy.
//!
//! The crate re-exports [`redis`], so the client and its settings need no
//! dependency of their own.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use keygate_core::{Check, KeyId, Quota, Quotas, RateLimiter};
//! use keygate_redis::{FallbackPolicy, RedisLimiter};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RedisLimiter::builder(redis::Client::open("redis://127.0.0.1/")?)
//!     .key_prefix("myapp:rl")
//!     .timeout(Duration::from_millis(5))
//!     .fallback(FallbackPolicy::Local)
//!     .build()?;
//! limiter.ping().await?; // optional: fail fast at startup
//!
//! // Give it to keygate: `Keygate::builder(store).rate_limiter(limiter.clone())`.
//! // The layer calls it like this:
//! let family: KeyId = "Ab3Cd5Ef7G".parse()?;
//! let check = async |quotas: Quotas| match limiter.check(family, &quotas) {
//!     Check::Ready(decision) => decision,
//!     // A future: the round trip to Redis.
//!     Check::Pending(pending) => pending.await,
//! };
//! let decision = check(Quota::per_second(100).into()).await?;
//! assert!(decision.allowed);
//!
//! // Several limits at once: charged only if all admit the request.
//! let decision = check(Quota::per_second(10).and(Quota::per_hour(1_000))).await?;
//! println!("{} left, retry after {:?}", decision.remaining, decision.retry_after);
//! # Ok(()) }
//! ```
//!
//! Usage credits in Redis, shared by every node of a service:
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//!
//! use keygate_core::{CreditBank, CreditUpdate, KeyId, Refill, time::OffsetDateTime};
//! use keygate_redis::RedisCredits;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bank = RedisCredits::builder(redis::Client::open("redis://127.0.0.1/")?)
//!     .key_prefix("myapp") // accounts are `myapp:credits:<account>`
//!     .timeout(Duration::from_millis(50))
//!     .build()?;
//! bank.ping().await?; // optional: fail fast at startup
//!
//! // Give it to keygate: `KeyManager::with_credit_bank(Arc::new(bank))`, and
//! // the same bank to the layer's builder (`.credit_bank(..)`).
//! let bank: Arc<dyn CreditBank> = Arc::new(bank);
//! let account: KeyId = "Ab3Cd5Ef7G".parse()?;
//! let now = OffsetDateTime::now_utc();
//! let opened = CreditUpdate::set(1_000).with_refill(Some(Refill::monthly(1_000)?));
//! bank.update(account, &opened, now).await?;
//! // What the layer does per metered request:
//! if let Some(charge) = bank.charge(account, 1, now).await? {
//!     println!("admitted: {}, {} left", charge.admitted, charge.remaining);
//! }
//! # Ok(()) }
//! ```

// The workspace lint is `deny` so one allocation-counting test can
// implement `GlobalAlloc`; library code stays free of `unsafe`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod breaker;
mod credits;
mod gcra;
mod invalidation;
mod limiter;

use std::time::Duration;

pub use credits::{
    DEFAULT_CREDITS_KEY_PREFIX, DEFAULT_CREDITS_TIMEOUT, RedisCredits, RedisCreditsBuilder,
};
pub use invalidation::{DEFAULT_CHANNEL, InvalidatingStore, RedisInvalidation};
pub use limiter::{
    DEFAULT_COOLDOWN, DEFAULT_FAILURE_THRESHOLD, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT,
    FallbackPolicy, LimiterStats, RedisLimiter, RedisLimiterBuilder,
};
pub use redis;

/// What can go wrong in this crate. When Redis cannot make a rate-limit
/// decision and the policy is [`FallbackPolicy::Reject`], the error is the
/// source of the [`LimiterUnavailable`](keygate_core::LimiterUnavailable);
/// when [`RedisCredits`] cannot carry out an operation, of the
/// [`StoreError::Unavailable`](keygate_core::StoreError::Unavailable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis answered with an error, or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis was not asked: it failed repeatedly and is skipped for a
    /// cooldown.
    #[error("redis is skipped after repeated failures (circuit breaker open)")]
    CircuitOpen,
    /// The rate-limit script answered something it never answers (another
    /// program wrote to its keys?). The credit bank reports such replies as
    /// [`StoreError::Corrupt`](keygate_core::StoreError::Corrupt) instead.
    #[error("unexpected reply from the rate-limit script")]
    UnexpectedReply,
    /// The key prefix contains `{` or `}`, which would break the keys' hash
    /// tag.
    #[error("key prefix {0:?} may not contain `{{` or `}}`")]
    InvalidKeyPrefix(String),
    /// Called outside a tokio runtime, which the connection's tasks need.
    #[error("keygate-redis needs a tokio runtime; call this from within one")]
    NoRuntime,
}
