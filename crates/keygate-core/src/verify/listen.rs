//! What keeps the cache honest from outside the request path: the store's
//! invalidation feed, and the ids of live keys read once at start.

use std::sync::Weak;

use super::Verifier;
use crate::{Invalidation, InvalidationFeed};

/// Applies every message of `feed` to the verifier until either goes away.
pub(super) async fn listen(verifier: Weak<Verifier>, mut feed: InvalidationFeed) {
    while let Some(msg) = feed.recv().await {
        let Some(v) = verifier.upgrade() else { break };
        match msg {
            Invalidation::Key(id) => v.invalidate(id),
            Invalidation::All => v.invalidate_all(),
        }
    }
}

/// Reads the ids of the store's live keys (up to the cache's capacity) into
/// the ids known to exist, once.
pub(super) async fn preload_known(verifier: Weak<Verifier>) {
    let Some(v) = verifier.upgrade() else { return };
    let limit = usize::try_from(v.config.capacity).unwrap_or(usize::MAX);
    match v.store.list_live_ids(limit).await {
        Ok(ids) => {
            let count = ids.len();
            for id in ids {
                v.cache.mark_known(id);
            }
            tracing::debug!(target: "keygate::cache", count, "ids of live keys preloaded");
        }
        Err(err) => tracing::warn!(
            target: "keygate::cache",
            error = %err,
            "could not preload the ids of live keys; they become known as they are used"
        ),
    }
}
