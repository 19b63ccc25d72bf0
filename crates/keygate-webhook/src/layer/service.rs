//! [`WebhookService`]: judges what it can from the headers, then hands the
//! body to the [`ResponseFuture`] to read and verify.

use std::{
    mem,
    task::{Context, Poll},
};

use http::{Request, Response, header};
use http_body::Body;
use tower_service::Service;

use super::ResponseFuture;
use crate::{ResponseBody, VerifiedBody, WebhookVerifier, verify::RequestLine};

/// The service made by [`WebhookLayer`](super::WebhookLayer).
#[derive(Clone, Debug)]
pub struct WebhookService<S> {
    inner: S,
    verifier: WebhookVerifier,
}

impl<S> WebhookService<S> {
    /// `inner`, behind `verifier`.
    pub fn new(inner: S, verifier: WebhookVerifier) -> Self {
        Self { inner, verifier }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for WebhookService<S>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>> + Clone,
    B: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.verifier.shared;
        let line = RequestLine {
            method: req.method(),
            path: req.uri().path(),
        };
        let presented = match shared.read(req.headers()) {
            Ok(presented) => presented,
            Err(e) => {
                shared.refused(&e, None, Some(line));
                return ResponseFuture::refused(e.to_response(shared.scheme));
            }
        };
        // The size the client announced, before reading a byte of it.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0)
            .max(req.body().size_hint().lower());
        if let Err(e) = shared.admissible(&presented, Some(announced)) {
            shared.refused(&e, Some(&presented), Some(line));
            return ResponseFuture::refused(e.to_response(shared.scheme));
        }
        // The service that was made ready goes with this request; the clone
        // stays for the next `poll_ready`.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::reading(body, parts, presented, inner, self.verifier.clone())
    }
}
