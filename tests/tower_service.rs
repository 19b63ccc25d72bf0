//! The layer around plain tower services (no axum router): any request and
//! response body type, the key in the request's extensions, inner errors
//! passed through untouched, and the path that waits for the store.

mod common;

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use common::{builder, issue_scoped};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, Full};
use keygate::{ApiKey, ResponseBody, core::Scope};
use tower::{Service as _, ServiceBuilder, ServiceExt};

fn request<B>(key: Option<&str>, body: B) -> Request<B> {
    let mut b = Request::builder().uri("/things");
    if let Some(key) = key {
        b = b.header("x-api-key", key);
    }
    b.body(body).unwrap()
}

#[tokio::test]
async fn wraps_a_service_fn_with_its_own_body_types() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .layer(keys.layer())
        .service_fn(move |req: Request<String>| {
            seen.fetch_add(1, Ordering::SeqCst);
            let owner = req
                .extensions()
                .get::<ApiKey>()
                .map(|k| k.owner().to_string());
            let body = format!("{} says {}", owner.unwrap_or_default(), req.into_body());
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
        });

    // The first request waits for the store, the second hits the cache.
    for _ in 0..2 {
        let res: Response<ResponseBody<Full<Bytes>>> = svc
            .clone()
            .oneshot(request(Some(&key), "hello".to_owned()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "user:u1 says hello");
    }

    let res = svc
        .clone()
        .oneshot(request(None, "hello".to_owned()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let len = res
        .body()
        .size_hint()
        .exact()
        .expect("a rejection's size is known");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len() as u64, len);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "missing_key");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn any_response_body_type_works() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;

    let empty = ServiceBuilder::new()
        .layer(keys.layer())
        .service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        });
    let res = empty.oneshot(request(Some(&key), ())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.body().is_end_stream());

    let text = ServiceBuilder::new()
        .layer(keys.layer())
        .service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("plain text")))
        });
    let res = text.clone().oneshot(request(Some(&key), ())).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "plain text");
    let res = text.oneshot(request(Some("nope"), ())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("malformed_key")
    );
}

#[derive(Debug, PartialEq)]
struct InnerFailed;

#[tokio::test]
async fn inner_errors_pass_through_and_rejections_are_responses() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let svc = ServiceBuilder::new()
        .layer(keys.layer())
        .service_fn(|_: Request<()>| async { Err::<Response<Empty<Bytes>>, _>(InnerFailed) });

    // Cold (store lookup) and warm (cache hit).
    for _ in 0..2 {
        let err = svc
            .clone()
            .oneshot(request(Some(&key), ()))
            .await
            .unwrap_err();
        assert_eq!(err, InnerFailed);
    }
    // A rejection never calls the inner service, so never fails.
    let res = svc.oneshot(request(None, ())).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_service_is_reusable_after_waiting_for_the_store() {
    let keys = builder().build();
    let keys_list: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(issue_scoped(&keys, [Scope::READ]).await);
        }
        v
    };
    let mut svc =
        ServiceBuilder::new()
            .layer(keys.layer())
            .service_fn(|req: Request<()>| async move {
                let id = req.extensions().get::<ApiKey>().unwrap().id().to_string();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(id))))
            });

    // One service value, driven through `ready` + `call` many times, each
    // key a cache miss the first time.
    for round in 0..2 {
        for key in &keys_list {
            let res = svc
                .ready()
                .await
                .unwrap()
                .call(request(Some(key), ()))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "round {round}");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, common::key_id(&keys, key).as_str());
        }
    }
}
