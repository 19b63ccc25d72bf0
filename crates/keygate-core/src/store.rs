//! The storage boundary: [`KeyStore`], and its in-memory implementation.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    str::FromStr,
    sync::{Arc, RwLock},
};

use time::OffsetDateTime;

use crate::{
    InvalidationFeed, KeyDigest, KeyId, KeyRecord, KeyUpdate, Owner, StoreError, UsageBucket,
    UsageDelta,
};

/// A boxed, `Send` future, as used by [`DynKeyStore`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where in a newest-first listing to continue: the last record of the
/// previous page. Its text form (`{unix-nanos}.{id}`) is what HTTP and CLI
/// listings hand out as an opaque cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// `created_at` of the last record seen.
    pub created_at: OffsetDateTime,
    /// `id` of the last record seen (breaks ties between equal timestamps).
    pub id: KeyId,
}

impl Cursor {
    /// The cursor that continues after `record`.
    pub fn after(record: &KeyRecord) -> Self {
        Self {
            created_at: record.created_at,
            id: record.id,
        }
    }

    /// Whether `record` comes after this cursor in newest-first order.
    pub fn precedes(&self, record: &KeyRecord) -> bool {
        (record.created_at, record.id) < (self.created_at, self.id)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at.unix_timestamp_nanos(), self.id)
    }
}

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (nanos, id) = s.split_once('.').ok_or(InvalidCursor(()))?;
        let nanos: i128 = nanos.parse().map_err(|_| InvalidCursor(()))?;
        // Only times a record can have: a cursor is handed back to stores.
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .filter(|t| crate::checked_utc(*t).is_ok())
            .ok_or(InvalidCursor(()))?;
        Ok(Self {
            created_at,
            id: id.parse().map_err(|_| InvalidCursor(()))?,
        })
    }
}

/// The error returned for a cursor that was not produced by [`Cursor`]'s `Display`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid page cursor")]
pub struct InvalidCursor(());

/// One page of a listing: at most `limit` records, newest first, after
/// `cursor` if given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Most records to return.
    pub limit: usize,
    /// Continue after this record.
    pub cursor: Option<Cursor>,
}

impl Page {
    /// The first `limit` records.
    pub fn first(limit: usize) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::first(100)
    }
}

/// Where keys live: by id for the request path, by owner for management.
///
/// Implementations hold digests, never keys. A store's methods are only
/// called off the hot path: the layer's cache answers warm requests.
///
/// The trait uses `impl Future` methods so stores need no boxing; keygate
/// erases the type through [`DynKeyStore`], which every `KeyStore` implements.
pub trait KeyStore: Send + Sync + 'static {
    /// The record with this id, revoked or not.
    fn find(&self, id: KeyId)
    -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Adds a new record.
    ///
    /// Returns [`StoreError::Duplicate`] if the id is taken.
    fn insert(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Changes the fields set in `changes`, and only those, in one atomic
    /// write, and returns the record as the write left it. The
    /// [`created_by`](KeyRecord::created_by) of a key is written once, by
    /// [`insert`](Self::insert), and never changes.
    ///
    /// Implementations must apply exactly [`KeyUpdate::apply_to`]'s rules
    /// in the store itself (a conditional `UPDATE`, not a read and a write
    /// back): `revoked_at`, `superseded_by` and every field `changes` does
    /// not set stay as they are *at the time of the write*, so a concurrent
    /// revocation or rotation is never undone, and a rotated key's expiry is
    /// never moved past the end of its grace period.
    ///
    /// Returns [`StoreError::NotFound`] if there is no key with this id.
    fn update(
        &self,
        id: KeyId,
        changes: &KeyUpdate,
    ) -> impl Future<Output = Result<KeyRecord, StoreError>> + Send;

    /// Replaces the key `id` by a new one, atomically: if, at the time of
    /// the write, the key is neither revoked, nor expired at
    /// `replacement.at`, nor already rotated, inserts the new record and
    /// marks the old one superseded, both as [`Replacement::apply`] says, in
    /// one transaction. Otherwise writes nothing and answers
    /// [`Rotation::NotRotatable`].
    ///
    /// Returns [`StoreError::NotFound`] if there is no key with this id, and
    /// [`StoreError::Duplicate`] (having written nothing) if the new id is
    /// taken.
    fn rotate(
        &self,
        id: KeyId,
        replacement: &Replacement,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;

    /// Marks a key revoked at `at` and returns the updated record; a key
    /// already revoked keeps its first revocation time. `Ok(None)` if there is
    /// no such key.
    fn revoke(
        &self,
        id: KeyId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// One page of an owner's keys, newest first (by `created_at`, then id),
    /// revoked ones included.
    fn list_by_owner(
        &self,
        owner: &Owner,
        page: Page,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Keys that are not revoked and expire at or before `before` (expired
    /// ones included), soonest first, at most `limit`.
    fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Adds a batch of usage counts: each delta's `requests` to its family's
    /// hourly bucket, and `last_used_at` to its key (keeping the later time).
    fn record_usage(
        &self,
        batch: &[UsageDelta],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A key family's hourly usage from `since` on, oldest first.
    fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<UsageBucket>, StoreError>> + Send;

    /// How many of `owner`'s keys are neither revoked nor expired at `now`,
    /// for [`Limits::max_keys_per_owner`](crate::Limits::max_keys_per_owner).
    ///
    /// The default pages through [`list_by_owner`](Self::list_by_owner);
    /// stores that can count in one query should.
    fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut count = 0;
            let mut page = Page::first(500);
            loop {
                let records = self.list_by_owner(owner, page).await?;
                count += records
                    .iter()
                    .filter(|r| !r.is_revoked() && !r.is_expired_at(now))
                    .count() as u64;
                match records.last() {
                    Some(last) if records.len() == page.limit => {
                        page.cursor = Some(Cursor::after(last));
                    }
                    _ => return Ok(count),
                }
            }
        }
    }

    /// Every key whose [`created_by`](KeyRecord::created_by) is `family`,
    /// revoked ones included, so that revoking a key can revoke the keys it
    /// created. Required, with no default: a store that found none would
    /// silently let a revoked key's children live on.
    fn list_created_by(
        &self,
        family: KeyId,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// The ids of keys that are not revoked, at most `limit`. The verifier
    /// reads them once at start, so that a flood of forged ids right after a
    /// restart does not shut out real keys this process has not yet seen
    /// (see [`CacheConfig::max_unknown_lookups`](crate::CacheConfig::max_unknown_lookups)).
    ///
    /// The default lists none: such a store's keys are known only once they
    /// have been looked up, created or announced.
    fn list_live_ids(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyId>, StoreError>> + Send {
        let _ = limit;
        async { Ok(Vec::new()) }
    }

    /// Subscribes to invalidations that other processes publish when they
    /// change keys in this store, so their revocations reach this process's
    /// cache. Called once, from within a tokio runtime, when a `Keygate` is
    /// built. Stores shared by one process only return `None` (the default).
    ///
    /// A feed that loses messages must send [`Invalidation::All`](crate::Invalidation::All)
    /// when it recovers.
    fn subscribe(&self) -> Option<InvalidationFeed> {
        None
    }
}

/// The object-safe form of [`KeyStore`], implemented for every `KeyStore`.
///
/// Use it to hold a store as `Arc<dyn DynKeyStore>`.
pub trait DynKeyStore: Send + Sync + 'static {
    /// See [`KeyStore::find`].
    fn find(&self, id: KeyId) -> BoxFuture<'_, Result<Option<KeyRecord>, StoreError>>;
    /// See [`KeyStore::insert`].
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::update`].
    fn update<'a>(
        &'a self,
        id: KeyId,
        changes: &'a KeyUpdate,
    ) -> BoxFuture<'a, Result<KeyRecord, StoreError>>;
    /// See [`KeyStore::rotate`].
    fn rotate<'a>(
        &'a self,
        id: KeyId,
        replacement: &'a Replacement,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>>;
    /// See [`KeyStore::revoke`].
    fn revoke(
        &self,
        id: KeyId,
        at: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<KeyRecord>, StoreError>>;
    /// See [`KeyStore::list_by_owner`].
    fn list_by_owner<'a>(
        &'a self,
        owner: &'a Owner,
        page: Page,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>>;
    /// See [`KeyStore::list_expiring`].
    fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;
    /// See [`KeyStore::record_usage`].
    fn record_usage<'a>(&'a self, batch: &'a [UsageDelta])
    -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`KeyStore::usage`].
    fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Vec<UsageBucket>, StoreError>>;
    /// See [`KeyStore::subscribe`].
    fn subscribe(&self) -> Option<InvalidationFeed>;
    /// See [`KeyStore::count_active_by_owner`].
    fn count_active_by_owner<'a>(
        &'a self,
        owner: &'a Owner,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// See [`KeyStore::list_created_by`].
    fn list_created_by(&self, family: KeyId) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>>;
    /// See [`KeyStore::list_live_ids`].
    fn list_live_ids(&self, limit: usize) -> BoxFuture<'_, Result<Vec<KeyId>, StoreError>>;
}

impl<S: KeyStore> DynKeyStore for S {
    fn find(&self, id: KeyId) -> BoxFuture<'_, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::find(self, id))
    }
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::insert(self, record))
    }
    fn update<'a>(
        &'a self,
        id: KeyId,
        changes: &'a KeyUpdate,
    ) -> BoxFuture<'a, Result<KeyRecord, StoreError>> {
        Box::pin(KeyStore::update(self, id, changes))
    }
    fn rotate<'a>(
        &'a self,
        id: KeyId,
        replacement: &'a Replacement,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>> {
        Box::pin(KeyStore::rotate(self, id, replacement))
    }
    fn revoke(
        &self,
        id: KeyId,
        at: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::revoke(self, id, at))
    }
    fn list_by_owner<'a>(
        &'a self,
        owner: &'a Owner,
        page: Page,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_by_owner(self, owner, page))
    }
    fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_expiring(self, before, limit))
    }
    fn record_usage<'a>(
        &'a self,
        batch: &'a [UsageDelta],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(KeyStore::record_usage(self, batch))
    }
    fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Vec<UsageBucket>, StoreError>> {
        Box::pin(KeyStore::usage(self, family, since))
    }
    fn subscribe(&self) -> Option<InvalidationFeed> {
        KeyStore::subscribe(self)
    }
    fn count_active_by_owner<'a>(
        &'a self,
        owner: &'a Owner,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(KeyStore::count_active_by_owner(self, owner, now))
    }
    fn list_created_by(&self, family: KeyId) -> BoxFuture<'_, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_created_by(self, family))
    }
    fn list_live_ids(&self, limit: usize) -> BoxFuture<'_, Result<Vec<KeyId>, StoreError>> {
        Box::pin(KeyStore::list_live_ids(self, limit))
    }
}

/// The new key of a [`KeyStore::rotate`]: what is new about it. Everything
/// else (owner, name, scopes, environment, quotas, allowlist, metadata,
/// expiry, family) is copied from the old key as the store holds it at the
/// time of the write.
#[derive(Clone, Debug, PartialEq)]
pub struct Replacement {
    /// The new key's id.
    pub id: KeyId,
    /// The new key's digest.
    pub digest: KeyDigest,
    /// Now: the new key's creation time; the old key must not be expired
    /// at this instant.
    pub at: OffsetDateTime,
    /// The end of the old key's grace period: its expiry becomes the
    /// earlier of its own and this.
    pub grace_end: OffsetDateTime,
}

impl Replacement {
    /// The rule every store applies: `Some((old, new))` with the old record
    /// as rotation leaves it and the new record, or `None` if `old` is
    /// revoked, expired at [`at`](Self::at) or already rotated.
    pub fn apply(&self, old: &KeyRecord) -> Option<(KeyRecord, KeyRecord)> {
        if old.revoked_at.is_some() || old.superseded_by.is_some() || old.is_expired_at(self.at) {
            return None;
        }
        let new = KeyRecord {
            id: self.id,
            digest: self.digest,
            created_at: self.at,
            last_used_at: None,
            superseded_by: None,
            revoked_at: None,
            ..old.clone()
        };
        let mut old = old.clone();
        old.superseded_by = Some(self.id);
        old.expires_at = Some(
            old.expires_at
                .map_or(self.grace_end, |at| at.min(self.grace_end)),
        );
        Some((old, new))
    }
}

/// What [`KeyStore::rotate`] did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
// Returned once per rotation and matched at once, never stored: boxing the
// records would only add allocations.
#[allow(clippy::large_enum_variant)]
pub enum Rotation {
    /// The new key is stored and the old one superseded, as they are now.
    Rotated {
        /// The old key, superseded, with its grace expiry.
        old: KeyRecord,
        /// The new key.
        new: KeyRecord,
    },
    /// Nothing was written: the key, as it is now, is revoked, expired or
    /// already rotated.
    NotRotatable(KeyRecord),
}

/// Keys in process memory: for tests, examples and single-process services
/// that create their keys at start.
///
/// Clones share the same keys.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    by_id: HashMap<KeyId, KeyRecord>,
    by_owner: HashMap<Owner, Vec<KeyId>>,
    usage: HashMap<(KeyId, OffsetDateTime), u64>,
    audit: Vec<crate::AuditEvent>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys held, revoked ones included.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryInner> {
        crate::sync::read(&self.inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryInner> {
        crate::sync::write(&self.inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .finish()
    }
}

impl KeyStore for MemoryStore {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.read().by_id.get(&id).cloned())
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut inner = self.write();
        if inner.by_id.contains_key(&record.id) {
            return Err(StoreError::Duplicate(record.id));
        }
        inner
            .by_owner
            .entry(record.owner.clone())
            .or_default()
            .push(record.id);
        inner.by_id.insert(record.id, record.clone());
        Ok(())
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        let mut inner = self.write();
        let record = inner.by_id.get_mut(&id).ok_or(StoreError::NotFound(id))?;
        changes.apply_to(record);
        Ok(record.clone())
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        // One write lock: nothing else changes either key meanwhile.
        let mut inner = self.write();
        let old = inner.by_id.get(&id).ok_or(StoreError::NotFound(id))?;
        let Some((old, new)) = replacement.apply(old) else {
            return Ok(Rotation::NotRotatable(old.clone()));
        };
        if inner.by_id.contains_key(&new.id) {
            return Err(StoreError::Duplicate(new.id));
        }
        inner
            .by_owner
            .entry(new.owner.clone())
            .or_default()
            .push(new.id);
        inner.by_id.insert(new.id, new.clone());
        inner.by_id.insert(old.id, old.clone());
        Ok(Rotation::Rotated { old, new })
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        let mut inner = self.write();
        Ok(inner.by_id.get_mut(&id).map(|r| {
            r.revoked_at.get_or_insert(at);
            r.clone()
        }))
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let inner = self.read();
        let mut out: Vec<KeyRecord> = inner
            .by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id))
            .filter(|r| page.cursor.is_none_or(|c| c.precedes(r)))
            .cloned()
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        out.truncate(page.limit);
        Ok(out)
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let inner = self.read();
        let mut out: Vec<KeyRecord> = inner
            .by_id
            .values()
            .filter(|r| r.revoked_at.is_none() && r.expires_at.is_some_and(|at| at <= before))
            .cloned()
            .collect();
        out.sort_by_key(|r| (r.expires_at, r.id));
        out.truncate(limit);
        Ok(out)
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let inner = self.read();
        let count = inner
            .by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id))
            .filter(|r| !r.is_revoked() && !r.is_expired_at(now))
            .count();
        Ok(count as u64)
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        let inner = self.read();
        Ok(inner
            .by_id
            .values()
            .filter(|r| r.created_by == Some(family))
            .cloned()
            .collect())
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        let inner = self.read();
        Ok(inner
            .by_id
            .values()
            .filter(|r| !r.is_revoked())
            .map(|r| r.id)
            .take(limit)
            .collect())
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        let mut inner = self.write();
        for d in batch {
            *inner.usage.entry((d.family, d.bucket)).or_default() += d.requests;
            if let Some(r) = inner.by_id.get_mut(&d.key_id) {
                r.last_used_at = r.last_used_at.max(Some(d.last_used_at));
            }
        }
        Ok(())
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let inner = self.read();
        let mut out: Vec<UsageBucket> = inner
            .usage
            .iter()
            .filter(|((f, bucket), _)| *f == family && *bucket >= crate::usage_bucket(since))
            .map(|(&(_, bucket), &requests)| UsageBucket { bucket, requests })
            .collect();
        out.sort_by_key(|b| b.bucket);
        Ok(out)
    }
}

impl crate::AuditStore for MemoryStore {
    async fn append_audit(&self, events: &[crate::AuditEvent]) -> Result<(), StoreError> {
        self.write().audit.extend_from_slice(events);
        Ok(())
    }

    async fn query_audit(
        &self,
        query: &crate::AuditQuery,
    ) -> Result<Vec<crate::AuditEvent>, StoreError> {
        let inner = self.read();
        let limit = if query.limit == 0 { 100 } else { query.limit };
        // Newest first by time, as the SQL stores order them: events from
        // several writers may be appended slightly out of time order. The
        // sort is stable, so events of the same instant stay in reverse
        // order of writing.
        let mut out: Vec<crate::AuditEvent> = inner
            .audit
            .iter()
            .rev()
            .filter(|e| query.key_id.is_none_or(|id| e.key_id == Some(id)))
            .filter(|e| query.since.is_none_or(|t| e.at >= t))
            .cloned()
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.at));
        out.truncate(limit);
        Ok(out)
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let n = inner.audit.len();
        inner.audit.retain(|e| e.at >= before);
        Ok((n - inner.audit.len()) as u64)
    }
}
