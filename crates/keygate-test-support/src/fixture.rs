//! Stores under test, fresh for every test and cleaned up afterwards even
//! when the test panics, and the records tests put in them.

use std::{
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use keygate_core::{
    Environment, KeyHasher, KeyId, KeyRecord, MemoryStore, Metadata, Owner, Scopes,
    time::OffsetDateTime,
};

/// A store under test, and what to clean up when the test ends.
pub struct Fixture<S> {
    /// The store.
    pub store: S,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl<S> Fixture<S> {
    /// `store`, with `cleanup` to run when the fixture is dropped.
    pub fn new(store: S, cleanup: impl FnOnce() + Send + 'static) -> Self {
        Self {
            store,
            cleanup: Some(Box::new(cleanup)),
        }
    }
}

impl<S> Drop for Fixture<S> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Fixture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A name unique to this test process and call: `{pid}_{run}_{n}`, where
/// `run` is the time the process first asked, so names never repeat across
/// runs either (tests must not depend on what earlier runs left).
pub fn unique_suffix() -> String {
    static RUN: OnceLock<u128> = OnceLock::new();
    static N: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            % 1_000_000_000_000
    });
    format!(
        "{}_{run}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A live key record for `owner` with nothing optional set: id and family
/// `key` (ten id characters), named after it, with the SHA-256 digest of
/// `key`.
pub fn record(key: &str, owner: &Owner, created_at: OffsetDateTime) -> KeyRecord {
    let id: KeyId = key.parse().expect("a ten-character key id");
    KeyRecord {
        id,
        family: id,
        owner: owner.clone(),
        name: key.to_owned(),
        scopes: Scopes::none(),
        environment: Environment::Live,
        digest: KeyHasher::sha256().digest(key),
        created_at,
        expires_at: None,
        revoked_at: None,
        rate_limit: None,
        allowed_ips: Vec::new(),
        metadata: Metadata::new(),
        last_used_at: None,
        superseded_by: None,
        created_by: None,
        credit_account: None,
    }
}

/// Now, to the microsecond the SQL stores keep.
pub fn now_us() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("a valid nanosecond")
}

/// A fresh memory store (never skipped).
#[expect(clippy::unused_async, reason = "the shape every fixture has")]
pub async fn memory() -> Option<Fixture<MemoryStore>> {
    Some(Fixture::new(MemoryStore::new(), || {}))
}

/// A SQLite database file in the temporary directory, named uniquely,
/// removed (with its WAL, shared-memory and journal files) on drop.
#[derive(Debug)]
pub struct TempSqlite(PathBuf);

impl TempSqlite {
    /// A new name `{label}_{unique}.db`; the file is created by whoever
    /// connects to [`url`](Self::url).
    pub fn new(label: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{label}_{}.db", unique_suffix())))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `sqlite://{path}`.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}
