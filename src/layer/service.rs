//! [`KeygateService`]: the service [`KeygateLayer`](super::KeygateLayer)
//! wraps around an inner one.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    future::{Parked, Ready, ResponseFuture, settle},
    pipeline,
};
use crate::{body::ResponseBody, handle::Shared};

/// A service that lets through only requests with a valid key, the scope
/// their method needs, and quota left; see
/// [`KeygateLayer`](super::KeygateLayer).
///
/// Rejections are responses, never errors: `Error` is the inner service's.
#[derive(Clone)]
pub struct KeygateService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> KeygateService<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for KeygateService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygateService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeygateService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        self.shared.runtime.verifier.start_background();
        let next = pipeline::start(&self.shared, &req);
        ResponseFuture::new(settle(Calling { service: self, req }, next))
    }
}

impl<S: Clone> KeygateService<S> {
    /// Moves the request and the (ready) inner service into the future, for
    /// the paths that must wait for the store or a remote limiter.
    fn defer<B>(&mut self, req: Request<B>) -> Box<Parked<S, B>> {
        // The clone has not been driven to readiness; keep it and hand the
        // ready one to the future (the pattern tower's docs describe).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::new(Parked {
            req,
            inner,
            shared: Arc::clone(&self.shared),
        })
    }
}

/// A request in [`call`](Service::call), and the service whose inner
/// service is ready for it.
struct Calling<'a, S, B> {
    service: &'a mut KeygateService<S>,
    req: Request<B>,
}

impl<S, B> Ready<S, B> for Calling<'_, S, B>
where
    S: Service<Request<B>> + Clone,
{
    fn parts(&mut self) -> (&Shared, &mut Request<B>) {
        (&self.service.shared, &mut self.req)
    }

    fn call(self) -> S::Future {
        self.service.inner.call(self.req)
    }

    fn park(self) -> Box<Parked<S, B>> {
        self.service.defer(self.req)
    }
}
