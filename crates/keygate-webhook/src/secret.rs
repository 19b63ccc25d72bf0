//! [`WebhookSecret`]: the key both ends of a webhook share.

use std::fmt;

use base64::{
    Engine as _, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::{TryRng as _, rngs::SysRng};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The prefix Standard Webhooks secrets are written with.
pub(crate) const WHSEC: &str = "whsec_";

/// Bytes in a generated secret: the middle of the 24–64 bytes the Standard
/// Webhooks specification asks for.
const GENERATED_LEN: usize = 32;

/// Base64 as Standard Webhooks writes signatures (standard alphabet,
/// padded); padding is optional when reading.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 as secrets are read: like [`BASE64`], and also with stray bits in
/// the last character, which the reference libraries (Python's `b64decode`)
/// ignore too.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A webhook signing secret: the HMAC-SHA256 key the sender and the
/// receiver share.
///
/// How a secret's text becomes key bytes depends on the scheme:
///
/// - [`standard`](Self::standard): Standard Webhooks writes secrets as
///   `whsec_<base64>`; the key is the base64-decoded part.
/// - [`stripe`](Self::stripe): Stripe's secrets also start with `whsec_`,
///   but the key is the whole text, prefix included, as bytes.
///
/// The secret redacts itself in `Debug`, has no `Display`, and is zeroed
/// when dropped; [`expose_whsec`](Self::expose_whsec) is the one way to
/// print it.
///
/// ```
/// use keygate_webhook::WebhookSecret;
///
/// let secret = WebhookSecret::standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// assert_eq!(secret.len(), 24);
/// assert_eq!(format!("{secret:?}"), "WebhookSecret(24 bytes, redacted)");
/// # Ok::<(), keygate_webhook::SecretError>(())
/// ```
#[derive(Clone)]
pub struct WebhookSecret {
    key: Zeroizing<Vec<u8>>,
}

impl WebhookSecret {
    /// A Standard Webhooks secret, `whsec_<base64>`. The prefix may be left
    /// out and the padding too, as the specification's reference libraries
    /// allow.
    ///
    /// # Errors
    ///
    /// [`SecretError::NotBase64`] if the text after `whsec_` is not base64;
    /// [`SecretError::Empty`] if it decodes to nothing.
    pub fn standard(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(WHSEC).unwrap_or(encoded);
        let key = Zeroizing::new(
            SECRET_BASE64
                .decode(encoded)
                .map_err(|_| SecretError::NotBase64)?,
        );
        Self::from_bytes(key.to_vec())
    }

    /// A Stripe endpoint secret (`whsec_…`, from the dashboard or
    /// `stripe listen`): Stripe keys its HMAC with the whole text as bytes.
    ///
    /// # Errors
    ///
    /// [`SecretError::Empty`] for an empty text.
    pub fn stripe(text: &str) -> Result<Self, SecretError> {
        Self::from_bytes(text.trim().as_bytes().to_vec())
    }

    /// A secret from raw key bytes.
    ///
    /// # Errors
    ///
    /// [`SecretError::Empty`] if `key` is empty: an empty HMAC key would
    /// let anyone sign.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let key = Zeroizing::new(key.into());
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// A new random secret of 32 bytes from the operating system's CSPRNG,
    /// for a Standard Webhooks endpoint; write it down with
    /// [`expose_whsec`](Self::expose_whsec).
    ///
    /// # Errors
    ///
    /// [`SecretError::Randomness`] if the operating system cannot provide
    /// entropy.
    pub fn generate() -> Result<Self, SecretError> {
        let mut key = Zeroizing::new(vec![0; GENERATED_LEN]);
        SysRng
            .try_fill_bytes(&mut key)
            .map_err(|_| SecretError::Randomness)?;
        Ok(Self { key })
    }

    /// The secret written as Standard Webhooks writes it, `whsec_<base64>`:
    /// the text to give the other end, or to keep in a secret store.
    pub fn expose_whsec(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(
            WHSEC.len() + self.key.len() * 4 / 3 + 4,
        ));
        text.push_str(WHSEC);
        BASE64.encode_string(&*self.key, &mut text);
        text
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.key.len()
    }

    /// Always false: an empty secret cannot be made.
    pub fn is_empty(&self) -> bool {
        self.key.is_empty()
    }

    /// HMAC-SHA256 of `parts`, one after the other, under this key.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC takes keys of any length; the error cannot happen.
        let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret({} bytes, redacted)", self.key.len())
    }
}

/// Why a [`WebhookSecret`] (or a [`new_message_id`](crate::new_message_id))
/// could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty (or `whsec_` with nothing after it).
    #[error("the webhook secret is empty")]
    Empty,
    /// The text after `whsec_` is not base64.
    #[error("the webhook secret is not `whsec_` followed by base64")]
    NotBase64,
    /// The operating system could not provide entropy for a new secret or
    /// message id.
    #[error("the operating system could not provide randomness")]
    Randomness,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_secrets_are_refused_in_every_form() {
        assert_eq!(WebhookSecret::standard("").unwrap_err(), SecretError::Empty);
        assert_eq!(
            WebhookSecret::standard("whsec_").unwrap_err(),
            SecretError::Empty
        );
        assert_eq!(WebhookSecret::stripe("").unwrap_err(), SecretError::Empty);
        assert_eq!(WebhookSecret::stripe("  ").unwrap_err(), SecretError::Empty);
        assert_eq!(
            WebhookSecret::from_bytes([]).unwrap_err(),
            SecretError::Empty
        );
        assert_eq!(
            WebhookSecret::standard("whsec_not base64!").unwrap_err(),
            SecretError::NotBase64
        );
    }

    #[test]
    fn generated_secrets_round_trip_through_their_text_and_differ() {
        let a = WebhookSecret::generate().unwrap();
        let b = WebhookSecret::generate().unwrap();
        assert_eq!(a.len(), GENERATED_LEN);
        assert_ne!(*a.key, *b.key);
        let text = a.expose_whsec();
        assert!(text.starts_with("whsec_"), "{}", &*text);
        let again = WebhookSecret::standard(&text).unwrap();
        assert_eq!(*again.key, *a.key);
        assert!(!format!("{a:?}").contains(&text[WHSEC.len()..]));
    }

    #[test]
    fn stripe_secrets_are_the_whole_text() {
        let s = WebhookSecret::stripe("whsec_test_secret").unwrap();
        assert_eq!(&*s.key, b"whsec_test_secret");
    }
}
