//! Attacks on the CLI found by an attack review: no database password in any
//! output.

use std::process::Command;

fn run(url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["--database-url", url, "keys", "list", "--owner", "user:a"])
        .env_remove("KEYGATE_DATABASE_URL")
        .env_remove("KEYGATE_PREFIX")
        .env_remove("KEYGATE_SCHEMA")
        .output()
        .expect("the keygate binary runs");
    (
        out.status.code(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A libpq keyword/value connection string (what `psql` and many
/// `DATABASE_URL`s use) is "unsupported", and the message prints it whole,
/// password included: `redact` only knows `scheme://user:pass@` and query
/// parameters.
#[test]
fn a_keyword_value_connection_string_is_printed_with_its_password() {
    for url in [
        "host=127.0.0.1 port=1 user=keygate password=hunter2 dbname=keys",
        // Quoted, with a space and an escaped quote inside, as libpq allows.
        r"host=127.0.0.1 port=1 password = 'hun ter\'2' dbname=keys",
    ] {
        let (code, all) = run(url);
        assert_ne!(code, Some(0));
        assert!(
            !all.contains("hun") && !all.contains("ter"),
            "password printed:\n{all}"
        );
    }
}

/// A password holding an unescaped `?` or `/` (a common mistake: URL
/// special characters must be percent-encoded) is cut at that character by
/// `redact`, which then finds no `user:pass@` to hide and prints the URL as
/// given.
#[test]
fn a_password_with_a_url_special_character_is_printed() {
    for url in [
        "postgres://keygate:hun?ter2@127.0.0.1:1/keys",
        "postgres://keygate:hun/ter2@127.0.0.1:1/keys",
        "postgres://keygate:hun#ter2@127.0.0.1:1/keys",
    ] {
        let (code, all) = run(url);
        assert_ne!(code, Some(0));
        assert!(!all.contains("ter2"), "password printed for {url}:\n{all}");
    }
}
