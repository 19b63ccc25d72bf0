//! Issuing and managing keys: [`KeyManager`].

use std::{fmt, sync::Arc, time::Duration};

use ipnet::IpNet;

use crate::{
    Clock, DynKeyStore, Environment, KeyFormat, KeyHasher, KeyId, KeyRecord, Metadata, Owner, Page,
    PlaintextKey, Quota, RandomnessError, Scopes, StoreError, Verifier,
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
    owner: Owner,
    name: String,
    scopes: Scopes,
    environment: Environment,
    expires_in: Option<Duration>,
    rate_limit: Option<Quota>,
    allowed_ips: Vec<IpNet>,
    metadata: Metadata,
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

    /// The key's own quota instead of the layer's default.
    pub fn rate_limit(mut self, quota: Quota) -> Self {
        self.rate_limit = Some(quota);
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
    /// The expiry is too far away to represent.
    #[error("the expiry is out of range")]
    ExpiryOutOfRange,
    /// The name is empty or longer than 200 characters.
    #[error("a key name is 1 to 200 characters")]
    InvalidName,
}

/// Issues, lists, updates and revokes keys in a store.
///
/// Changes made through a manager that shares its [`Verifier`] with a layer
/// (as `Keygate::manager()` does) take effect on that layer at once.
#[derive(Clone)]
pub struct KeyManager {
    store: Arc<dyn DynKeyStore>,
    format: KeyFormat,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    verifier: Option<Arc<Verifier>>,
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
    /// [`ManageError`] if the name is invalid, the expiry is out of range, the
    /// OS has no randomness or the store fails.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, ManageError> {
        if new.name.is_empty() || new.name.chars().count() > 200 {
            return Err(ManageError::InvalidName);
        }
        let now = self.now();
        let expires_at = match new.expires_in {
            Some(d) => {
                let d: time::Duration = d.try_into().map_err(|_| ManageError::ExpiryOutOfRange)?;
                let at = now.checked_add(d).ok_or(ManageError::ExpiryOutOfRange)?;
                Some(
                    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
                        .unwrap_or(at),
                )
            }
            None => None,
        };
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
                rate_limit: new.rate_limit,
                allowed_ips: new.allowed_ips.clone(),
                metadata: new.metadata.clone(),
                last_used_at: None,
                superseded_by: None,
            };
            match self.store.insert(&record).await {
                Ok(()) => {
                    self.invalidate(record.id);
                    tracing::info!(
                        target: "keygate::audit",
                        event = "key.created",
                        key_id = %record.id,
                        owner = %record.owner,
                        scopes = %record.scopes,
                    );
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

    /// Replaces a key's record (name, scopes, quota, IPs, metadata, expiry),
    /// effective at once on layers sharing this manager's verifier. The id,
    /// digest, owner and creation time cannot change.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if there is no such key, or the store's error.
    pub async fn update(&self, record: &KeyRecord) -> Result<KeyRecord, ManageError> {
        let current = self
            .store
            .find(record.id)
            .await?
            .ok_or(StoreError::NotFound(record.id))?;
        let merged = KeyRecord {
            id: current.id,
            family: current.family,
            owner: current.owner.clone(),
            digest: current.digest,
            created_at: current.created_at,
            revoked_at: current.revoked_at,
            environment: current.environment,
            last_used_at: current.last_used_at,
            superseded_by: current.superseded_by,
            ..record.clone()
        };
        self.store.update(&merged).await?;
        self.invalidate(merged.id);
        tracing::info!(target: "keygate::audit", event = "key.updated", key_id = %merged.id);
        Ok(merged)
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
        tracing::info!(target: "keygate::audit", event = "key.revoked", key_id = %id);
        Ok(record)
    }

    /// Now, to the microsecond: what every store (PostgreSQL included) can
    /// keep exactly, so records round-trip unchanged.
    fn now(&self) -> time::OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }

    fn invalidate(&self, id: KeyId) {
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
    use crate::{FakeClock, MemoryStore, Scope, SystemClock};

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
    async fn update_keeps_identity_and_revoke_keeps_first_time() {
        let clock = FakeClock::starting_now();
        let (m, _) = manager(Arc::new(clock.clone()));
        let c = m.create(NewKey::new(Owner::user("a"), "k")).await.unwrap();
        let mut changed = c.record.clone();
        changed.name = "renamed".into();
        changed.owner = Owner::user("mallory");
        changed.scopes = Scopes::from([Scope::WRITE]);
        let updated = m.update(&changed).await.unwrap();
        assert_eq!(updated.name, "renamed");
        assert_eq!(updated.owner, Owner::user("a"));
        assert!(updated.scopes.contains(&Scope::WRITE));

        let first = m.revoke(c.record.id).await.unwrap().revoked_at;
        clock.advance(Duration::from_secs(5));
        assert_eq!(m.revoke(c.record.id).await.unwrap().revoked_at, first);
        assert!(matches!(
            m.revoke("ZZZZZZZZZZ".parse().unwrap()).await,
            Err(ManageError::Store(StoreError::NotFound(_)))
        ));
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
