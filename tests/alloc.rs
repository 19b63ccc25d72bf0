//! Heap allocations on the success path: what one admitted request costs
//! through keygate beyond the bare router, with a warm cache.
//!
//! The design budget allows no allocation per request "beyond what
//! extensions need". This counts them with a counting global allocator, prints
//! the figures, and fails if keygate's extra count grows.

// The workspace denies `unsafe_code` (it cannot `forbid` it, or this `allow`
// would be rejected): counting allocations needs an `unsafe impl GlobalAlloc`
// that only forwards to the system allocator. Nothing else in the workspace
// needs unsafe code.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use axum::{
    body::Body,
    http::{HeaderValue, Request, StatusCode},
    routing::RouterIntoService,
};
use keygate::core::{KeyInfo, MemoryStore, NewKey, Owner, Scope};
use keygate_test_support::bench::{self, app, call, request, service};
use tokio::runtime::Runtime;
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// Forwards to [`System`], counting allocations (and reallocations, which
/// may move) while [`COUNTING`] is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees are ours; the counters are atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Allocations keygate may add beyond a layer that does nothing but put the
/// key's info into the request's extensions (which, in axum 0.8.9, itself
/// costs 4 over the bare router: axum boxes each layered route's service
/// clone and future, and the extensions need a `Box` for the value and a
/// bigger hash table, since the router's own three entries fill the
/// smallest one).
///
/// The one extra today: axum boxes keygate's `ResponseBody<Body>` into a new
/// `Body`, because it is not a `Body` itself. Set this to 0 when the layer
/// returns the inner body type; a regression that adds one fails here.
const MAX_OVER_EXTENSIONS: u64 = 1;

/// Allocations made by one request, from `call` to the response dropped.
/// Building the request and cloning the service are not counted. The median
/// of several runs, so rare one-off work (a lazily grown buffer, a background
/// task's tick) does not count against the request path, but work done on
/// every other request does.
fn allocations_per_request(rt: &Runtime, svc: &RouterIntoService<Body>, key: &HeaderValue) -> u64 {
    let runs = (0..21).map(|_| {
        let req = request(Some(key));
        let svc = svc.clone();
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        let status = rt.block_on(async move { call(svc, req).await.status() });
        COUNTING.store(false, Ordering::SeqCst);
        assert_eq!(status, StatusCode::OK, "the request must be admitted");
        ALLOCATIONS.load(Ordering::SeqCst)
    });
    let mut runs: Vec<u64> = runs.collect();
    runs.sort_unstable();
    runs[runs.len() / 2]
}

#[test]
fn an_admitted_request_allocates_little_beyond_attaching_the_key() {
    let rt = bench::runtime();
    let keys = bench::builder(MemoryStore::new()).build();
    let created = rt
        .block_on(
            keys.manager()
                .create(NewKey::new(Owner::service("alloc"), "alloc").scopes([Scope::READ])),
        )
        .expect("create key");
    let key = HeaderValue::from_str(created.key.expose_secret()).expect("visible ASCII");

    // What attaching the key needs, and nothing else: a layer that puts an
    // `Arc` of the key's info into the extensions, as keygate does.
    let info = Arc::new(KeyInfo::from(&created.record));
    // The `Err` type is tower-http's (a rejection response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let attach_only = ValidateRequestHeaderLayer::custom(move |req: &mut Request<Body>| {
        req.extensions_mut().insert(Arc::clone(&info));
        Ok::<_, axum::response::Response>(())
    });

    let bare = service(app());
    let attaching = service(app().layer(attach_only));
    let guarded = service(app().layer(keys.layer()));
    // Warm up: fills keygate's cache and the limiter's state for the key,
    // and starts its background tasks.
    for svc in [&bare, &attaching, &guarded] {
        allocations_per_request(&rt, svc, &key);
    }

    let bare_count = allocations_per_request(&rt, &bare, &key);
    let attach_count = allocations_per_request(&rt, &attaching, &key);
    let keygate_count = allocations_per_request(&rt, &guarded, &key);
    println!(
        "allocations per admitted request: bare router {bare_count}; \
         a layer that only attaches the key {attach_count} (+{}); \
         keygate {keygate_count} (+{} over bare, +{} over attaching; budget +{MAX_OVER_EXTENSIONS})",
        attach_count - bare_count,
        keygate_count - bare_count,
        keygate_count.saturating_sub(attach_count),
    );
    assert!(
        keygate_count <= attach_count + MAX_OVER_EXTENSIONS,
        "keygate makes {keygate_count} allocations per admitted request; a layer that only \
         attaches the key makes {attach_count}, and keygate may add at most \
         {MAX_OVER_EXTENSIONS} to that"
    );
}
