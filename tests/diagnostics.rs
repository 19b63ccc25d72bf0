//! Server misconfigurations keygate cannot refuse to run with, but says
//! something about in the logs.
//!
//! One test per file: `tracing` caches each callsite's interest for the
//! whole process, so a test without a subscriber running beside one that
//! captures can make the capturing test miss events.

mod common;

use common::{Capture, TestApp, builder, from_addr, issue_office_key, keyed};
use http::Method;
use keygate::MethodScopes;

#[tokio::test]
async fn an_unknown_client_address_is_warned_about_once() {
    let (capture, _guard) = Capture::install(tracing::Level::INFO);
    let keys = builder().build();
    let key = issue_office_key(&keys, "10.0.0.0/8").await;
    // Served without `into_make_service_with_connect_info`: no address.
    let app = TestApp::new(&keys);
    // A layer derived from the same `Keygate` shares the warning.
    let derived = TestApp::with(|r| r.layer(keys.layer().method_scopes(MethodScopes::default())));

    for app in [&app, &app, &derived] {
        app.get("/notes", &key)
            .await
            .assert_problem(403, "ip_not_allowed");
    }

    let logs = capture.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("keygate"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{logs}");
    let warning = warnings[0];
    for hint in [
        "client address is unknown",
        "into_make_service_with_connect_info::<SocketAddr>()",
        "peer_addr_with",
        "trust_forwarded_header",
    ] {
        assert!(
            warning.contains(hint),
            "the warning says {hint:?}: {warning}"
        );
    }
    // The 403s themselves are still audited, and nothing logs the key.
    let audited = logs
        .lines()
        .filter(|l| l.contains("keygate::audit") && l.contains("peer_unknown"))
        .count();
    assert_eq!(audited, 3, "{logs}");
    assert!(!logs.contains(&key), "{logs}");
    assert!(!logs.contains(common::secret_part(&key)), "{logs}");
    // The request that has an address is let through, and not warned about.
    app.send(from_addr(
        keyed(Method::GET, "/notes", &key),
        "10.1.2.3:5000",
    ))
    .await
    .assert_ok();
    assert_eq!(capture.text().matches(" WARN ").count(), 1);
}
