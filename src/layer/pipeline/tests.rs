//! The pipeline driven directly: a request in, a [`Next`] out, no service.

use std::future::poll_fn;

use http::Method;
use keygate_core::{MemoryStore, NewKey, Owner, ParseError, Scope};

use super::*;
use crate::{Keygate, KeygateLayer};

/// A `Keygate` over a memory store, and a `read` key of it.
async fn keygate() -> (Keygate, String) {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let created = keys
        .manager()
        .create(NewKey::new(Owner::service("pipeline"), "test").scopes([Scope::READ]))
        .await
        .unwrap();
    (keys, created.key.expose_secret().to_owned())
}

fn request(method: Method, key: Option<&str>) -> Request<()> {
    let mut req = Request::builder().method(method).uri("/notes");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    req.body(()).unwrap()
}

/// Lets a parked request wait until the store, the bank or the limiter
/// answers, as often as it is parked.
async fn waited(mut next: Next, shared: &Shared, req: &Request<()>) -> Next {
    while let Next::Wait(wait) = next {
        let mut wait = Some(wait);
        next = poll_fn(|cx| match wait.take().unwrap().poll(cx, shared, req) {
            ControlFlow::Continue(still) => {
                wait = Some(still);
                Poll::Pending
            }
            ControlFlow::Break(next) => Poll::Ready(next),
        })
        .await;
    }
    next
}

fn refusal(next: &Next) -> (&str, &str) {
    match next {
        Next::Refuse(r) => (r.rejection.code(), r.reason.as_str()),
        _ => panic!("not refused"),
    }
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_or_anonymous_when_optional() {
    let (keys, _) = keygate().await;
    let req = request(Method::GET, None);
    assert_eq!(
        refusal(&start(&keys.shared, &req)),
        ("missing_key", "missing")
    );
    let optional = keys.layer().optional(true);
    assert!(matches!(start(&optional.shared, &req), Next::Anonymous));
}

#[tokio::test]
async fn garbage_is_refused_with_the_check_that_failed() {
    let (keys, key) = keygate().await;
    let req = request(Method::GET, Some("kg_live_short"));
    assert_eq!(
        refusal(&start(&keys.shared, &req)),
        ("malformed_key", "length")
    );
    let test_key = key.replacen("_live_", "_tset_", 1);
    let req = request(Method::GET, Some(&test_key));
    assert_eq!(
        refusal(&start(&keys.shared, &req)),
        ("malformed_key", "environment_syntax")
    );
    assert_eq!(
        Reason::Parse(ParseError::Checksum).as_str(),
        "checksum",
        "audit reasons are part of the log's format"
    );
}

#[tokio::test]
async fn a_key_is_loaded_once_then_admitted_from_the_cache() {
    let (keys, key) = keygate().await;
    let shared = &keys.shared;
    let req = request(Method::GET, Some(&key));
    let first = start(shared, &req);
    assert!(matches!(first, Next::Wait(Wait::Store { .. })), "a miss");
    assert!(matches!(waited(first, shared, &req).await, Next::Admit(_)));
    let Next::Admit(admission) = start(shared, &req) else {
        panic!("a cache hit is admitted at once");
    };
    let mut req = req;
    admit(shared, &mut req, admission);
    let attached = req
        .extensions()
        .get::<ApiKey>()
        .expect("the key is attached");
    assert_eq!(attached.owner(), &Owner::service("pipeline"));
}

#[tokio::test]
async fn the_scope_is_checked_and_a_nested_layer_judges_only_its_own() {
    let (keys, key) = keygate().await;
    let shared = &keys.shared;
    let post = request(Method::POST, Some(&key));
    let next = waited(start(shared, &post), shared, &post).await;
    assert_eq!(refusal(&next), ("insufficient_scope", "scope"));

    let mut get = request(Method::GET, Some(&key));
    let Next::Admit(admission) = waited(start(shared, &get), shared, &get).await else {
        panic!("a read key may GET");
    };
    admit(shared, &mut get, admission);
    assert!(matches!(start(shared, &get), Next::Pass(None)));
    let billing: KeygateLayer = keys
        .layer()
        .require_scope(Scope::from_static("billing:read"));
    assert_eq!(
        refusal(&start(&billing.shared, &get)),
        ("insufficient_scope", "route_scope")
    );
}
