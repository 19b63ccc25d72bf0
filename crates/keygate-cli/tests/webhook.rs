//! `keygate webhook sign`, run as a user runs it: a real process, the
//! secret in an environment variable, the body on stdin or in a file.

use std::{
    io::Write as _,
    process::{Command, Output, Stdio},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_webhook::{WebhookSecret, WebhookVerifier};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `keygate webhook sign ARGS`, with `env` set, `body` on stdin, and a
/// database URL that does not exist (signing must not need one).
fn sign(args: &[&str], env: &[(&str, &str)], body: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    cmd.args(["webhook", "sign"])
        .args(args)
        .env_remove("KEYGATE_WEBHOOK_SECRET")
        .env(
            "KEYGATE_DATABASE_URL",
            "sqlite:///nonexistent/dir/keygate.db",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run keygate");
    // A run refused before it reads the body (no secret, say) may exit
    // first: the pipe is then closed, and its answer is what counts.
    if let Err(e) = child.stdin.take().unwrap().write_all(body) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn sign_prints_the_standard_webhooks_vector_byte_for_byte() {
    // The specification's reference libraries' vector (see
    // crates/keygate-webhook/tests/vectors.rs for where it comes from).
    let out = sign(
        &[
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "--timestamp",
            "1614265330",
        ],
        &[("KEYGATE_WEBHOOK_SECRET", SECRET)],
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(
        stdout(&out),
        "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\n\
         webhook-timestamp: 1614265330\n\
         webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n"
    );
}

#[test]
fn sign_prints_the_stripe_vector_from_a_file_and_as_json() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../keygate-webhook/tests/fixtures/stripe_event_test_signature.json"
    );
    let out = sign(
        &[
            "--scheme",
            "stripe",
            "--secret-env",
            "STRIPE_WH",
            "--body-file",
            fixture,
            "--timestamp",
            "1533204620",
        ],
        &[("STRIPE_WH", "webhook_secret")],
        b"stdin is not read",
    );
    assert_eq!(
        stdout(&out),
        "stripe-signature: t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args([
            "--json",
            "webhook",
            "sign",
            "--scheme",
            "stripe",
            "--body-file",
            fixture,
            "--timestamp",
            "1533204620",
        ])
        .env("KEYGATE_WEBHOOK_SECRET", "webhook_secret")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        json["stripe-signature"],
        "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"
    );
}

#[test]
fn what_sign_prints_now_passes_the_verifier() {
    let body = br#"{"type":"note.created"}"#;
    let out = sign(&[], &[("KEYGATE_WEBHOOK_SECRET", SECRET)], body);
    let mut headers = HeaderMap::new();
    for line in stdout(&out).lines() {
        let (name, value) = line.split_once(": ").unwrap();
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    assert!(headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
    let verifier = WebhookVerifier::standard(WebhookSecret::standard(SECRET).unwrap()).build();
    verifier.verify(&headers, body).unwrap();
    assert_eq!(
        verifier.verify(&headers, b"{}").unwrap_err().code(),
        "invalid_signature"
    );
}

#[test]
fn curl_formats_carry_the_headers_the_body_and_the_url() {
    let env = [("KEYGATE_WEBHOOK_SECRET", SECRET)];
    let base = ["--id", "msg_1", "--timestamp", "1614265330"];
    let out = sign(
        &[
            &base[..],
            &[
                "--format",
                "curl",
                "--url",
                "http://127.0.0.1:3000/webhooks",
            ],
        ]
        .concat(),
        &env,
        b"{\"it's\": 1}",
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("curl -i -H 'Content-Type: application/json' -H 'webhook-id: msg_1' "),
        "{text}"
    );
    assert!(
        text.contains(r#" --data-binary '{"it'\''s": 1}' http://127.0.0.1:3000/webhooks"#),
        "{text}"
    );

    let out = sign(
        &[&base[..], &["--format", "curl-config"]].concat(),
        &env,
        b"{}",
    );
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "header = \"Content-Type: application/json\"\nheader = \"webhook-id: msg_1\"\n"
        ),
        "{text}"
    );
    assert!(!text.contains("url ="), "{text}");

    // `@` would make curl read a file; a body starting with it needs --body-file.
    let out = sign(
        &[&base[..], &["--format", "curl", "--url", "http://h/"]].concat(),
        &env,
        b"@/etc/passwd",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = sign(&[&base[..], &["--format", "curl"]].concat(), &env, b"{}");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
}

#[test]
fn the_secret_comes_only_from_the_named_variable_and_is_never_echoed() {
    let out = sign(&[], &[], b"{}");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("KEYGATE_WEBHOOK_SECRET (named by --secret-env) is not set"),
        "{err}"
    );

    let out = sign(
        &["--secret-env", "MY_SECRET"],
        &[("MY_SECRET", "whsec_!!TOPSECRETVALUE!!")],
        b"{}",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("unusable secret in MY_SECRET"), "{all}");
    assert!(!all.contains("TOPSECRETVALUE"), "{all}");

    // There is no flag that takes the secret itself.
    let out = sign(
        &["--secret", SECRET],
        &[("KEYGATE_WEBHOOK_SECRET", SECRET)],
        b"{}",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // An id the verifier would refuse is refused here too.
    let out = sign(
        &["--id", "a.1"],
        &[("KEYGATE_WEBHOOK_SECRET", SECRET)],
        b"{}",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn help_lists_webhook_sign() {
    let out = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["webhook", "--help"])
        .output()
        .unwrap();
    let help = stdout(&out);
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("sign ")),
        "{help}"
    );
}
