//! Issuing and managing keys: [`KeyManager`].
//!
//! The manager lives here with its reads; its parts beside it:
//!
//! * `request`: what to issue ([`NewKey`]) and what to change
//!   ([`KeyUpdate`]), and what issuing returns ([`CreatedKey`]);
//! * `lifecycle`: create, update, revoke, rotate;
//! * `credits`: metered keys' balances;
//! * `delegate`: the same on behalf of a delegating key, the per-owner cap
//!   and children that die with their creator;
//! * `error`: [`ManageError`].

mod credits;
mod delegate;
mod error;
mod lifecycle;
mod request;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

pub use self::{
    error::ManageError,
    request::{CreatedKey, KeyUpdate, NewKey},
};
use crate::{
    AUDIT_TARGET, AuditAction, AuditEvent, AuditLog, Clock, CreditBank, DynKeyStore, KeyFilter,
    KeyFormat, KeyHasher, KeyId, KeyRecord, Limits, Owner, Page, StoreCredits, Verifier,
    checked_after, checked_utc,
};

/// Issues, lists, updates and revokes keys in a store.
///
/// Changes made through a manager that shares its [`Verifier`] with a layer
/// (as `Keygate::manager()` does) take effect on that layer at once.
#[derive(Clone)]
pub struct KeyManager {
    pub(crate) store: Arc<dyn DynKeyStore>,
    format: KeyFormat,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    verifier: Option<Arc<Verifier>>,
    audit: Option<AuditLog>,
    actor: Option<Arc<str>>,
    limits: Limits,
    pub(crate) credits: Arc<dyn CreditBank>,
}

impl KeyManager {
    /// A manager over `store`.
    pub fn new(
        store: Arc<dyn DynKeyStore>,
        format: KeyFormat,
        hasher: KeyHasher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            credits: Arc::new(StoreCredits::new(Arc::clone(&store))),
            store,
            format,
            hasher,
            clock,
            verifier: None,
            audit: None,
            actor: None,
            limits: Limits::default(),
        }
    }

    /// Caps every change made through this manager obeys (default
    /// [`Limits::default`]).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Keep metered keys' balances in `bank` instead of the key store (the
    /// default, [`StoreCredits`]). Layers and managers of one service must
    /// share one bank: `Keygate::builder(..).credit_bank(..)` sets both.
    #[must_use]
    pub fn with_credit_bank(mut self, bank: Arc<dyn CreditBank>) -> Self {
        self.credits = bank;
        self
    }

    /// The bank metered keys' balances are kept in.
    pub fn credit_bank(&self) -> &Arc<dyn CreditBank> {
        &self.credits
    }

    /// The caps this manager enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Also write every change to a persisted [`AuditLog`].
    #[must_use]
    pub fn with_audit_log(mut self, log: AuditLog) -> Self {
        self.audit = Some(log);
        self
    }

    /// A manager whose changes are attributed to `actor` in the audit trail
    /// (`key:<id>`, `user:<id>`, `cli`…).
    #[must_use]
    pub fn as_actor(&self, actor: impl Into<String>) -> Self {
        Self {
            actor: Some(actor.into().into()),
            ..self.clone()
        }
    }

    /// Invalidate this verifier's cache on every change.
    #[must_use]
    pub fn with_verifier(mut self, verifier: Arc<Verifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The key format keys are issued in.
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    /// The record of a key.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn get(&self, id: KeyId) -> Result<Option<KeyRecord>, ManageError> {
        Ok(self.store.find(id).await?)
    }

    /// One page of an owner's keys, newest first. Records hold digests, never
    /// keys.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn list(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, ManageError> {
        Ok(self.store.list_by_owner(owner, page).await?)
    }

    /// One page of the keys that pass `filter`, judged now by this
    /// manager's clock, newest first; every owner's when the filter names
    /// none. The store filters ([`KeyStore::list_keys`](crate::KeyStore::list_keys)).
    /// Records hold digests, never keys.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn list_keys(
        &self,
        filter: &KeyFilter,
        page: Page,
    ) -> Result<Vec<KeyRecord>, ManageError> {
        Ok(self.store.list_keys(filter, self.now(), page).await?)
    }

    /// Keys that are not revoked and expire within `within` from now
    /// (including ones already expired), soonest first, at most `limit`:
    /// the list to send reminders from.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn expiring(
        &self,
        within: Duration,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, ManageError> {
        let before =
            checked_after(self.now(), within).map_err(|_| ManageError::ExpiryOutOfRange)?;
        Ok(self.store.list_expiring(before, limit).await?)
    }

    /// A key family's hourly usage since `since`.
    ///
    /// # Errors
    ///
    /// [`ManageError::TimeOutOfRange`] for a `since` outside 1970–9999
    /// (UTC), or the store's error.
    pub async fn usage(
        &self,
        family: KeyId,
        since: time::OffsetDateTime,
    ) -> Result<Vec<crate::UsageBucket>, ManageError> {
        let since = checked_utc(since).map_err(|_| ManageError::TimeOutOfRange("since"))?;
        Ok(self.store.usage(family, since).await?)
    }

    pub(crate) fn audit(&self, action: AuditAction, id: KeyId, detail: Option<String>) {
        tracing::info!(
            target: AUDIT_TARGET,
            action = action.as_str(),
            key_id = id.as_str(),
            actor = self.actor.as_deref(),
            detail = detail.as_deref(),
        );
        if let Some(log) = &self.audit {
            let mut event = AuditEvent::manage(self.clock.now(), action, id);
            event.actor = self.actor.as_deref().map(str::to_owned);
            event.detail = detail;
            log.record(event);
        }
    }

    /// Now, to the microsecond: what every store (PostgreSQL included) can
    /// keep exactly, so records round-trip unchanged.
    pub(crate) fn now(&self) -> time::OffsetDateTime {
        crate::to_micros(self.clock.now())
    }

    pub(crate) fn invalidate(&self, id: KeyId) {
        if let Some(v) = &self.verifier {
            v.invalidate(id);
        }
    }
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .field("hasher", &self.hasher)
            .finish_non_exhaustive()
    }
}
