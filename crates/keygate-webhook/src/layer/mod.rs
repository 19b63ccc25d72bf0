//! [`WebhookLayer`]: verifies webhook signatures before the inner service
//! runs. Laid out as tower-http's middleware are: the layer here, the
//! service in `service.rs`, its future in `future.rs`.

mod future;
mod service;

use tower_layer::Layer;

pub use self::{future::ResponseFuture, service::WebhookService};
use crate::WebhookVerifier;

/// Verifies each request's webhook signature before the inner service sees
/// it; made by [`WebhookVerifier::layer`].
///
/// The layer reads the headers first (400 if one is missing or
/// malformed), then the timestamp (401 outside the tolerance) and the
/// announced `Content-Length` (413 over the limit), all before reading any
/// of the body. It then reads the body, refusing it with 413 as soon as it
/// streams past the limit, checks the signature (401) and the replay cache
/// (401), and passes the request on with the same bytes as a
/// [`VerifiedBody`](crate::VerifiedBody) and a
/// [`VerifiedWebhook`](crate::VerifiedWebhook) in its extensions.
///
/// If the inner service answers with an error status (4xx, 5xx), fails, or
/// is dropped before it answers, the message's id is forgotten again, so the
/// sender's retry is accepted; a message it accepted stays remembered.
///
/// ```
/// use axum::{Extension, Router, routing::post};
/// use keygate_webhook::{VerifiedWebhook, WebhookSecret, WebhookVerifier};
///
/// # fn main() -> Result<(), keygate_webhook::SecretError> {
/// let github = WebhookVerifier::standard(WebhookSecret::standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).build();
/// let stripe = WebhookVerifier::stripe(WebhookSecret::stripe("whsec_test_secret")?).build();
///
/// // One scheme per route: `route_layer`, so unknown paths stay 404.
/// let app: Router = Router::new()
///     .route("/webhooks/orders", post(orders).route_layer(github.layer()))
///     .route("/webhooks/stripe", post(|body: String| async move { body.len().to_string() })
///         .route_layer(stripe.layer()));
///
/// async fn orders(Extension(msg): Extension<VerifiedWebhook>, body: String) -> String {
///     format!("{} ({} bytes)", msg.id().unwrap_or_default(), body.len())
/// }
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WebhookLayer {
    verifier: WebhookVerifier,
}

impl WebhookLayer {
    /// The layer of `verifier`; the same as [`WebhookVerifier::layer`].
    pub fn new(verifier: WebhookVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookService::new(inner, self.verifier.clone())
    }
}
