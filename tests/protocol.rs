//! The rules that judge a request are the layer's, never the request's: an
//! attacker who dresses an HTTP request as gRPC (or a gRPC call as plain
//! HTTP) gets no more than its key's scopes allow. Driven through a real
//! axum router served over loopback and a real tonic service.

#[path = "../examples/support/notes_grpc.rs"]
mod notes_grpc;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    routing::{any, delete, get},
};
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use keygate::{
    Keygate, Layer as _, Protocol,
    core::{MemoryStore, NewKey, Owner, Scope},
};
use notes_grpc::{CreateNoteRequest, GetNoteRequest, NotesClient, NotesServer, with_key};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;

struct Keys {
    keys: Keygate,
    read: String,
    read_write: String,
    write_delete: String,
}

async fn keys() -> Keys {
    let keys = Keygate::builder(MemoryStore::new()).prefix("pt").build();
    let issue = |scopes: Vec<Scope>| {
        let m = keys.manager().clone();
        async move {
            m.create(NewKey::new(Owner::service("s"), "k").scopes(scopes))
                .await
                .unwrap()
                .key
                .expose_secret()
                .to_owned()
        }
    };
    Keys {
        read: issue(vec![Scope::READ]).await,
        read_write: issue(vec![Scope::READ, Scope::WRITE]).await,
        write_delete: issue(vec![Scope::WRITE, Scope::DELETE]).await,
        keys,
    }
}

type Notes = Arc<Mutex<Vec<u64>>>;

/// The quickstart's shape: notes behind the HTTP layer with `route_layer`,
/// plus routes whose last segment looks like a gRPC read method and one
/// that answers an unusual method.
async fn serve_http(keys: &Keygate, notes: Notes) -> SocketAddr {
    let app = Router::new()
        .route("/notes/{id}", delete(remove_note))
        .route("/v1/GetReport", any(|| async { "mutated" }))
        .route("/purge", any(|| async { "purged" }))
        .route_layer(keys.layer())
        .with_state(notes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn remove_note(State(notes): State<Notes>, Path(id): Path<u64>) -> StatusCode {
    let mut notes = notes.lock().unwrap();
    let before = notes.len();
    notes.retain(|n| *n != id);
    if notes.len() < before {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// One raw HTTP/1.1 request: status line, headers and body as text.
async fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn status(response: &str) -> u16 {
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_grpc_content_type_does_not_change_http_rules() {
    let k = keys().await;
    let notes: Notes = Arc::new(Mutex::new(vec![1, 2]));
    let addr = serve_http(&k.keys, Arc::clone(&notes)).await;
    for ct in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web",
    ] {
        // A read+write key may not DELETE, however the request is dressed.
        let res = raw(
            addr,
            "DELETE",
            "/notes/1",
            &[("x-api-key", &k.read_write), ("content-type", ct)],
        )
        .await;
        assert_eq!(status(&res), 400, "{ct}: {res}");
        assert!(res.contains("wrong_protocol"), "{res}");
        assert!(res.contains("application/problem+json"), "{res}");
        assert!(
            res.to_ascii_lowercase().contains("cache-control: no-store"),
            "{res}"
        );
        assert!(
            !res.contains("grpc-status"),
            "an HTTP route answers in HTTP: {res}"
        );
        // A read key may not mutate a route that is named like a gRPC read.
        let res = raw(
            addr,
            "POST",
            "/v1/GetReport",
            &[("x-api-key", &k.read), ("content-type", ct)],
        )
        .await;
        assert_eq!(status(&res), 400, "{res}");
        // An unusual method still needs `admin`, not `write`.
        let res = raw(
            addr,
            "PURGE",
            "/purge",
            &[("x-api-key", &k.read_write), ("content-type", ct)],
        )
        .await;
        assert_eq!(status(&res), 400, "{res}");
    }
    assert_eq!(*notes.lock().unwrap(), [1, 2], "nothing was deleted");

    // Without the disguise the HTTP rules answer as before.
    let res = raw(addr, "DELETE", "/notes/1", &[("x-api-key", &k.read_write)]).await;
    assert_eq!(status(&res), 403, "{res}");
    assert!(res.contains(r#""required_scope":"delete""#), "{res}");
    let res = raw(addr, "POST", "/v1/GetReport", &[("x-api-key", &k.read)]).await;
    assert_eq!(status(&res), 403, "{res}");
    let res = raw(addr, "PURGE", "/purge", &[("x-api-key", &k.read_write)]).await;
    assert_eq!(status(&res), 403, "{res}");
    assert!(res.contains(r#""required_scope":"admin""#), "{res}");
    let res = raw(
        addr,
        "DELETE",
        "/notes/1",
        &[("x-api-key", &k.write_delete)],
    )
    .await;
    assert_eq!(status(&res), 204, "{res}");
    assert_eq!(*notes.lock().unwrap(), [2]);
}

/// A gRPC frame holding `message`.
fn frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A hand-made call to the tonic service behind `keys`' gRPC layer,
/// with whatever headers an attacker likes.
async fn call(
    svc: &keygate::KeygateService<NotesServer>,
    method: Method,
    path: &str,
    key: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> http::Response<keygate::ResponseBody<tonic::body::Body>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    svc.clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
}

fn grpc_status(res: &http::Response<impl Sized>) -> Option<&str> {
    res.headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_grpc_call_without_its_content_type_is_still_judged_by_its_method() {
    let k = keys().await;
    let server = NotesServer::default();
    let svc = k.keys.grpc_layer().layer(server.clone());

    // A note to attack, created through the front door.
    let created = call(
        &svc,
        Method::POST,
        "/notes.v1.Notes/CreateNote",
        &k.read_write,
        Some("application/grpc"),
        frame(&CreateNoteRequest { text: "x".into() }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::OK);
    assert_eq!(
        grpc_status(&created),
        None,
        "admitted: tonic answers in trailers"
    );
    let _ = created.into_body().collect().await.unwrap();

    // A read+write key calling DeleteNote: refused whatever the
    // content type says (today's tonic does not check it).
    for ct in [
        None,
        Some("text/plain"),
        Some("application/json"),
        Some("application/grpc"),
    ] {
        let res = call(
            &svc,
            Method::POST,
            "/notes.v1.Notes/DeleteNote",
            &k.read_write,
            ct,
            frame(&GetNoteRequest { id: 1 }),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{ct:?}");
        assert_eq!(grpc_status(&res), Some("7"), "{ct:?}: PERMISSION_DENIED");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let msg = res.headers()["grpc-message"].to_str().unwrap();
        assert!(msg.contains("insufficient_scope"), "{msg}");
    }

    // Paths a gRPC layer cannot judge are refused, not guessed at: other
    // methods, percent-encoded names, extra segments.
    for (method, path) in [
        (Method::GET, "/notes.v1.Notes/DeleteNote"),
        (Method::PUT, "/notes.v1.Notes/DeleteNote"),
        (Method::POST, "/notes.v1.Notes/Delete%4Eote"),
        (Method::POST, "/notes.v1.Notes/DeleteNote/x"),
        (Method::POST, "/notes.v1.Notes/"),
        (Method::POST, "/"),
    ] {
        let res = call(
            &svc,
            method.clone(),
            path,
            &k.write_delete,
            Some("application/grpc"),
            frame(&GetNoteRequest { id: 1 }),
        )
        .await;
        assert_eq!(grpc_status(&res), Some("3"), "{method} {path}");
        let msg = res.headers()["grpc-message"].to_str().unwrap();
        assert!(msg.starts_with("wrong_protocol"), "{msg}");
    }

    // The note survived every attempt; a key with `delete` may remove it.
    let res = call(
        &svc,
        Method::POST,
        "/notes.v1.Notes/DeleteNote",
        &k.write_delete,
        None,
        frame(&GetNoteRequest { id: 1 }),
    )
    .await;
    assert_eq!(grpc_status(&res), None, "admitted");
    let body = res.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().unwrap_or_default();
    assert_eq!(trailers["grpc-status"], "0", "deleted");
}

#[tokio::test]
async fn a_grpc_service_behind_an_http_layer_fails_loudly() {
    // The misconfiguration the old content-type sniffing hid: a tonic
    // service behind the HTTP layer. Real gRPC clients are refused at once
    // (rather than their calls being judged as plain POSTs).
    let k = keys().await;
    let app = Router::new()
        .route_service("/notes.v1.Notes/{*method}", NotesServer::default())
        .layer(k.keys.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = NotesClient::new(channel);
    let err = c
        .get_note(with_key(GetNoteRequest { id: 1 }, Some(&k.read_write)))
        .await
        .unwrap_err();
    assert_ne!(
        err.code(),
        tonic::Code::NotFound,
        "the call must not reach the service"
    );
    assert_ne!(err.code(), tonic::Code::Ok);
}

#[tokio::test]
async fn the_protocol_comes_from_configuration() {
    // A server that only serves gRPC can say so once on the builder.
    let keys = Keygate::builder(MemoryStore::new())
        .protocol(Protocol::Grpc)
        .build();
    let key = keys
        .manager()
        .create(NewKey::new(Owner::service("s"), "k").scopes([Scope::READ]))
        .await
        .unwrap();
    let svc = keys.layer().layer(NotesServer::default());
    let res = call(
        &svc,
        Method::POST,
        "/notes.v1.Notes/CreateNote",
        key.key.expose_secret(),
        None,
        frame(&CreateNoteRequest { text: "x".into() }),
    )
    .await;
    assert_eq!(grpc_status(&res), Some("7"));
    // And a layer can be switched back to HTTP.
    let http = keys.layer().protocol(Protocol::Http);
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .route_layer(http);
    let res = app
        .oneshot(
            Request::get("/x")
                .header("x-api-key", key.key.expose_secret())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
