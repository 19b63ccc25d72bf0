//! keygate in front of tonic services, driven by a real tonic client over
//! loopback: every gRPC status keygate produces, streaming calls, rate
//! limits, and tonic mounted in an axum `Router` beside plain HTTP routes.

#[path = "../examples/support/notes_grpc.rs"]
mod notes_grpc;

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use keygate::{
    Keygate,
    core::{KeyId, MemoryStore, NewKey, Owner, Quota, Scope},
};
use keygate_test_support::{Failure, Op, TestStore};
use notes_grpc::{
    CreateNoteRequest, GetNoteRequest, ListNotesRequest, NotesClient, NotesServer, with_key,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;

struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the notes service behind `keys` with tonic's own server.
async fn serve_tonic(keys: &Keygate) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .layer(keys.grpc_layer())
        .add_service(NotesServer::default())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stopped.await;
        });
    tokio::spawn(server);
    Served {
        addr,
        stop: Some(stop),
    }
}

/// Serves an axum router holding both a plain HTTP route behind `keys`' HTTP
/// layer and the tonic service behind its gRPC layer.
async fn serve_axum(keys: &Keygate) -> Served {
    use keygate::Layer as _;
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route_layer(keys.layer())
        .route_service(
            "/notes.v1.Notes/{*method}",
            keys.grpc_layer().layer(NotesServer::default()),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Served {
        addr,
        stop: Some(stop),
    }
}

async fn client(addr: SocketAddr) -> NotesClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    NotesClient::new(channel)
}

struct Keys {
    keys: Keygate,
    read: String,
    write: String,
}

async fn keys_with(quota: Quota) -> Keys {
    let keys = Keygate::builder(MemoryStore::new())
        .prefix("grpc")
        .default_rate_limit(quota)
        .build();
    let m = keys.manager();
    let read = m
        .create(NewKey::new(Owner::service("reader"), "r").scopes([Scope::READ]))
        .await
        .unwrap();
    let write = m
        .create(NewKey::new(Owner::service("writer"), "w").scopes([Scope::READ, Scope::WRITE]))
        .await
        .unwrap();
    Keys {
        keys,
        read: read.key.expose_secret().to_owned(),
        write: write.key.expose_secret().to_owned(),
    }
}

#[tokio::test]
async fn statuses_for_each_rejection() {
    let k = keys_with(Quota::per_hour(1000)).await;
    let served = serve_tonic(&k.keys).await;
    let mut c = client(served.addr).await;

    // Authenticated calls work, and the handler sees the key's owner.
    let note = c
        .create_note(with_key(
            CreateNoteRequest { text: "a".into() },
            Some(&k.write),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.author, "service:writer");
    let got = c
        .get_note(with_key(GetNoteRequest { id: note.id }, Some(&k.read)))
        .await;
    assert_eq!(got.unwrap().into_inner().text, "a");

    let no_key = c
        .get_note(with_key(GetNoteRequest { id: 1 }, None))
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::Unauthenticated);
    assert!(
        no_key.message().starts_with("missing_key"),
        "{}",
        no_key.message()
    );

    let garbage = c
        .get_note(with_key(GetNoteRequest { id: 1 }, Some("grpc_live_nope")))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
    assert!(garbage.message().starts_with("malformed_key"));

    // Get* needs read; Create* needs write; Delete* needs delete.
    let denied = c
        .create_note(with_key(
            CreateNoteRequest { text: "b".into() },
            Some(&k.read),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("`write`"));
    let denied = c
        .delete_note(with_key(GetNoteRequest { id: note.id }, Some(&k.write)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Revocation is effective on the next call.
    let id: KeyId = k.read[10..20].parse().unwrap();
    k.keys.manager().revoke(id).await.unwrap();
    let revoked = c
        .get_note(with_key(GetNoteRequest { id: note.id }, Some(&k.read)))
        .await
        .unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
    assert!(revoked.message().starts_with("revoked_key"));
}

#[tokio::test]
async fn server_streaming_is_authenticated_at_call_start() {
    let k = keys_with(Quota::per_hour(1000)).await;
    let served = serve_tonic(&k.keys).await;
    let mut c = client(served.addr).await;
    for text in ["x", "y", "z"] {
        c.create_note(with_key(
            CreateNoteRequest { text: text.into() },
            Some(&k.write),
        ))
        .await
        .unwrap();
    }
    let mut stream = c
        .list_notes(with_key(ListNotesRequest {}, Some(&k.read)))
        .await
        .unwrap()
        .into_inner();
    let mut texts = Vec::new();
    while let Some(n) = stream.message().await.unwrap() {
        texts.push(n.text);
    }
    assert_eq!(texts, ["x", "y", "z"]);

    let err = c
        .list_notes(with_key(ListNotesRequest {}, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn rate_limit_is_resource_exhausted_with_a_retry_delay() {
    let k = keys_with(Quota::per_hour(3)).await;
    let served = serve_tonic(&k.keys).await;
    let mut c = client(served.addr).await;
    for _ in 0..3 {
        let r = c
            .get_note(with_key(GetNoteRequest { id: 9 }, Some(&k.read)))
            .await;
        // Admitted: the service itself answers NOT_FOUND for a missing note.
        assert_eq!(r.unwrap_err().code(), Code::NotFound);
    }
    let limited = c
        .get_note(with_key(GetNoteRequest { id: 9 }, Some(&k.read)))
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let md = limited.metadata();
    let retry: u64 = md
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1200).contains(&retry), "retry-after {retry}");
    let pushback: u64 = md
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pushback >= 1);
    // Another key has its own quota.
    let other = c
        .get_note(with_key(GetNoteRequest { id: 9 }, Some(&k.write)))
        .await;
    assert_eq!(other.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn store_outage_is_unavailable_not_unauthenticated() {
    // Every lookup fails, as during a database outage.
    let store = TestStore::memory();
    store.fail(Op::Find, Failure::Unavailable);
    let keys = Keygate::builder(store).prefix("grpc").build();
    let created = keys
        .manager()
        .create(NewKey::new(Owner::service("s"), "k").scopes([Scope::READ]))
        .await
        .unwrap();
    let served = serve_tonic(&keys).await;
    let mut c = client(served.addr).await;
    let err = c
        .get_note(with_key(
            GetNoteRequest { id: 1 },
            Some(created.key.expose_secret()),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.metadata().get("retry-after").is_some());
}

/// Sends one HTTP/1.1 request over a fresh connection and returns the
/// status code.
async fn http_status(addr: SocketAddr, path: &str, key: Option<&str>) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let key = key
        .map(|k| format!("x-api-key: {k}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n{key}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn tonic_in_an_axum_router_beside_plain_http() {
    let k = keys_with(Quota::per_hour(1000)).await;
    let served = serve_axum(&k.keys).await;

    // Plain HTTP requests keep HTTP rejections.
    assert_eq!(http_status(served.addr, "/health", None).await, 401);
    assert_eq!(
        http_status(served.addr, "/health", Some(&k.read)).await,
        200
    );

    // gRPC calls on the same server get gRPC statuses.
    let mut c = client(served.addr).await;
    let err = c
        .get_note(with_key(GetNoteRequest { id: 1 }, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let note = c
        .create_note(with_key(
            CreateNoteRequest {
                text: "via axum".into(),
            },
            Some(&k.write),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.author, "service:writer");
    let err = c
        .create_note(with_key(
            CreateNoteRequest { text: "no".into() },
            Some(&k.read),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
