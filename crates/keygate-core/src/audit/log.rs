//! The [`AuditLog`]: events queued off the request path, thinned, and
//! written to an [`AuditStore`](crate::AuditStore) in batches.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{AUDIT_TARGET, AuditAction, AuditEvent, DynAuditStore};
use crate::{StoreError, sync::lock};

#[cfg(test)]
mod tests;

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

/// Sends audit events to an [`AuditStore`](crate::AuditStore) through bounded queues, in
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
                tracing::warn!(target: AUDIT_TARGET, dropped = n, "audit queue full; events dropped");
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
    /// [`AuditStore::prune_audit`](crate::AuditStore::prune_audit)) and returns how many went.
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
    tracing::error!(target: AUDIT_TARGET, "audit writer stopped; management event not persisted");
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
    tracing::error!(target: AUDIT_TARGET, error = %err, lost = n, "could not persist audit events");
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
