//! The environment variables that name the servers tests run against, and
//! the rule they follow: unset outside CI, the test says it is skipped and
//! passes; unset with `CI=true`, it fails, so CI cannot pass by testing
//! nothing.

use std::io::Write as _;

/// The variable that names the PostgreSQL server to test against.
pub const POSTGRES_URL_VAR: &str = "KEYGATE_TEST_POSTGRES_URL";
/// An example value of [`POSTGRES_URL_VAR`], for messages.
pub const POSTGRES_URL_EXAMPLE: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The variable that names the Redis server to test against.
pub const REDIS_URL_VAR: &str = "KEYGATE_TEST_REDIS_URL";
/// An example value of [`REDIS_URL_VAR`], for messages.
pub const REDIS_URL_EXAMPLE: &str = "redis://127.0.0.1:6379";

/// Whether this is a CI run (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The value of `var` if it is set and not blank, with no rule attached:
/// for benches, which skip quietly.
pub fn configured(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// Says that the current test is skipped because `var` is unset, on the
/// terminal: written to stderr directly, which the test harness does not
/// capture (it captures `eprintln!`), so a plain `cargo test` shows it.
pub fn say_skipped(var: &str, example: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped {test}: {var} is not set (set it, e.g. {var}={example}, to run it; \
         with CI=true it fails instead)"
    );
}

/// The server URL in `var`, or `None` after [`say_skipped`] when it is
/// unset outside CI.
///
/// # Panics
///
/// When `var` is unset and `CI=true`: tests that need the server must run
/// in CI.
pub fn service_url(var: &str, example: &str) -> Option<String> {
    if let Some(url) = configured(var) {
        return Some(url);
    }
    assert!(
        !in_ci(),
        "{var} is not set, and CI=true: these tests must run in CI (e.g. {var}={example})"
    );
    say_skipped(var, example);
    None
}

/// The PostgreSQL URL to test against, by [`service_url`]'s rule.
pub fn postgres_url() -> Option<String> {
    service_url(POSTGRES_URL_VAR, POSTGRES_URL_EXAMPLE)
}

/// The Redis URL to test against, by [`service_url`]'s rule.
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL_VAR, REDIS_URL_EXAMPLE)
}
