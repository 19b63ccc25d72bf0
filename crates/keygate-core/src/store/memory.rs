//! [`MemoryStore`]: keys in process memory.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use time::OffsetDateTime;

use super::{KeyFilter, KeyStore, Page, Replacement, Rotation};
use crate::{KeyId, KeyRecord, KeyUpdate, Owner, StoreError, UsageBucket, UsageDelta};

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
    usage: HashMap<(KeyId, OffsetDateTime), (u64, crate::Refusals)>,
    audit: Vec<crate::AuditEvent>,
    reminders: std::collections::HashSet<(KeyId, std::time::Duration)>,
    credits: HashMap<KeyId, crate::CreditAccount>,
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

    async fn list_keys(
        &self,
        filter: &KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let inner = self.read();
        let mut out: Vec<KeyRecord> = inner
            .by_id
            .values()
            .filter(|r| filter.matches(r, now))
            .filter(|r| page.cursor.is_none_or(|c| c.precedes(r)))
            .cloned()
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        out.truncate(page.limit);
        Ok(out)
    }

    async fn credits(
        &self,
        account: KeyId,
        op: crate::CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<crate::CreditOutcome>, StoreError> {
        let mut inner = self.write();
        let applied = op.apply(inner.credits.get(&account).copied(), now);
        if let Some(state) = applied.write {
            inner.credits.insert(account, state);
        }
        Ok(applied.outcome)
    }

    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        _at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(self.write().reminders.insert((id, threshold)))
    }

    async fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.write().reminders.remove(&(id, threshold));
        Ok(())
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
            let (requests, refused) = inner.usage.entry((d.family, d.bucket)).or_default();
            *requests = requests.saturating_add(d.requests);
            refused.add(&d.refused);
            if d.requests == 0 {
                continue;
            }
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
            .map(|(&(_, bucket), &(requests, refused))| UsageBucket {
                bucket,
                requests,
                refused,
            })
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
