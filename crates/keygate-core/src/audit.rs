//! A persisted audit trail: authentication outcomes and management actions,
//! batched into a store off the request path.

use std::{
    fmt,
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::{KeyId, StoreError, store::BoxFuture};

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A request presented a key (or none).
    Authenticate,
    /// A key was issued.
    Create,
    /// A key's settings changed.
    Update,
    /// A key was revoked.
    Revoke,
    /// A key was rotated (the event names the old key; `detail` the new one).
    Rotate,
}

impl AuditAction {
    /// The action as stored: `authenticate`, `create`, `update`, `revoke`, `rotate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticate => "authenticate",
            Self::Create => "create",
            Self::Update => "update",
            Self::Revoke => "revoke",
            Self::Rotate => "rotate",
        }
    }
}

impl std::str::FromStr for AuditAction {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "authenticate" => Self::Authenticate,
            "create" => Self::Create,
            "update" => Self::Update,
            "revoke" => Self::Revoke,
            "rotate" => Self::Rotate,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown audit action {other:?}"
                )));
            }
        })
    }
}

/// One audit record. Never holds a key, only its public id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub action: AuditAction,
    /// `ok`, or the rejection code (`invalid_key`, `rate_limited`, …).
    pub outcome: String,
    /// Finer detail for operators (`checksum`, `digest_mismatch`, the new
    /// key's id on a rotation…).
    pub detail: Option<String>,
    /// The key concerned, if known.
    pub key_id: Option<KeyId>,
    /// Who made a management change (`key:<id>`, `user:<id>`, `cli`…).
    pub actor: Option<String>,
    /// The request's method, for authentication events.
    pub method: Option<String>,
    /// The request's path, for authentication events.
    pub path: Option<String>,
    /// The client's address, when known.
    pub peer: Option<IpAddr>,
}

impl AuditEvent {
    /// A management event.
    pub fn manage(at: OffsetDateTime, action: AuditAction, key_id: KeyId) -> Self {
        Self {
            at,
            action,
            outcome: "ok".to_owned(),
            detail: None,
            key_id: Some(key_id),
            actor: None,
            method: None,
            path: None,
            peer: None,
        }
    }
}

/// Which audit events to read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events about this key.
    pub key_id: Option<KeyId>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// At most this many, newest first (0 means 100).
    pub limit: usize,
}

/// Where audit events are kept.
pub trait AuditStore: Send + Sync + 'static {
    /// Appends a batch of events.
    fn append_audit(
        &self,
        events: &[AuditEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Events matching `query`, newest first.
    fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;
}

/// The object-safe form of [`AuditStore`].
pub trait DynAuditStore: Send + Sync + 'static {
    /// See [`AuditStore::append_audit`].
    fn append_audit<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`AuditStore::query_audit`].
    fn query_audit<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, StoreError>>;
}

impl<S: AuditStore> DynAuditStore for S {
    fn append_audit<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(AuditStore::append_audit(self, events))
    }
    fn query_audit<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, StoreError>> {
        Box::pin(AuditStore::query_audit(self, query))
    }
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Sends audit events to an [`AuditStore`] through a bounded queue, in
/// batches, from a background task.
///
/// [`record`](Self::record) never blocks and never fails the caller: when
/// the queue is full the event is dropped and counted
/// ([`dropped`](Self::dropped)), and a warning is logged.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// Most events written in one batch.
const BATCH: usize = 500;

impl AuditLog {
    /// Starts the writer task on the current tokio runtime, with a queue of
    /// `capacity` events (10 000 is a reasonable size).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(store: Arc<dyn DynAuditStore>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let failed = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(store, rx, Arc::clone(&failed)));
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
        }
    }

    /// Queues an event; drops (and counts) it if the queue is full.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(Msg::Event(Box::new(event))).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(target: "keygate::audit", dropped = n, "audit queue full; events dropped");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events lost because the store could not write them: a whole batch
    /// while it is unavailable, or single events holding a value it cannot
    /// keep ([`StoreError::Rejected`]).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until every event queued before this call has been written (or
    /// has failed). Call it on shutdown.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(
    store: Arc<dyn DynAuditStore>,
    mut rx: mpsc::Receiver<Msg>,
    failed: Arc<AtomicU64>,
) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    // Natural batching: wait for one event, take whatever else is already
    // queued (up to a batch), write, repeat. Quiet periods write single
    // events at once; bursts become large batches.
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => batch.push(*e),
                Msg::Flush(done) => waiters.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&*store, &mut batch, &failed).await;
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write(store: &dyn DynAuditStore, batch: &mut Vec<AuditEvent>, failed: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    match store.append_audit(batch).await {
        Ok(()) => {}
        // Some event holds a value the store cannot keep (a batch is written
        // whole or not at all): write them one by one, losing only those.
        Err(StoreError::Rejected(_)) if batch.len() > 1 => {
            for (i, event) in batch.iter().enumerate() {
                match store.append_audit(std::slice::from_ref(event)).await {
                    Ok(()) => {}
                    Err(e @ StoreError::Rejected(_)) => lost(failed, 1, &e),
                    // The store itself failed meanwhile: do not wait on it
                    // once per event.
                    Err(e) => {
                        lost(failed, batch.len() - i, &e);
                        break;
                    }
                }
            }
        }
        Err(e) => lost(failed, batch.len(), &e),
    }
    batch.clear();
}

fn lost(failed: &AtomicU64, n: usize, err: &StoreError) {
    failed.fetch_add(n as u64, Ordering::Relaxed);
    tracing::error!(target: "keygate::audit", error = %err, lost = n, "could not persist audit events");
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Refuses events whose detail is `"refuse"`, and goes down for good
    /// once it has refused `down_after` of them.
    #[derive(Default)]
    struct Picky {
        kept: Mutex<Vec<AuditEvent>>,
        refused: AtomicU64,
        calls: AtomicU64,
        down_after: Option<u64>,
    }

    impl AuditStore for Picky {
        async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self
                .down_after
                .is_some_and(|n| self.refused.load(Ordering::Relaxed) >= n)
            {
                return Err(StoreError::unavailable("down"));
            }
            if events.iter().any(|e| e.detail.as_deref() == Some("refuse")) {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Rejected("cannot keep it".into()));
            }
            self.kept.lock().unwrap().extend_from_slice(events);
            Ok(())
        }

        async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
            Ok(self.kept.lock().unwrap().clone())
        }
    }

    fn events(details: &[&str]) -> Vec<AuditEvent> {
        let id: KeyId = "AuditKey01".parse().unwrap();
        details
            .iter()
            .map(|d| AuditEvent {
                detail: Some((*d).to_owned()),
                ..AuditEvent::manage(time::OffsetDateTime::UNIX_EPOCH, AuditAction::Create, id)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_refused_event_is_lost_alone() {
        let store = Picky::default();
        let failed = AtomicU64::new(0);
        let mut batch = events(&["a", "refuse", "b"]);
        write(&store, &mut batch, &failed).await;
        assert_eq!(failed.load(Ordering::Relaxed), 1);
        let kept = store.kept.lock().unwrap();
        let kept: Vec<_> = kept.iter().map(|e| e.detail.as_deref().unwrap()).collect();
        assert_eq!(kept, ["a", "b"]);
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn a_store_that_fails_meanwhile_is_not_retried_per_event() {
        let store = Picky {
            down_after: Some(1),
            ..Picky::default()
        };
        let failed = AtomicU64::new(0);
        let mut batch = events(&["refuse", "a", "b", "c", "d"]);
        write(&store, &mut batch, &failed).await;
        // The whole batch (refused), then the first event alone, which
        // finds the store down: no attempt for the four others.
        assert_eq!(store.calls.load(Ordering::Relaxed), 2);
        assert_eq!(failed.load(Ordering::Relaxed), 5);
        assert!(store.kept.lock().unwrap().is_empty());
    }
}
