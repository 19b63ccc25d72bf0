//! What a lookup and a verification answer, and the futures that finish
//! them when the store must be asked.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use super::{CachedKey, Checked, Loaded, flight::Joined};
use crate::{KeyDigest, StoreError, store::BoxFuture};

/// The result of looking an id up in the cache.
#[derive(Debug)]
pub enum Lookup {
    /// Cached.
    Hit(Arc<CachedKey>),
    /// Recently looked up and not in the store.
    Unknown,
    /// Not cached: the future asks the store (concurrent misses for one id
    /// share one query) and fills the cache.
    Miss(Pending),
    /// Not cached, not known to exist, and
    /// [`CacheConfig::max_unknown_lookups`](super::CacheConfig::max_unknown_lookups)
    /// such lookups are already in flight: answer 503 (the store's capacity
    /// is being held by lookups of ids that are probably forged), never 401.
    Busy,
}

/// A store lookup in progress (see [`Lookup::Miss`]): a future resolving to
/// the entry, `None` if the store has no key with the id, or the store's
/// error (shared among the requests that waited for it).
///
/// Dropping it before it resolves leaves the lookup to the other requests
/// waiting for the same id, or cancels it if there are none.
#[must_use = "futures do nothing unless polled"]
pub struct Pending(BoxFuture<'static, Loaded>);

impl Pending {
    pub(super) fn new(mut miss: Miss) -> Self {
        Self(Box::pin(async move { miss.load().await }))
    }
}

impl Future for Pending {
    type Output = Loaded;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Loaded> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// What [`Verifier::verify`](super::Verifier::verify) concluded about a
/// presented key.
#[derive(Debug)]
pub enum Verification {
    /// The key's entry was cached, and checked: see [`Checked::outcome`].
    Found(Checked),
    /// The id was recently looked up and is not in the store.
    Unknown,
    /// Not cached: the future asks the store (concurrent misses for one id
    /// share one query), fills the cache and checks the key against what
    /// it read, at the time it read it.
    Loading(PendingVerification),
    /// As [`Lookup::Busy`]: answer 503, never 401.
    Busy,
}

/// A verification waiting for the store (see [`Verification::Loading`]).
///
/// Resolves to the checked entry, `None` if the store has no key with the
/// id, or the store's error (shared among the requests that waited for it).
#[must_use = "futures do nothing unless polled"]
pub struct PendingVerification(BoxFuture<'static, Result<Option<Checked>, Arc<StoreError>>>);

impl PendingVerification {
    pub(super) fn new(mut miss: Miss, presented: KeyDigest) -> Self {
        Self(Box::pin(async move {
            let found = miss.load().await?;
            // Expiry is exact: judged when the answer arrives.
            let now = miss.joined.now();
            Ok(found.map(|entry| Checked::new(entry, &presented, now)))
        }))
    }
}

impl Future for PendingVerification {
    type Output = Result<Option<Checked>, Arc<StoreError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingVerification")
    }
}

/// A lookup that must wait for the store.
pub(super) struct Miss {
    pub(super) joined: Joined,
    /// A suspect entry still within `max_stale`, served if the store
    /// cannot answer.
    pub(super) fallback: Option<Arc<CachedKey>>,
}

impl Miss {
    /// The store's answer, or the fallback entry if the store cannot answer
    /// and there is one.
    async fn load(&mut self) -> Loaded {
        match (self.joined.wait().await, self.fallback.take()) {
            (Err(e), Some(entry)) => {
                tracing::warn!(
                    target: "keygate::cache",
                    key_id = self.joined.id().as_str(),
                    error = %e,
                    "store unavailable; serving the cached entry until max_stale"
                );
                Ok(Some(entry))
            }
            (result, _) => result,
        }
    }
}
