//! [`TestStore`]: one configurable store wrapper for the tests that need a
//! store to fail, be slow, count its calls or pause at a chosen point.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use keygate_core::{
    AuditEvent, AuditQuery, AuditStore, CreditOp, CreditOutcome, InvalidationFeed, KeyId,
    KeyRecord, KeyStore, KeyUpdate, MemoryStore, Owner, Page, Replacement, Rotation, StoreError,
    UsageBucket, UsageDelta, time::OffsetDateTime,
};

/// A store operation, as [`TestStore`] fails, delays, counts and hooks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`KeyStore::find`].
    Find,
    /// [`KeyStore::insert`].
    Insert,
    /// [`KeyStore::update`].
    Update,
    /// [`KeyStore::rotate`].
    Rotate,
    /// [`KeyStore::revoke`].
    Revoke,
    /// [`KeyStore::list_by_owner`].
    ListByOwner,
    /// [`KeyStore::list_keys`].
    ListKeys,
    /// [`KeyStore::list_expiring`].
    ListExpiring,
    /// [`KeyStore::count_active_by_owner`].
    CountActiveByOwner,
    /// [`KeyStore::list_created_by`].
    ListCreatedBy,
    /// [`KeyStore::list_live_ids`].
    ListLiveIds,
    /// [`KeyStore::record_usage`].
    RecordUsage,
    /// [`KeyStore::usage`].
    Usage,
    /// [`KeyStore::claim_reminder`].
    ClaimReminder,
    /// [`KeyStore::release_reminder`].
    ReleaseReminder,
    /// [`KeyStore::credits`].
    Credits,
    /// [`AuditStore::append_audit`].
    AppendAudit,
    /// [`AuditStore::query_audit`].
    QueryAudit,
    /// [`AuditStore::prune_audit`].
    PruneAudit,
}

impl Op {
    /// Every operation.
    pub const ALL: [Self; 19] = [
        Self::Find,
        Self::Insert,
        Self::Update,
        Self::Rotate,
        Self::Revoke,
        Self::ListByOwner,
        Self::ListKeys,
        Self::ListExpiring,
        Self::CountActiveByOwner,
        Self::ListCreatedBy,
        Self::ListLiveIds,
        Self::RecordUsage,
        Self::Usage,
        Self::ClaimReminder,
        Self::ReleaseReminder,
        Self::Credits,
        Self::AppendAudit,
        Self::QueryAudit,
        Self::PruneAudit,
    ];

    /// The operations that write a key record.
    pub const KEY_WRITES: [Self; 3] = [Self::Insert, Self::Update, Self::Rotate];

    fn index(self) -> usize {
        self as usize
    }
}

/// How a failing operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// [`StoreError::Unavailable`]: a database that cannot be reached.
    Unavailable,
    /// [`StoreError::Corrupt`]: a row keygate cannot read.
    Corrupt,
    /// [`StoreError::Rejected`]: a value the store cannot keep. The message
    /// is PostgreSQL's, so tests can check it never reaches a client.
    Rejected,
}

impl Failure {
    /// The error an operation failing this way returns.
    pub fn error(self) -> StoreError {
        match self {
            Self::Unavailable => StoreError::unavailable("connection refused (test outage)"),
            Self::Corrupt => StoreError::Corrupt("unreadable row (test)".to_owned()),
            Self::Rejected => {
                StoreError::Rejected("unsupported Unicode escape sequence (test)".to_owned())
            }
        }
    }
}

/// One call of an operation, as a hook sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    op: Op,
    number: usize,
    key: Option<KeyId>,
}

impl Call {
    /// The operation called.
    pub fn op(&self) -> Op {
        self.op
    }

    /// How many calls of this operation came before this one (0 for the
    /// first).
    pub fn number(&self) -> usize {
        self.number
    }

    /// The key id the operation names, if it names one.
    pub fn key(&self) -> Option<KeyId> {
        self.key
    }
}

/// What a hook returns: a future the operation waits for.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

type Hook = Arc<dyn Fn(Call) -> HookFuture + Send + Sync>;

#[derive(Clone, Default)]
struct Rules {
    failure: Option<Failure>,
    delay: Option<Duration>,
    before: Option<Hook>,
    after: Option<Hook>,
}

#[derive(Default)]
struct Shared {
    calls: [AtomicUsize; Op::ALL.len()],
    rules: Mutex<[Rules; Op::ALL.len()]>,
}

/// A store in front of another (a [`MemoryStore`] by default) whose
/// operations can be made to fail, to wait, or to run a hook before or
/// after the wrapped store answers; it counts every call.
///
/// Clones share their rules and counts, so a test keeps one clone and
/// hands keygate another. A call goes: counted, delayed, failed (returning
/// at once), `before` hook, the wrapped store, `after` hook.
#[derive(Clone)]
pub struct TestStore<S = MemoryStore> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Default> Default for TestStore<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S: fmt::Debug> fmt::Debug for TestStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl TestStore {
    /// In front of a new [`MemoryStore`].
    pub fn memory() -> Self {
        Self::new(MemoryStore::new())
    }
}

impl<S> TestStore<S> {
    /// Wraps `inner`, with every operation working.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            shared: Arc::default(),
        }
    }

    /// The wrapped store, to read or write behind keygate's back.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: Op) -> usize {
        self.shared.calls[op.index()].load(Ordering::SeqCst)
    }

    /// `op` fails this way from now on.
    pub fn fail(&self, op: Op, failure: Failure) {
        self.rules(|rules| rules[op.index()].failure = Some(failure));
    }

    /// Every operation fails this way from now on.
    pub fn fail_all(&self, failure: Failure) {
        for op in Op::ALL {
            self.fail(op, failure);
        }
    }

    /// Every operation works again (delays and hooks stay).
    pub fn heal(&self) {
        self.rules(|rules| {
            for rule in rules {
                rule.failure = None;
            }
        });
    }

    /// Each call of `op` first waits `delay` (on tokio's clock, so a paused
    /// test clock skips it).
    pub fn delay(&self, op: Op, delay: Duration) {
        self.rules(|rules| rules[op.index()].delay = Some(delay));
    }

    /// Each call of `op` that does not fail waits for `hook` before asking
    /// the wrapped store.
    pub fn before(&self, op: Op, hook: impl Fn(Call) -> HookFuture + Send + Sync + 'static) {
        self.rules(|rules| rules[op.index()].before = Some(Arc::new(hook)));
    }

    /// Each call of `op` that does not fail waits for `hook` after the
    /// wrapped store answered, before returning its answer.
    pub fn after(&self, op: Op, hook: impl Fn(Call) -> HookFuture + Send + Sync + 'static) {
        self.rules(|rules| rules[op.index()].after = Some(Arc::new(hook)));
    }

    fn rules<T>(&self, change: impl FnOnce(&mut [Rules; Op::ALL.len()]) -> T) -> T {
        change(
            &mut self
                .shared
                .rules
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Runs one call of `op`: `work` is the wrapped store's answer, not
    /// polled unless the rules let the call through.
    async fn run<T>(
        &self,
        op: Op,
        key: Option<KeyId>,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let number = self.shared.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let call = Call { op, number, key };
        let rules = self.rules(|rules| rules[op.index()].clone());
        if let Some(delay) = rules.delay {
            tokio::time::sleep(delay).await;
        }
        // Read again: a test may heal the store while a call waits.
        if let Some(failure) = self.rules(|rules| rules[op.index()].failure) {
            return Err(failure.error());
        }
        if let Some(before) = rules.before {
            before(call).await;
        }
        let answer = work.await;
        if let Some(after) = rules.after {
            after(call).await;
        }
        answer
    }
}

impl<S: KeyStore> KeyStore for TestStore<S> {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.run(Op::Find, Some(id), self.inner.find(id)).await
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.run(Op::Insert, Some(record.id), self.inner.insert(record))
            .await
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        self.run(Op::Update, Some(id), self.inner.update(id, changes))
            .await
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        self.run(Op::Rotate, Some(id), self.inner.rotate(id, replacement))
            .await
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        self.run(Op::Revoke, Some(id), self.inner.revoke(id, at))
            .await
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.run(Op::ListByOwner, None, self.inner.list_by_owner(owner, page))
            .await
    }

    async fn list_keys(
        &self,
        filter: &keygate_core::KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let work = self.inner.list_keys(filter, now, page);
        self.run(Op::ListKeys, None, work).await
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let work = self.inner.list_expiring(before, limit);
        self.run(Op::ListExpiring, None, work).await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.run(Op::RecordUsage, None, self.inner.record_usage(batch))
            .await
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.run(Op::Usage, Some(family), self.inner.usage(family, since))
            .await
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let work = self.inner.count_active_by_owner(owner, now);
        self.run(Op::CountActiveByOwner, None, work).await
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        let work = self.inner.list_created_by(family);
        self.run(Op::ListCreatedBy, Some(family), work).await
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        self.run(Op::ListLiveIds, None, self.inner.list_live_ids(limit))
            .await
    }

    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let work = self.inner.claim_reminder(id, threshold, at);
        self.run(Op::ClaimReminder, Some(id), work).await
    }

    async fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> Result<(), StoreError> {
        let work = self.inner.release_reminder(id, threshold);
        self.run(Op::ReleaseReminder, Some(id), work).await
    }

    async fn credits(
        &self,
        account: KeyId,
        op: CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<CreditOutcome>, StoreError> {
        let work = self.inner.credits(account, op, now);
        self.run(Op::Credits, Some(account), work).await
    }

    fn subscribe(&self) -> Option<InvalidationFeed> {
        self.inner.subscribe()
    }
}

impl<S: AuditStore> AuditStore for TestStore<S> {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.run(Op::AppendAudit, None, self.inner.append_audit(events))
            .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        self.run(Op::QueryAudit, None, self.inner.query_audit(query))
            .await
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.run(Op::PruneAudit, None, self.inner.prune_audit(before))
            .await
    }
}
