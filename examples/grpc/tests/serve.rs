//! `--serve`: the example keeps serving for clients in other processes, with
//! the keys it prints.

#[path = "../../support/notes_grpc.rs"]
mod notes_grpc;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use notes_grpc::{CreateNoteRequest, GetNoteRequest, NotesClient, with_key};

/// The example's process, stopped however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_client_in_another_process_calls_with_the_printed_keys() {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_grpc"))
            .arg("--serve")
            .env("KEYGATE_GRPC_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let (mut addr, mut read, mut write) = (None, None, None);
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("keygate gRPC example listening on ") {
            addr = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(key) = line.strip_prefix("KEYGATE_READ_KEY=") {
            read = Some(key.to_owned());
        } else if let Some(key) = line.strip_prefix("KEYGATE_WRITE_KEY=") {
            write = Some(key.to_owned());
        } else if line.contains("grpcurl") {
            break;
        }
    }
    let (addr, read, write) = (
        addr.expect("address"),
        read.expect("read key"),
        write.expect("write key"),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connects");
    let mut client = NotesClient::new(channel);

    let note = client
        .create_note(with_key(
            CreateNoteRequest { text: "hi".into() },
            Some(&write),
        ))
        .await
        .expect("the write key creates")
        .into_inner();
    assert_eq!(note.author, "service:importer");
    let got = client
        .get_note(with_key(GetNoteRequest { id: note.id }, Some(&read)))
        .await
        .expect("the read key reads")
        .into_inner();
    assert_eq!(got.text, "hi");
    let denied = client
        .delete_note(with_key(GetNoteRequest { id: note.id }, Some(&read)))
        .await
        .expect_err("the read key cannot delete");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let anonymous = client
        .get_note(with_key(GetNoteRequest { id: note.id }, None))
        .await
        .expect_err("no key");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
}
