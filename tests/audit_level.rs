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
    let (capture, _guard) = Capture::install(Level::DEBUG);

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
    let levels_of = |needle: &str| -> Vec<&str> {
        logs.lines()
            .filter(|l| l.contains("keygate::audit") && l.contains(needle))
            .map(|l| {
                if l.contains("DEBUG") {
                    "DEBUG"
                } else if l.contains(" INFO") {
                    "INFO"
                } else {
                    "other"
                }
            })
            .collect()
    };
    // The default Keygate's admission at INFO, the quiet one's at DEBUG
    // (kept, not dropped); both refusals at INFO.
    assert_eq!(levels_of("outcome=\"ok\""), ["INFO", "DEBUG"], "{logs}");
    assert_eq!(
        levels_of("outcome=\"malformed_key\""),
        ["INFO", "INFO"],
        "{logs}"
    );
}
