//! No plaintext key ever leaks: every `tracing` event (all targets, down to
//! TRACE) during a batch of requests that ends in every outcome, plus
//! creation and revocation, plus the `Debug` output of every type that
//! touches a key, plus every response's headers and body, is searched for
//! the keys and for any 12-character piece of their secrets. The audit
//! events must be there, so the search cannot pass on empty output.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::{
    Capture, Failure, Op, Reply, TestApp, TestStore, bare, forge, from_addr, keyed, typo,
    with_header,
};
use http::Method;
use keygate::{
    ApiKey, Keygate, Rejection,
    core::{
        Environment, FakeClock, IpNet, KeyId, NewKey, Owner, Quota, Scope, time::macros::datetime,
    },
};

/// Everything else a key could leak into: `Debug` output, responses.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn add(&mut self, what: impl std::fmt::Debug) {
        self.0.push(format!("{what:?}"));
    }

    /// Checks the status and keeps the response's headers and body.
    #[track_caller]
    fn reply(&mut self, res: Reply, status: u16) {
        assert_eq!(res.status.as_u16(), status, "{res:?}");
        let Reply { headers, body, .. } = res;
        self.0.push(format!("{headers:?}"));
        self.0
            .push(String::from_utf8(body.to_vec()).expect("UTF-8 body"));
    }
}

/// Issues a key and records the `Debug` of everything creation returns.
async fn create(keys: &Keygate, new: NewKey, seen: &mut Seen) -> (String, KeyId) {
    let created = keys.manager().create(new).await.unwrap();
    seen.add(&created);
    seen.add(&created.key);
    seen.add(&created.record);
    seen.0.push(serde_json::to_string(&created.record).unwrap());
    seen.add(created.record.digest);
    let redacted = format!("{:?}", created.key);
    assert!(
        redacted.contains(created.key.redacted()),
        "Debug shows the public head: {redacted}"
    );
    (created.key.expose_secret().to_owned(), created.key.id())
}

#[tokio::test]
async fn no_key_material_in_logs_debug_output_or_responses() {
    let (capture, _guard) = Capture::install(tracing::Level::TRACE);
    let mut seen = Seen::default();

    let store = TestStore::memory();
    let clock = FakeClock::new(datetime!(2030-01-01 0:00 UTC));
    let builder = Keygate::builder(store.clone())
        .clock(clock.clone())
        .query_param("api_key")
        .bearer(true)
        .environment(Environment::Live);
    seen.add(&builder);
    let keys = builder.build();
    seen.add(&keys);
    seen.add(keys.layer());
    seen.add(keys.manager());
    seen.add(keys.verifier());
    seen.add(keys.format());

    let read = NewKey::new(Owner::user("u1"), "k").scopes([Scope::READ]);
    let (main, main_id) = create(
        &keys,
        read.clone().rate_limit(Quota::per_hour(3)),
        &mut seen,
    )
    .await;
    let (other, _) = create(&keys, read.clone(), &mut seen).await;
    let (office, _) = create(
        &keys,
        read.clone()
            .allowed_ips(["10.0.0.0/8".parse::<IpNet>().unwrap()]),
        &mut seen,
    )
    .await;
    let (expiring, _) = create(
        &keys,
        read.clone().expires_in(Duration::from_secs(60)),
        &mut seen,
    )
    .await;
    let (revoked, revoked_id) = create(&keys, read.clone(), &mut seen).await;
    let (sandbox, _) = create(
        &keys,
        read.clone().environment(Environment::Test),
        &mut seen,
    )
    .await;
    let (cold, _) = create(&keys, read.clone(), &mut seen).await;
    let stranger = keys.format().generate(Environment::Live).unwrap();
    seen.add(&stranger);
    let all_keys = [
        main.clone(),
        other.clone(),
        office.clone(),
        expiring.clone(),
        revoked.clone(),
        sandbox.clone(),
        cold.clone(),
        stranger.expose_secret().to_owned(),
    ];

    let app = TestApp::with(|r| {
        r.route(
            "/debug",
            get(|key: ApiKey| async move { format!("{key:?} {:?}", key.info()) }),
        )
        .layer(keys.layer())
    });

    // Admitted, through each source; the handler's view of the key too.
    seen.reply(app.get("/notes", &main).await, 200);
    seen.reply(
        app.send(bare(Method::GET, &format!("/debug?api_key={main}")))
            .await,
        200,
    );
    seen.reply(
        app.send(with_header(
            bare(Method::GET, "/notes"),
            "authorization",
            format!("Bearer {main}").as_bytes(),
        ))
        .await,
        200,
    );
    // Every way of being refused.
    seen.reply(app.get("/notes", &main).await, 429);
    seen.reply(app.send(keyed(Method::POST, "/notes", &main)).await, 403);
    seen.reply(app.get("/billing", &other).await, 403);
    seen.reply(app.get("/typed", &other).await, 403);
    seen.reply(app.get("/notes", &typo(&main)).await, 401);
    seen.reply(app.get("/notes", &forge(&main)).await, 401);
    seen.reply(
        app.send(keyed(
            Method::GET,
            &format!("/notes?api_key={other}"),
            &main,
        ))
        .await,
        400,
    );
    seen.reply(app.send(bare(Method::GET, "/notes")).await, 401);
    seen.reply(
        app.send(from_addr(
            keyed(Method::GET, "/notes", &office),
            "192.168.0.1:443",
        ))
        .await,
        403,
    );
    seen.reply(
        app.send(from_addr(
            keyed(Method::GET, "/notes", &office),
            "10.0.0.1:443",
        ))
        .await,
        200,
    );
    seen.reply(app.get("/notes", &expiring).await, 200);
    clock.advance(Duration::from_secs(60));
    seen.reply(app.get("/notes", &expiring).await, 401);
    seen.reply(app.get("/notes", &revoked).await, 200);
    seen.add(keys.manager().revoke(revoked_id).await.unwrap());
    seen.reply(app.get("/notes", &revoked).await, 401);
    seen.reply(app.get("/notes", &sandbox).await, 401);
    seen.reply(app.get("/notes", stranger.expose_secret()).await, 401);
    store.fail(Op::Find, Failure::Unavailable);
    seen.reply(app.get("/notes", &cold).await, 503);
    store.heal();
    // No layer; and optional mode without a key.
    let bare_app = TestApp::with(|r| r);
    seen.reply(bare_app.get("/notes", &main).await, 500);
    let optional = Keygate::builder(store.clone()).optional(true).build();
    let optional_app = TestApp::new(&optional);
    seen.reply(optional_app.send(bare(Method::GET, "/maybe")).await, 200);
    seen.reply(optional_app.get("/maybe", &main).await, 200);
    for r in [
        Rejection::MalformedKey,
        Rejection::InvalidKey,
        Rejection::ConflictingKeys,
    ] {
        seen.add(&r);
        seen.0.push(r.to_string());
    }
    keys.flush_usage().await.unwrap();

    let logs = capture.text();
    // `SHOW_LOGS=1 cargo test --test no_leak -- --nocapture` shows what
    // was searched.
    if std::env::var_os("SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    let haystack = format!("{logs}\n{}", seen.0.join("\n"));

    // The search is not vacuous: the audit trail is there, by key id.
    assert!(logs.contains("keygate::audit"), "audit events: {logs}");
    for outcome in [
        "ok",
        "missing_key",
        "malformed_key",
        "conflicting_keys",
        "invalid_key",
        "revoked_key",
        "expired_key",
        "wrong_environment",
        "insufficient_scope",
        "ip_not_allowed",
        "rate_limited",
        "unavailable",
        "anonymous",
    ] {
        assert!(
            logs.lines().any(|l| l.contains("keygate::audit")
                && l.contains("outcome")
                && l.contains(outcome)),
            "no audit event with outcome {outcome}:\n{logs}"
        );
    }
    assert!(
        logs.lines().any(|l| l.contains("keygate::audit")
            && l.contains("key_id")
            && l.contains(main_id.as_str())
            && l.contains("ok")),
        "the admitted requests are logged by key id:\n{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains(revoked_id.as_str()) && l.contains("revoke")),
        "the revocation is logged:\n{logs}"
    );
    assert!(
        haystack.contains(main_id.as_str()),
        "ids are public and do show up"
    );

    for key in &all_keys {
        let secret = common::secret_part(key);
        assert!(!haystack.contains(key.as_str()), "the whole key leaked");
        assert!(!haystack.contains(secret), "the secret part leaked");
        for window in secret.as_bytes().windows(12) {
            let piece = std::str::from_utf8(window).unwrap();
            assert!(
                !haystack.contains(piece),
                "12 characters of a secret leaked ({piece})"
            );
        }
    }
}
