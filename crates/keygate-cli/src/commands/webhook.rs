//! `keygate webhook sign`: the signature headers of a webhook message, to
//! test a receiver by hand or from a script. Needs no database.

use std::{
    ffi::OsString,
    io::Read as _,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use clap::{Args, Subcommand, ValueEnum};
use keygate_webhook::{Scheme, SignedHeaders, WebhookSecret, WebhookSigner, new_message_id};
use serde_json::{Map, Value};

use crate::{error::CliError, output};

/// The environment variable the secret is read from unless `--secret-env`
/// names another.
const DEFAULT_SECRET_ENV: &str = "KEYGATE_WEBHOOK_SECRET";

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Sign a message: print its signature headers, or a curl command or
    /// curl config that sends it.
    ///
    /// The secret is read from an environment variable (never from the
    /// command line, where it would stay in shell history); the body from
    /// a file or stdin.
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The signature scheme: standard (Standard Webhooks: webhook-id,
    /// webhook-timestamp, webhook-signature) or stripe (Stripe-Signature).
    #[arg(long, value_enum, default_value = "standard")]
    scheme: SchemeArg,

    /// Name of the environment variable holding the secret: `whsec_<base64>`
    /// for standard, the endpoint secret's whole text for stripe.
    #[arg(long, value_name = "VAR", default_value = DEFAULT_SECRET_ENV)]
    secret_env: String,

    /// The file whose bytes are the body; `-` or nothing reads stdin.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,

    /// The message id (standard only; default: a new random `msg_…`).
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// The signed time, in seconds since 1970 (default: now).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    timestamp: Option<i64>,

    /// What to print: the headers (`name: value` lines), a curl command
    /// that sends the message to --url, or a curl config (`curl -K -`)
    /// that adds the headers (and --url, if given) to a curl command line.
    #[arg(long, value_enum, default_value = "headers")]
    format: Format,

    /// Where the curl command sends the message (needed by --format curl).
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// The Content-Type the curl command and curl config send.
    #[arg(long, value_name = "TYPE", default_value = "application/json")]
    content_type: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchemeArg {
    Standard,
    Stripe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Headers,
    Curl,
    CurlConfig,
}

/// Runs a `webhook` command; `json` prints the headers as one JSON object.
pub(crate) fn run(command: WebhookCommand, json: bool) -> Result<(), CliError> {
    match command {
        WebhookCommand::Sign(args) => sign(&args, json, std::env::var_os(&args.secret_env)),
    }
}

fn sign(args: &SignArgs, json: bool, secret: Option<OsString>) -> Result<(), CliError> {
    let scheme = match args.scheme {
        SchemeArg::Standard => Scheme::StandardWebhooks,
        SchemeArg::Stripe => Scheme::Stripe,
    };
    if args.format == Format::Curl && args.url.is_none() {
        return Err(CliError::usage("--format curl needs --url")
            .hint("e.g. --url http://127.0.0.1:3000/webhooks"));
    }
    let secret = read_secret(scheme, &args.secret_env, secret)?;
    let (body, from_file) = read_body(args.body_file.as_ref())?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => new_message_id().map_err(|e| CliError::new(e.to_string()))?,
    };
    let timestamp = args.timestamp.unwrap_or_else(now);
    let signed = WebhookSigner::new(scheme, secret)
        .sign(&id, timestamp, &body)
        .map_err(|e| CliError::usage(e.to_string()))?;

    let text = if json {
        let object: Map<String, Value> = signed
            .iter()
            .map(|(name, value)| {
                let value = value.to_str().unwrap_or_default().to_owned();
                (name.to_string(), Value::String(value))
            })
            .collect();
        output::json(&Value::Object(object))
    } else {
        match args.format {
            Format::Headers => headers(&signed),
            Format::CurlConfig => curl_config(&signed, &args.content_type, args.url.as_deref()),
            Format::Curl => curl(&signed, args, &body, from_file)?,
        }
    };
    output::stdout(&text);
    Ok(())
}

pub(super) fn read_secret(
    scheme: Scheme,
    var: &str,
    value: Option<OsString>,
) -> Result<WebhookSecret, CliError> {
    let value = value.ok_or_else(|| {
        CliError::usage(format!(
            "the environment variable {var} (named by --secret-env) is not set"
        ))
        .hint(format!(
            "export {var}=whsec_… with the receiving endpoint's secret (the keygate quickstart \
             prints one)"
        ))
    })?;
    // The secret is never echoed, whatever is wrong with it.
    let value = value.into_string().map_err(|_| {
        CliError::usage(format!("the secret in {var} is not UTF-8 text"))
            .hint("a webhook secret is `whsec_` followed by base64")
    })?;
    let secret = match scheme {
        Scheme::StandardWebhooks => WebhookSecret::standard(&value),
        _ => WebhookSecret::stripe(&value),
    };
    secret.map_err(|e| {
        CliError::usage(format!("unusable secret in {var}: {e}"))
            .hint("a Standard Webhooks secret is `whsec_` followed by base64")
    })
}

/// The body, and whether it came from a file (which curl can read itself).
fn read_body(path: Option<&PathBuf>) -> Result<(Vec<u8>, bool), CliError> {
    match path {
        Some(path) if path.as_os_str() != "-" => std::fs::read(path)
            .map(|body| (body, true))
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display()))),
        _ => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| CliError::new(format!("cannot read the body from stdin: {e}")))?;
            Ok((body, false))
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn headers(signed: &SignedHeaders) -> String {
    signed
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or_default()))
        .collect()
}

/// A curl config file: `curl -K FILE` (or `-K -` from a pipe) adds its
/// options to the command line.
fn curl_config(signed: &SignedHeaders, content_type: &str, url: Option<&str>) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""));
    let mut text = format!(
        "header = {}\n",
        quote(&format!("Content-Type: {content_type}"))
    );
    for (name, value) in signed.iter() {
        let line = format!("{name}: {}", value.to_str().unwrap_or_default());
        text.push_str(&format!("header = {}\n", quote(&line)));
    }
    if let Some(url) = url {
        text.push_str(&format!("url = {}\n", quote(url)));
    }
    text
}

/// One curl command line that sends the message, quoted for a POSIX shell.
fn curl(
    signed: &SignedHeaders,
    args: &SignArgs,
    body: &[u8],
    from_file: bool,
) -> Result<String, CliError> {
    let mut words = vec![
        "curl".to_owned(),
        "-i".to_owned(),
        "-H".to_owned(),
        super::shell_word(&format!("Content-Type: {}", args.content_type)),
    ];
    for (name, value) in signed.iter() {
        words.push("-H".to_owned());
        words.push(super::shell_word(&format!(
            "{name}: {}",
            value.to_str().unwrap_or_default()
        )));
    }
    words.push("--data-binary".to_owned());
    match (&args.body_file, from_file) {
        (Some(path), true) => {
            let path = path.to_str().ok_or_else(|| {
                CliError::usage("--format curl needs a --body-file path that is UTF-8")
            })?;
            words.push(super::shell_word(&format!("@{path}")));
        }
        _ => {
            // Inline: curl reads `@…` as a file name, and a shell word
            // cannot hold a NUL byte.
            let text = std::str::from_utf8(body)
                .ok()
                .filter(|t| !t.starts_with('@') && !t.contains('\0'))
                .ok_or_else(|| {
                    CliError::usage("this body cannot be written inline in a curl command")
                        .hint("pass it with --body-file, or use --format curl-config")
                })?;
            words.push(super::shell_word(text));
        }
    }
    words.push(super::shell_word(args.url.as_deref().unwrap_or_default()));
    Ok(words.join(" ") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_config_quotes_what_it_must() {
        let secret = WebhookSecret::stripe("whsec_x").unwrap();
        let signed = WebhookSigner::stripe(secret).sign("", 1, b"{}").unwrap();
        let text = curl_config(&signed, r#"a"b\c"#, Some("http://h/p"));
        assert!(
            text.starts_with("header = \"Content-Type: a\\\"b\\\\c\"\n"),
            "{text}"
        );
        assert!(
            text.contains("header = \"stripe-signature: t=1,v1="),
            "{text}"
        );
        assert!(text.ends_with("url = \"http://h/p\"\n"), "{text}");
    }

    #[test]
    fn secrets_are_never_echoed_in_errors() {
        let err = read_secret(
            Scheme::StandardWebhooks,
            "V",
            Some(OsString::from("whsec_not base64 TOPSECRET")),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
        assert!(err.contains("unusable secret in V"), "{err}");
        let err = read_secret(Scheme::Stripe, "V", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("V (named by --secret-env) is not set"),
            "{err}"
        );
    }
}
