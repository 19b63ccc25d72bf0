//! keygate in front of a tonic gRPC server, called by a real tonic client
//! with a read key, a write key and no key.
//!
//! ```sh
//! cargo run -p keygate-example-grpc
//! ```
//!
//! The server and client run in one process on 127.0.0.1 (an ephemeral
//! port) and the example exits when the calls are done.
//!
//! With `--serve`, it keeps serving instead, on `KEYGATE_GRPC_ADDR` (default
//! `127.0.0.1:50051`), prints a read key, a write key and ready-to-paste
//! `grpcurl` calls (the service is `examples/grpc/proto/notes.proto`), and
//! stops on Ctrl-C:
//!
//! ```sh
//! cargo run -p keygate-example-grpc -- --serve
//! ```

// Shared with keygate's own gRPC tests (`tests/grpc.rs`, `tests/protocol.rs`),
// which include the same file.
#[path = "../../support/notes_grpc.rs"]
mod notes_grpc;

use keygate::{
    Keygate,
    core::{MemoryStore, NewKey, Owner, PlaintextKey, Quota, Scope},
};
use notes_grpc::{
    CreateNoteRequest, GetNoteRequest, ListNotesRequest, NotesClient, NotesServer, with_key,
};
use tokio_stream::wrappers::TcpListenerStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = Keygate::builder(MemoryStore::new())
        .prefix("demo")
        .default_rate_limit(Quota::per_second(50))
        .build();
    let manager = keys.manager();
    let reader = manager
        .create(NewKey::new(Owner::service("dashboard"), "read-only").scopes([Scope::READ]))
        .await?;
    let writer = manager
        .create(
            NewKey::new(Owner::service("importer"), "read-write")
                .scopes([Scope::READ, Scope::WRITE]),
        )
        .await?;

    if std::env::args().skip(1).any(|a| a == "--serve") {
        return serve(&keys, &reader.key, &writer.key).await;
    }

    // The server: keygate's gRPC layer in front of the tonic service. Every
    // call is judged by its method path, whatever its headers say, and
    // refused with a gRPC status; scopes come from the method names
    // (Get*/List* need `read`, Delete* `delete`, others `write`).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(keys.grpc_layer())
            .add_service(NotesServer::default())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = NotesClient::new(channel);
    let read_key = Some(reader.key.expose_secret());
    let write_key = Some(writer.key.expose_secret());

    let note = client
        .create_note(with_key(
            CreateNoteRequest {
                text: "hello".into(),
            },
            write_key,
        ))
        .await?
        .into_inner();
    println!(
        "write key, CreateNote  → OK: note {} by {}",
        note.id, note.author
    );

    let got = client
        .get_note(with_key(GetNoteRequest { id: note.id }, read_key))
        .await?
        .into_inner();
    println!("read key,  GetNote     → OK: {:?}", got.text);

    let mut stream = client
        .list_notes(with_key(ListNotesRequest {}, read_key))
        .await?
        .into_inner();
    while let Some(n) = stream.message().await? {
        println!("read key,  ListNotes   → note {}: {:?}", n.id, n.text);
    }

    let denied = client
        .create_note(with_key(
            CreateNoteRequest {
                text: "nope".into(),
            },
            read_key,
        ))
        .await
        .expect_err("a read key cannot write");
    println!(
        "read key,  CreateNote  → {:?}: {}",
        denied.code(),
        denied.message()
    );

    let anonymous = client
        .get_note(with_key(GetNoteRequest { id: note.id }, None))
        .await
        .expect_err("no key, no access");
    println!(
        "no key,    GetNote     → {:?}: {}",
        anonymous.code(),
        anonymous.message()
    );

    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Serves until Ctrl-C, for clients in other processes.
async fn serve(
    keys: &Keygate,
    reader: &PlaintextKey,
    writer: &PlaintextKey,
) -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("KEYGATE_GRPC_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (set KEYGATE_GRPC_ADDR to another address)")
    })?;
    let addr = listener.local_addr()?;
    // The keys live in memory: they are valid while this process runs.
    println!("keygate gRPC example listening on {addr}  (Ctrl-C to stop)");
    println!("KEYGATE_READ_KEY={}", reader.expose_secret());
    println!("KEYGATE_WRITE_KEY={}", writer.expose_secret());
    let call = |key: &str, data: &str, method: &str| {
        format!(
            "grpcurl -plaintext -import-path examples/grpc/proto -proto notes.proto \\\n  \
             -H \"x-api-key: ${key}\" -d '{data}' {addr} notes.v1.Notes/{method}"
        )
    };
    println!("\n# OK: the write key creates a note");
    println!(
        "{}",
        call("KEYGATE_WRITE_KEY", r#"{"text":"hello"}"#, "CreateNote")
    );
    println!("# OK: the read key reads it");
    println!("{}", call("KEYGATE_READ_KEY", r#"{"id":1}"#, "GetNote"));
    println!("# PermissionDenied: the read key cannot delete");
    println!("{}", call("KEYGATE_READ_KEY", r#"{"id":1}"#, "DeleteNote"));
    tonic::transport::Server::builder()
        .layer(keys.grpc_layer())
        .add_service(NotesServer::default())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    keys.shutdown().await?;
    Ok(())
}
