//! [`WebhookNotifier`]: keygate's key reminders delivered as signed
//! webhooks (feature `notify`).

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use keygate::core::{BoxError, BoxFuture, Notifier, Reminder};

use crate::{WebhookError, WebhookSigner, new_message_id};

/// Delivers [`Reminder`]s as webhooks signed with a [`WebhookSigner`]: a
/// `POST` of JSON to one URL, retried with backoff.
///
/// ```json
/// {"type": "key.expiring", "data": {"kind": "expiring", "key_id": "Ab3Cd5Ef7G",
///  "key_head": "mbk_live_Ab3Cd5Ef7G", "owner": "user:alice", "name": "laptop",
///  "environment": "live", "expires_at": "2026-12-20T09:00:00Z",
///  "threshold_seconds": 259200, "superseded_by": null}}
/// ```
///
/// `type` is `key.expiring`, or `key.rotation_grace` for a rotated key
/// whose grace period ends. Each attempt is a new message (a fresh id and
/// timestamp), so a receiver that refuses replays accepts a retry. A `2xx`
/// answer is a delivery; `408`, `429`, `5xx`, a timeout or a connection
/// error are retried (default 4 attempts, 500 ms doubling); any other answer
/// fails at once.
///
/// Plain `http://` only: it brings no TLS stack. For `https://`, send
/// [`message`](Self::message) with your own client from your own
/// [`Notifier`], or point it at a local relay.
pub struct WebhookNotifier {
    url: Uri,
    signer: WebhookSigner,
    client: Client<HttpConnector, Full<Bytes>>,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

/// Why a [`WebhookNotifier`] could not be made or could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The URL is not an absolute `http://` URL.
    #[error("the webhook URL must be an absolute http:// URL, got {0:?}")]
    Url(String),
    /// The receiver answered with a status that retrying will not change.
    #[error("the receiver answered {0}")]
    Refused(StatusCode),
    /// Every attempt failed; the last error.
    #[error("no delivery after {attempts} attempts: {last}")]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// What the last one ran into.
        last: String,
    },
    /// The message could not be signed.
    #[error(transparent)]
    Sign(#[from] WebhookError),
}

impl WebhookNotifier {
    /// Delivers to `url` (`http://host:port/path`), signed by `signer`.
    ///
    /// # Errors
    ///
    /// [`NotifyError::Url`] if `url` is not an absolute `http://` URL.
    pub fn new(url: &str, signer: WebhookSigner) -> Result<Self, NotifyError> {
        let parsed: Uri = url.parse().map_err(|_| NotifyError::Url(url.to_owned()))?;
        if parsed.scheme_str() != Some("http") || parsed.authority().is_none() {
            return Err(NotifyError::Url(url.to_owned()));
        }
        Ok(Self {
            url: parsed,
            signer,
            client: Client::builder(TokioExecutor::new()).build_http(),
            attempts: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
        })
    }

    /// How many attempts per reminder (default 4, at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The wait after the first failed attempt, doubling after each
    /// (default 500 ms).
    #[must_use]
    pub fn backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// How long one attempt may take (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The signed headers and JSON body of `reminder`'s webhook, as a new
    /// message: to send it with another client.
    ///
    /// # Errors
    ///
    /// [`NotifyError::Sign`] if no message id can be drawn or signed.
    pub fn message(&self, reminder: &Reminder) -> Result<(HeaderMap, Vec<u8>), NotifyError> {
        let body = serde_json::json!({
            "type": format!("key.{}", reminder.kind),
            "data": reminder,
        })
        .to_string()
        .into_bytes();
        let id = new_message_id().map_err(|e| NotifyError::GaveUp {
            attempts: 0,
            last: e.to_string(),
        })?;
        let mut headers = self.signer.sign_now(&id, &body)?.to_header_map();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok((headers, body))
    }

    /// One attempt: `Ok` on 2xx, `Err(retry?, why)` otherwise.
    async fn attempt(&self, reminder: &Reminder) -> Result<(), (bool, NotifyError)> {
        let (headers, body) = self.message(reminder).map_err(|e| (false, e))?;
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.url.clone();
        *req.headers_mut() = headers;
        let gave_up = |last: String| NotifyError::GaveUp { attempts: 0, last };
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err((
                true,
                gave_up(format!("no answer within {:?}", self.timeout)),
            )),
            Ok(Err(e)) => Err((true, gave_up(e.to_string()))),
            Ok(Ok(res)) if res.status().is_success() => Ok(()),
            Ok(Ok(res)) => {
                let status = res.status();
                let retry = status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS;
                Err((retry, NotifyError::Refused(status)))
            }
        }
    }

    async fn deliver(&self, reminder: &Reminder) -> Result<(), NotifyError> {
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.attempt(reminder).await {
                Ok(()) => return Ok(()),
                Err((false, e)) => return Err(e),
                Err((true, e)) => {
                    tracing::debug!(
                        target: keygate::audit::TARGET,
                        key_id = reminder.key_id.as_str(),
                        attempt,
                        error = %e,
                        "reminder webhook attempt failed"
                    );
                    last = e.to_string();
                }
            }
            if attempt < self.attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
        }
        Err(NotifyError::GaveUp {
            attempts: self.attempts,
            last,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn notify<'a>(&'a self, reminder: &'a Reminder) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { self.deliver(reminder).await.map_err(BoxError::from) })
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
