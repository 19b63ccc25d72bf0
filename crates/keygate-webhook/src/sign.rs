//! [`WebhookSigner`]: the headers of an outbound webhook.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::{
    RngExt as _, SeedableRng as _,
    distr::Alphanumeric,
    rngs::{StdRng, SysRng},
};

use crate::{
    Scheme, SecretError, WebhookError, WebhookSecret,
    scheme::{self, STRIPE_SIGNATURE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP},
    secret::BASE64,
};

/// Signs outbound webhooks: the headers to send with a body, in either
/// scheme, byte for byte what [`WebhookVerifier`](crate::WebhookVerifier)
/// (and the schemes' reference libraries) check.
///
/// ```
/// use keygate_webhook::{WebhookSecret, WebhookSigner};
///
/// // The Standard Webhooks specification's own example.
/// let secret = WebhookSecret::standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let headers = WebhookSigner::standard(secret).sign(
///     "msg_p5jXN8AQM9LWM0D4loKWxJek",
///     1614265330,
///     br#"{"test": 2432232314}"#,
/// )?;
/// assert_eq!(
///     headers.get("webhook-signature").unwrap(),
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct WebhookSigner {
    scheme: Scheme,
    secrets: Vec<WebhookSecret>,
}

impl WebhookSigner {
    /// A signer of [Standard Webhooks](Scheme::StandardWebhooks) messages.
    pub fn standard(secret: WebhookSecret) -> Self {
        Self::new(Scheme::StandardWebhooks, secret)
    }

    /// A signer of [Stripe](Scheme::Stripe)-style messages.
    pub fn stripe(secret: WebhookSecret) -> Self {
        Self::new(Scheme::Stripe, secret)
    }

    /// A signer of `scheme`'s messages under `secret`.
    pub fn new(scheme: Scheme, secret: WebhookSecret) -> Self {
        Self {
            scheme,
            secrets: vec![secret],
        }
    }

    /// Also signs with `secret`: while a receiver's secret is rotated,
    /// each message carries one signature per secret, and the receiver
    /// accepts it if any matches.
    #[must_use]
    pub fn also_sign_with(mut self, secret: WebhookSecret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// The scheme it signs in.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The headers for `body`, sent as message `id` at `timestamp`
    /// (seconds since 1970). Stripe's scheme signs no id; `id` is ignored
    /// there.
    ///
    /// # Errors
    ///
    /// [`WebhookError::MalformedHeader`] for what a verifier would refuse
    /// as malformed: a negative timestamp, or (Standard Webhooks) an id
    /// that is empty, longer than 256 bytes, or holds anything but visible
    /// ASCII other than `.`.
    pub fn sign(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<SignedHeaders, WebhookError> {
        let timestamp_header = match self.scheme {
            Scheme::StandardWebhooks => WEBHOOK_TIMESTAMP,
            Scheme::Stripe => STRIPE_SIGNATURE,
        };
        if timestamp < 0 {
            return Err(WebhookError::MalformedHeader {
                header: timestamp_header,
                reason: "the timestamp is before 1970",
            });
        }
        let ts = timestamp.to_string();
        let headers = match self.scheme {
            Scheme::StandardWebhooks => {
                scheme::check_id(id)?;
                let mut signatures = String::new();
                for secret in &self.secrets {
                    let mac = secret.mac(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                    if !signatures.is_empty() {
                        signatures.push(' ');
                    }
                    signatures.push_str("v1,");
                    BASE64.encode_string(mac, &mut signatures);
                }
                vec![
                    (WEBHOOK_ID, id.to_owned()),
                    (WEBHOOK_TIMESTAMP, ts),
                    (WEBHOOK_SIGNATURE, signatures),
                ]
            }
            Scheme::Stripe => {
                let mut header = format!("t={ts}");
                for secret in &self.secrets {
                    let mac = secret.mac(&[ts.as_bytes(), b".", body]);
                    header.push_str(",v1=");
                    header.push_str(&hex::encode(mac));
                }
                vec![(STRIPE_SIGNATURE, header)]
            }
        };
        let headers = headers
            .into_iter()
            .map(|(name, value)| {
                // Every value is visible ASCII: checked id, digits, base64, hex.
                let mut value =
                    HeaderValue::try_from(value).map_err(|_| WebhookError::MalformedHeader {
                        header: name,
                        reason: "it is not printable ASCII",
                    })?;
                // A signature is a credential while its timestamp is fresh.
                value.set_sensitive(name != WEBHOOK_ID && name != WEBHOOK_TIMESTAMP);
                Ok((HeaderName::from_static(name), value))
            })
            .collect::<Result<_, WebhookError>>()?;
        Ok(SignedHeaders { headers })
    }

    /// [`sign`](Self::sign) at the system clock's current second.
    ///
    /// # Errors
    ///
    /// As [`sign`](Self::sign).
    pub fn sign_now(&self, id: &str, body: &[u8]) -> Result<SignedHeaders, WebhookError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.sign(id, now, body)
    }
}

/// A new message id for [`WebhookSigner::sign`]: `msg_` and 27 random
/// letters and digits (160 bits) from the operating system's CSPRNG.
///
/// # Errors
///
/// [`SecretError::Randomness`] if the operating system cannot provide
/// entropy.
pub fn new_message_id() -> Result<String, SecretError> {
    let mut rng = StdRng::try_from_rng(&mut SysRng).map_err(|_| SecretError::Randomness)?;
    let mut id = String::with_capacity(4 + 27);
    id.push_str("msg_");
    id.extend(
        (&mut rng)
            .sample_iter(Alphanumeric)
            .take(27)
            .map(char::from),
    );
    Ok(id)
}

/// The headers [`WebhookSigner::sign`] made, in the order to send them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl SignedHeaders {
    /// Each header's name and value.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.headers.iter().map(|(n, v)| (n, v))
    }

    /// The value of the header `name` (lowercase), if it is one of them.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets the headers on `headers`, replacing any of the same names.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The headers as a map of their own.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        self.apply_to(&mut map);
        map
    }
}
