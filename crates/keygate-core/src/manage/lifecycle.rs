//! A key's life through the manager: created, changed, revoked, rotated.

use std::time::Duration;

use super::{CreatedKey, KeyManager, KeyUpdate, ManageError, NewKey, request::check_name};
use crate::{
    AuditAction, Cap, KeyId, KeyRecord, MAX_TIME, Replacement, Rotation, StoreError, checked_after,
    checked_utc,
};

impl KeyManager {
    /// Issues a new key. The plaintext is in the result and nowhere else.
    ///
    /// # Errors
    ///
    /// [`ManageError`] if the name is invalid, the expiry is out of range,
    /// the key would go over the [`Limits`](crate::Limits), the OS has no randomness or the
    /// store fails.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, ManageError> {
        let now = self.now();
        let expires_at = new.expires_at(now, &self.limits)?;
        self.insert_new(&new, now, expires_at, None, None).await
    }

    /// Stores `new`, created at `now` by the key family `created_by`, after
    /// checking its name and the caps. The key spends `spends` (its
    /// creator's credit account) if given, else credits of its own if `new`
    /// asks for them: the account is opened before the key is stored, so a
    /// metered key never exists without its balance.
    pub(crate) async fn insert_new(
        &self,
        new: &NewKey,
        now: time::OffsetDateTime,
        expires_at: Option<time::OffsetDateTime>,
        created_by: Option<KeyId>,
        spends: Option<KeyId>,
    ) -> Result<CreatedKey, ManageError> {
        check_name(&new.name)?;
        let own_credits = new.credit_setup()?;
        self.limits
            .check_settings(Some(&new.metadata), Some(&new.allowed_ips))?;
        self.check_owner_room(&new.owner, now).await?;
        // Ids are 59 random bits; a collision is a once-in-a-lifetime event,
        // but a store that reports one gets a fresh key rather than an error.
        let mut attempts = 0;
        loop {
            let key = self.format.generate(new.environment)?;
            let credit_account = match (spends, &own_credits) {
                (Some(account), _) => Some(account),
                (None, Some(setup)) => {
                    // A fresh family's account: nothing else spends it yet.
                    self.credits.update(key.id(), setup, now).await?;
                    Some(key.id())
                }
                (None, None) => None,
            };
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
                credit_account,
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
    /// [`Limits`](crate::Limits), or the store's error.
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
        if let (Some(expiry), Some(max)) = (changes.expires_at, self.limits.max_key_lifetime) {
            // The maximum counts from the key's creation, which never
            // changes: repeated changes cannot stretch a key's life.
            let current = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
            let latest = checked_after(current.created_at, max).unwrap_or(MAX_TIME);
            if expiry.is_none_or(|at| at > latest) {
                return Err(self.limits.over_lifetime());
            }
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
        // The successor is a new key: the lifetime policy binds it from now.
        let from_now = |d: Option<Duration>| d.map(|d| checked_after(now, d).unwrap_or(MAX_TIME));
        let default_expiry = from_now(self.limits.key_lifetime(None)?);
        let max_expiry = from_now(self.limits.max_key_lifetime);
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
                default_expiry,
                max_expiry,
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
}
