//! The management API's body input through the real `keygate::manage::router`:
//! arbitrary bytes as the body of `POST /keys`, `PATCH /keys/{id}` and
//! `POST /keys/{id}/rotate`. Never a panic, never a 5xx; every refusal is
//! `application/problem+json` with its status in the body; every success is
//! JSON.
#![no_main]

use std::cell::RefCell;

use axum::{Router, body::Body};
use http::{Method, Request, header};
use http_body_util::BodyExt;
use keygate::{
    Keygate,
    core::{Environment, MemoryStore, NewKey, Owner, Scope},
};
use keygate_test_support::key::issue;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tower::ServiceExt;

struct World {
    rt: Runtime,
    keys: Keygate,
    app: Router,
    admin: String,
    /// Inputs run on this world; it is rebuilt now and then so the keys
    /// that successful inputs create do not pile up.
    runs: u32,
}

impl World {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let keys = Keygate::builder(MemoryStore::new()).prefix("mbk").build();
        let admin = rt.block_on(issue(
            keys.manager(),
            NewKey::new(Owner::service("ops"), "admin").scopes([Scope::ADMIN]),
        ));
        let app = Router::new().nest("/admin", keygate::manage::router(&keys));
        Self {
            rt,
            keys,
            app,
            admin,
            runs: 0,
        }
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

#[derive(Debug)]
enum Route {
    Create,
    Update,
    Rotate,
}

/// The first byte picks the route and the target; the rest is the body,
/// so seeds and the dictionary are plain JSON.
#[derive(Debug)]
struct Input {
    route: Route,
    /// For `PATCH` and rotate: the target key's environment and whether it
    /// exists at all.
    live: bool,
    missing: bool,
    /// Send `Content-Type: application/json` or none.
    json_type: bool,
    body: Vec<u8>,
}

impl Input {
    fn new(data: &[u8]) -> Option<Self> {
        let (&head, body) = data.split_first()?;
        let route = match head % 3 {
            0 => Route::Create,
            1 => Route::Update,
            _ => Route::Rotate,
        };
        Some(Self {
            route,
            live: head & 0x10 != 0,
            missing: head & 0x20 != 0,
            json_type: head & 0x40 == 0,
            body: body.to_vec(),
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::new(data) else {
        return;
    };
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|w| w.runs >= 2048) {
            *slot = Some(World::new());
        }
        let w = slot.as_mut().unwrap();
        w.runs += 1;
        run(w, input);
    });
});

fn run(w: &World, input: Input) {
    w.rt.block_on(async {
        let target = if input.missing {
            "AAAAAAAAAA".to_owned()
        } else {
            let env = if input.live {
                Environment::Live
            } else {
                Environment::Test
            };
            let new = NewKey::new(Owner::user("u1"), "target")
                .scopes([Scope::READ])
                .environment(env);
            w.keys
                .manager()
                .create(new)
                .await
                .unwrap()
                .record
                .id
                .to_string()
        };
        let (method, path) = match input.route {
            Route::Create => (Method::POST, "/admin/keys".to_owned()),
            Route::Update => (Method::PATCH, format!("/admin/keys/{target}")),
            Route::Rotate => (Method::POST, format!("/admin/keys/{target}/rotate")),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", &w.admin);
        if input.json_type {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Body::from(input.body)).unwrap();
        let res = w.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            !status.is_server_error(),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
        if status.is_success() {
            assert_eq!(content_type.as_deref(), Some("application/json"));
        } else {
            assert!(status.is_client_error(), "{status}");
            assert_eq!(content_type.as_deref(), Some("application/problem+json"));
            assert_eq!(json["status"].as_u64(), Some(u64::from(status.as_u16())));
            assert!(json["code"].is_string());
        }
    });
}
