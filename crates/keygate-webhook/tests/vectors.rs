//! Published test vectors, checked byte for byte: what the signer writes is
//! exactly what the schemes' own libraries write, and what they write
//! verifies.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use keygate::core::{FakeClock, time::OffsetDateTime};
use keygate_webhook::{Scheme, WebhookSecret, WebhookSigner, WebhookVerifier};

/// Standard Webhooks' signing vector, the same in every reference library
/// of github.com/standard-webhooks/standard-webhooks (commit b2fa7b87):
/// `libraries/javascript/src/webhook.test.ts` ("sign function works"),
/// `libraries/python/tests/test_webhooks.py` (`test_sign_function`),
/// `libraries/go/webhook_test.go` (`TestWebhookSign`).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TIMESTAMP: i64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
/// A well-formed signature that matches nothing, used as a decoy beside
/// the valid one in the same libraries' "multi sig payload is valid" tests.
const SW_DECOY: &str = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

/// Stripe's vector: github.com/stripe/stripe-dotnet (commit d3303629),
/// `src/StripeTests/Services/Events/EventUtilityTest.cs`, with the body
/// `src/StripeTests/Resources/event_test_signature.json` (copied beside this
/// file, 484 bytes with its final newline). That test's comment gives the
/// check: `(echo -n "1533204620." && cat event_test_signature.json) |
/// openssl sha256 -hmac "webhook_secret"`. Its header also carries a `v0`
/// signature, which Stripe's libraries, and this crate, ignore.
const STRIPE_BODY: &[u8] = include_bytes!("fixtures/stripe_event_test_signature.json");
const STRIPE_SECRET: &str = "webhook_secret";
const STRIPE_TIMESTAMP: i64 = 1_533_204_620;
const STRIPE_V1: &str = "2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
const STRIPE_HEADER: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";

fn clock_at(unix: i64) -> Arc<FakeClock> {
    Arc::new(FakeClock::new(
        OffsetDateTime::from_unix_timestamp(unix).expect("a valid time"),
    ))
}

fn standard_headers(signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", HeaderValue::from_static(SW_ID));
    h.insert(
        "webhook-timestamp",
        SW_TIMESTAMP.to_string().parse().unwrap(),
    );
    h.insert("webhook-signature", signature.parse().unwrap());
    h
}

#[test]
fn the_signer_writes_the_standard_webhooks_vector_byte_for_byte() {
    let secret = WebhookSecret::standard(SW_SECRET).unwrap();
    let signed = WebhookSigner::standard(secret)
        .sign(SW_ID, SW_TIMESTAMP, SW_BODY)
        .unwrap();
    let all: Vec<(String, &[u8])> = signed
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes()))
        .collect();
    assert_eq!(
        all,
        [
            ("webhook-id".to_owned(), SW_ID.as_bytes()),
            ("webhook-timestamp".to_owned(), b"1614265330".as_slice()),
            ("webhook-signature".to_owned(), SW_SIGNATURE.as_bytes()),
        ]
    );
}

/// The Rust reference library's own vector, same repository and commit,
/// `libraries/rust/src/lib.rs` (`test_sign`).
#[test]
fn the_signer_writes_the_standard_webhooks_rust_library_vector() {
    let secret = WebhookSecret::standard("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let signed = WebhookSigner::standard(secret.clone())
        .sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body)
        .unwrap();
    let signature = signed.get("webhook-signature").unwrap();
    assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    let verifier = WebhookVerifier::standard(secret)
        .clock(clock_at(1_649_367_553))
        .build();
    verifier.verify(&signed.to_header_map(), body).unwrap();
}

#[test]
fn the_standard_webhooks_vector_verifies_with_and_without_prefix_and_padding() {
    // The reference libraries accept the secret without `whsec_`, and
    // without its base64 padding (`test_signature_verification_with_unpadded_secret`).
    for secret in [SW_SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
        let verifier = WebhookVerifier::standard(WebhookSecret::standard(secret).unwrap())
            .clock(clock_at(SW_TIMESTAMP))
            .build();
        let verified = verifier
            .verify(&standard_headers(SW_SIGNATURE), SW_BODY)
            .unwrap();
        assert_eq!(verified.id(), Some(SW_ID));
        assert_eq!(verified.timestamp(), SW_TIMESTAMP);
        assert_eq!(verified.scheme(), Scheme::StandardWebhooks);
    }
    for (unpadded, padded) in [
        (
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=",
        ),
        (
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr==",
        ),
    ] {
        let a = WebhookSigner::standard(WebhookSecret::standard(unpadded).unwrap());
        let b =
            WebhookSigner::standard(WebhookSecret::standard(&format!("whsec_{padded}")).unwrap());
        assert_eq!(
            a.sign(SW_ID, SW_TIMESTAMP, SW_BODY).unwrap(),
            b.sign(SW_ID, SW_TIMESTAMP, SW_BODY).unwrap(),
            "{unpadded}"
        );
    }
}

#[test]
fn the_standard_webhooks_multi_signature_vector_verifies_and_decoys_alone_do_not() {
    let valid = SW_SIGNATURE;
    let decoys = format!("v1,{SW_DECOY} v2,{SW_DECOY}");
    let header = format!("{decoys} {valid} v1,{SW_DECOY}");
    let verifier = || {
        WebhookVerifier::standard(WebhookSecret::standard(SW_SECRET).unwrap())
            .clock(clock_at(SW_TIMESTAMP))
            .build()
    };
    verifier()
        .verify(&standard_headers(&header), SW_BODY)
        .unwrap();
    let err = verifier()
        .verify(&standard_headers(&decoys), SW_BODY)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_signature");
}

#[test]
fn the_signer_writes_the_stripe_vector_byte_for_byte() {
    assert_eq!(STRIPE_BODY.len(), 484, "the fixture's exact bytes");
    let secret = WebhookSecret::stripe(STRIPE_SECRET).unwrap();
    let signed = WebhookSigner::stripe(secret)
        .sign("ignored", STRIPE_TIMESTAMP, STRIPE_BODY)
        .unwrap();
    let all: Vec<_> = signed.iter().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, "stripe-signature");
    assert_eq!(
        all[0].1.as_bytes(),
        format!("t={STRIPE_TIMESTAMP},v1={STRIPE_V1}").as_bytes()
    );
}

#[test]
fn the_stripe_vector_verifies_within_its_tolerance_and_not_past_it() {
    // As the stripe-dotnet tests do: 100 s after the timestamp with a
    // tolerance of 300 s passes (`ConstructEvent`); 400 s after does not
    // (`RejectOutdatedTimestamp`); a changed body does not
    // (`RejectIncorrectSignature`).
    let mut headers = HeaderMap::new();
    headers.insert("stripe-signature", STRIPE_HEADER.parse().unwrap());
    let verifier = |now| {
        WebhookVerifier::stripe(WebhookSecret::stripe(STRIPE_SECRET).unwrap())
            .tolerance(std::time::Duration::from_secs(300))
            .clock(clock_at(now))
            .build()
    };
    let verified = verifier(STRIPE_TIMESTAMP + 100)
        .verify(&headers, STRIPE_BODY)
        .unwrap();
    assert_eq!(verified.timestamp(), STRIPE_TIMESTAMP);
    assert_eq!(verified.id(), None);
    let err = verifier(STRIPE_TIMESTAMP + 400)
        .verify(&headers, STRIPE_BODY)
        .unwrap_err();
    assert_eq!(err.code(), "timestamp_out_of_tolerance");
    let mut changed = STRIPE_BODY.to_vec();
    changed.extend_from_slice(b"this_changes_the_json");
    let err = verifier(STRIPE_TIMESTAMP + 100)
        .verify(&headers, &changed)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_signature");
}
