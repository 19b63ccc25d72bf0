//! The response future of [`KeygateService`](super::KeygateService), and
//! [`settle`]: the one place a pipeline conclusion is carried out.

use std::{
    fmt,
    future::Future,
    mem,
    ops::ControlFlow,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::pipeline::{self, AddedHeaders, Next, Wait};
use crate::{body::ResponseBody, handle::Shared};

pin_project! {
    /// The response future of [`KeygateService`](super::KeygateService).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    pub(super) enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        /// Passed on: the inner service answers, keygate adds its headers.
        Called {
            #[pin]
            future: S::Future,
            headers: AddedHeaders,
        },
        /// Not (yet) passed on.
        Held { held: Held<S, B> },
    }
}

/// A request the inner service has not seen.
pub(super) enum Held<S, B> {
    /// Parked until the store or a remote limiter answers.
    Waiting {
        wait: Wait,
        parked: Box<Parked<S, B>>,
    },
    /// Refused: the response goes out on the next poll.
    Refused(Response<Bytes>),
    /// The response has gone out.
    Done,
}

/// A request waiting in the future, with the inner service that was made
/// ready for it.
pub(super) struct Parked<S, B> {
    pub(super) req: Request<B>,
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

/// A request the pipeline has judged, and the inner service ready for it:
/// in [`call`](Service::call), borrowed from the service; once it has
/// waited, [`Parked`] in the future.
pub(super) trait Ready<S: Service<Request<B>>, B> {
    /// The layer's shared state, and the request.
    fn parts(&mut self) -> (&Shared, &mut Request<B>);

    /// Passes the request on to the inner service.
    fn call(self) -> S::Future;

    /// Parks the request, and the ready inner service, in the future.
    fn park(self) -> Box<Parked<S, B>>;
}

impl<S: Service<Request<B>>, B> Ready<S, B> for Box<Parked<S, B>> {
    fn parts(&mut self) -> (&Shared, &mut Request<B>) {
        (&self.shared, &mut self.req)
    }

    fn call(self) -> S::Future {
        let Parked { req, mut inner, .. } = *self;
        inner.call(req)
    }

    fn park(self) -> Self {
        self
    }
}

/// Carries out what the pipeline concluded: passes the request on, refuses
/// it or parks it. The service's `call` and the future both end here.
pub(super) fn settle<S, B, R>(mut ready: R, next: Next) -> Kind<S, B>
where
    S: Service<Request<B>>,
    R: Ready<S, B>,
{
    let headers = match next {
        Next::Pass(spent) => {
            let (_, req) = ready.parts();
            pipeline::pass(req, spent)
        }
        Next::Anonymous => {
            let (shared, req) = ready.parts();
            pipeline::pass_anonymous(shared, req);
            AddedHeaders::default()
        }
        Next::Admit(admission) => {
            let (shared, req) = ready.parts();
            pipeline::admit(shared, req, admission)
        }
        Next::Refuse(refusal) => {
            let (shared, req) = ready.parts();
            let response = pipeline::refuse(shared, req, &refusal);
            return Kind::Held {
                held: Held::Refused(response),
            };
        }
        Next::Wait(wait) => {
            let parked = ready.park();
            return Kind::Held {
                held: Held::Waiting { wait, parked },
            };
        }
    };
    Kind::Called {
        future: ready.call(),
        headers,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(super) fn new(kind: Kind<S, B>) -> Self {
        Self { kind }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let held = match kind.as_mut().project() {
                KindProj::Called { future, headers } => {
                    let mut res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    headers.add_to(res.headers_mut());
                    return Poll::Ready(Ok(res));
                }
                KindProj::Held { held } => held,
            };
            let next = match mem::replace(held, Held::Done) {
                Held::Refused(response) => {
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
                Held::Waiting { wait, parked } => {
                    match wait.poll(cx, &parked.shared, &parked.req) {
                        ControlFlow::Continue(wait) => {
                            *held = Held::Waiting { wait, parked };
                            return Poll::Pending;
                        }
                        ControlFlow::Break(next) => settle(parked, next),
                    }
                }
                Held::Done => panic!("ResponseFuture polled after completion"),
            };
            kind.set(next);
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
