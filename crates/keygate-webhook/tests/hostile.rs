//! Hostile headers through the real router: garbage base64 and hex, an
//! enormous header, empty signatures, timestamps that overflow, bytes that
//! are not UTF-8. Every one is a 400 or 401 problem, never a panic, a 5xx,
//! or a call to the handler. Then the same, at random (proptest: 256 cases
//! per property by default; `PROPTEST_CASES` raises it).

mod common;

use common::{App, T0, standard_signer, stripe_signer};
use http::{HeaderMap, HeaderValue, StatusCode};
use keygate_webhook::{WebhookSecret, WebhookVerifier};
use proptest::prelude::*;

const BODY: &[u8] = br#"{"type":"ping"}"#;

fn standard_with(id: &[u8], ts: &[u8], sig: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.insert(name, v);
        }
    }
    h
}

fn stripe_with(value: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        h.insert("stripe-signature", v);
    }
    h
}

/// A refusal the layer may give to hostile input: problem+json, 400 or 401.
#[track_caller]
fn assert_refused(app: &App, res: &common::Reply, what: &str) {
    assert!(
        matches!(
            res.status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
        ),
        "{what}: {res:?}"
    );
    assert_eq!(res.content_type(), "application/problem+json", "{what}");
    assert_eq!(app.calls(), 0, "{what} reached the handler");
}

#[tokio::test]
async fn hostile_headers_are_refused_without_panicking() {
    let app = App::new();
    let ts = T0.to_string();
    let ts = ts.as_bytes();
    let huge = "v1,AAAA ".repeat(25_000); // 200 KB
    let huge_id = "m".repeat(10_000);
    let standard_cases: Vec<(&[u8], &[u8], &[u8])> = vec![
        (b"msg_1", ts, b"v1,"),
        (b"msg_1", ts, b"v1,!!!!not base64!!!!"),
        (b"msg_1", ts, b"v1,===="),
        (b"msg_1", ts, b"v1,AAAA"),
        (b"msg_1", ts, b",,,,"),
        (b"msg_1", ts, b"v1"),
        (b"msg_1", ts, b""),
        (b"msg_1", ts, huge.as_bytes()),
        (b"msg_1", ts, b"v1,\xff\xfe"),
        (b"msg_1", ts, b"\x80\x81 v1,x"),
        (huge_id.as_bytes(), ts, b"v1,AAAA"),
        (b"", ts, b"v1,AAAA"),
        (b"\xff", ts, b"v1,AAAA"),
        (b"msg_1", b"", b"v1,AAAA"),
        (b"msg_1", b"9223372036854775807", b"v1,AAAA"),
        (b"msg_1", b"9223372036854775808", b"v1,AAAA"),
        (b"msg_1", b"99999999999999999999999999999999", b"v1,AAAA"),
        (b"msg_1", b"-9223372036854775808", b"v1,AAAA"),
        (b"msg_1", b"1e10", b"v1,AAAA"),
        (b"msg_1", b"\xff\xff", b"v1,AAAA"),
    ];
    for (id, t, sig) in standard_cases {
        let res = app
            .post("/standard", &standard_with(id, t, sig), BODY)
            .await;
        assert_refused(
            &app,
            &res,
            &format!("{:?}", String::from_utf8_lossy(&sig[..sig.len().min(40)])),
        );
    }

    let stripe_cases: Vec<Vec<u8>> = vec![
        b"t=99999999999999999999999,v1=00".to_vec(),
        b"t=9223372036854775807,v1=00".to_vec(),
        b"t=-9223372036854775808,v1=00".to_vec(),
        b"t=,v1=".to_vec(),
        b"t=1900000000,v1=".to_vec(),
        b"t=1900000000,v1=zz".to_vec(),
        format!("t={T0},v1={}", "0".repeat(63)).into_bytes(),
        format!("t={T0},v1={}", "0".repeat(66)).into_bytes(),
        format!("t={T0},{}", "v1=00,".repeat(40_000)).into_bytes(),
        b"=,=,=".to_vec(),
        b",".to_vec(),
        b"t=1900000000,v1=\xff".to_vec(),
        b"\xc3\x28".to_vec(),
    ];
    for value in stripe_cases {
        let res = app.post("/stripe", &stripe_with(&value), BODY).await;
        assert_refused(
            &app,
            &res,
            &String::from_utf8_lossy(&value[..value.len().min(40)]),
        );
    }
}

#[test]
fn empty_secrets_cannot_be_made_so_nobody_signs_with_one() {
    for made in [
        WebhookSecret::standard(""),
        WebhookSecret::standard("whsec_"),
        WebhookSecret::standard("whsec_===="),
        WebhookSecret::stripe(""),
        WebhookSecret::from_bytes(Vec::new()),
    ] {
        assert!(made.is_err(), "{made:?}");
    }
}

/// The plain function gets the same inputs with no router in front.
#[test]
fn the_plain_function_takes_hostile_headers_too() {
    let verifier = WebhookVerifier::standard(common::standard_secret()).build();
    for ts in [&b"9223372036854775807"[..], b"0", b"18446744073709551616"] {
        let err = verifier
            .verify(&standard_with(b"msg_1", ts, b"v1,AAAA"), BODY)
            .unwrap_err();
        assert!(matches!(err.status().as_u16(), 400 | 401), "{err}");
    }
}

proptest! {
    /// Any bytes in any of the headers, and any body: refused, never a
    /// panic or a call.
    #[test]
    fn random_headers_and_bodies_never_break_the_layer(
        id in proptest::collection::vec(any::<u8>(), 0..64),
        ts in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            any::<i64>().prop_map(|t| t.to_string().into_bytes()),
            (-400_i64..400).prop_map(|d| (T0 + d).to_string().into_bytes()),
        ],
        sig in proptest::collection::vec(any::<u8>(), 0..200),
        stripe in proptest::collection::vec(any::<u8>(), 0..200),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let app = App::new();
            let res = app.post("/standard", &standard_with(&id, &ts, &sig), body.clone()).await;
            assert_refused(&app, &res, "standard");
            let res = app.post("/stripe", &stripe_with(&stripe), body).await;
            assert_refused(&app, &res, "stripe");
        });
    }

    /// A signed message with any one byte of its headers or body changed
    /// (or dropped) is refused; unchanged, it passes.
    #[test]
    fn any_one_change_to_a_signed_message_is_refused(
        which in 0_usize..5,
        at in any::<proptest::sample::Index>(),
        to in any::<u8>(),
        drop_it in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let app = App::new();
            let signed = standard_signer().sign("msg_p", T0, BODY).unwrap();
            let stripe_signed = stripe_signer().sign("", T0, BODY).unwrap();
            let mut parts: Vec<Vec<u8>> = vec![
                b"msg_p".to_vec(),
                T0.to_string().into_bytes(),
                signed.get("webhook-signature").unwrap().as_bytes().to_vec(),
                BODY.to_vec(),
                stripe_signed.get("stripe-signature").unwrap().as_bytes().to_vec(),
            ];
            let part = &mut parts[which];
            let i = at.index(part.len());
            let before = part.clone();
            if drop_it { part.remove(i); } else { part[i] = to; }
            // Changes that keep the meaning: base64 padding is optional,
            // hex is read in either case.
            let same_meaning = match which {
                2 => before.strip_suffix(b"=") == Some(part.as_slice()),
                4 => i >= "t=1900000000,v1=".len() && part.eq_ignore_ascii_case(&before),
                _ => false,
            };
            let changed = *part != before && !same_meaning;
            // The body serves both routes (index 3).
            let (standard_path, stripe_path) = ("/standard", "/stripe");
            let res = app.post(standard_path, &standard_with(&parts[0], &parts[1], &parts[2]), parts[3].clone()).await;
            let stripe_res = app.post(stripe_path, &stripe_with(&parts[4]), parts[3].clone()).await;
            let touched_standard = changed && which != 4;
            let touched_stripe = changed && (which == 3 || which == 4);
            for (touched, res) in [(touched_standard, res), (touched_stripe, stripe_res)] {
                if touched {
                    assert!(matches!(res.status.as_u16(), 400 | 401), "{which} {i}: {res:?}");
                } else {
                    assert_eq!(res.status, StatusCode::OK, "{which} {i}: {res:?}");
                }
            }
        });
    }
}
