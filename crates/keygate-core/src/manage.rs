//! Issuing and managing keys: [`KeyManager`].

use std::{fmt, sync::Arc, time::Duration};

use ipnet::IpNet;

use crate::{
    AuditAction, AuditEvent, AuditLog, Cap, Clock, DynKeyStore, Environment, GrantViolation,
    KeyFormat, KeyHasher, KeyId, KeyRecord, Limits, Metadata, Owner, Page, PlaintextKey, Quotas,
    RandomnessError, Replacement, Rotation, Scopes, StoreError, Verifier, checked_after,
    checked_utc,
};

/// What to issue: the settings of a new key.
///
/// ```
/// use keygate_core::{NewKey, Owner, Quota, Scope};
/// use std::time::Duration;
///
/// let new = NewKey::new(Owner::service("billing-sync"), "nightly export")
///     .scopes([Scope::READ, Scope::from_static("billing:read")])
///     .expires_in(Duration::from_secs(90 * 86_400))
///     .rate_limit(Quota::per_minute(600));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NewKey {
    pub(crate) owner: Owner,
    pub(crate) name: String,
    pub(crate) scopes: Scopes,
    pub(crate) environment: Environment,
    expires_in: Option<Duration>,
    pub(crate) rate_limit: Option<Quotas>,
    pub(crate) allowed_ips: Vec<IpNet>,
    pub(crate) metadata: Metadata,
}

impl NewKey {
    /// A `live` key for `owner`, named `name`, with no scopes, no expiry, the
    /// layer's default quota and no IP restriction.
    pub fn new(owner: Owner, name: impl Into<String>) -> Self {
        Self {
            owner,
            name: name.into(),
            scopes: Scopes::none(),
            environment: Environment::Live,
            expires_in: None,
            rate_limit: None,
            allowed_ips: Vec::new(),
            metadata: Metadata::new(),
        }
    }

    /// The key's scopes.
    pub fn scopes(mut self, scopes: impl Into<Scopes>) -> Self {
        self.scopes = scopes.into();
        self
    }

    /// `live` (the default) or `test`.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }

    /// Expire the key this long after creation.
    pub fn expires_in(mut self, after: Duration) -> Self {
        self.expires_in = Some(after);
        self
    }

    /// The key's own quota, or several enforced at once
    /// (`Quota::per_second(10).and(Quota::per_day(10_000))`), instead of the
    /// layer's default.
    pub fn rate_limit(mut self, quotas: impl Into<Quotas>) -> Self {
        self.rate_limit = Some(quotas.into());
        self
    }

    /// Only accept the key from these networks.
    pub fn allowed_ips(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed_ips = nets.into_iter().collect();
        self
    }

    /// Free-form JSON to keep with the key.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The expiry of this key if it is created at `now`, to the microsecond.
    pub(crate) fn expires_at(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<Option<time::OffsetDateTime>, ManageError> {
        self.expires_in
            .map(|d| checked_after(now, d))
            .transpose()
            .map_err(|_| ManageError::ExpiryOutOfRange)
    }
}

impl From<Vec<crate::Scope>> for Scopes {
    fn from(v: Vec<crate::Scope>) -> Self {
        v.into_iter().collect()
    }
}

/// A freshly issued key: the plaintext, shown once, and its record.
#[derive(Debug)]
pub struct CreatedKey {
    /// The key to hand to the client. It is not stored anywhere.
    pub key: PlaintextKey,
    /// What the store now holds.
    pub record: KeyRecord,
}

/// What can go wrong managing keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The OS could not provide randomness for a new key.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    /// The expiry (or the end of a grace period, or of an `expiring`
    /// window) is out of range: before 1970 or after 9999 in UTC (see
    /// [`checked_utc`](crate::checked_utc)).
    #[error("the expiry is out of range")]
    ExpiryOutOfRange,
    /// A time argument (named) is out of range: before 1970 or after 9999
    /// in UTC (see [`checked_utc`](crate::checked_utc)).
    #[error("`{0}` is out of range: a time must be from 1970 to 9999 (UTC)")]
    TimeOutOfRange(&'static str),
    /// The name is empty or longer than 200 characters.
    #[error("a key name is 1 to 200 characters")]
    InvalidName,
    /// The key is revoked, expired or already rotated.
    #[error("key {0} cannot be rotated: it is revoked, expired or already rotated")]
    NotRotatable(KeyId),
    /// The request goes over one of the manager's [`Limits`].
    #[error("at most {max} {cap}")]
    OverCap {
        /// Which cap.
        cap: Cap,
        /// Its value.
        max: u64,
    },
    /// A delegating key asked for a key more powerful than itself; every
    /// way it would be is listed (see [`may_grant`](crate::may_grant)).
    #[error("the key would be more powerful than the key granting it")]
    NotGrantable(Vec<GrantViolation>),
    /// The key that created this one (or its rotation successor) was
    /// revoked while the change was being made, so the new key was revoked
    /// too: children do not outlive their creator.
    #[error("the creating key was revoked meanwhile; the new key was revoked with it")]
    CreatorRevoked,
}

fn check_name(name: &str) -> Result<(), ManageError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        Err(ManageError::InvalidName)
    } else {
        Ok(())
    }
}

/// The changes [`KeyManager::update`] makes: only fields that are `Some`
/// change. For optional settings, `Some(None)` clears them.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct KeyUpdate {
    /// A new name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<Scopes>,
    /// New quotas (`Some(None)`: back to the layer's default).
    pub rate_limit: Option<Option<Quotas>>,
    /// A new IP allowlist (empty: anywhere).
    pub allowed_ips: Option<Vec<IpNet>>,
    /// New metadata.
    pub metadata: Option<Metadata>,
    /// A new expiry (`Some(None)`: never). On a key that was rotated (in
    /// its grace period) the expiry can only be brought forward: a later
    /// time, or `Some(None)`, leaves it at the end of the grace period.
    pub expires_at: Option<Option<time::OffsetDateTime>>,
}

impl KeyUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        let Self {
            name,
            scopes,
            rate_limit,
            allowed_ips,
            metadata,
            expires_at,
        } = self;
        name.is_none()
            && scopes.is_none()
            && rate_limit.is_none()
            && allowed_ips.is_none()
            && metadata.is_none()
            && expires_at.is_none()
    }

    /// Applies these changes to `record`, as every [`KeyStore`](crate::KeyStore)
    /// must (atomically, to the record as it is at the time of the write):
    /// only the fields that are `Some` change, and for a rotated key
    /// (`superseded_by` set) the expiry becomes the earlier of the one asked
    /// for and its current one, so a change never extends a grace period.
    /// Nothing else (`revoked_at`, `superseded_by`, id, owner, digest…) is
    /// ever touched.
    pub fn apply_to(&self, record: &mut KeyRecord) {
        let Self {
            name,
            scopes,
            rate_limit,
            allowed_ips,
            metadata,
            expires_at,
        } = self;
        if let Some(name) = name {
            record.name.clone_from(name);
        }
        if let Some(scopes) = scopes {
            record.scopes = scopes.clone();
        }
        if let Some(rate_limit) = rate_limit {
            record.rate_limit.clone_from(rate_limit);
        }
        if let Some(nets) = allowed_ips {
            record.allowed_ips.clone_from(nets);
        }
        if let Some(metadata) = metadata {
            record.metadata.clone_from(metadata);
        }
        if let Some(expires_at) = *expires_at {
            record.expires_at = if record.superseded_by.is_some() {
                // The earliest of the two that are set.
                match (expires_at, record.expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            } else {
                expires_at
            };
        }
    }
}

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

    /// Issues a new key. The plaintext is in the result and nowhere else.
    ///
    /// # Errors
    ///
    /// [`ManageError`] if the name is invalid, the expiry is out of range,
    /// the key would go over the [`Limits`], the OS has no randomness or the
    /// store fails.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, ManageError> {
        let now = self.now();
        let expires_at = new.expires_at(now)?;
        self.insert_new(&new, now, expires_at, None).await
    }

    /// Stores `new`, created at `now` by the key family `created_by`, after
    /// checking its name and the caps.
    pub(crate) async fn insert_new(
        &self,
        new: &NewKey,
        now: time::OffsetDateTime,
        expires_at: Option<time::OffsetDateTime>,
        created_by: Option<KeyId>,
    ) -> Result<CreatedKey, ManageError> {
        check_name(&new.name)?;
        self.limits
            .check_settings(Some(&new.metadata), Some(&new.allowed_ips))?;
        self.check_owner_room(&new.owner, now).await?;
        // Ids are 59 random bits; a collision is a once-in-a-lifetime event,
        // but a store that reports one gets a fresh key rather than an error.
        let mut attempts = 0;
        loop {
            let key = self.format.generate(new.environment)?;
            let record = KeyRecord {
                id: key.id(),
                family: key.id(),
                owner: new.owner.clone(),
                name: new.name.clone(),
                scopes: new.scopes.clone(),
                environment: new.environment,
                digest: self.hasher.digest(key.expose_secret()),
                created_at: now,
                expires_at,
                revoked_at: None,
                rate_limit: new.rate_limit.clone(),
                allowed_ips: new.allowed_ips.clone(),
                metadata: new.metadata.clone(),
                last_used_at: None,
                superseded_by: None,
                created_by,
            };
            match self.store.insert(&record).await {
                Ok(()) => {
                    self.invalidate(record.id);
                    self.audit(AuditAction::Create, record.id, None);
                    // Concurrent creations may each have seen room for one
                    // more: count again now that this key is in.
                    self.recheck_owner_room(&record, now).await?;
                    return Ok(CreatedKey { key, record });
                }
                Err(StoreError::Duplicate(_)) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
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

    /// Changes a key's settings, effective at once on layers sharing this
    /// manager's verifier. Only the fields set in `changes` change, in one
    /// atomic write to the store ([`KeyStore::update`](crate::KeyStore::update)):
    /// the id, digest, owner, environment, creation time, revocation and
    /// rotation never do, so an update racing a revocation can never undo
    /// it. A rotated key's expiry can only be brought forward (see
    /// [`KeyUpdate::expires_at`]). Returns the record as the write left it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no such key, [`ManageError::InvalidName`]
    /// for a bad name, [`ManageError::ExpiryOutOfRange`] for an expiry
    /// outside 1970–9999 (UTC), [`ManageError::OverCap`] past the
    /// [`Limits`], or the store's error.
    pub async fn update(
        &self,
        id: KeyId,
        mut changes: KeyUpdate,
    ) -> Result<KeyRecord, ManageError> {
        self.limits
            .check_settings(changes.metadata.as_ref(), changes.allowed_ips.as_deref())?;
        if let Some(name) = &changes.name {
            check_name(name)?;
        }
        if let Some(Some(at)) = changes.expires_at {
            let at = checked_utc(at).map_err(|_| ManageError::ExpiryOutOfRange)?;
            changes.expires_at = Some(Some(at));
        }
        // An expired key given a later expiry (or none) lives again: it
        // counts against its owner's cap like a new key, or expired keys
        // revived one by one would take an owner past it.
        let now = self.now();
        let revived = match changes.expires_at {
            Some(new) if new.is_none_or(|at| at > now) => {
                let current = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
                let revives = !current.is_revoked() && current.is_expired_at(now);
                if revives {
                    self.check_owner_room(&current.owner, now).await?;
                }
                revives
            }
            _ => false,
        };
        let record = self.store.update(id, &changes).await?;
        self.invalidate(id);
        self.audit(AuditAction::Update, id, None);
        if revived {
            self.recheck_owner_room(&record, now).await?;
        }
        Ok(record)
    }

    /// Revokes a key, effective at once on layers sharing this manager's
    /// verifier (and on other nodes as soon as their invalidation feed
    /// delivers). Revoking twice keeps the first time.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no such key, or the store's error.
    pub async fn revoke(&self, id: KeyId) -> Result<KeyRecord, ManageError> {
        let record = self
            .store
            .revoke(id, self.now())
            .await?
            .ok_or(StoreError::NotFound(id))?;
        self.invalidate(id);
        self.audit(AuditAction::Revoke, id, None);
        self.revoke_created_by(&record).await?;
        Ok(record)
    }

    /// Replaces a key with a new one: same owner, name, scopes, environment,
    /// quota, IP allowlist and metadata, and the same rotation family, so
    /// the rate-limit state and usage history carry over. The old key keeps
    /// working for `grace` (its expiry becomes the earlier of its own and
    /// now + `grace`), so clients can switch without a failed request; during
    /// that time its responses carry `Sunset` and `Deprecation` headers.
    ///
    /// The store checks the old key and writes both keys in one transaction
    /// ([`KeyStore::rotate`](crate::KeyStore::rotate)): a rotation racing a
    /// revocation either happens entirely before it or writes nothing, so
    /// no usable replacement of a revoked key is ever left behind.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotRotatable`] for a revoked, expired or already
    /// rotated key (checked again at the write);
    /// [`ManageError::ExpiryOutOfRange`] if the grace period ends after
    /// 9999; [`StoreError::NotFound`] if there is no such key; or the
    /// store's error.
    pub async fn rotate(&self, id: KeyId, grace: Duration) -> Result<CreatedKey, ManageError> {
        if grace > self.limits.max_rotation_grace {
            return Err(ManageError::OverCap {
                cap: Cap::RotationGrace,
                max: self.limits.max_rotation_grace.as_secs(),
            });
        }
        let now = self.now();
        let grace_end = checked_after(now, grace).map_err(|_| ManageError::ExpiryOutOfRange)?;
        // Read first for the environment (it never changes) and to refuse
        // early; the store decides again, atomically, when it writes.
        let old = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
        if old.revoked_at.is_some() || old.is_expired_at(now) || old.superseded_by.is_some() {
            return Err(ManageError::NotRotatable(id));
        }
        let mut attempts = 0;
        let (key, new) = loop {
            let key = self.format.generate(old.environment)?;
            let replacement = Replacement {
                id: key.id(),
                digest: self.hasher.digest(key.expose_secret()),
                at: now,
                grace_end,
            };
            // One transaction: the new key exists if and only if the old one
            // is superseded, and a revocation or rotation that won the race
            // leaves no new key behind.
            match self.store.rotate(id, &replacement).await {
                Ok(Rotation::Rotated { new, .. }) => break (key, new),
                Ok(Rotation::NotRotatable(_)) => return Err(ManageError::NotRotatable(id)),
                Err(StoreError::Duplicate(_)) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        };
        self.invalidate(id);
        self.invalidate(new.id);
        self.audit(AuditAction::Rotate, id, Some(new.id.to_string()));
        self.audit(
            AuditAction::Create,
            new.id,
            Some(format!("rotated from {id}")),
        );
        let created = CreatedKey { key, record: new };
        self.recheck_creator(&created.record).await?;
        Ok(created)
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
            target: "keygate::audit",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FakeClock, MemoryStore, Quota, Scope, SystemClock};

    fn manager(clock: Arc<dyn Clock>) -> (KeyManager, MemoryStore) {
        let store = MemoryStore::new();
        let m = KeyManager::new(
            Arc::new(store.clone()),
            KeyFormat::new("t").unwrap(),
            KeyHasher::sha256(),
            clock,
        );
        (m, store)
    }

    #[tokio::test]
    async fn create_stores_only_the_digest() {
        let (m, store) = manager(Arc::new(SystemClock));
        let created = m
            .create(NewKey::new(Owner::user("u1"), "laptop").scopes([Scope::READ]))
            .await
            .unwrap();
        let secret = created.key.expose_secret().to_owned();
        let stored = m.get(created.key.id()).await.unwrap().unwrap();
        assert_eq!(stored, created.record);
        assert_eq!(stored.digest, KeyHasher::sha256().digest(&secret));
        let dump = format!("{stored:?} {}", serde_json::to_string(&stored).unwrap());
        assert!(!dump.contains(&secret));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn list_is_newest_first_and_paged_per_owner() {
        let clock = FakeClock::starting_now();
        let (m, _) = manager(Arc::new(clock.clone()));
        let mut ids = Vec::new();
        for i in 0..5 {
            let c = m
                .create(NewKey::new(Owner::user("a"), format!("k{i}")))
                .await
                .unwrap();
            ids.push(c.record.id);
            clock.advance(Duration::from_secs(1));
        }
        m.create(NewKey::new(Owner::user("b"), "other"))
            .await
            .unwrap();
        let first = m.list(&Owner::user("a"), Page::first(2)).await.unwrap();
        assert_eq!(
            first.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]]
        );
        let cursor = crate::Cursor::after(&first[1]);
        let cursor: crate::Cursor = cursor.to_string().parse().unwrap();
        let next = m
            .list(
                &Owner::user("a"),
                Page {
                    limit: 10,
                    cursor: Some(cursor),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            next.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![ids[2], ids[1], ids[0]]
        );
    }

    #[tokio::test]
    async fn update_changes_only_what_is_set_and_revoke_keeps_first_time() {
        let clock = FakeClock::starting_now();
        let (m, _) = manager(Arc::new(clock.clone()));
        let c = m
            .create(NewKey::new(Owner::user("a"), "k").rate_limit(Quota::per_second(5)))
            .await
            .unwrap();
        let updated = m
            .update(
                c.record.id,
                KeyUpdate {
                    name: Some("renamed".into()),
                    scopes: Some(Scopes::from([Scope::WRITE])),
                    ..KeyUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(updated.name, "renamed");
        assert_eq!(updated.owner, Owner::user("a"));
        assert_eq!(updated.rate_limit, Some(Quota::per_second(5).into()));
        assert!(updated.scopes.contains(&Scope::WRITE));
        let cleared = m
            .update(
                c.record.id,
                KeyUpdate {
                    rate_limit: Some(None),
                    ..KeyUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(cleared.rate_limit, None);
        assert!(matches!(
            m.update(
                c.record.id,
                KeyUpdate {
                    name: Some(" ".into()),
                    ..KeyUpdate::default()
                }
            )
            .await,
            Err(ManageError::InvalidName)
        ));

        let first = m.revoke(c.record.id).await.unwrap().revoked_at;
        clock.advance(Duration::from_secs(5));
        assert_eq!(m.revoke(c.record.id).await.unwrap().revoked_at, first);
        assert!(matches!(
            m.revoke("ZZZZZZZZZZ".parse().unwrap()).await,
            Err(ManageError::Store(StoreError::NotFound(_)))
        ));
    }

    #[tokio::test]
    async fn rotate_keeps_settings_and_family_and_bounds_the_old_key() {
        let clock = FakeClock::starting_now();
        let (m, _) = manager(Arc::new(clock.clone()));
        let old = m
            .create(
                NewKey::new(Owner::service("ci"), "deploy")
                    .scopes([Scope::WRITE])
                    .rate_limit(Quota::per_minute(10))
                    .expires_in(Duration::from_secs(86_400 * 30)),
            )
            .await
            .unwrap();
        let new = m
            .rotate(old.record.id, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_ne!(new.record.id, old.record.id);
        assert_ne!(new.key.expose_secret(), old.key.expose_secret());
        assert_eq!(new.record.family, old.record.family);
        assert_eq!(new.record.scopes, old.record.scopes);
        assert_eq!(new.record.rate_limit, old.record.rate_limit);
        assert_eq!(new.record.expires_at, old.record.expires_at);
        let old_now = m.get(old.record.id).await.unwrap().unwrap();
        assert_eq!(old_now.superseded_by, Some(new.record.id));
        assert_eq!(
            old_now.expires_at,
            Some(checked_utc(clock.now()).unwrap() + Duration::from_secs(3600))
        );
        assert!(matches!(
            m.rotate(old.record.id, Duration::from_secs(60)).await,
            Err(ManageError::NotRotatable(_))
        ));
        // The new key can be rotated in turn and stays in the family.
        let third = m.rotate(new.record.id, Duration::ZERO).await.unwrap();
        assert_eq!(third.record.family, old.record.family);
    }

    #[tokio::test]
    async fn expiring_lists_soonest_first() {
        let clock = FakeClock::starting_now();
        let (m, _) = manager(Arc::new(clock.clone()));
        let day = Duration::from_secs(86_400);
        let late = m
            .create(NewKey::new(Owner::user("a"), "late").expires_in(day * 20))
            .await
            .unwrap();
        let soon = m
            .create(NewKey::new(Owner::user("a"), "soon").expires_in(day * 2))
            .await
            .unwrap();
        m.create(NewKey::new(Owner::user("a"), "never"))
            .await
            .unwrap();
        let gone = m
            .create(NewKey::new(Owner::user("a"), "gone").expires_in(day))
            .await
            .unwrap();
        m.revoke(gone.record.id).await.unwrap();
        let ids: Vec<_> = m
            .expiring(day * 7, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![soon.record.id]);
        let ids: Vec<_> = m
            .expiring(day * 30, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![soon.record.id, late.record.id]);
    }

    #[tokio::test]
    async fn changes_reach_the_persisted_audit_log_with_their_actor() {
        let store = MemoryStore::new();
        let log = AuditLog::spawn(Arc::new(store.clone()), 16);
        let m = KeyManager::new(
            Arc::new(store.clone()),
            KeyFormat::new("t").unwrap(),
            KeyHasher::sha256(),
            Arc::new(SystemClock),
        )
        .with_audit_log(log.clone())
        .as_actor("cli");
        let c = m.create(NewKey::new(Owner::user("a"), "k")).await.unwrap();
        m.revoke(c.record.id).await.unwrap();
        log.flush().await;
        let events = crate::AuditStore::query_audit(
            &store,
            &crate::AuditQuery {
                key_id: Some(c.record.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.action).collect();
        assert_eq!(actions, vec![AuditAction::Revoke, AuditAction::Create]);
        assert!(events.iter().all(|e| e.actor.as_deref() == Some("cli")));
        assert_eq!(log.dropped(), 0);
    }

    #[tokio::test]
    async fn names_and_expiry_are_checked() {
        let (m, _) = manager(Arc::new(SystemClock));
        assert!(matches!(
            m.create(NewKey::new(Owner::user("a"), "")).await,
            Err(ManageError::InvalidName)
        ));
        assert!(matches!(
            m.create(NewKey::new(Owner::user("a"), "k").expires_in(Duration::MAX))
                .await,
            Err(ManageError::ExpiryOutOfRange)
        ));
    }
}
