//! [`WebhookVerifier`]: the checks, in order, shared by the layer and by
//! callers without tower.

use std::{fmt, sync::Arc, time::Duration};

use http::{HeaderMap, Method};
use keygate::core::{Clock, SystemClock};
use moka::{policy::EvictionPolicy, sync::Cache};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use crate::{Scheme, WebhookError, WebhookLayer, WebhookSecret, audit, scheme::Presented};

/// The tolerance both Standard Webhooks and Stripe recommend.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The largest tolerance a verifier takes; longer ones are cut to it. A
/// week covers any clock; past it the replay cache would have to remember
/// ids for longer than is useful.
pub const MAX_TOLERANCE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The default body limit: 1 MiB, far above what webhook senders send.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024;
/// The default number of message ids the replay cache remembers.
pub const DEFAULT_REPLAY_CAPACITY: u64 = 100_000;

/// Verifies webhook signatures of one [`Scheme`] under one or more secrets:
/// headers, timestamp tolerance, body size, signature (in constant time),
/// then replay. Clones share one replay cache.
///
/// Use it as a tower layer ([`layer`](Self::layer)), or call
/// [`verify`](Self::verify) with the headers and the body you read
/// yourself.
///
/// ```
/// use std::time::Duration;
/// use keygate_webhook::{WebhookSecret, WebhookSigner, WebhookVerifier};
///
/// let secret = WebhookSecret::generate()?;
/// let verifier = WebhookVerifier::standard(secret.clone())
///     .tolerance(Duration::from_secs(300))
///     .build();
///
/// let now = std::time::SystemTime::now()
///     .duration_since(std::time::UNIX_EPOCH)?
///     .as_secs() as i64;
/// let body = br#"{"type":"invoice.paid"}"#;
/// let headers = WebhookSigner::standard(secret).sign("msg_1", now, body)?;
///
/// let verified = verifier.verify(&headers.to_header_map(), body)?;
/// assert_eq!(verified.id(), Some("msg_1"));
/// // The same message again is a replay.
/// assert_eq!(
///     verifier.verify(&headers.to_header_map(), body).unwrap_err().code(),
///     "replayed_message"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WebhookVerifier {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) scheme: Scheme,
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
    pub(crate) max_body_size: u64,
    /// `None` with a capacity of 0: no replay protection.
    replay: Option<Cache<[u8; 32], ()>>,
    clock: Arc<dyn Clock>,
}

impl WebhookVerifier {
    /// A verifier of [Standard Webhooks](Scheme::StandardWebhooks)
    /// signatures under `secret`.
    pub fn standard(secret: WebhookSecret) -> WebhookVerifierBuilder {
        WebhookVerifierBuilder::new(Scheme::StandardWebhooks, secret)
    }

    /// A verifier of [Stripe](Scheme::Stripe) signatures under `secret`.
    pub fn stripe(secret: WebhookSecret) -> WebhookVerifierBuilder {
        WebhookVerifierBuilder::new(Scheme::Stripe, secret)
    }

    /// A verifier of `scheme`'s signatures under `secret`.
    pub fn builder(scheme: Scheme, secret: WebhookSecret) -> WebhookVerifierBuilder {
        WebhookVerifierBuilder::new(scheme, secret)
    }

    /// The tower layer that verifies each request before the inner service
    /// sees it. Layers made from one verifier (or its clones) share its
    /// replay cache.
    pub fn layer(&self) -> WebhookLayer {
        WebhookLayer::new(self.clone())
    }

    /// The scheme this verifier checks.
    pub fn scheme(&self) -> Scheme {
        self.shared.scheme
    }

    /// Verifies a message whose body you have read yourself, and remembers
    /// its id so a replay is refused. Refusals are logged like the layer's
    /// (target `keygate::audit`), without method or path.
    ///
    /// If your handling of the message then fails and you want the sender's
    /// retry to be accepted, call [`forget`](Self::forget) (the layer does
    /// this itself when the inner service answers with an error).
    ///
    /// # Errors
    ///
    /// The [`WebhookError`] that refuses the message.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedWebhook, WebhookError> {
        let shared = &self.shared;
        let presented = shared
            .read(headers)
            .inspect_err(|e| shared.refused(e, None, None))?;
        shared
            .admissible(&presented, Some(body.len() as u64))
            .and_then(|()| shared.check(&presented, body))
            .inspect(|verified| audit::admitted(verified, None))
            .inspect_err(|e| shared.refused(e, Some(&presented), None))
    }

    /// Forgets a verified message, so the same message is accepted once
    /// more: for a caller of [`verify`](Self::verify) whose handling failed.
    pub fn forget(&self, verified: &VerifiedWebhook) {
        self.shared.forget(&verified.replay_key);
    }
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("WebhookVerifier")
            .field("scheme", &s.scheme)
            .field("secrets", &s.secrets)
            .field("tolerance", &s.tolerance)
            .field("max_body_size", &s.max_body_size)
            .field(
                "replay_capacity",
                &s.replay.as_ref().and_then(|c| c.policy().max_capacity()),
            )
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The headers, read and range-checked.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Result<Presented, WebhookError> {
        Presented::read(self.scheme, headers)
    }

    /// What can be judged before the body is read: the timestamp, and the
    /// body's announced size.
    pub(crate) fn admissible(
        &self,
        presented: &Presented,
        body_len: Option<u64>,
    ) -> Result<(), WebhookError> {
        let now = self.clock.now().unix_timestamp();
        // i128: no overflow for any pair of i64s.
        let skew = (i128::from(now) - i128::from(presented.timestamp)).unsigned_abs();
        if skew > u128::from(self.tolerance.as_secs()) {
            return Err(WebhookError::TimestampOutOfTolerance {
                tolerance: self.tolerance,
            });
        }
        if body_len.is_some_and(|len| len > self.max_body_size) {
            return Err(WebhookError::PayloadTooLarge {
                limit: self.max_body_size,
            });
        }
        Ok(())
    }

    /// Logs a refusal: the audit event, with the message id if the headers
    /// could be read.
    pub(crate) fn refused(
        &self,
        error: &WebhookError,
        presented: Option<&Presented>,
        line: Option<RequestLine<'_>>,
    ) {
        let id = presented.and_then(|p| p.id.as_deref());
        audit::refused(self.scheme, error, id, line);
    }

    /// The signature, then replay: a message whose signature does not
    /// verify never touches the replay cache, so nobody without the secret
    /// can burn an id.
    pub(crate) fn check(
        &self,
        presented: &Presented,
        body: &[u8],
    ) -> Result<VerifiedWebhook, WebhookError> {
        let (secret_index, first_mac) = self.matching_secret(presented, body)?;
        let replay_key = match &presented.id {
            Some(id) => Sha256::digest(id.as_bytes()).into(),
            // Stripe: the timestamp and body, whichever of the header's
            // signatures matched (dropping one must not make a new message).
            None => first_mac,
        };
        if let Some(replay) = &self.replay
            && !replay.entry(replay_key).or_insert(()).is_fresh()
        {
            return Err(WebhookError::Replayed);
        }
        Ok(VerifiedWebhook {
            scheme: self.scheme,
            id: presented.id.clone(),
            timestamp: presented.timestamp,
            secret_index,
            replay_key,
        })
    }

    /// The index of the first secret under which one of the presented
    /// signatures matches, and the MAC under the first secret (the Stripe
    /// replay key). Every presented signature is compared with `subtle`,
    /// without stopping at a match, so the time taken says nothing about
    /// how close a forgery came.
    fn matching_secret(
        &self,
        presented: &Presented,
        body: &[u8],
    ) -> Result<(usize, [u8; 32]), WebhookError> {
        let mut first_mac = None;
        for (index, secret) in self.secrets.iter().enumerate() {
            let mac = signed_mac(self.scheme, secret, presented, body);
            let first = *first_mac.get_or_insert(mac);
            let mut matched = Choice::from(0);
            for signature in &presented.signatures {
                matched |= signature.ct_eq(&mac);
            }
            if bool::from(matched) {
                return Ok((index, first));
            }
        }
        Err(WebhookError::InvalidSignature)
    }

    pub(crate) fn forget(&self, key: &[u8; 32]) {
        if let Some(replay) = &self.replay {
            replay.invalidate(key);
        }
    }
}

/// The MAC of the signed content under `secret`.
fn signed_mac(
    scheme: Scheme,
    secret: &WebhookSecret,
    presented: &Presented,
    body: &[u8],
) -> [u8; 32] {
    let ts = presented.timestamp_text.as_bytes();
    match (scheme, &presented.id) {
        (Scheme::StandardWebhooks, Some(id)) => secret.mac(&[id.as_bytes(), b".", ts, b".", body]),
        _ => secret.mac(&[ts, b".", body]),
    }
}

/// Settings of a [`WebhookVerifier`].
#[must_use]
pub struct WebhookVerifierBuilder {
    scheme: Scheme,
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
    max_body_size: u64,
    replay_capacity: u64,
    clock: Arc<dyn Clock>,
}

impl WebhookVerifierBuilder {
    fn new(scheme: Scheme, secret: WebhookSecret) -> Self {
        Self {
            scheme,
            secrets: vec![secret],
            tolerance: DEFAULT_TOLERANCE,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            clock: Arc::new(SystemClock),
        }
    }

    /// Also accepts messages signed with `secret`: to rotate a secret with
    /// overlap, accept the new and the old one until every sender signs
    /// with the new one, then build without the old one. Audit events name
    /// the matching secret by its index (0 for the one given first), so
    /// the logs tell when the old one is no longer used.
    pub fn also_accept(mut self, secret: WebhookSecret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// How far a message's timestamp may be from the server's clock, in
    /// the past or the future (default 5 minutes, at most
    /// [`MAX_TOLERANCE`]). Whole seconds count.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance.min(MAX_TOLERANCE);
        self
    }

    /// The largest body accepted, in bytes (default 1 MiB). A larger
    /// `Content-Length` is refused before any byte is read, and a body that
    /// streams in past the limit is refused as soon as it does.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// How many message ids the replay cache holds (default 100 000). Each
    /// is kept for twice the tolerance; when the cache is full the oldest
    /// is dropped early, so make it larger than the number of messages
    /// your senders send in that time. 0 turns replay protection off.
    pub fn replay_capacity(mut self, ids: u64) -> Self {
        self.replay_capacity = ids;
        self
    }

    /// The clock timestamps are judged by (default the system's); tests
    /// use a [`FakeClock`](keygate::core::FakeClock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The verifier.
    pub fn build(self) -> WebhookVerifier {
        // An id must be remembered for as long as its timestamp stays
        // acceptable: up to `tolerance` after a timestamp up to `tolerance`
        // ahead of the clock, plus the second the clock may round away.
        let remember = self.tolerance * 2 + Duration::from_secs(1);
        let replay = (self.replay_capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(self.replay_capacity)
                .time_to_live(remember)
                // LRU admits every new id; moka's default (TinyLFU) may
                // decline to cache a new one when full, which would let its
                // replay in.
                .eviction_policy(EvictionPolicy::lru())
                .build()
        });
        WebhookVerifier {
            shared: Arc::new(Shared {
                scheme: self.scheme,
                secrets: self.secrets,
                tolerance: self.tolerance,
                max_body_size: self.max_body_size,
                replay,
                clock: self.clock,
            }),
        }
    }
}

impl fmt::Debug for WebhookVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifierBuilder")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets)
            .field("tolerance", &self.tolerance)
            .field("max_body_size", &self.max_body_size)
            .field("replay_capacity", &self.replay_capacity)
            .finish_non_exhaustive()
    }
}

/// A message that passed verification. The layer puts it in the request's
/// extensions, so an axum handler can take `Extension<VerifiedWebhook>`.
#[derive(Clone, Debug)]
pub struct VerifiedWebhook {
    scheme: Scheme,
    id: Option<Box<str>>,
    timestamp: i64,
    secret_index: usize,
    replay_key: [u8; 32],
}

impl VerifiedWebhook {
    /// The scheme it was signed with.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The Standard Webhooks message id (`webhook-id`); `None` for Stripe,
    /// whose event id is in the body.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The signed timestamp, in seconds since 1970.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Which of the verifier's secrets matched: 0 for the one it was built
    /// with, then in the order of
    /// [`also_accept`](WebhookVerifierBuilder::also_accept).
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    pub(crate) fn replay_key(&self) -> &[u8; 32] {
        &self.replay_key
    }
}

/// The request a judgement was about, for audit events.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
}
