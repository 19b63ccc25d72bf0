//! Audit events through the real router: every outcome is logged on
//! `keygate::audit`, and no secret or signature is ever in a log line, a
//! `Debug` output or an answer.
//!
//! Alone in its test binary: `tracing` caches per call site whether anyone
//! listens, and a test running beside it without a subscriber can make the
//! capture miss events.

mod common;

use base64::Engine as _;
use common::{
    App, Capture, STANDARD_SECRET, STRIPE_SECRET, T0, standard_secret, standard_signer,
    stripe_secret, stripe_signer, without_header,
};
use keygate_webhook::{SignedHeaders, WebhookVerifier};

const BODY: &[u8] = br#"{"type":"invoice.paid","amount":4200}"#;

fn standard(id: &str, ts: i64, body: &[u8]) -> SignedHeaders {
    standard_signer().sign(id, ts, body).unwrap()
}

fn stripe(ts: i64, body: &[u8]) -> SignedHeaders {
    stripe_signer().sign("", ts, body).unwrap()
}

#[tokio::test]
async fn audit_events_log_every_outcome_and_never_a_secret_or_a_signature() {
    let (capture, _guard) = Capture::install();
    let app = App::new();
    let signed = standard("msg_audit", T0, BODY);
    let stripe_signed = stripe(T0, BODY);
    let mut seen = vec![
        app.send("/standard", &signed, BODY).await,
        app.send("/standard", &signed, BODY).await,
        app.send("/stripe", &stripe_signed, BODY).await,
        app.send("/stripe", &stripe_signed, b"tampered").await,
        app.post("/standard", &without_header(&signed, "webhook-id"), BODY)
            .await,
    ];
    seen.push(
        app.send("/standard", &standard("msg_old", 0, BODY), BODY)
            .await,
    );
    let log = capture.text();
    for needle in [
        "keygate::audit",
        "outcome=\"ok\"",
        "outcome=\"replayed_message\"",
        "outcome=\"invalid_signature\"",
        "outcome=\"missing_signature\"",
        "outcome=\"timestamp_out_of_tolerance\"",
        "webhook_id=\"msg_audit\"",
        "scheme=\"stripe\"",
        "path=\"/standard\"",
        "header=\"webhook-id\"",
    ] {
        assert!(log.contains(needle), "{needle} in:\n{log}");
    }

    // The secrets, as written and as key bytes in base64 and hex; the
    // signatures as sent and decoded; nothing of them in logs, `Debug`
    // output or answers.
    let sw_key = standard_secret();
    let key_b64 = &STANDARD_SECRET["whsec_".len()..];
    let mut secrets = vec![
        key_b64.to_owned(),
        STRIPE_SECRET.to_owned(),
        hex_of(
            &base64::engine::general_purpose::STANDARD
                .decode(key_b64)
                .unwrap(),
        ),
        hex_of(STRIPE_SECRET.as_bytes()),
    ];
    let sw_sig = signed.get("webhook-signature").unwrap().to_str().unwrap();
    let sw_mac = base64::engine::general_purpose::STANDARD
        .decode(&sw_sig[3..])
        .unwrap();
    secrets.push(sw_sig[3..].to_owned());
    secrets.push(hex_of(&sw_mac));
    let st_sig = stripe_signed
        .get("stripe-signature")
        .unwrap()
        .to_str()
        .unwrap();
    let st_hex = st_sig.split("v1=").nth(1).unwrap().to_owned();
    secrets.push(base64::engine::general_purpose::STANDARD.encode(hex_decode(&st_hex)));
    secrets.push(st_hex);

    let verifier = WebhookVerifier::standard(sw_key.clone()).also_accept(stripe_secret());
    let mut texts = vec![
        log,
        format!("{sw_key:?}"),
        format!("{verifier:?}"),
        format!("{:?}", verifier.build()),
        format!("{:?}", standard_signer().also_sign_with(stripe_secret())),
        format!("{signed:?}"),
    ];
    for res in &seen {
        texts.push(format!("{:?}", res.headers));
        texts.push(String::from_utf8_lossy(&res.body).into_owned());
    }
    for text in &texts {
        for secret in &secrets {
            // Any 12-character piece is a leak.
            for piece in secret.as_bytes().windows(12).step_by(4) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(
                    !text.contains(piece),
                    "{piece} (of {secret}) leaked in:\n{text}"
                );
            }
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
