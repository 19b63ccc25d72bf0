//! The two signature schemes: their headers, how those are read, and what
//! is signed.

use base64::Engine as _;
use http::HeaderMap;

use crate::{WebhookError, secret::BASE64};

/// Standard Webhooks: the message id's header.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: the timestamp's header (seconds since 1970).
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: the signatures' header (`v1,<base64>`, space-separated).
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Stripe: the one header, `t=<seconds>,v1=<hex>[,v1=<hex>…]`.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";

/// Longest message id accepted (bytes). Real ids are far shorter
/// (`msg_` and 27 characters); the bound keeps log lines and the replay
/// cache's input small.
pub(crate) const MAX_ID_LEN: usize = 256;

/// Most signatures of the checked version read from one request: enough
/// for a sender rotating through several secrets, few enough that a header
/// full of signatures costs nothing.
pub(crate) const MAX_SIGNATURES: usize = 16;

/// A webhook signature scheme. A [`WebhookVerifier`](crate::WebhookVerifier)
/// checks one; give each route the verifier of its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// [Standard Webhooks](https://www.standardwebhooks.com/):
    /// `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
    /// several space-separated signatures allowed. Secrets are written
    /// `whsec_<base64>` ([`WebhookSecret::standard`](crate::WebhookSecret::standard)).
    StandardWebhooks,
    /// Stripe: `Stripe-Signature: t=<seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`,
    /// several `v1=` allowed. The secret's whole text is the key
    /// ([`WebhookSecret::stripe`](crate::WebhookSecret::stripe)).
    Stripe,
}

impl Scheme {
    /// The scheme's name in audit events and `WWW-Authenticate`:
    /// `standard-webhooks` or `stripe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard-webhooks",
            Self::Stripe => "stripe",
        }
    }
}

/// What a request's headers present, read and range-checked, before its
/// body is read.
#[derive(Debug)]
pub(crate) struct Presented {
    /// The Standard Webhooks message id; `None` for Stripe.
    pub(crate) id: Option<Box<str>>,
    pub(crate) timestamp: i64,
    /// The timestamp as sent: what was signed.
    pub(crate) timestamp_text: Box<str>,
    /// The decoded signatures of the checked version. Values that do not
    /// decode to 32 bytes are left out: they cannot match, and a valid
    /// signature beside them still counts.
    pub(crate) signatures: Vec<[u8; 32]>,
}

impl Presented {
    pub(crate) fn read(scheme: Scheme, headers: &HeaderMap) -> Result<Self, WebhookError> {
        match scheme {
            Scheme::StandardWebhooks => read_standard(headers),
            Scheme::Stripe => read_stripe(headers),
        }
    }
}

/// The one value of `name`, as text.
fn one<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, WebhookError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or(WebhookError::MissingHeader { header: name })?;
    if values.next().is_some() {
        return Err(malformed(name, "it is sent more than once"));
    }
    value
        .to_str()
        .map_err(|_| malformed(name, "it is not printable ASCII"))
}

fn malformed(header: &'static str, reason: &'static str) -> WebhookError {
    WebhookError::MalformedHeader { header, reason }
}

/// Seconds since 1970, written in ASCII digits only: no sign, no spaces, at
/// most what an `i64` holds.
pub(crate) fn parse_timestamp(header: &'static str, text: &str) -> Result<i64, WebhookError> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            header,
            "the timestamp is not a number of seconds",
        ));
    }
    text.parse()
        .map_err(|_| malformed(header, "the timestamp is out of range"))
}

/// A Standard Webhooks message id: 1 to 256 visible ASCII characters, none
/// of them a dot. The signed content is `{id}.{timestamp}.{body}`; an id
/// with a dot and digits in it could be split differently
/// (`a.1700000000` + `1700000001` + body signs the same bytes as `a` +
/// `1700000000` + `1700000001.` body), turning one signed message into
/// another with a fresh id. Without dots the split is unique.
pub(crate) fn check_id(id: &str) -> Result<(), WebhookError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(malformed(
            WEBHOOK_ID,
            "the id is empty or longer than 256 bytes",
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic() && b != b'.') {
        return Err(malformed(
            WEBHOOK_ID,
            "the id must be visible ASCII characters other than `.`",
        ));
    }
    Ok(())
}

fn read_standard(headers: &HeaderMap) -> Result<Presented, WebhookError> {
    let id = one(headers, WEBHOOK_ID)?;
    let timestamp_text = one(headers, WEBHOOK_TIMESTAMP)?;
    let header = one(headers, WEBHOOK_SIGNATURE)?;
    check_id(id)?;
    let timestamp = parse_timestamp(WEBHOOK_TIMESTAMP, timestamp_text)?;

    let mut signatures = Vec::new();
    let mut seen_v1 = 0_usize;
    for entry in header.split(' ').filter(|e| !e.is_empty()) {
        let (version, value) = entry
            .split_once(',')
            .ok_or_else(|| malformed(WEBHOOK_SIGNATURE, "an entry is not `version,signature`"))?;
        // Other versions (`v1a`, asymmetric) may stand beside `v1`.
        if version != "v1" {
            continue;
        }
        seen_v1 += 1;
        if seen_v1 > MAX_SIGNATURES {
            return Err(malformed(
                WEBHOOK_SIGNATURE,
                "it holds more than 16 v1 signatures",
            ));
        }
        let mut decoded = [0_u8; 48];
        if let Ok(32) = BASE64.decode_slice(value, &mut decoded) {
            let mut signature = [0; 32];
            signature.copy_from_slice(&decoded[..32]);
            signatures.push(signature);
        }
    }
    if seen_v1 == 0 {
        return Err(malformed(WEBHOOK_SIGNATURE, "it holds no `v1,` signature"));
    }
    Ok(Presented {
        id: Some(id.into()),
        timestamp,
        timestamp_text: timestamp_text.into(),
        signatures,
    })
}

fn read_stripe(headers: &HeaderMap) -> Result<Presented, WebhookError> {
    let header = one(headers, STRIPE_SIGNATURE)?;
    let mut timestamp_text = None;
    let mut signatures = Vec::new();
    let mut seen_v1 = 0_usize;
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed(STRIPE_SIGNATURE, "an item is not `key=value`"))?;
        match key {
            "t" if timestamp_text.is_some() => {
                return Err(malformed(STRIPE_SIGNATURE, "it holds more than one `t=`"));
            }
            "t" => timestamp_text = Some(value),
            "v1" => {
                seen_v1 += 1;
                if seen_v1 > MAX_SIGNATURES {
                    return Err(malformed(
                        STRIPE_SIGNATURE,
                        "it holds more than 16 v1 signatures",
                    ));
                }
                let mut signature = [0; 32];
                if hex::decode_to_slice(value, &mut signature).is_ok() {
                    signatures.push(signature);
                }
            }
            // `v0` (test mode) and anything newer are not checked.
            _ => {}
        }
    }
    let timestamp_text =
        timestamp_text.ok_or_else(|| malformed(STRIPE_SIGNATURE, "it holds no `t=` timestamp"))?;
    if seen_v1 == 0 {
        return Err(malformed(STRIPE_SIGNATURE, "it holds no `v1=` signature"));
    }
    let timestamp = parse_timestamp(STRIPE_SIGNATURE, timestamp_text)?;
    Ok(Presented {
        id: None,
        timestamp,
        timestamp_text: timestamp_text.into(),
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn timestamps_are_digits_that_fit_an_i64() {
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e9",
            "0x10",
            "9223372036854775808",
            "99999999999999999999",
        ] {
            assert!(parse_timestamp(WEBHOOK_TIMESTAMP, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_timestamp(WEBHOOK_TIMESTAMP, "9223372036854775807").unwrap(),
            i64::MAX
        );
        assert_eq!(parse_timestamp(WEBHOOK_TIMESTAMP, "0").unwrap(), 0);
    }

    #[test]
    fn ids_with_dots_or_spaces_are_malformed() {
        for bad in ["", "a.1", ".", "a b", "é", &"x".repeat(257)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        check_id("msg_p5jXN8AQM9LWM0D4loKWxJek").unwrap();
    }

    #[test]
    fn stripe_headers_need_one_t_and_a_v1() {
        for (header, code) in [
            ("v1=00", "malformed_signature"),
            ("t=1", "malformed_signature"),
            ("t=1,t=1,v1=00", "malformed_signature"),
            ("t=1,v0=00", "malformed_signature"),
            ("garbage", "malformed_signature"),
            ("t=-1,v1=00", "malformed_signature"),
        ] {
            let err = Presented::read(Scheme::Stripe, &headers(&[(STRIPE_SIGNATURE, header)]))
                .unwrap_err();
            assert_eq!(err.code(), code, "{header}");
        }
        let ok = Presented::read(
            Scheme::Stripe,
            &headers(&[(STRIPE_SIGNATURE, "t=12, v1=zz ,v1=")]),
        )
        .unwrap();
        assert_eq!(ok.timestamp, 12);
        assert!(
            ok.signatures.is_empty(),
            "undecodable signatures are left out"
        );
    }

    #[test]
    fn a_header_sent_twice_is_malformed() {
        let err = Presented::read(
            Scheme::Stripe,
            &headers(&[
                (STRIPE_SIGNATURE, "t=1,v1=00"),
                (STRIPE_SIGNATURE, "t=1,v1=00"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.code(), "malformed_signature");
    }
}
