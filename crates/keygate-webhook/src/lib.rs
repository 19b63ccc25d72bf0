//! Webhook signatures for [keygate](https://docs.rs/keygate): a tower layer
//! that verifies inbound webhooks before the handler runs, and a signer for
//! the webhooks you send.
//!
//! Two schemes, chosen per route:
//!
//! - [Standard Webhooks](https://www.standardwebhooks.com/)
//!   ([`Scheme::StandardWebhooks`]): `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//!   secrets written `whsec_<base64>`;
//! - Stripe ([`Scheme::Stripe`]): `Stripe-Signature: t=<seconds>,v1=<hex
//!   HMAC-SHA256 of "{t}.{body}">`.
//!
//! ```
//! use axum::{Extension, Router, routing::post};
//! use keygate_webhook::{VerifiedWebhook, WebhookSecret, WebhookVerifier};
//!
//! # fn main() -> Result<(), keygate_webhook::SecretError> {
//! let secret = WebhookSecret::standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let webhooks = WebhookVerifier::standard(secret).build();
//!
//! let app: Router = Router::new()
//!     .route("/webhooks", post(receive))
//!     // `route_layer`: unknown paths stay 404.
//!     .route_layer(webhooks.layer());
//!
//! // Runs only for a message whose signature verified: `body` is the
//! // signed bytes, unchanged.
//! async fn receive(Extension(msg): Extension<VerifiedWebhook>, body: String) -> &'static str {
//!     println!("{:?}: {body}", msg.id());
//!     "ok"
//! }
//! # let _ = app; Ok(()) }
//! ```
//!
//! # What is checked, in order
//!
//! | check | refusal | `code` |
//! |---|---|---|
//! | the scheme's headers are present | 400 | `missing_signature` |
//! | …and readable: ASCII, sent once, a timestamp of digits that fits an `i64`, an id of visible ASCII without `.`, at least one `v1` signature | 400 | `malformed_signature` |
//! | the timestamp is within the tolerance of the clock, either way (default 5 minutes) | 401 | `timestamp_out_of_tolerance` |
//! | the announced `Content-Length`, then the body as it streams in, is within the limit (default 1 MiB) | 413 | `payload_too_large` |
//! | one of the signatures matches under one of the secrets, compared in constant time (`subtle`) | 401 | `invalid_signature` |
//! | the message was not accepted before within the window (only now, so nobody without the secret can burn an id) | 401 | `replayed_message` |
//!
//! A body that fails while it is read is 400 `unreadable_body`. Refusals
//! are keygate's `application/problem+json` ([`keygate::Problem`]) and
//! 401s carry `WWW-Authenticate: Webhook scheme="…", error="…"`. Every
//! message judged is one `tracing` event on target `keygate::audit`
//! (see [`audit`](crate#audit-events)), never with a secret or a signature.
//!
//! # Rotation
//!
//! [`WebhookVerifierBuilder::also_accept`] adds secrets a message may be
//! signed with; senders sign with several at once
//! ([`WebhookSigner::also_sign_with`]), and a message passes if any of its
//! signatures matches under any of the secrets.
//!
//! # Replay
//!
//! A verified message's id (Standard Webhooks `webhook-id`; for Stripe,
//! which sends no id, its timestamp and body) is remembered in a bounded
//! cache for twice the tolerance, and the same message again is refused.
//! If the handler answers with an error status or fails, the id is
//! forgotten, so the sender's retry goes through.
//!
//! # Without tower
//!
//! [`WebhookVerifier::verify`] takes the headers and the body you read
//! yourself and does the same checks.
//!
//! # Audit events
//!
//! On target `keygate::audit` at `INFO`: `outcome` (`ok` or the code),
//! `status`, `scheme`, `webhook_id`, `timestamp` and `secret` (the index of
//! the secret that matched: watch it fall to 0 before dropping an old
//! secret), `header` (which one was missing or malformed), `method`, `path`.
//!
//! # Feature flags
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `notify` | no | `WebhookNotifier`: keygate's key reminders (`KeyManager::send_reminders`) delivered as signed webhooks over plain HTTP, retried with backoff (hyper's client) |
//!
//! The crate depends on `keygate` without its default features (no axum),
//! and works with any tower stack whose request bodies implement
//! `http_body::Body`.

// The workspace lint is `deny` so one allocation-counting test can
// implement `GlobalAlloc`; library code stays free of `unsafe`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod audit;
mod body;
mod error;
mod layer;
#[cfg(feature = "notify")]
mod notify;
mod scheme;
mod secret;
mod sign;
mod verify;

#[cfg(feature = "notify")]
pub use crate::notify::{NotifyError, WebhookNotifier};
pub use crate::{
    body::{ResponseBody, VerifiedBody},
    error::WebhookError,
    layer::{ResponseFuture, WebhookLayer, WebhookService},
    scheme::{STRIPE_SIGNATURE, Scheme, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP},
    secret::{SecretError, WebhookSecret},
    sign::{SignedHeaders, WebhookSigner, new_message_id},
    verify::{
        DEFAULT_MAX_BODY_SIZE, DEFAULT_REPLAY_CAPACITY, DEFAULT_TOLERANCE, MAX_TOLERANCE,
        VerifiedWebhook, WebhookVerifier, WebhookVerifierBuilder,
    },
};
