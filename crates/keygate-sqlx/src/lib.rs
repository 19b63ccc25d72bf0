//! SQLite and PostgreSQL key stores for [keygate](https://docs.rs/keygate).
//!
//! * [`SqliteStore`] — the embedded default: one file, no server; processes
//!   sharing the file (a server and the `keygate` CLI) see each other's key
//!   changes through a polled change log;
//! * [`PostgresStore`] — for services on several nodes, with cross-node
//!   cache invalidation over LISTEN/NOTIFY (see [`KeyStore::subscribe`](keygate_core::KeyStore::subscribe)).
//!
//! Both implement [`keygate_core::KeyStore`] and, for the persisted audit
//! trail that [`AuditLog`](keygate_core::AuditLog) writes,
//! [`keygate_core::AuditStore`]; both ship their migrations inside
//! the crate (run them with `migrate()`, which records what it applied in
//! its own `keygate_migrations` table), and keep digests, never keys. Both
//! pass the same conformance suite as [`keygate_core::MemoryStore`].
//!
//! ```
//! use std::sync::Arc;
//!
//! use keygate_core::{KeyFormat, KeyHasher, KeyManager, NewKey, Owner, Scope, SystemClock};
//! use keygate_sqlx::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A file path works the same: `SqliteStore::open("keygate.db")`.
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//!
//! let keys = KeyManager::new(
//!     Arc::new(store),
//!     KeyFormat::new("acme")?,
//!     KeyHasher::sha256(),
//!     Arc::new(SystemClock),
//! );
//! let created = keys
//!     .create(NewKey::new(Owner::user("42"), "laptop").scopes([Scope::READ]))
//!     .await?;
//! // The plaintext is in `created.key`, once; the store has its digest.
//! let stored = keys.get(created.record.id).await?.expect("just created");
//! assert_eq!(stored, created.record);
//!
//! let revoked = keys.revoke(stored.id).await?;
//! assert!(revoked.is_revoked());
//! # Ok(())
//! # }
//! ```
//!
//! With PostgreSQL, every node shares the keys, and a revocation on one node
//! reaches the others' caches within the notification's latency:
//!
//! ```no_run
//! use keygate_core::KeyStore;
//! use keygate_sqlx::PostgresStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect("postgres://keygate@db.internal/app").await?;
//! store.migrate().await?;
//! // keygate calls this once when the layer is built; each message tells
//! // the cache which key to drop (or to drop everything).
//! let mut feed = store.subscribe().expect("inside a tokio runtime");
//! while let Some(invalidation) = feed.recv().await {
//!     println!("{invalidation:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//!
//! `keygate_keys` holds one row per key (id, family, owner, name, scopes,
//! environment, 32-byte digest, created/expires/revoked/last-used times,
//! rate limit as text such as `100/s`, allowed networks, metadata JSON,
//! superseded-by id), indexed by id, by `(owner, created_at desc, id desc)`
//! for listings, and by expiry for keys that are not revoked.
//! `keygate_usage` holds requests per (key family, hour). `keygate_audit`
//! holds audit events (time, action, outcome, detail, key id, actor, method,
//! path, client address; never a key), indexed by `(key_id, at)` and by `at`.
//! Times keep microseconds, the precision
//! [`KeyManager`](keygate_core::KeyManager) issues them with.
//!
//! # Drivers
//!
//! This crate re-exports [`sqlx`] (0.9) so you can build pools with exactly
//! the version it uses. It enables the `runtime-tokio`, bundled SQLite and
//! PostgreSQL features and no TLS; to reach PostgreSQL over TLS, enable a
//! TLS feature of `sqlx` in your own `Cargo.toml` (Cargo merges features).
//! No compile-time checked queries are used: building needs no database.

// The workspace lint is `deny` so one allocation-counting test can
// implement `GlobalAlloc`; library code stays free of `unsafe`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// The columns of `keygate_keys`, in the order statements bind them.
macro_rules! key_columns {
    () => {
        "id, family, owner, name, scopes, environment, digest, created_at, expires_at, \
         revoked_at, rate_limit, allowed_ips, metadata, last_used_at, superseded_by, created_by, \
         credit_account"
    };
}

/// The columns of `keygate_usage` a `UsageBucket` is read from, and the
/// counts a `UsageDelta` adds, in [`RefusalKind::ALL`](keygate_core::RefusalKind::ALL)'s order.
macro_rules! usage_columns {
    () => {
        "bucket, requests, refused_revoked, refused_expired, refused_forbidden, \
         refused_rate_limited, refused_usage_exceeded"
    };
}

/// The columns of `keygate_audit` an `AuditEvent` is written to, in the
/// order statements bind them.
macro_rules! audit_columns {
    () => {
        "at, action, outcome, detail, key_id, actor, method, path, peer"
    };
}

mod convert;
mod credits;
mod listen;
mod poll;
mod postgres;
mod query;
mod row;
mod sqlite;

pub use postgres::{DEFAULT_CHANNEL, InvalidSchema, MAX_SCHEMA_LEN, PostgresStore};
pub use sqlite::{DEFAULT_POLL_INTERVAL, SqliteStore};
pub use sqlx;
