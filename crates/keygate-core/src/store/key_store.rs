//! The [`KeyStore`] trait, and [`DynKeyStore`], its object-safe form.

use std::future::Future;

use time::OffsetDateTime;

use super::{BoxFuture, Cursor, KeyFilter, Page, Replacement, Rotation};
use crate::{
    CreditOp, CreditOutcome, InvalidationFeed, KeyId, KeyRecord, KeyUpdate, Owner, StoreError,
    UsageBucket, UsageDelta,
};

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

    /// One page of the keys that pass `filter` at `now`
    /// ([`KeyFilter::matches`] states the rule), newest first (by
    /// `created_at`, then id), after [`Page::cursor`] like
    /// [`list_by_owner`](Self::list_by_owner). The filter is applied by the
    /// store itself (a `WHERE` clause over an index), never by reading every
    /// key: operators list all keys of a service with it.
    ///
    /// Required, with no default: a default could only read every key.
    fn list_keys(
        &self,
        filter: &KeyFilter,
        now: OffsetDateTime,
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

    /// Claims the reminder of key `id` for `threshold` (how long before the
    /// key's expiry it is sent): `true` if this call made the claim, `false`
    /// if some call (in any process sharing the store) already had. Atomic: of
    /// concurrent claims exactly one wins. Required, with no default: a store
    /// that answered `true` twice would remind a key's owner twice.
    fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a claim made by [`claim_reminder`](Self::claim_reminder) back,
    /// because its delivery failed, so a later run tries again. Releasing a
    /// claim that is not there does nothing.
    fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Carries out `op` on the credit account `account` at `now`, in one
    /// atomic step: reads the account (`None` if there is none), computes
    /// [`CreditOp::apply`], writes back [`Applied::write`](crate::Applied::write)
    /// if it is `Some`, and answers [`Applied::outcome`](crate::Applied::outcome).
    /// Concurrent operations on one account, from any process sharing the
    /// store, must serialize (a transaction holding the row, a lock), so
    /// that `N` credits are never charged more than `N` times.
    ///
    /// Required, with no default: a store that could not keep balances
    /// would make every metered key either free or useless.
    fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<CreditOutcome>, StoreError>> + Send;

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
    /// See [`KeyStore::list_keys`].
    fn list_keys<'a>(
        &'a self,
        filter: &'a KeyFilter,
        now: OffsetDateTime,
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
    /// See [`KeyStore::claim_reminder`].
    fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// See [`KeyStore::release_reminder`].
    fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`KeyStore::credits`].
    fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<CreditOutcome>, StoreError>>;
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
    fn list_keys<'a>(
        &'a self,
        filter: &'a KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> BoxFuture<'a, Result<Vec<KeyRecord>, StoreError>> {
        Box::pin(KeyStore::list_keys(self, filter, now, page))
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
    fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(KeyStore::claim_reminder(self, id, threshold, at))
    }
    fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(KeyStore::release_reminder(self, id, threshold))
    }
    fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<CreditOutcome>, StoreError>> {
        Box::pin(KeyStore::credits(self, account, op, now))
    }
}
