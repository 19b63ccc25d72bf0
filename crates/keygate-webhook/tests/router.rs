//! The layer through a real axum router (and under `tower::ServiceBuilder`):
//! what passes, what is refused and with which answer, and what an
//! attacker who holds a signed message but not the secret can do with it.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use axum::body::Body;
use base64::Engine as _;
use common::{
    App, CountingBody, T0, TOLERANCE, standard_secret, standard_signer, stripe_secret,
    stripe_signer, with_header, without_header,
};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use keygate_test_support::reply::Reply;
use keygate_webhook::{
    SignedHeaders, VerifiedBody, VerifiedWebhook, WebhookSecret, WebhookSigner, WebhookVerifier,
};
use tower::{ServiceBuilder, ServiceExt as _};

const BODY: &[u8] = br#"{"type":"invoice.paid","amount":4200}"#;

fn standard(id: &str, ts: i64, body: &[u8]) -> SignedHeaders {
    standard_signer().sign(id, ts, body).unwrap()
}

fn stripe(ts: i64, body: &[u8]) -> SignedHeaders {
    stripe_signer().sign("", ts, body).unwrap()
}

#[tokio::test]
async fn valid_messages_reach_the_handler_with_their_body_unchanged() {
    let app = App::new();
    // JSON, bytes that are not UTF-8, nothing at all, and 100 KB.
    let big: Vec<u8> = (0..100_000_u32).map(|i| (i % 251) as u8).collect();
    let bodies: [&[u8]; 4] = [BODY, &[0xff, 0x00, 0xfe, b'.', b'\n'], b"", &big];
    for (i, body) in bodies.into_iter().enumerate() {
        let id = format!("msg_{i}");
        let res = app.send("/standard", &standard(&id, T0, body), body).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body, body, "the handler sees the signed bytes");
        assert_eq!(res.header("x-webhook-id"), Some(id.as_str()));

        let res = app
            .send("/stripe", &stripe(T0 + i as i64, body), body)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.body, body);
    }
    assert_eq!(app.calls(), 8);

    // A body that arrives in many frames is handed on as the same bytes.
    let signed = standard("msg_chunked", T0, &b"abc".repeat(1000));
    let res = app
        .post(
            "/standard",
            &signed.to_header_map(),
            Body::new(CountingBody::chunks(b"abc", 1000)),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body, b"abc".repeat(1000));

    // Routes without the layer, and unknown paths, are left alone.
    let res = Reply::read(
        app.router
            .clone()
            .oneshot(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.post("/nowhere", &HeaderMap::new(), "x").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tampered_body_id_or_timestamp_is_401_and_never_reaches_the_handler() {
    let app = App::new();
    let signed = standard("msg_1", T0, BODY);
    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    let cases = [
        (signed.to_header_map(), tampered.clone()),
        (signed.to_header_map(), [BODY, b" "].concat()),
        (signed.to_header_map(), BODY[..BODY.len() - 1].to_vec()),
        (with_header(&signed, "webhook-id", "msg_2"), BODY.to_vec()),
        // Still within the tolerance, but not what was signed.
        (
            with_header(&signed, "webhook-timestamp", &(T0 + 1).to_string()),
            BODY.to_vec(),
        ),
        (
            with_header(&signed, "webhook-timestamp", &format!("0{T0}")),
            BODY.to_vec(),
        ),
    ];
    for (headers, body) in cases {
        let res = app.post("/standard", &headers, body).await;
        res.assert_problem(401, "invalid_signature");
    }

    let signed = stripe(T0, BODY);
    let header = signed.get("stripe-signature").unwrap().to_str().unwrap();
    let moved = header.replace(&format!("t={T0}"), &format!("t={}", T0 - 1));
    for (headers, body) in [
        (signed.to_header_map(), tampered),
        (
            with_header(&signed, "stripe-signature", &moved),
            BODY.to_vec(),
        ),
    ] {
        let res = app.post("/stripe", &headers, body).await;
        res.assert_problem(401, "invalid_signature");
    }
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn a_message_signed_with_another_secret_is_401() {
    let app = App::new();
    let other = WebhookSecret::generate().unwrap();
    let signed = WebhookSigner::standard(other.clone())
        .sign("msg_1", T0, BODY)
        .unwrap();
    app.send("/standard", &signed, BODY)
        .await
        .assert_problem(401, "invalid_signature");
    // Stripe's secret is the whole text: without its `whsec_` it is another key.
    let signed = WebhookSigner::stripe(WebhookSecret::from_bytes(&b"test_secret"[..]).unwrap())
        .sign("", T0, BODY)
        .unwrap();
    app.send("/stripe", &signed, BODY)
        .await
        .assert_problem(401, "invalid_signature");
    // And the routes do not take each other's schemes.
    let res = app
        .send("/stripe", &standard("msg_2", T0, BODY), BODY)
        .await;
    res.assert_problem(400, "missing_signature");
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn rotated_secrets_overlap_and_the_old_one_stops_when_dropped() {
    let new = WebhookSecret::generate().unwrap();
    let new_stripe = WebhookSecret::stripe("whsec_rotated").unwrap();
    let app = App::with(
        WebhookVerifier::standard(new.clone()).also_accept(standard_secret()),
        WebhookVerifier::stripe(new_stripe.clone()).also_accept(stripe_secret()),
    );
    // Old senders, new senders, and senders signing with both.
    let old_signed = standard("msg_old", T0, BODY);
    let new_signed = WebhookSigner::standard(new.clone())
        .sign("msg_new", T0, BODY)
        .unwrap();
    let both = WebhookSigner::standard(new.clone())
        .also_sign_with(standard_secret())
        .sign("msg_both", T0, BODY)
        .unwrap();
    assert_eq!(
        both.get("webhook-signature")
            .unwrap()
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    for (signed, index) in [(&old_signed, "1"), (&new_signed, "0"), (&both, "0")] {
        let res = app.send("/standard", signed, BODY).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
        assert_eq!(res.header("x-secret-index"), Some(index));
    }
    for signer in [
        stripe_signer(),
        WebhookSigner::stripe(new_stripe.clone()),
        WebhookSigner::stripe(stripe_secret()).also_sign_with(new_stripe.clone()),
    ] {
        let body = format!("{signer:?}");
        let signed = signer.sign("", T0, body.as_bytes()).unwrap();
        let res = app.send("/stripe", &signed, body.as_bytes()).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
    }

    // The rotation is over: the old secret no longer verifies.
    let app = App::with(
        WebhookVerifier::standard(new),
        WebhookVerifier::stripe(new_stripe),
    );
    let res = app
        .send("/standard", &standard("msg_late", T0, BODY), BODY)
        .await;
    res.assert_problem(401, "invalid_signature");
    app.send("/stripe", &stripe(T0, BODY), BODY)
        .await
        .assert_problem(401, "invalid_signature");
}

#[tokio::test]
async fn several_signatures_in_one_header_pass_if_any_matches() {
    let app = App::new();
    let signed = standard("msg_1", T0, BODY);
    let valid = signed.get("webhook-signature").unwrap().to_str().unwrap();
    let decoy = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    let header = format!("v1a,c2lnbmVk {decoy} v1,!!garbage!! v1, {valid} {decoy}");
    let res = app
        .post(
            "/standard",
            &with_header(&signed, "webhook-signature", &header),
            BODY,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");

    let signed = stripe(T0, BODY);
    let valid = signed.get("stripe-signature").unwrap().to_str().unwrap();
    let header = format!("{valid},v1={},v1=nothex,v0=00,v2=future", "0".repeat(64));
    let header = header.replacen(
        &format!("t={T0},"),
        &format!("t={T0},v1={},", "ab".repeat(32)),
        1,
    );
    let res = app
        .post(
            "/stripe",
            &with_header(&signed, "stripe-signature", &header),
            BODY,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
}

#[tokio::test]
async fn a_replayed_message_is_401_and_the_handler_runs_once() {
    let app = App::new();
    let signed = standard("msg_once", T0, BODY);
    assert_eq!(
        app.send("/standard", &signed, BODY).await.status,
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(299));
    app.send("/standard", &signed, BODY)
        .await
        .assert_problem(401, "replayed_message");
    // The same id with a new timestamp and body, signed by the sender: still
    // the same message (Standard Webhooks' id is the idempotency key).
    let again = standard("msg_once", T0 + 299, b"{}");
    app.send("/standard", &again, b"{}")
        .await
        .assert_problem(401, "replayed_message");

    let signed = stripe(T0 + 299, BODY);
    assert_eq!(
        app.send("/stripe", &signed, BODY).await.status,
        StatusCode::OK
    );
    app.send("/stripe", &signed, BODY)
        .await
        .assert_problem(401, "replayed_message");
    assert_eq!(app.calls(), 2);
}

#[tokio::test]
async fn dropping_one_of_several_stripe_signatures_is_still_a_replay() {
    let second = WebhookSecret::stripe("whsec_second").unwrap();
    let app = App::with(
        WebhookVerifier::standard(standard_secret()),
        WebhookVerifier::stripe(stripe_secret()).also_accept(second.clone()),
    );
    let signed = stripe_signer()
        .also_sign_with(second)
        .sign("", T0, BODY)
        .unwrap();
    assert_eq!(
        app.send("/stripe", &signed, BODY).await.status,
        StatusCode::OK
    );
    let header = signed.get("stripe-signature").unwrap().to_str().unwrap();
    let parts: Vec<&str> = header.split(',').collect();
    assert_eq!(parts.len(), 3);
    for kept in [
        format!("{},{}", parts[0], parts[1]),
        format!("{},{}", parts[0], parts[2]),
        format!("{},{},{}", parts[0], parts[2], parts[1]),
    ] {
        let res = app
            .post(
                "/stripe",
                &with_header(&signed, "stripe-signature", &kept),
                BODY,
            )
            .await;
        res.assert_problem(401, "replayed_message");
    }
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn a_replay_capacity_of_zero_turns_replay_protection_off() {
    let app = App::with(
        WebhookVerifier::standard(standard_secret()).replay_capacity(0),
        WebhookVerifier::stripe(stripe_secret()),
    );
    let signed = standard("msg_twice", T0, BODY);
    for _ in 0..2 {
        assert_eq!(
            app.send("/standard", &signed, BODY).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_forged_message_cannot_burn_the_id_of_a_real_one() {
    let app = App::new();
    let real = standard("msg_target", T0, BODY);
    // The attacker guesses the next id and sends it first, badly signed,
    // again and again.
    let forged = with_header(
        &real,
        "webhook-signature",
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    );
    for _ in 0..3 {
        app.post("/standard", &forged, BODY)
            .await
            .assert_problem(401, "invalid_signature");
    }
    assert_eq!(
        app.send("/standard", &real, BODY).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_delivery_the_handler_failed_can_be_retried_once_it_succeeds_it_is_remembered() {
    let app = App::new();
    let signed = standard("msg_retry", T0, BODY);
    assert_eq!(
        app.send("/flaky", &signed, BODY).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let res = app.send("/flaky", &signed, BODY).await;
    assert_eq!(res.status, StatusCode::OK, "the sender's retry: {res:?}");
    app.send("/flaky", &signed, BODY)
        .await
        .assert_problem(401, "replayed_message");
    // `/standard` shares the verifier, so the id is taken there too.
    app.send("/standard", &signed, BODY)
        .await
        .assert_problem(401, "replayed_message");
    assert_eq!(app.calls(), 2);
}

#[tokio::test]
async fn timestamps_outside_the_tolerance_either_way_are_401_and_the_edges_pass() {
    let app = App::new();
    let tol = TOLERANCE.as_secs() as i64;
    for (i, (ts, ok)) in [
        (T0 - tol, true),
        (T0 + tol, true),
        (T0 - tol - 1, false),
        (T0 + tol + 1, false),
        (0, false),
        (i64::MAX, false),
    ]
    .into_iter()
    .enumerate()
    {
        let res = app
            .send("/standard", &standard(&format!("msg_{i}"), ts, BODY), BODY)
            .await;
        let res_stripe = app.send("/stripe", &stripe(ts, BODY), BODY).await;
        if ok {
            assert_eq!(res.status, StatusCode::OK, "{ts}: {res:?}");
            assert_eq!(res_stripe.status, StatusCode::OK, "{ts}: {res_stripe:?}");
        } else {
            let body = res.assert_problem(401, "timestamp_out_of_tolerance");
            assert_eq!(body["tolerance_seconds"], 300);
            res_stripe.assert_problem(401, "timestamp_out_of_tolerance");
        }
    }
    // A message held back past the tolerance goes stale.
    let signed = standard("msg_held", T0, BODY);
    app.clock.advance(TOLERANCE + Duration::from_secs(1));
    app.send("/standard", &signed, BODY)
        .await
        .assert_problem(401, "timestamp_out_of_tolerance");
    assert_eq!(app.calls(), 4);
}

#[tokio::test]
async fn an_announced_size_over_the_limit_is_413_before_a_byte_is_read() {
    let app = App::with(
        WebhookVerifier::standard(standard_secret()).max_body_size(1024),
        WebhookVerifier::stripe(stripe_secret()).max_body_size(1024),
    );
    // The `Content-Length` header alone, over a body that would never end.
    let body = CountingBody::endless(512);
    let pulled = std::sync::Arc::clone(&body.pulled);
    let mut headers = standard("msg_1", T0, b"").to_header_map();
    headers.insert("content-length", "10000000".parse().unwrap());
    let res = app.post("/standard", &headers, Body::new(body)).await;
    let problem = res.assert_problem(413, "payload_too_large");
    assert_eq!(problem["max_body_size"], 1024);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "nothing was read");

    // The body's own size hint (what hyper takes from `Content-Length`).
    let body = CountingBody::endless(512).claiming(1025);
    let pulled = std::sync::Arc::clone(&body.pulled);
    let res = app
        .post("/stripe", &stripe(T0, b"").to_header_map(), Body::new(body))
        .await;
    res.assert_problem(413, "payload_too_large");
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "nothing was read");
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn a_body_streaming_past_the_limit_is_413_as_soon_as_it_does() {
    let app = App::with(
        WebhookVerifier::standard(standard_secret()).max_body_size(256 * 1024),
        WebhookVerifier::stripe(stripe_secret()).max_body_size(256 * 1024),
    );
    // Chunked, no length: endless 64 KiB chunks. Four fit; the fifth is refused.
    let body = CountingBody::endless(64 * 1024);
    let pulled = std::sync::Arc::clone(&body.pulled);
    let res = app
        .post(
            "/standard",
            &standard("msg_1", T0, b"").to_header_map(),
            Body::new(body),
        )
        .await;
    res.assert_problem(413, "payload_too_large");
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        5,
        "read up to the limit and no further"
    );

    // A `Content-Length` that lies low: the bytes are counted, not the claim.
    let body = CountingBody::endless(64 * 1024).claiming(10);
    let pulled = std::sync::Arc::clone(&body.pulled);
    let mut headers = stripe(T0, b"").to_header_map();
    headers.insert("content-length", "10".parse().unwrap());
    let res = app.post("/stripe", &headers, Body::new(body)).await;
    res.assert_problem(413, "payload_too_large");
    assert_eq!(pulled.load(Ordering::SeqCst), 5);

    // Exactly the limit passes; one byte more does not.
    let exact = vec![b'a'; 256 * 1024];
    let res = app
        .send("/standard", &standard("msg_2", T0, &exact), &exact)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let over = vec![b'a'; 256 * 1024 + 1];
    let res = app
        .send("/standard", &standard("msg_3", T0, &over), &over)
        .await;
    res.assert_problem(413, "payload_too_large");
    assert_eq!(app.calls(), 1);
}

#[tokio::test]
async fn missing_and_malformed_headers_are_400_naming_the_header() {
    let app = App::new();
    let signed = standard("msg_1", T0, BODY);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let res = app
            .post("/standard", &without_header(&signed, name), BODY)
            .await;
        assert_eq!(res.assert_problem(400, "missing_signature")["header"], name);
    }
    let res = app.post("/stripe", &HeaderMap::new(), BODY).await;
    assert_eq!(
        res.assert_problem(400, "missing_signature")["header"],
        "stripe-signature"
    );

    for (name, value) in [
        ("webhook-id", "msg.1"),
        ("webhook-id", "msg 1"),
        ("webhook-timestamp", "soon"),
        ("webhook-timestamp", "-5"),
        ("webhook-timestamp", "99999999999999999999999"),
        ("webhook-signature", "v1"),
        ("webhook-signature", "v2,abc"),
        ("webhook-signature", " "),
    ] {
        let res = app
            .post("/standard", &with_header(&signed, name, value), BODY)
            .await;
        let body = res.assert_problem(400, "malformed_signature");
        assert_eq!(body["header"], name, "{value}");
    }
    let mut twice = signed.to_header_map();
    twice.append("webhook-signature", "v1,AAAA".parse().unwrap());
    let res = app.post("/standard", &twice, BODY).await;
    res.assert_problem(400, "malformed_signature");
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn refusals_are_problem_json_and_401s_name_the_scheme_in_their_challenge() {
    let app = App::new();
    let forged = with_header(
        &standard("msg_1", T0, BODY),
        "webhook-signature",
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    );
    let res = app.post("/standard", &forged, BODY).await;
    res.assert_problem(401, "invalid_signature");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Webhook scheme="standard-webhooks", error="invalid_signature""#)
    );
    let res = app.send("/stripe", &stripe(0, BODY), BODY).await;
    res.assert_problem(401, "timestamp_out_of_tolerance");
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Webhook scheme="stripe", error="timestamp_out_of_tolerance""#)
    );
}

/// Constant time is by construction (`subtle` over whole 32-byte MACs,
/// every presented signature compared); what a test can hold is that a
/// near miss is answered exactly like a far one, whichever byte is wrong.
#[tokio::test]
async fn near_miss_signatures_are_refused_exactly_like_far_ones() {
    let app = App::new();
    let signed = standard("msg_1", T0, BODY);
    let valid = signed.get("webhook-signature").unwrap().to_str().unwrap();
    let mac = base64::engine::general_purpose::STANDARD
        .decode(&valid["v1,".len()..])
        .unwrap();
    let far = app
        .post(
            "/standard",
            &with_header(
                &signed,
                "webhook-signature",
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            ),
            BODY,
        )
        .await;
    far.assert_problem(401, "invalid_signature");
    let encode = |bytes: &[u8]| {
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let mut near: Vec<String> = (0..32)
        .map(|i| {
            let mut m = mac.clone();
            m[i] ^= 0x01;
            encode(&m)
        })
        .collect();
    near.push(encode(&mac[..31]));
    near.push(encode(&[mac.as_slice(), &[0]].concat()));
    near.push(valid.trim_end_matches('=').to_owned() + "A=");
    for signature in near {
        let res = app
            .post(
                "/standard",
                &with_header(&signed, "webhook-signature", &signature),
                BODY,
            )
            .await;
        res.assert_problem(401, "invalid_signature");
        assert_eq!(res.body, far.body, "{signature}");
        assert_eq!(res.headers, far.headers, "{signature}");
    }
    assert_eq!(app.calls(), 0);
}

#[tokio::test]
async fn the_layer_works_under_service_builder_with_any_body() {
    let verifier = WebhookVerifier::standard(standard_secret())
        .clock(std::sync::Arc::new(common::clock()))
        .build();
    let svc = ServiceBuilder::new().layer(verifier.layer()).service_fn(
        |req: Request<VerifiedBody>| async move {
            let id = req
                .extensions()
                .get::<VerifiedWebhook>()
                .unwrap()
                .id()
                .unwrap()
                .to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, std::convert::Infallible>(http::Response::new(format!("{id}:{}", body.len())))
        },
    );
    let signed = standard("msg_sb", T0, BODY);
    // A `String` body: the layer takes any `http_body::Body`.
    let mut req = Request::post("/")
        .body(String::from_utf8(BODY.to_vec()).unwrap())
        .unwrap();
    signed.apply_to(req.headers_mut());
    let res = Reply::read(svc.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(res.text(), format!("msg_sb:{}", BODY.len()));

    let mut req = Request::post("/").body(String::from("forged")).unwrap();
    signed.apply_to(req.headers_mut());
    let res = Reply::read(svc.oneshot(req).await.unwrap()).await;
    res.assert_problem(401, "invalid_signature");
}

#[tokio::test]
async fn a_plain_function_verifies_without_tower() {
    let verifier = WebhookVerifier::stripe(stripe_secret())
        .clock(std::sync::Arc::new(common::clock()))
        .build();
    let signed = stripe(T0, BODY);
    let headers = signed.to_header_map();
    let verified = verifier.verify(&headers, BODY).unwrap();
    assert_eq!(
        verifier.verify(&headers, BODY).unwrap_err().code(),
        "replayed_message"
    );
    // The caller's handling failed: forget it, and the retry passes once.
    verifier.forget(&verified);
    verifier.verify(&headers, BODY).unwrap();
    assert_eq!(
        verifier.verify(&headers, BODY).unwrap_err().code(),
        "replayed_message"
    );
    let small = WebhookVerifier::stripe(stripe_secret())
        .max_body_size(4)
        .clock(std::sync::Arc::new(common::clock()))
        .build();
    assert_eq!(
        small.verify(&headers, BODY).unwrap_err().code(),
        "payload_too_large"
    );
}
