//! A persisted audit trail: authentication outcomes and management actions,
//! batched into a store off the request path.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::{KeyId, StoreError, store::BoxFuture, sync::lock};

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

    /// Deletes every event from before `before` (events at `before` stay),
    /// and returns how many went: the retention policy is the caller's,
    /// e.g. `keygate audit prune --older-than 90d` or
    /// [`AuditLog::prune`] on a timer.
    fn prune_audit(
        &self,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
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
    /// See [`AuditStore::prune_audit`].
    fn prune_audit(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>>;
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
    fn prune_audit(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(AuditStore::prune_audit(self, before))
    }
}

/// How an [`AuditLog`] queues and thins events.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct AuditConfig {
    /// Most authentication events waiting to be written (default 10 000);
    /// past it they are dropped and counted ([`AuditLog::dropped`]).
    /// Management events have their own queue and are never dropped.
    pub capacity: usize,
    /// Most refused requests persisted per reason (`checksum`,
    /// `unknown_key`, `rate_limited`…) per [`rejection_window`](Self::rejection_window)
    /// (default 10). The others are counted ([`AuditLog::suppressed`]) and
    /// recorded as one summary event per reason and window, whose `detail`
    /// reads `"<reason>; <n> more not recorded"`. A flood of bad keys thus
    /// costs the audit table a bounded number of rows per second.
    pub rejections_per_reason: u32,
    /// See [`rejections_per_reason`](Self::rejections_per_reason) (default
    /// 1 s), measured on the events' own times.
    pub rejection_window: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            rejections_per_reason: 10,
            rejection_window: Duration::from_secs(1),
        }
    }
}

impl AuditConfig {
    /// The default configuration with a queue of `capacity` authentication
    /// events.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Persists at most `n` refused requests per reason per `window`.
    #[must_use]
    pub fn rejections_per_reason(mut self, n: u32, window: Duration) -> Self {
        self.rejections_per_reason = n;
        self.rejection_window = window;
        self
    }
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Most distinct rejection reasons thinned separately; reasons past it
/// share one budget. The layer has a few dozen; the bound only keeps a
/// caller recording arbitrary reasons from growing the map without end.
const MAX_REASONS: usize = 256;
const OTHER_REASONS: &str = "other";

/// The per-reason budget of refused requests in the current window.
struct Window {
    start: OffsetDateTime,
    kept: u32,
    suppressed: u64,
    outcome: String,
}

/// Sends audit events to an [`AuditStore`] through bounded queues, in
/// batches, from a background task.
///
/// [`record`](Self::record) never blocks and never fails the caller.
/// Management events (create, update, revoke, rotate) go through their own
/// unbounded queue and are written first: a flood of requests can delay
/// them by one batch, never drop them (their rate is bounded by the store
/// writes they follow). Authentication events go through a bounded queue:
/// when it is full they are dropped and counted ([`dropped`](Self::dropped))
/// and a warning is logged. Refused requests are also thinned per reason
/// (see [`AuditConfig::rejections_per_reason`]).
#[derive(Clone)]
pub struct AuditLog {
    manage: mpsc::UnboundedSender<Msg>,
    requests: mpsc::Sender<Box<AuditEvent>>,
    store: Arc<dyn DynAuditStore>,
    config: AuditConfig,
    windows: Arc<Mutex<HashMap<String, Window>>>,
    dropped: Arc<AtomicU64>,
    suppressed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// Most events written in one batch.
const BATCH: usize = 500;

impl AuditLog {
    /// Starts the writer task on the current tokio runtime, with a queue of
    /// `capacity` authentication events (10 000 is a reasonable size) and
    /// the other defaults of [`AuditConfig`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(store: Arc<dyn DynAuditStore>, capacity: usize) -> Self {
        Self::spawn_with(store, AuditConfig::with_capacity(capacity))
    }

    /// Starts the writer task on the current tokio runtime, configured by
    /// `config`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_with(store: Arc<dyn DynAuditStore>, config: AuditConfig) -> Self {
        let (manage, manage_rx) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::channel(config.capacity.max(1));
        let failed = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(
            Arc::clone(&store),
            manage_rx,
            requests_rx,
            Arc::clone(&failed),
        ));
        Self {
            manage,
            requests,
            store,
            config,
            windows: Arc::default(),
            dropped: Arc::new(AtomicU64::new(0)),
            suppressed: Arc::new(AtomicU64::new(0)),
            failed,
        }
    }

    /// Queues an event. Management events are always queued; an
    /// authentication event is dropped (and counted) if its queue is full,
    /// and a refusal is suppressed (and counted) past its reason's budget.
    pub fn record(&self, event: AuditEvent) {
        if event.action != AuditAction::Authenticate {
            if self.manage.send(Msg::Event(Box::new(event))).is_err() {
                lost_manage();
            }
            return;
        }
        if event.outcome != "ok" {
            let (keep, summary) = self.thin(&event);
            if let Some(summary) = summary {
                self.queue_request(summary);
            }
            if !keep {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.queue_request(event);
    }

    fn queue_request(&self, event: AuditEvent) {
        if self.requests.try_send(Box::new(event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(target: "keygate::audit", dropped = n, "audit queue full; events dropped");
            }
        }
    }

    /// Whether to keep this refusal, and the summary of the window it
    /// closes, if that window suppressed anything.
    fn thin(&self, event: &AuditEvent) -> (bool, Option<AuditEvent>) {
        let reason = event.detail.as_deref().unwrap_or(&event.outcome);
        let window =
            time::Duration::try_from(self.config.rejection_window).unwrap_or(time::Duration::MAX);
        let mut windows = lock(&self.windows);
        let key = if windows.contains_key(reason) || windows.len() < MAX_REASONS {
            reason
        } else {
            OTHER_REASONS
        };
        if !windows.contains_key(key) {
            windows.insert(
                key.to_owned(),
                Window {
                    start: event.at,
                    kept: 0,
                    suppressed: 0,
                    outcome: event.outcome.clone(),
                },
            );
        }
        let Some(w) = windows.get_mut(key) else {
            return (true, None);
        };
        let mut summary = None;
        // Events from several threads arrive slightly out of time order; an
        // earlier one counts in the current window.
        if event.at - w.start >= window {
            summary = summarise(key, w);
            w.start = event.at;
            w.kept = 0;
        }
        if w.kept < self.config.rejections_per_reason {
            w.kept += 1;
            (true, summary)
        } else {
            w.suppressed += 1;
            (false, summary)
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Refused requests not persisted because their reason's budget was
    /// spent (see [`AuditConfig::rejections_per_reason`]); each window's
    /// count is also persisted as a summary event.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Events lost because the store could not write them: a whole batch
    /// while it is unavailable, or single events holding a value it cannot
    /// keep ([`StoreError::Rejected`]).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Deletes persisted events from before `before` (see
    /// [`AuditStore::prune_audit`]) and returns how many went.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.store.prune_audit(before).await
    }

    /// Waits until every event queued before this call has been written (or
    /// has failed), with the summaries of suppressed refusals so far. Call
    /// it on shutdown.
    pub async fn flush(&self) {
        let summaries: Vec<AuditEvent> = {
            let mut windows = lock(&self.windows);
            windows
                .iter_mut()
                .filter_map(|(reason, w)| summarise(reason, w))
                .collect()
        };
        for summary in summaries {
            self.queue_request(summary);
        }
        let (done, wait) = oneshot::channel();
        if self.manage.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The summary event of a window that suppressed refusals (and resets its
/// count), or `None`.
fn summarise(reason: &str, w: &mut Window) -> Option<AuditEvent> {
    if w.suppressed == 0 {
        return None;
    }
    let n = std::mem::take(&mut w.suppressed);
    Some(AuditEvent {
        at: w.start,
        action: AuditAction::Authenticate,
        outcome: w.outcome.clone(),
        detail: Some(format!("{reason}; {n} more not recorded")),
        key_id: None,
        actor: None,
        method: None,
        path: None,
        peer: None,
    })
}

fn lost_manage() {
    tracing::error!(target: "keygate::audit", "audit writer stopped; management event not persisted");
}

async fn writer(
    store: Arc<dyn DynAuditStore>,
    mut manage: mpsc::UnboundedReceiver<Msg>,
    mut requests: mpsc::Receiver<Box<AuditEvent>>,
    failed: Arc<AtomicU64>,
) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    // Natural batching: wait for one event, take whatever else is already
    // queued (up to a batch, management events first), write, repeat.
    // Quiet periods write single events at once; bursts become large
    // batches.
    loop {
        let first = tokio::select! {
            biased;
            Some(msg) = manage.recv() => msg,
            Some(event) = requests.recv() => Msg::Event(event),
            else => break,
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e) => batch.push(*e),
                Msg::Flush(done) => waiters.push(done),
            }
            if batch.len() < BATCH {
                next = manage.try_recv().ok();
                if next.is_none() && waiters.is_empty() {
                    next = requests.try_recv().ok().map(Msg::Event);
                }
            }
        }
        write(&*store, &mut batch, &failed).await;
        if waiters.is_empty() {
            continue;
        }
        // A flush covers the authentication events queued before it: as
        // many as are queued now, not the ones a flood keeps adding.
        let mut owed = requests.len();
        while owed > 0 {
            while owed > 0 && batch.len() < BATCH {
                let Ok(e) = requests.try_recv() else {
                    owed = 0;
                    break;
                };
                batch.push(*e);
                owed -= 1;
            }
            write(&*store, &mut batch, &failed).await;
        }
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
            .field("suppressed", &self.suppressed())
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

        async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
            let mut kept = self.kept.lock().unwrap();
            let n = kept.len();
            kept.retain(|e| e.at >= before);
            Ok((n - kept.len()) as u64)
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

    fn refusal(at: OffsetDateTime, reason: &str) -> AuditEvent {
        AuditEvent {
            at,
            action: AuditAction::Authenticate,
            outcome: "invalid_key".to_owned(),
            detail: Some(reason.to_owned()),
            key_id: None,
            actor: None,
            method: Some("GET".to_owned()),
            path: Some("/".to_owned()),
            peer: None,
        }
    }

    #[tokio::test]
    async fn a_flood_of_requests_never_pushes_out_a_management_event() {
        let store = Arc::new(Picky::default());
        let config = AuditConfig {
            capacity: 8,
            rejections_per_reason: u32::MAX,
            ..AuditConfig::default()
        };
        let log = AuditLog::spawn_with(store.clone(), config);
        let id: KeyId = "AuditKey01".parse().unwrap();
        let t = OffsetDateTime::UNIX_EPOCH;
        // The writer cannot run until this test awaits: the request queue
        // is full after eight events, and stays full.
        for _ in 0..1000 {
            log.record(refusal(t, "unknown_key"));
        }
        log.record(AuditEvent::manage(t, AuditAction::Revoke, id));
        for _ in 0..1000 {
            log.record(refusal(t, "unknown_key"));
        }
        log.flush().await;
        assert_eq!(log.dropped(), 2000 - 8);
        let kept = store.kept.lock().unwrap();
        assert_eq!(kept.len(), 9);
        assert_eq!(kept[0].action, AuditAction::Revoke, "written first");
    }

    #[tokio::test]
    async fn refusals_are_persisted_at_a_bounded_rate_per_reason_and_summarised() {
        let store = Arc::new(Picky::default());
        let config =
            AuditConfig::with_capacity(100_000).rejections_per_reason(10, Duration::from_secs(1));
        let log = AuditLog::spawn_with(store.clone(), config);
        let t = OffsetDateTime::UNIX_EPOCH;
        for i in 0..1000 {
            log.record(refusal(t + Duration::from_micros(i), "checksum"));
            log.record(refusal(t + Duration::from_micros(i), "unknown_key"));
        }
        // Admissions are not thinned.
        for _ in 0..50 {
            log.record(AuditEvent {
                outcome: "ok".to_owned(),
                ..refusal(t, "ok")
            });
        }
        // A new window for `checksum`: the last one's summary is written.
        log.record(refusal(t + Duration::from_secs(1), "checksum"));
        log.flush().await;
        assert_eq!(log.suppressed(), 2 * 990);
        assert_eq!(log.dropped(), 0);
        let kept = store.kept.lock().unwrap();
        let count = |detail: &str| {
            kept.iter()
                .filter(|e| e.detail.as_deref() == Some(detail))
                .count()
        };
        assert_eq!(count("checksum"), 11);
        assert_eq!(count("unknown_key"), 10);
        assert_eq!(count("ok"), 50);
        assert_eq!(count("checksum; 990 more not recorded"), 1);
        assert_eq!(count("unknown_key; 990 more not recorded"), 1);
        assert_eq!(kept.len(), 11 + 10 + 50 + 2);
        let summary = kept
            .iter()
            .find(|e| e.detail.as_deref() == Some("checksum; 990 more not recorded"))
            .unwrap();
        assert_eq!((summary.at, summary.outcome.as_str()), (t, "invalid_key"));
    }

    #[tokio::test]
    async fn prune_removes_only_older_events() {
        let store = Arc::new(Picky::default());
        let log = AuditLog::spawn(store.clone(), 16);
        let t = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1000);
        let id: KeyId = "AuditKey01".parse().unwrap();
        for at in [t - Duration::from_secs(1), t, t + Duration::from_secs(1)] {
            log.record(AuditEvent::manage(at, AuditAction::Create, id));
        }
        log.flush().await;
        assert_eq!(log.prune(t).await.unwrap(), 1);
        let left: Vec<_> = store.kept.lock().unwrap().iter().map(|e| e.at).collect();
        assert_eq!(left, [t, t + Duration::from_secs(1)]);
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
