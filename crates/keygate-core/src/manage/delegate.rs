//! Key management on behalf of a delegating key: the grant rule
//! ([`may_grant`](crate::may_grant)) applied by the [`KeyManager`], the
//! per-owner cap, and children that do not outlive the key that made them.

use std::collections::HashSet;

use crate::{
    AuditAction, Cap, CreatedKey, GrantDimension, GrantViolation, Grantor, KeyId, KeyManager,
    KeyRecord, KeySettings, KeyUpdate, ManageError, NewKey, Owner, StoreError,
};

/// How far a rotation or creator chain is followed. Each link is a
/// rotation (a key rotated daily for 270 years) or a delegation; the bound,
/// with cycle detection, only keeps a corrupt store from looping.
const MAX_CHAIN: usize = 100_000;

impl KeyManager {
    /// [`create`](Self::create) on behalf of a delegating key: refused with
    /// [`ManageError::NotGrantable`] if the new key would be more powerful
    /// than `grantor` in any dimension, or belong to another owner. The new
    /// key records `grantor`'s family as its creator, and dies with it. An
    /// `admin` grantor creates keys like [`create`](Self::create): without a
    /// creator.
    ///
    /// A key created by a delegating key ([`KeyManager::create_as`]) records the
    /// rotation family of its creator in [`KeyRecord::created_by`]. Revoking the
    /// creator's current key (one that has not been rotated away) revokes every
    /// key it created, and theirs, transitively. Revoking a key that was already
    /// rotated away (the old key in its grace period) does not: its successor
    /// holds the same power and keeps its children. A key created while its
    /// creator is being revoked does not survive: after storing it the manager
    /// looks at the creator again and revokes the new key if the creator is
    /// gone. Keys created by `admin` keys, the CLI or [`KeyManager::create`]
    /// have no creator and are never revoked this way.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); [`ManageError::NotGrantable`];
    /// [`ManageError::CreatorRevoked`] if `grantor` was revoked meanwhile.
    pub async fn create_as(
        &self,
        grantor: &Grantor,
        new: NewKey,
    ) -> Result<CreatedKey, ManageError> {
        if grantor.is_admin() {
            return self.create(new).await;
        }
        let now = self.now();
        let expires_at = new.expires_at(now, self.limits())?;
        let requested = KeySettings {
            scopes: new.scopes.clone(),
            environment: new.environment,
            expires_at,
            rate_limit: new
                .rate_limit
                .clone()
                .or_else(|| grantor.default_rate_limit.clone()),
            allowed_ips: new.allowed_ips.clone(),
            metadata: new.metadata.clone(),
        };
        grantor.check(&new.owner, &requested)?;
        // A person's keys have no creator: nothing revokes a person.
        let Some(key) = grantor.key else {
            return self.insert_new(&new, now, expires_at, None, None).await;
        };
        // A metered key's keys spend its credits: credits of their own, or
        // none, would let it mint what it was sold.
        if key.credit_account.is_some() && new.is_metered() {
            return Err(ManageError::NotGrantable(vec![GrantViolation::new(
                GrantDimension::Credits,
                "this key is metered: the keys it makes spend its credits and cannot have their own"
                    .to_owned(),
            )]));
        }
        let created = self
            .insert_new(&new, now, expires_at, Some(key.family), key.credit_account)
            .await?;
        // A revocation of the grantor that listed its children before this
        // insert could not see the new key: look at the grantor again.
        if self.is_gone(key.id, true).await? {
            self.revoke_quietly(created.record.id, "its creator was revoked")
                .await?;
            return Err(ManageError::CreatorRevoked);
        }
        Ok(created)
    }

    /// [`update`](Self::update) on behalf of a delegating key: refused with
    /// [`ManageError::NotGrantable`] if the key, as changed, would be more
    /// powerful than `grantor` (so a key cannot lift its own restrictions),
    /// or is another owner's. The key is judged again as written: if a
    /// change made meanwhile by another caller combines with this one into a
    /// key more powerful than `grantor`, this change is taken back and
    /// refused.
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update), and [`ManageError::NotGrantable`].
    pub async fn update_as(
        &self,
        grantor: &Grantor,
        id: KeyId,
        changes: KeyUpdate,
    ) -> Result<KeyRecord, ManageError> {
        if grantor.is_admin() {
            return self.update(id, changes).await;
        }
        if changes.credit_account.is_some() {
            return Err(ManageError::NotGrantable(vec![GrantViolation::new(
                GrantDimension::Credits,
                "only an admin changes whether a key is metered".to_owned(),
            )]));
        }
        let before = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
        // Judge the key as the store's own rule will leave it.
        let mut judged = changes.clone();
        if let Some(Some(at)) = judged.expires_at {
            let at = crate::checked_utc(at).map_err(|_| ManageError::ExpiryOutOfRange)?;
            judged.expires_at = Some(Some(at));
        }
        let mut after = before.clone();
        judged.apply_to(&mut after);
        grantor.check_record(&after)?;
        let written = self.update(id, changes.clone()).await?;
        // The store wrote only these fields, on the row as it was then: a
        // change another caller made meanwhile (another delegate's bigger
        // quota, say) may combine with this one into a key more powerful
        // than this grantor. Then this change is taken back, and refused.
        if let Err(refused) = grantor.check_record(&written) {
            let undo = KeyUpdate {
                name: changes.name.as_ref().map(|_| before.name.clone()),
                scopes: changes.scopes.as_ref().map(|_| before.scopes.clone()),
                rate_limit: changes
                    .rate_limit
                    .as_ref()
                    .map(|_| before.rate_limit.clone()),
                allowed_ips: changes
                    .allowed_ips
                    .as_ref()
                    .map(|_| before.allowed_ips.clone()),
                metadata: changes.metadata.as_ref().map(|_| before.metadata.clone()),
                expires_at: changes.expires_at.map(|_| before.expires_at),
                credit_account: None,
            };
            self.update(id, undo).await?;
            return Err(refused);
        }
        Ok(written)
    }

    /// [`rotate`](Self::rotate) on behalf of a delegating key: refused with
    /// [`ManageError::NotGrantable`] if the key (whose settings the new key
    /// copies) is more powerful than `grantor`, or is another owner's.
    ///
    /// # Errors
    ///
    /// As [`rotate`](Self::rotate), and [`ManageError::NotGrantable`].
    pub async fn rotate_as(
        &self,
        grantor: &Grantor,
        id: KeyId,
        grace: std::time::Duration,
    ) -> Result<CreatedKey, ManageError> {
        if !grantor.is_admin() {
            let old = self.store.find(id).await?.ok_or(StoreError::NotFound(id))?;
            grantor.check_record(&old)?;
            // The successor copies the key's creator: a key the grantor's
            // revocation does not reach (a sibling, its own creator) would
            // give it a way out of that revocation. A person is never
            // revoked, so any key of theirs under the ceiling will do.
            if let Some(key) = grantor.key
                && !self.descends_from(&old, key.family).await?
            {
                return Err(ManageError::NotGrantable(vec![GrantViolation {
                    dimension: GrantDimension::Lineage,
                    scope: None,
                    index: None,
                    entry: None,
                    message: "a delegating key may rotate only its own key and the keys it \
                              created (and theirs)"
                        .to_owned(),
                }]));
            }
        }
        self.rotate(id, grace).await
    }

    /// Whether `record` is of the rotation family `family`, or was created
    /// by it, directly or through keys it created.
    async fn descends_from(&self, record: &KeyRecord, family: KeyId) -> Result<bool, ManageError> {
        if record.family == family {
            return Ok(true);
        }
        let mut creator = record.created_by;
        let mut seen = HashSet::new();
        for _ in 0..MAX_CHAIN {
            match creator {
                Some(f) if f == family => return Ok(true),
                // A family's id is its first key's id.
                Some(f) if seen.insert(f) => {
                    creator = self.store.find(f).await?.and_then(|r| r.created_by);
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Refuses a new key for `owner` if it already holds the most keys the
    /// limits allow.
    pub(crate) async fn check_owner_room(
        &self,
        owner: &Owner,
        now: time::OffsetDateTime,
    ) -> Result<(), ManageError> {
        if self.store.count_active_by_owner(owner, now).await? >= self.limits().max_keys_per_owner {
            return Err(self.over_keys_per_owner());
        }
        Ok(())
    }

    /// After inserting `record`: if concurrent creations took the owner
    /// over the cap, this key is revoked and the creation fails.
    pub(crate) async fn recheck_owner_room(
        &self,
        record: &KeyRecord,
        now: time::OffsetDateTime,
    ) -> Result<(), ManageError> {
        let count = self.store.count_active_by_owner(&record.owner, now).await?;
        if count > self.limits().max_keys_per_owner {
            self.revoke_quietly(record.id, "over the keys-per-owner cap")
                .await?;
            return Err(self.over_keys_per_owner());
        }
        Ok(())
    }

    fn over_keys_per_owner(&self) -> ManageError {
        ManageError::OverCap {
            cap: Cap::KeysPerOwner,
            max: self.limits().max_keys_per_owner,
        }
    }

    /// After a rotation stored `record`: if the creator of its family is
    /// gone, the new key goes too (a revocation that listed the creator's
    /// children before the insert could not see it).
    pub(crate) async fn recheck_creator(&self, record: &KeyRecord) -> Result<(), ManageError> {
        let Some(creator) = record.created_by else {
            return Ok(());
        };
        if self.is_gone(creator, false).await? {
            self.revoke_quietly(record.id, "its creator was revoked")
                .await?;
            return Err(ManageError::CreatorRevoked);
        }
        Ok(())
    }

    /// Whether the current key of the rotation chain starting at `id` is
    /// revoked or missing; with `strict`, also if `id` itself is revoked.
    async fn is_gone(&self, id: KeyId, strict: bool) -> Result<bool, ManageError> {
        let mut next = id;
        let mut seen = HashSet::new();
        for _ in 0..MAX_CHAIN {
            // A chain that comes back on itself is a corrupt store.
            if !seen.insert(next) {
                return Ok(true);
            }
            let Some(record) = self.store.find(next).await? else {
                return Ok(true);
            };
            if strict && next == id && record.is_revoked() {
                return Ok(true);
            }
            match record.superseded_by {
                Some(successor) => next = successor,
                None => return Ok(record.is_revoked()),
            }
        }
        Ok(true)
    }

    /// Revokes `id` as a consequence of something else, with `why` in the
    /// audit trail.
    async fn revoke_quietly(&self, id: KeyId, why: &str) -> Result<(), ManageError> {
        self.store.revoke(id, self.now()).await?;
        self.invalidate(id);
        self.audit(AuditAction::Revoke, id, Some(why.to_owned()));
        Ok(())
    }

    /// After `revoked` was revoked: if it was its family's current key,
    /// revokes every key its family created, and theirs, transitively.
    pub(crate) async fn revoke_created_by(&self, revoked: &KeyRecord) -> Result<(), ManageError> {
        if revoked.superseded_by.is_some() {
            return Ok(());
        }
        let mut queue = vec![revoked.family];
        let mut seen = HashSet::new();
        while let Some(family) = queue.pop() {
            if !seen.insert(family) {
                continue;
            }
            for child in self.store.list_created_by(family).await? {
                if !child.is_revoked() {
                    let why = format!("its creator {family} was revoked");
                    self.revoke_quietly(child.id, &why).await?;
                }
                // Even a child revoked earlier: a grandchild created while
                // it was being revoked may have slipped through.
                queue.push(child.family);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
