//! Key extraction through the real layer on an axum router: a request
//! built from fuzz input (method, query, repeated `X-API-Key` and
//! `Authorization` headers), where any value may be the one valid key.
//! Never a panic, never a 5xx; a request is admitted only if every key
//! source it fills holds the valid key; and the inner service then sees
//! no trace of the credential where keygate reads keys.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use axum::{Router, body::Body, routing};
use http::{HeaderValue, Method, Request, StatusCode, header};
use keygate::{
    ApiKey, Keygate,
    core::{MemoryStore, NewKey, Owner, Scope},
};
use keygate_test_support::{form::pairs, key::issue};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tower::ServiceExt;

struct World {
    rt: Runtime,
    key: String,
    required: Router,
    optional: Router,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let keys = Keygate::builder(MemoryStore::new())
            .query_param("api_key")
            .bearer(true)
            .strip_credential(true)
            .build();
        let key = rt.block_on(issue(
            keys.manager(),
            NewKey::new(Owner::user("u1"), "fuzz").scopes([Scope::READ, Scope::WRITE]),
        ));
        let routes = || Router::new().route("/echo", routing::any(inner));
        World {
            required: routes().layer(keys.layer()),
            optional: routes().layer(keys.layer().optional(true)),
            rt,
            key,
        }
    })
}

/// The inner service: with a key attached, no key source may still carry
/// the credential (the layer strips it).
async fn inner(req: Request<Body>) -> &'static str {
    if req.extensions().get::<ApiKey>().is_some() {
        let key = &world().key;
        assert!(
            req.headers().get("x-api-key").is_none(),
            "key header reached the service"
        );
        // `Authorization: Bearer <key>` is a key source; the key under
        // another scheme (or none) is not keygate's to remove.
        for v in req.headers().get_all(header::AUTHORIZATION) {
            let b = v.as_bytes();
            let bearer = b.len() >= 7 && b[..7].eq_ignore_ascii_case(b"bearer ");
            assert!(
                !(bearer && b[7..].trim_ascii() == key.as_bytes()),
                "bearer key reached the service"
            );
        }
        if let Some(q) = req.uri().query() {
            for (k, v) in pairs(q) {
                assert!(
                    !(k == "api_key" && v == *key),
                    "query key reached the service"
                );
            }
        }
    }
    "ok"
}

#[derive(Arbitrary, Debug)]
enum Val {
    Real,
    /// The valid key with every byte percent-encoded (query only).
    RealEncoded,
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Part {
    /// An `X-API-Key` header.
    Header(Val),
    /// An `Authorization` header: `scheme` bytes, then the value.
    Auth(Vec<u8>, Val),
    /// A query segment `name=value` (no `=` if the value is absent).
    Query(Vec<u8>, Option<Val>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    optional: bool,
    method: u8,
    parts: Vec<Part>,
}

fn bytes_of(v: &Val, key: &str) -> Vec<u8> {
    match v {
        Val::Real => key.as_bytes().to_vec(),
        Val::RealEncoded => key
            .bytes()
            .flat_map(|b| format!("%{b:02X}").into_bytes())
            .collect(),
        Val::Bytes(b) => b.clone(),
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    let method = match input.method % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::DELETE,
        _ => Method::PATCH,
    };
    let mut query: Vec<u8> = Vec::new();
    let mut headers: Vec<(http::HeaderName, HeaderValue)> = Vec::new();
    // Every `X-API-Key` header is read as a key, so an admitted request
    // has only the valid key there. (`Authorization` values are not
    // modelled: whether keygate takes one for its key depends on its scheme
    // and prefix.)
    let mut only_valid = true;
    for part in &input.parts {
        match part {
            Part::Header(v) => {
                let Ok(value) = HeaderValue::from_bytes(&bytes_of(v, &w.key)) else {
                    continue;
                };
                only_valid &= value.as_bytes() == w.key.as_bytes();
                headers.push((http::HeaderName::from_static("x-api-key"), value));
            }
            Part::Auth(scheme, v) => {
                let mut b = scheme.clone();
                b.extend(bytes_of(v, &w.key));
                let Ok(value) = HeaderValue::from_bytes(&b) else {
                    continue;
                };
                headers.push((header::AUTHORIZATION, value));
            }
            Part::Query(name, v) => {
                if !query.is_empty() {
                    query.push(b'&');
                }
                query.extend(name);
                if let Some(v) = v {
                    query.push(b'=');
                    query.extend(bytes_of(v, &w.key));
                }
            }
        }
    }
    let uri = format!("/echo?{}", String::from_utf8_lossy(&query));
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return;
    };
    // Likewise every query parameter named `api_key` (after decoding).
    for (k, v) in pairs(uri.query().unwrap_or("")) {
        only_valid &= k != "api_key" || v == w.key;
    }
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let req = req.body(Body::empty()).unwrap();
    let app = if input.optional {
        w.optional.clone()
    } else {
        w.required.clone()
    };
    let status =
        w.rt.block_on(async move { app.oneshot(req).await.unwrap().status() });
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN
        ]
        .contains(&status),
        "status {status}"
    );
    assert!(
        status != StatusCode::OK || only_valid,
        "admitted with another value beside the key"
    );
});
