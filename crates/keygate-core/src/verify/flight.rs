//! Store lookups in flight: concurrent misses for one id share one query,
//! lookups of ids not known to exist are bounded, and a lookup that began
//! before an invalidation never fills the cache.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use time::OffsetDateTime;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::{CachedKey, Loaded, Verifier};
use crate::{KeyId, sync::lock};

/// The lookups in flight, one per id.
///
/// Every change to the map and to a flight's `waiters` happens under its
/// lock, and so does every cache fill by a flight and every invalidation,
/// so an invalidation is never undone by a load that began before it.
pub(super) struct Flights {
    map: Mutex<HashMap<KeyId, Arc<Flight>>>,
    // Permits for store lookups of ids not known to exist.
    unknown_lookups: Arc<Semaphore>,
}

/// One store lookup in progress, shared by every request waiting for its id.
pub(super) struct Flight {
    cell: OnceCell<Loaded>,
    // How many `Joined` wait on this flight; changed only under the
    // `Flights` lock, so the last one to leave knows it is the last.
    waiters: AtomicUsize,
    // Set under the `Flights` lock when the id is invalidated: the answer
    // may predate the change, so it must not fill the cache.
    stale: AtomicBool,
    // For an id not known to exist: held until the last waiter leaves, so
    // the bound counts every query that may still be running.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Flights {
    /// No lookups in flight, and at most `max_unknown_lookups` (at least 1)
    /// of ids not known to exist at once.
    pub(super) fn new(max_unknown_lookups: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            unknown_lookups: Arc::new(Semaphore::new(max_unknown_lookups.max(1))),
        }
    }

    /// Distinct ids being read.
    pub(super) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Runs `fill` (a cache fill with `flight`'s answer) unless the flight's
    /// id was invalidated since the flight began; says whether it ran.
    pub(super) fn fill_unless_stale(&self, flight: &Flight, fill: impl FnOnce()) -> bool {
        let _map = lock(&self.map);
        let fresh = !flight.stale.load(Ordering::Relaxed);
        if fresh {
            fill();
        }
        fresh
    }

    /// Marks the flight for `id`, if any, stale and lets it go (requests
    /// already waiting still get its answer), then runs `forget`.
    pub(super) fn invalidate(&self, id: KeyId, forget: impl FnOnce()) {
        let mut map = lock(&self.map);
        if let Some(flight) = map.remove(&id) {
            flight.stale.store(true, Ordering::Relaxed);
        }
        forget();
    }

    /// [`invalidate`](Self::invalidate) for every id at once.
    pub(super) fn invalidate_all(&self, forget: impl FnOnce()) {
        let mut map = lock(&self.map);
        for (_, flight) in map.drain() {
            flight.stale.store(true, Ordering::Relaxed);
        }
        forget();
    }

    /// Removes `flight`, answered, from the map if it is still there for
    /// `id`: later requests must find the cache filled, or ask again.
    fn end(&self, id: KeyId, flight: &Arc<Flight>) {
        let mut map = lock(&self.map);
        Self::remove_if_current(&mut map, id, flight);
    }

    /// One waiter leaves `flight`; the last one removes it, answered or not.
    fn leave(&self, id: KeyId, flight: &Arc<Flight>) {
        let mut map = lock(&self.map);
        if flight.waiters.fetch_sub(1, Ordering::Relaxed) == 1 {
            Self::remove_if_current(&mut map, id, flight);
        }
    }

    fn remove_if_current(map: &mut HashMap<KeyId, Arc<Flight>>, id: KeyId, flight: &Arc<Flight>) {
        if map.get(&id).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(&id);
        }
    }
}

impl Verifier {
    /// Joins the store lookup in flight for `id`, or starts one. `None` if a
    /// new lookup of an id not `known` to exist would exceed
    /// [`CacheConfig::max_unknown_lookups`](super::CacheConfig::max_unknown_lookups);
    /// joining an existing lookup is always allowed, as it costs the store
    /// nothing.
    pub(super) fn join(self: &Arc<Self>, id: KeyId, known: bool) -> Option<Joined> {
        let flights = &self.flights;
        let mut map = lock(&flights.map);
        let flight = match map.get(&id) {
            Some(flight) => Arc::clone(flight),
            None => {
                let permit = if known {
                    None
                } else {
                    Some(
                        Arc::clone(&flights.unknown_lookups)
                            .try_acquire_owned()
                            .ok()?,
                    )
                };
                let flight = Arc::new(Flight {
                    cell: OnceCell::new(),
                    waiters: AtomicUsize::new(0),
                    stale: AtomicBool::new(false),
                    _permit: permit,
                });
                map.insert(id, Arc::clone(&flight));
                flight
            }
        };
        flight.waiters.fetch_add(1, Ordering::Relaxed);
        Some(Joined {
            verifier: Arc::clone(self),
            id,
            flight,
        })
    }
}

/// A request's place in a [`Flight`]. However it leaves — answered, or
/// dropped mid-load by a client reset, an HTTP/2 `RST_STREAM` or a timeout —
/// the last one out removes the flight, so cancelled lookups leave nothing
/// behind (and release their share of `max_unknown_lookups`).
pub(super) struct Joined {
    verifier: Arc<Verifier>,
    id: KeyId,
    flight: Arc<Flight>,
}

impl Joined {
    /// The id being looked up.
    pub(super) fn id(&self) -> KeyId {
        self.id
    }

    /// The current time by the verifier's clock.
    pub(super) fn now(&self) -> OffsetDateTime {
        self.verifier.clock.now()
    }

    /// The flight's answer, asking the store if nobody has yet.
    pub(super) async fn wait(&self) -> Loaded {
        let result = self.flight.cell.get_or_init(|| self.fetch()).await.clone();
        // Answered: later requests find the cache filled, or (after an
        // error) must ask the store again rather than reuse this answer.
        self.verifier.flights.end(self.id, &self.flight);
        result
    }

    async fn fetch(&self) -> Loaded {
        let v = &self.verifier;
        v.store_queries.fetch_add(1, Ordering::Relaxed);
        let found = v.store.find(self.id).await.map_err(Arc::new)?;
        // Built before taking the lock, which must not wait on a clock or
        // an allocator longer than it has to.
        let entry = found.map(|record| {
            let epoch = v.cache.epoch();
            Arc::new(CachedKey::read_in_epoch(&record, v.clock.now(), epoch))
        });
        // An invalidation either comes first (and this answer, possibly
        // read before the change, is not cached) or comes after (and
        // removes what this puts in).
        let cached = v.flights.fill_unless_stale(&self.flight, || {
            v.cache.fill(self.id, entry.as_ref());
        });
        if !cached && let Some(entry) = &entry {
            // Not in the cache, so no flush would see the uses the waiting
            // requests count on it: the ledger keeps it until they are done.
            v.ledger.retire(Arc::clone(entry));
        }
        Ok(entry)
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.verifier.flights.leave(self.id, &self.flight);
    }
}
