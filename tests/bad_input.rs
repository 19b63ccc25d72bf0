//! Bad input: every odd thing a client can put where a key goes gets a clear
//! 4xx (never a panic, never a 5xx), garbage never reaches the store, and
//! the sources (header, query, bearer) agree or the request is refused.

mod common;

use common::{
    Op, TestApp, TestStore, bare, builder, forge, issue_scoped, keyed, typo, with_header,
};
use http::Method;
use keygate::{
    Keygate,
    core::{Environment, KeyFormat, Scope},
};

/// A keygate whose store counts lookups, and a `read` key.
async fn counted() -> (Keygate, TestStore, String) {
    let store = TestStore::memory();
    let keys = Keygate::builder(store.clone())
        .query_param("api_key")
        .build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    (keys, store, key)
}

#[tokio::test]
async fn odd_header_values_are_malformed_and_cost_no_lookup() {
    let (keys, store, key) = counted().await;
    let app = TestApp::new(&keys);
    let long = "k".repeat(10 * 1024);
    let long_prefixed = format!("kg_live_{}", "A".repeat(10 * 1024));
    let mut wrong_length = key.clone();
    wrong_length.pop();
    let mut non_ascii = key[..key.len() - 2].to_owned();
    non_ascii.push('é');
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("whitespace only", b"   \t ".to_vec()),
        ("10 KB", long.into_bytes()),
        ("10 KB with our prefix", long_prefixed.into_bytes()),
        ("truncated", wrong_length.into_bytes()),
        ("padded", format!(" {key} ").into_bytes()),
        (
            "non-ASCII UTF-8 of the right length",
            non_ascii.into_bytes(),
        ),
        ("non-UTF-8 bytes", b"kg_live_\xff\xfe\xfd".to_vec()),
        ("one non-UTF-8 byte", vec![0xff]),
        ("obs-text inside a key", {
            let mut b = key.clone().into_bytes();
            b[12] = 0x80;
            b
        }),
        ("wrong prefix", key.replacen("kg_", "zz_", 1).into_bytes()),
        (
            "wrong environment",
            key.replacen("_live_", "_prod_", 1).into_bytes(),
        ),
        ("bad checksum", typo(&key).into_bytes()),
        ("punctuation", {
            let mut b = key.clone().into_bytes();
            b[15] = b'-';
            b
        }),
        ("bearer-looking", format!("Bearer {key}").into_bytes()),
    ];
    for (what, value) in cases {
        let res = app
            .send(with_header(
                bare(Method::GET, "/notes"),
                "x-api-key",
                &value,
            ))
            .await;
        let body = res.assert_unauthorized("malformed_key");
        assert!(
            res.body.len() < 1024,
            "{what}: the body does not echo the input"
        );
        assert!(body["detail"].as_str().unwrap().contains("malformed"));
    }
    assert_eq!(store.calls(Op::Find), 0, "garbage never reaches the store");
    assert_eq!(app.hits(), 0);
    app.get("/notes", &key).await.assert_ok();
}

#[tokio::test]
async fn a_key_of_another_application_is_malformed() {
    let keys = builder().prefix("mbk").build();
    let ours = issue_scoped(&keys, [Scope::READ]).await;
    assert!(ours.starts_with("mbk_live_"));
    let theirs = KeyFormat::new("acme")
        .unwrap()
        .generate(Environment::Live)
        .unwrap();
    let app = TestApp::new(&keys);

    app.get("/notes", theirs.expose_secret())
        .await
        .assert_unauthorized("malformed_key");
    app.get("/notes", &ours).await.assert_ok();
}

#[tokio::test]
async fn a_flood_of_unknown_keys_costs_one_lookup_per_id() {
    let (keys, store, key) = counted().await;
    let app = TestApp::new(&keys);
    let stranger = keys.format().generate(Environment::Live).unwrap();

    for _ in 0..50 {
        app.get("/notes", stranger.expose_secret())
            .await
            .assert_unauthorized("invalid_key");
    }
    assert_eq!(store.calls(Op::Find), 1);
    // A forged key with a real id is checked against the cached digest.
    let forged = forge(&key);
    app.get("/notes", &key).await.assert_ok();
    for _ in 0..50 {
        app.get("/notes", &forged)
            .await
            .assert_unauthorized("invalid_key");
    }
    assert_eq!(store.calls(Op::Find), 2);
}

#[tokio::test]
async fn a_repeated_header_with_two_different_keys_is_400() {
    let (keys, _, key) = counted().await;
    let other = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    let res = app
        .send(with_header(
            keyed(Method::GET, "/notes", &key),
            "x-api-key",
            other.as_bytes(),
        ))
        .await;
    res.assert_problem(400, "conflicting_keys");
    // A valid key next to garbage is no better.
    let res = app
        .send(with_header(
            keyed(Method::GET, "/notes", &key),
            "x-api-key",
            b"garbage",
        ))
        .await;
    res.assert_problem(400, "conflicting_keys");
    // The same key twice is one key.
    app.send(with_header(
        keyed(Method::GET, "/notes", &key),
        "x-api-key",
        key.as_bytes(),
    ))
    .await
    .assert_ok();
    assert_eq!(app.hits(), 1);
}

#[tokio::test]
async fn header_and_query_must_agree() {
    let (keys, _, key) = counted().await;
    let other = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    app.send(keyed(Method::GET, &format!("/notes?api_key={other}"), &key))
        .await
        .assert_problem(400, "conflicting_keys");
    app.send(bare(
        Method::GET,
        &format!("/notes?api_key={key}&api_key={other}"),
    ))
    .await
    .assert_problem(400, "conflicting_keys");
    // The same key in both places is fine.
    app.send(keyed(Method::GET, &format!("/notes?api_key={key}"), &key))
        .await
        .assert_ok();
    assert_eq!(app.hits(), 1);
}

#[tokio::test]
async fn the_query_parameter_works_and_is_percent_decoded() {
    let (keys, _, key) = counted().await;
    let app = TestApp::new(&keys);

    app.send(bare(Method::GET, &format!("/notes?page=1&api_key={key}")))
        .await
        .assert_ok();
    let encoded = key.replace('_', "%5F");
    assert_ne!(encoded, key);
    app.send(bare(Method::GET, &format!("/notes?api_key={encoded}")))
        .await
        .assert_ok();
    // Percent-encoded bytes that are not UTF-8 are malformed, not a panic.
    app.send(bare(Method::GET, "/notes?api_key=%FF%FE%00"))
        .await
        .assert_unauthorized("malformed_key");
    app.send(bare(Method::GET, "/notes?api_key="))
        .await
        .assert_unauthorized("malformed_key");
    // Other parameters are not keys.
    app.send(bare(Method::GET, &format!("/notes?key={key}")))
        .await
        .assert_unauthorized("missing_key");
}

#[tokio::test]
async fn the_query_parameter_is_ignored_unless_enabled() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    app.send(bare(Method::GET, &format!("/notes?api_key={key}")))
        .await
        .assert_unauthorized("missing_key");
}

#[tokio::test]
async fn bearer_tokens_that_are_not_ours_are_left_alone() {
    let keys = builder().bearer(true).build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl";
    let authorized = |value: String| {
        with_header(
            bare(Method::GET, "/notes"),
            "authorization",
            value.as_bytes(),
        )
    };

    // Not ours, so there is no key in the request.
    for value in [
        format!("Bearer {jwt}"),
        "Basic dTpw".to_owned(),
        "Bearer kgx_live_looks_close".to_owned(),
        format!("Bearer {}", key.replacen("kg_", "zz_", 1)),
    ] {
        app.send(authorized(value))
            .await
            .assert_unauthorized("missing_key");
    }
    // A foreign bearer token next to our header key does not conflict.
    app.send(with_header(
        keyed(Method::GET, "/notes", &key),
        "authorization",
        format!("Bearer {jwt}").as_bytes(),
    ))
    .await
    .assert_ok();
}

#[tokio::test]
async fn a_foreign_bearer_token_in_optional_mode_is_anonymous() {
    let keys = builder().bearer(true).optional(true).build();
    let app = TestApp::new(&keys);

    let res = app
        .send(with_header(
            bare(Method::GET, "/maybe"),
            "authorization",
            b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ))
        .await;
    res.assert_ok();
    assert_eq!(res.text(), "anonymous");
    let echo = app
        .send(with_header(
            bare(Method::GET, "/echo"),
            "authorization",
            b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ))
        .await;
    assert_eq!(
        echo.json()["authorization"],
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "the token is passed on for the other authentication"
    );
}

#[tokio::test]
async fn our_key_as_a_bearer_token_works_when_enabled() {
    let keys = builder().bearer(true).build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let other = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);
    let bearer = |scheme: &str, key: &str| {
        with_header(
            bare(Method::GET, "/notes"),
            "authorization",
            format!("{scheme} {key}").as_bytes(),
        )
    };

    app.send(bearer("Bearer", &key)).await.assert_ok();
    app.send(bearer("bearer", &key)).await.assert_ok();
    app.send(bearer("BEARER", &key)).await.assert_ok();
    app.send(bearer("Bearer", &typo(&key)))
        .await
        .assert_unauthorized("malformed_key");
    app.send(with_header(
        bearer("Bearer", &key),
        "x-api-key",
        other.as_bytes(),
    ))
    .await
    .assert_problem(400, "conflicting_keys");
    app.send(with_header(
        bearer("Bearer", &key),
        "x-api-key",
        key.as_bytes(),
    ))
    .await
    .assert_ok();
    let mut bytes = format!("Bearer {key}").into_bytes();
    bytes[20] = 0xff;
    app.send(with_header(
        bare(Method::GET, "/notes"),
        "authorization",
        &bytes,
    ))
    .await
    .assert_unauthorized("malformed_key");
}

#[tokio::test]
async fn our_key_as_a_bearer_token_is_ignored_by_default() {
    let keys = builder().build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    app.send(with_header(
        bare(Method::GET, "/notes"),
        "authorization",
        format!("Bearer {key}").as_bytes(),
    ))
    .await
    .assert_unauthorized("missing_key");
}

#[tokio::test]
async fn bad_input_is_still_rejected_in_optional_mode() {
    let keys = builder().optional(true).query_param("api_key").build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let other = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);

    for value in [&b""[..], b"   ", b"\xff", b"kg_live_short"] {
        app.send(with_header(bare(Method::GET, "/maybe"), "x-api-key", value))
            .await
            .assert_unauthorized("malformed_key");
    }
    app.send(keyed(Method::GET, &format!("/maybe?api_key={other}"), &key))
        .await
        .assert_problem(400, "conflicting_keys");
    assert_eq!(app.hits(), 0);
}
