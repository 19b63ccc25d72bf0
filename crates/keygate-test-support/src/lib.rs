//! What keygate's tests, benches and fuzz targets share, written once: the
//! store conformance suite, a configurable failing store, fresh store
//! fixtures, the rule for test servers named by environment variables,
//! hand-made keys, a whole-response [`Reply`](reply::Reply) and the bench
//! helpers. Not published.
//!
//! | feature | adds |
//! |---|---|
//! | `sqlx` | [`sql`]: SQLite and PostgreSQL fixtures and connection helpers |
//! | `redis` | [`redis`]: the test Redis and an `InvalidatingStore` fixture |
//! | `http` | [`reply`]: [`Reply`](reply::Reply) |
//! | `bench` | [`bench`](mod@bench): runtime, app, requests, criterion settings |
//!
//! A crate that depends on this one for its own integration tests gets the
//! same library as the tests (a dev-dependency cycle is fine there); its
//! unit tests cannot use it, as they see a second copy of the crate.

pub mod conformance;
pub mod env;
pub mod fixture;
pub mod form;
pub mod key;
pub mod store;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "http")]
pub mod reply;
#[cfg(feature = "sqlx")]
pub mod sql;

pub use fixture::{Fixture, record};
pub use store::{Failure, Op, TestStore};
