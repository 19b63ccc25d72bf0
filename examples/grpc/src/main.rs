//! keygate in front of a tonic gRPC server, called by a real tonic client
//! with a read key, a write key and no key.
//!
//! ```sh
//! cargo run -p keygate-example-grpc
//! ```
//!
//! The server and client run in one process on 127.0.0.1 (an ephemeral
//! port) and the example exits when the calls are done.

// Shared with keygate's own gRPC tests (`tests/grpc.rs`, `tests/protocol.rs`),
// which include the same file.
#[path = "../../support/notes_grpc.rs"]
mod notes_grpc;

use keygate::{
    Keygate,
    core::{MemoryStore, NewKey, Owner, Quota, Scope},
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
