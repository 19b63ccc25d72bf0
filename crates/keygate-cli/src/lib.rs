//! `keygate`, the command-line tool of [keygate](https://docs.rs/keygate):
//! run migrations, create, list, update, rotate and revoke API keys, and
//! read their usage and the audit trail, in the SQLite file or PostgreSQL
//! database your service's key store uses.
//!
//! This crate is the binary; its library exposes only [`main`]. Install it
//! with `cargo install --path crates/keygate-cli`, or run it from a checkout
//! with `cargo run -p keygate-cli -- --help`.
//!
//! ```text
//! $ keygate --database-url sqlite://keygate.db migrate
//! $ keygate keys create --owner user:alice --name laptop --scopes read,write --expires-in 90d
//! $ keygate keys list --owner user:alice
//! $ keygate keys list --status expiring
//! $ keygate keys rotate Ab3Cd5Ef7G --grace 1h
//! $ keygate keys revoke Ab3Cd5Ef7G
//! $ keygate audit --key Ab3Cd5Ef7G --since 7d
//! $ keygate webhook sign --body-file event.json   # secret from KEYGATE_WEBHOOK_SECRET
//! ```
//!
//! # Settings
//!
//! | option | environment | default | |
//! |---|---|---|---|
//! | `--database-url` | `KEYGATE_DATABASE_URL` | `sqlite://keygate.db` | `sqlite://PATH` or `postgres://USER@HOST/DATABASE` |
//! | `--schema` | `KEYGATE_SCHEMA` | none | PostgreSQL schema, as `PostgresStore::with_schema` |
//! | `--prefix` | `KEYGATE_PREFIX` | `kg` | must be your server's key prefix |
//! | `--pepper-env VAR` | | none | name of the variable holding your server's HMAC pepper |
//! | `--json` | | off | JSON on stdout instead of tables |
//! | `--default-key-lifetime` | `KEYGATE_DEFAULT_KEY_LIFETIME` | none | lifetime of keys created without `--expires-in`, as the server's `.default_key_lifetime(..)` |
//! | `--max-key-lifetime` | `KEYGATE_MAX_KEY_LIFETIME` | none | longest key lifetime, as the server's `.max_key_lifetime(..)` |
//!
//! The key prefix and the pepper must be the ones your server is built
//! with (`Keygate::builder(..).prefix("mbk").hasher(KeyHasher::hmac_sha256(..))`):
//! the server rejects keys of another prefix as malformed, and cannot
//! verify keys hashed without its pepper. `--pepper-env` takes the *name*
//! of an environment variable, whose raw bytes are the pepper, so the secret
//! never appears on a command line or in shell history.
//!
//! # Keys are shown once
//!
//! `keys create` and `keys rotate` print the new key once: on stderr, after
//! the key's record on stdout (so `keygate keys create … | tee file` shows
//! the key on the terminal and keeps it out of the file), or, with
//! `--json`, under `"key"` in the JSON document. No other command ever
//! prints a key or a digest; listings show each key's public id and head
//! (`kg_live_Ab3Cd5Ef7G`).
//!
//! # Audit
//!
//! Every change is written to the database's audit trail (`keygate_audit`)
//! with the actor `cli`, beside what servers record; `keygate audit` reads
//! it back, newest first.
//!
//! # Exit status
//!
//! 0 on success, 2 for a command line that cannot work (unknown option, bad
//! duration, scope, quota, owner or id), 1 for anything else (no such key,
//! database unreachable or not migrated). Errors go to stderr with a hint
//! saying what to do.

// The workspace lint is `deny` so one allocation-counting test can
// implement `GlobalAlloc`; library code stays free of `unsafe`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod args;
mod commands;
mod db;
mod duration;
mod error;
mod output;
mod serve;

use std::{process::ExitCode, sync::Arc};

use clap::{CommandFactory as _, FromArgMatches as _, parser::ValueSource};
use keygate_core::{AuditLog, KeyHasher, KeyManager, Limits, SystemClock};

use crate::{
    args::{Cli, Command},
    commands::Ctx,
    db::Database,
    error::CliError,
};

/// Runs the `keygate` command with the process's arguments and environment,
/// and returns its exit status.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let explicit = |id: &str| {
        // A global option reaches the subcommand's matches too.
        let source = matches
            .subcommand()
            .and_then(|(_, sub)| sub.value_source(id))
            .or_else(|| matches.value_source(id));
        source.is_some_and(|s| s != ValueSource::DefaultValue)
    };
    if let Command::Serve(args) = cli.command {
        let overrides = serve::Overrides {
            listen: args.listen,
            database_url: explicit("database_url").then_some(cli.global.database_url),
            schema: cli.global.schema,
            prefix: explicit("prefix").then_some(cli.global.prefix),
            pepper_env: cli.global.pepper_env,
            redis_url: args.redis_url,
        };
        let config = match serve::ServeConfig::load(args.config.as_deref(), overrides) {
            Ok(config) => config,
            Err(e) => return e.report(),
        };
        if args.check {
            output::stdout(&config.describe());
            return ExitCode::SUCCESS;
        }
        // A server: every core, unlike the one-shot commands.
        return match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => match runtime.block_on(serve::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => e.report(),
            },
            Err(e) => CliError::new(format!("cannot start: {e}")).report(),
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return CliError::new(format!("cannot start: {e}")).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    // Signing webhooks needs no database.
    if let Command::Webhook(command) = cli.command {
        return commands::webhook::run(command, cli.global.json);
    }
    let hasher = hasher(cli.global.pepper_env.as_deref())?;
    let create_file = matches!(cli.command, Command::Migrate);
    let db = Database::open(
        &cli.global.database_url,
        cli.global.schema.as_deref(),
        create_file,
    )
    .await?;
    let log = AuditLog::spawn(Arc::clone(&db.audit), 64);
    let limits = Limits {
        default_key_lifetime: cli.global.default_key_lifetime,
        max_key_lifetime: cli.global.max_key_lifetime,
        ..Limits::default()
    };
    let manager = KeyManager::new(
        Arc::clone(&db.keys),
        cli.global.prefix,
        hasher,
        Arc::new(SystemClock),
    )
    .with_limits(limits)
    .with_audit_log(log.clone())
    .as_actor("cli");
    let ctx = Ctx {
        db,
        manager,
        log,
        json: cli.global.json,
    };
    let result = commands::run(&ctx, cli.command).await;
    // The change is made; its audit events must not be lost on exit.
    ctx.log.flush().await;
    if ctx.log.failed() > 0 {
        output::stderr(&format!(
            "warning: {} audit event(s) could not be written to {}; if the database \
             predates the audit table, run `keygate migrate`\n",
            ctx.log.failed(),
            ctx.db.url
        ));
    }
    ctx.db.close().await;
    result
}

/// SHA-256, or HMAC-SHA-256 with the pepper in the variable `var`.
pub(crate) fn hasher(var: Option<&str>) -> Result<KeyHasher, CliError> {
    let Some(var) = var else {
        return Ok(KeyHasher::sha256());
    };
    let pepper = std::env::var_os(var).ok_or_else(|| {
        CliError::usage(format!(
            "the environment variable {var} (named by --pepper-env) is not set"
        ))
        .hint(
            "export it with the pepper your server uses, or leave out --pepper-env if the \
             server hashes keys without one",
        )
    })?;
    KeyHasher::hmac_sha256(pepper.into_encoded_bytes()).map_err(|e| {
        CliError::usage(format!("unusable pepper in {var}: {e}"))
            .hint("use the same pepper as your server")
    })
}
