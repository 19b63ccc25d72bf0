//! A small `notes.v1.Notes` gRPC service and client, written the way
//! `tonic-prost-build` would generate them (so the example needs no
//! `protoc`). The `.proto` it corresponds to:
//!
//! ```proto
//! syntax = "proto3";
//! package notes.v1;
//! service Notes {
//!   rpc GetNote(GetNoteRequest) returns (Note);
//!   rpc CreateNote(CreateNoteRequest) returns (Note);
//!   rpc DeleteNote(GetNoteRequest) returns (Note);
//!   rpc ListNotes(ListNotesRequest) returns (stream Note);
//! }
//! message GetNoteRequest { uint64 id = 1; }
//! message CreateNoteRequest { string text = 1; }
//! message ListNotesRequest {}
//! message Note { uint64 id = 1; string text = 2; string author = 3; }
//! ```

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http::uri::PathAndQuery;
use keygate::grpc::GrpcRequestExt;
use tonic::{Request, Response, Status, body::Body, server::NamedService};
use tonic_prost::ProstCodec;
use tower::Service;

/// `notes.v1.GetNoteRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetNoteRequest {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// `notes.v1.CreateNoteRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateNoteRequest {
    #[prost(string, tag = "1")]
    pub text: String,
}

/// `notes.v1.ListNotesRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListNotesRequest {}

/// `notes.v1.Note`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Note {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub text: String,
    #[prost(string, tag = "3")]
    pub author: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The server: notes in memory, authored by the calling key's owner.
#[derive(Clone, Default)]
pub struct NotesServer {
    notes: Arc<Mutex<BTreeMap<u64, Note>>>,
}

impl NotesServer {
    fn get(&self, req: &Request<GetNoteRequest>) -> Result<Response<Note>, Status> {
        let notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        notes
            .get(&req.get_ref().id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such note"))
    }

    fn create(&self, req: Request<CreateNoteRequest>) -> Result<Response<Note>, Status> {
        // The key that authenticated the call, put there by keygate's layer.
        let key = req.api_key()?;
        let mut notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = notes.keys().next_back().map_or(1, |last| last + 1);
        let note = Note {
            id,
            text: req.into_inner().text,
            author: key.owner().to_string(),
        };
        notes.insert(id, note.clone());
        Ok(Response::new(note))
    }

    fn delete(&self, req: &Request<GetNoteRequest>) -> Result<Response<Note>, Status> {
        let mut notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        notes
            .remove(&req.get_ref().id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such note"))
    }

    fn list(&self) -> Vec<Result<Note, Status>> {
        let notes = self
            .notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        notes.values().cloned().map(Ok).collect()
    }
}

struct Unary<F>(F);

impl<F, M> tonic::server::UnaryService<M> for Unary<F>
where
    F: FnMut(Request<M>) -> Result<Response<Note>, Status>,
{
    type Response = Note;
    type Future = std::future::Ready<Result<Response<Note>, Status>>;

    fn call(&mut self, request: Request<M>) -> Self::Future {
        std::future::ready((self.0)(request))
    }
}

struct Streaming(Vec<Result<Note, Status>>);

impl tonic::server::ServerStreamingService<ListNotesRequest> for Streaming {
    type Response = Note;
    type ResponseStream = tokio_stream::Iter<std::vec::IntoIter<Result<Note, Status>>>;
    type Future = std::future::Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, _: Request<ListNotesRequest>) -> Self::Future {
        let items = std::mem::take(&mut self.0);
        std::future::ready(Ok(Response::new(tokio_stream::iter(items))))
    }
}

// Generic over the request body, like generated servers, so the service
// mounts in tonic's server and in an axum `Router` alike.
impl<B> Service<http::Request<B>> for NotesServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // One codec per method: it is typed by the messages it carries.
            fn grpc<D: prost::Message + Default + 'static>()
            -> tonic::server::Grpc<ProstCodec<Note, D>> {
                tonic::server::Grpc::new(ProstCodec::default())
            }
            let res = match req.uri().path() {
                "/notes.v1.Notes/GetNote" => grpc().unary(Unary(|r| this.get(&r)), req).await,
                "/notes.v1.Notes/CreateNote" => grpc().unary(Unary(|r| this.create(r)), req).await,
                "/notes.v1.Notes/DeleteNote" => grpc().unary(Unary(|r| this.delete(&r)), req).await,
                "/notes.v1.Notes/ListNotes" => {
                    grpc().server_streaming(Streaming(this.list()), req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(res)
        })
    }
}

impl NamedService for NotesServer {
    const NAME: &'static str = "notes.v1.Notes";
}

/// The client.
#[derive(Clone)]
pub struct NotesClient {
    inner: tonic::client::Grpc<tonic::transport::Channel>,
}

impl NotesClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        Self {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    async fn unary<M: prost::Message + Send + Sync + 'static>(
        &mut self,
        request: Request<M>,
        path: &'static str,
    ) -> Result<Response<Note>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("service not ready: {e}")))?;
        self.inner
            .unary(
                request,
                PathAndQuery::from_static(path),
                ProstCodec::default(),
            )
            .await
    }

    pub async fn get_note(&mut self, r: Request<GetNoteRequest>) -> Result<Response<Note>, Status> {
        self.unary(r, "/notes.v1.Notes/GetNote").await
    }

    pub async fn create_note(
        &mut self,
        r: Request<CreateNoteRequest>,
    ) -> Result<Response<Note>, Status> {
        self.unary(r, "/notes.v1.Notes/CreateNote").await
    }

    pub async fn delete_note(
        &mut self,
        r: Request<GetNoteRequest>,
    ) -> Result<Response<Note>, Status> {
        self.unary(r, "/notes.v1.Notes/DeleteNote").await
    }

    pub async fn list_notes(
        &mut self,
        r: Request<ListNotesRequest>,
    ) -> Result<Response<tonic::codec::Streaming<Note>>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("service not ready: {e}")))?;
        self.inner
            .server_streaming(
                r,
                PathAndQuery::from_static("/notes.v1.Notes/ListNotes"),
                ProstCodec::default(),
            )
            .await
    }
}

/// A request carrying `key` in `x-api-key` metadata.
pub fn with_key<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(Ok(v)) = key.map(str::parse) {
        req.metadata_mut().insert("x-api-key", v);
    }
    req
}
