//! The level of the audit event for admitted requests is configurable;
//! refusals stay at `INFO`.
//!
//! One test per file: `tracing` caches each callsite's interest for the
//! whole process, so a test without a subscriber running beside one that
//! captures can make the capturing test miss events.

mod common;

use common::{Capture, TestApp, builder, issue_scoped};
use keygate::core::Scope;
use tracing::Level;

#[tokio::test]
async fn admissions_log_at_the_chosen_level_and_refusals_at_info() {
    let (capture, _guard) = Capture::install(Level::INFO);

    let default = builder().build();
    let quiet = builder().audit_admitted_level(Level::DEBUG).build();
    for keys in [&default, &quiet] {
        let key = issue_scoped(keys, [Scope::READ]).await;
        let app = TestApp::new(keys);
        app.get("/notes", &key).await.assert_ok();
        app.get("/notes", "kg_live_garbage")
            .await
            .assert_unauthorized("malformed_key");
    }

    let logs = capture.text();
    let lines = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    // At INFO: the default Keygate's admission and both refusals.
    assert_eq!(lines("outcome=\"ok\""), 1, "{logs}");
    assert_eq!(lines("outcome=\"malformed_key\""), 2, "{logs}");
    assert!(
        logs.lines()
            .filter(|l| l.contains("outcome=\"ok\""))
            .all(|l| l.contains("INFO")),
        "{logs}"
    );
}
