//! Helpers the crate's unit tests share.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;

use crate::{
    Clock, Environment, InvalidationFeed, KeyFormat, KeyHasher, KeyId, KeyManager, KeyRecord,
    KeyStore, KeyUpdate, MemoryStore, Owner, Page, Replacement, Rotation, Scopes, StoreError,
    UsageBucket, UsageDelta, sync::lock,
};

/// A fresh live key from `format`, and its record (owner `user:u1`, scope
/// `read`, digest by `hasher`); the key is returned in the clear.
pub(crate) fn record(format: &KeyFormat, hasher: &KeyHasher) -> (String, KeyRecord) {
    let key = format.generate(Environment::Live).unwrap();
    let now = OffsetDateTime::now_utc();
    let rec = KeyRecord {
        id: key.id(),
        family: key.id(),
        owner: Owner::user("u1"),
        name: "test".into(),
        scopes: Scopes::parse_list("read").unwrap(),
        environment: Environment::Live,
        digest: hasher.digest(key.expose_secret()),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        rate_limit: None,
        allowed_ips: vec![],
        metadata: Default::default(),
        last_used_at: None,
        superseded_by: None,
        created_by: None,
        credit_account: None,
    };
    (key.expose_secret().to_owned(), rec)
}

/// A memory store that counts lookups, can be slowed down, can fail, and
/// can offer an invalidation feed.
#[derive(Default)]
pub(crate) struct TestStore {
    inner: MemoryStore,
    /// Lookups asked of the store.
    pub(crate) finds: AtomicUsize,
    delay: Duration,
    /// While set, lookups and usage writes fail as unavailable.
    pub(crate) down: AtomicBool,
    feed: Mutex<Option<InvalidationFeed>>,
}

impl TestStore {
    /// A store whose every lookup takes `delay`.
    pub(crate) fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// A store whose `subscribe` hands out `feed`, once.
    pub(crate) fn with_feed(feed: InvalidationFeed) -> Self {
        Self {
            feed: Mutex::new(Some(feed)),
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("connection refused"))
        } else {
            Ok(())
        }
    }
}

impl KeyStore for TestStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.check()?;
        self.inner.find(id).await
    }
    async fn insert(&self, r: &KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(r).await
    }
    async fn update(&self, id: KeyId, c: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        self.inner.update(id, c).await
    }
    async fn rotate(&self, id: KeyId, r: &Replacement) -> Result<Rotation, StoreError> {
        self.inner.rotate(id, r).await
    }
    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_created_by(family).await
    }
    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.revoke(id, at).await
    }
    async fn list_by_owner(&self, o: &Owner, p: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_by_owner(o, p).await
    }
    async fn list_keys(
        &self,
        filter: &crate::KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys(filter, now, page).await
    }
    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_expiring(before, limit).await
    }
    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_usage(batch).await
    }
    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.inner.usage(family, since).await
    }
    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.claim_reminder(id, threshold, at).await
    }
    async fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.inner.release_reminder(id, threshold).await
    }
    async fn credits(
        &self,
        account: KeyId,
        op: crate::CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<crate::CreditOutcome>, StoreError> {
        self.check()?;
        self.inner.credits(account, op, now).await
    }
    fn subscribe(&self) -> Option<InvalidationFeed> {
        lock(&self.feed).take()
    }
}

/// Waits (at most 5 s) for a background task's effect, then fails.
pub(crate) async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "background work did not happen"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A manager of `t_` keys (SHA-256) over a fresh memory store, telling time
/// by `clock`; the store is shared with the manager.
pub(crate) fn manager(clock: Arc<dyn Clock>) -> (KeyManager, MemoryStore) {
    let store = MemoryStore::new();
    let m = KeyManager::new(
        Arc::new(store.clone()),
        KeyFormat::new("t").unwrap(),
        KeyHasher::sha256(),
        clock,
    );
    (m, store)
}
