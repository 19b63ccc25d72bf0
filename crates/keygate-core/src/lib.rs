//! The core of [keygate](https://docs.rs/keygate): everything about API keys
//! that needs no HTTP.
//!
//! * [`KeyFormat`] — `{prefix}_{live|test}_{id}{secret}{checksum}` keys from
//!   the OS CSPRNG, parsed without allocation;
//! * [`KeyHasher`] — SHA-256 or HMAC-SHA-256 digests, compared in constant time;
//! * [`Scope`], [`Scopes`] — what a key may do;
//! * [`KeyRecord`], [`KeyStore`], [`MemoryStore`] — what is stored, and where;
//! * [`Verifier`] — the cache in front of the store, and the checks;
//! * [`RateLimiter`], [`GovernorLimiter`], [`Quota`], [`Quotas`] — per-key
//!   limits, one quota or several;
//! * [`CreditBank`], [`StoreCredits`], [`Refill`] — usage credits that
//!   metered keys spend, with refills;
//! * [`KeyManager`] — issuing, listing, updating and revoking keys;
//!   [`KeyView`] — a key as people and scripts are shown it;
//! * [`may_grant`], [`Grantor`], [`Limits`] — what a delegating key may hand
//!   out, and the caps every key obeys.
//!
//! Most applications use these through the `keygate` crate's layer;
//! store implementations (`keygate-sqlx`, `keygate-redis`) depend on this
//! crate only.
//!
//! ```
//! use keygate_core::{Environment, KeyFormat, KeyHasher};
//!
//! let format = KeyFormat::new("acme")?;
//! let key = format.generate(Environment::Live)?;
//! assert!(key.expose_secret().starts_with("acme_live_"));
//!
//! // Parsing checks syntax and checksum without I/O or allocation.
//! let parsed = format.parse(key.expose_secret())?;
//! assert_eq!(parsed.id(), key.id());
//!
//! // Stores keep the digest, never the key.
//! let digest = KeyHasher::sha256().digest(key.expose_secret());
//! assert!(digest.ct_eq(&KeyHasher::sha256().digest(parsed.expose_secret())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The workspace lint is `deny` so one allocation-counting test can
// implement `GlobalAlloc`; library code stays free of `unsafe`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod audit;
mod clock;
mod credits;
mod error;
mod grant;
mod hash;
mod key;
mod limit;
mod manage;
mod periodic;
mod quota;
mod reconnect;
mod record;
mod remind;
mod scope;
mod store;
mod sync;
#[cfg(test)]
mod test_util;
mod time_range;
mod usage;
mod verify;
mod view;

pub use audit::{
    AUDIT_TARGET, AuditAction, AuditConfig, AuditEvent, AuditLog, AuditQuery, AuditStore,
    DynAuditStore,
};
pub use clock::{Clock, FakeClock, SystemClock};
pub use credits::{
    Applied, BalanceChange, Charge, CreditAccount, CreditBalance, CreditBank, CreditHints,
    CreditOp, CreditOutcome, CreditUpdate, EXHAUSTED_HINT_TTL, InvalidRefill, MAX_COST,
    MAX_CREDITS, Refill, RefillInterval, StoreCredits,
};
pub use error::{BoxError, StoreError};
pub use grant::{
    Cap, GrantDimension, GrantViolation, Grantor, KeySettings, Limits, may_grant,
    may_grant_environment, ungrantable_scopes,
};
pub use hash::{InvalidDigest, KeyDigest, KeyHasher, WeakPepper};
pub use key::{
    CHECKSUM_LEN, Environment, ID_LEN, InvalidPrefix, KeyFormat, KeyId, MAX_PREFIX_LEN,
    ParseEnvironmentError, ParseError, ParseKeyIdError, ParsedKey, PlaintextKey, RandomnessError,
    SECRET_LEN,
};
pub use limit::{
    Check, Decision, Gcra, GovernorLimiter, LimiterUnavailable, PendingCheck, RateLimiter,
};
pub use manage::{CreatedKey, KeyManager, KeyUpdate, ManageError, NewKey};
pub use quota::{InvalidQuota, Quota, Quotas};
pub use reconnect::Backoff;
pub use record::{InvalidOwner, KeyInfo, KeyRecord, KeyStatus, Metadata, Owner, parse_allowed_net};
pub use remind::{Notifier, Reminder, ReminderKind, ReminderPolicy, ReminderReport};
pub use scope::{InvalidScope, MAX_SCOPE_LEN, Scope, Scopes};
pub use store::{
    BoxFuture, Cursor, DEFAULT_EXPIRY_WARNING, DynKeyStore, InvalidCursor, InvalidStatusFilter,
    KeyFilter, KeyStore, MemoryStore, Page, Replacement, Rotation, StatusFilter,
};
pub use time_range::{
    MAX_TIME, MIN_TIME, TimeOutOfRange, checked_after, checked_utc, from_unix_micros, to_micros,
    unix_micros,
};
pub use usage::{
    Invalidation, InvalidationFeed, RefusalKind, Refusals, UsageBucket, UsageDelta, usage_bucket,
};
pub use verify::{
    CacheConfig, CachedKey, Checked, Denied, Loaded, Lookup, Pending, PendingVerification,
    Verification, Verifier,
};
pub use view::{CreditsView, KeyView};

pub use ipnet::IpNet;
pub use time;
