//! [`ResponseFuture`]: reads the body up to the limit, verifies it, then
//! runs the inner service; and the guard that forgets a message whose
//! handling failed.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, Request, Response, request};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{
    ResponseBody, VerifiedBody, WebhookError, WebhookVerifier, audit,
    scheme::Presented,
    verify::{RequestLine, Shared},
};

pin_project! {
    /// The response future of [`WebhookService`](super::WebhookService).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<VerifiedBody>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<VerifiedBody>>,
    {
        /// Reading the body; the inner service waits in `held`.
        Reading {
            #[pin]
            body: B,
            held: Option<Held<S>>,
        },
        /// Verified and passed on.
        Calling {
            #[pin]
            future: S::Future,
            guard: ReplayGuard,
        },
        /// Refused: the answer goes out on the next poll.
        Refused { response: Option<Response<Bytes>> },
    }
}

/// What waits while the body is read.
struct Held<S> {
    parts: request::Parts,
    presented: Presented,
    data: BytesMut,
    trailers: Option<HeaderMap>,
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<VerifiedBody>>,
{
    pub(super) fn refused(response: Response<Bytes>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    pub(super) fn reading(
        body: B,
        parts: request::Parts,
        presented: Presented,
        inner: S,
        verifier: WebhookVerifier,
    ) -> Self
    where
        B: Body,
    {
        let shared = verifier.shared;
        // Room for what the client announced, never more than the limit.
        let expected = body.size_hint().lower().min(shared.max_body_size);
        let data = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        Self {
            state: State::Reading {
                body,
                held: Some(Held {
                    parts,
                    presented,
                    data,
                    trailers: None,
                    inner,
                    shared,
                }),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Calling { future, guard } => {
                    let result = ready!(future.poll(cx));
                    // Keep the id only of a message the service accepted.
                    let accepted = result.as_ref().is_ok_and(|res| {
                        !res.status().is_client_error() && !res.status().is_server_error()
                    });
                    guard.finish(accepted);
                    return Poll::Ready(result.map(|res| res.map(ResponseBody::inner)));
                }
                StateProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("webhook ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
                StateProj::Reading { mut body, held } => {
                    let refusal = loop {
                        let Some(h) = held.as_mut() else {
                            panic!("webhook ResponseFuture polled after completion");
                        };
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => {
                                    let len = h.data.len() as u64 + data.remaining() as u64;
                                    if len > h.shared.max_body_size {
                                        break Some(WebhookError::PayloadTooLarge {
                                            limit: h.shared.max_body_size,
                                        });
                                    }
                                    h.data.put(data);
                                }
                                Err(frame) => {
                                    if let Ok(trailers) = frame.into_trailers() {
                                        h.trailers
                                            .get_or_insert_with(HeaderMap::new)
                                            .extend(trailers);
                                    }
                                }
                            },
                            Some(Err(_)) => break Some(WebhookError::UnreadableBody),
                            None => break None,
                        }
                    };
                    let Some(h) = held.take() else {
                        panic!("webhook ResponseFuture polled after completion");
                    };
                    h.settle(refusal)
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<S> Held<S>
where
    S: Service<Request<VerifiedBody>>,
{
    /// The state after the body was read (or refused while reading).
    fn settle<B>(self, refusal: Option<WebhookError>) -> State<S, B> {
        let Self {
            parts,
            presented,
            data,
            trailers,
            mut inner,
            shared,
        } = self;
        let line = RequestLine {
            method: &parts.method,
            path: parts.uri.path(),
        };
        let data = data.freeze();
        let verified = match refusal {
            Some(e) => Err(e),
            None => shared.check(&presented, &data),
        };
        match verified {
            Ok(verified) => {
                audit::admitted(&verified, Some(line));
                let guard = ReplayGuard {
                    key: Some(*verified.replay_key()),
                    shared,
                };
                let mut req = Request::from_parts(parts, VerifiedBody::new(data, trailers));
                req.extensions_mut().insert(verified);
                State::Calling {
                    future: inner.call(req),
                    guard,
                }
            }
            Err(e) => {
                shared.refused(&e, Some(&presented), Some(line));
                State::Refused {
                    response: Some(e.to_response(shared.scheme)),
                }
            }
        }
    }
}

/// Forgets a verified message's id unless the inner service accepted it:
/// on an error status, an error, or the future dropped before it answered
/// (the client went away), the sender's retry must not be a "replay".
struct ReplayGuard {
    shared: Arc<Shared>,
    key: Option<[u8; 32]>,
}

impl ReplayGuard {
    fn finish(&mut self, keep: bool) {
        if let Some(key) = self.key.take()
            && !keep
        {
            self.shared.forget(&key);
        }
    }
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<VerifiedBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
