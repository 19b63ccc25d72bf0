//! The command line, as clap parses it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keygate_core::{Cursor, IpNet, KeyFormat, MAX_CREDITS, Metadata, Owner, Quota, Refill, Scopes};

use crate::{commands::webhook::WebhookCommand, duration};

/// Manage keygate API keys: run migrations; create, list, update, rotate and
/// revoke keys; read their usage and the audit trail.
///
/// Keys are printed once, when they are created or rotated, and never
/// again: keygate keeps only their digests. Every change is recorded in the
/// audit trail with the actor `cli`.
#[derive(Debug, Parser)]
#[command(name = "keygate", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every command takes, listed under their own heading.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalArgs {
    /// Where the keys are: `sqlite://PATH` or `postgres://USER@HOST/DATABASE`.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_DATABASE_URL",
        default_value = "sqlite://keygate.db",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) database_url: String,

    /// PostgreSQL schema of keygate's tables (as your server's store).
    ///
    /// Only for a server whose `PostgresStore` uses `.with_schema(..)`: the
    /// CLI must use the same schema to see its keys and reach its caches.
    #[arg(long, global = true, env = "KEYGATE_SCHEMA", value_name = "NAME")]
    pub(crate) schema: Option<String>,

    /// Key prefix: must be your server's (keys read `{prefix}_live_…`).
    ///
    /// The prefix your server's layer is built with
    /// (`Keygate::builder(..).prefix(..)`, default `kg`). The server rejects
    /// keys of any other prefix as malformed.
    #[arg(
        long,
        global = true,
        env = "KEYGATE_PREFIX",
        default_value = "kg",
        value_name = "PREFIX",
        value_parser = parse_prefix
    )]
    pub(crate) prefix: KeyFormat,

    /// Name of the environment variable holding your server's HMAC pepper.
    ///
    /// Needed to create and rotate keys for a server that hashes keys with
    /// a pepper (`KeyHasher::hmac_sha256`): the variable's raw bytes are the
    /// pepper. Naming a variable keeps the secret off the command line and
    /// out of shell history.
    #[arg(long, global = true, value_name = "VAR")]
    pub(crate) pepper_env: Option<String>,

    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Lifetime of keys created (or rotated from a key) without an expiry,
    /// e.g. 365d: as your server's `.default_key_lifetime(..)`.
    #[arg(long, global = true, env = "KEYGATE_DEFAULT_KEY_LIFETIME", value_parser = duration::parse_positive, value_name = "DURATION")]
    pub(crate) default_key_lifetime: Option<Duration>,

    /// Longest lifetime of a key from its creation, e.g. 365d: as your
    /// server's `.max_key_lifetime(..)`. Longer --expires-in is refused.
    #[arg(long, global = true, env = "KEYGATE_MAX_KEY_LIFETIME", value_parser = duration::parse_positive, value_name = "DURATION")]
    pub(crate) max_key_lifetime: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or upgrade keygate's tables; safe to run on every deploy.
    ///
    /// Creates the SQLite file if it is missing. Other commands need a
    /// migrated database.
    Migrate,
    /// Create, list, show, update, rotate and revoke keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the audit trail, newest first; `audit prune` deletes old events.
    Audit(AuditArgs),
    /// Sign webhook messages (no database needed).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Run a forward-auth server for nginx, Caddy or Traefik.
    ///
    /// The proxy asks `/auth` about each request; keygate checks the key,
    /// its scopes and quota as the layer would, and answers 200 with
    /// identity headers (`X-Keygate-Key-Id`, `X-Keygate-Owner`, …) or the
    /// refusal (401, 403, 429, 503). `/healthz`, `/readyz` and `/metrics`
    /// (Prometheus) sit beside it. Settings come from a TOML file
    /// (`--config`); the global options, `--listen` and `--redis-url`
    /// override it. Ctrl-C or SIGTERM stops it after writing usage counts.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The TOML configuration file (see the README, "Not a Rust service?").
    #[arg(long, env = "KEYGATE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9090].
    #[arg(long, env = "KEYGATE_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Share rate limits between servers through Redis, e.g. `redis://127.0.0.1:6379`.
    #[arg(
        long,
        env = "KEYGATE_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) redis_url: Option<String>,
    /// Check the configuration, print the effective settings and route
    /// table, and exit (0 if it is valid, 2 if not).
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Issue a new key and print it, this once.
    Create(CreateArgs),
    /// List keys, newest first: every owner's, or filtered (never the keys
    /// themselves).
    List(ListArgs),
    /// Show one key's settings and status.
    Show(IdArg),
    /// Change a key's name, scopes, quota, expiry, IP allowlist or metadata.
    Update(UpdateArgs),
    /// Revoke a key, for good.
    Revoke(IdArg),
    /// Replace a key with a new one (printed this once); the old one keeps
    /// working for the grace period.
    Rotate(RotateArgs),
    /// List keys that expire soon (or have expired) and are not revoked.
    Expiring(ExpiringArgs),
    /// Send the reminders due now for keys nearing expiry, each once: meant
    /// for cron (every hour, say).
    ///
    /// A key gets one reminder per threshold (default 14, 3 and 1 days
    /// before it expires; rotated keys before their grace period ends),
    /// claimed in the database before it is sent, so overlapping runs never
    /// send one twice. With --webhook-url each goes out as a signed webhook
    /// (Standard Webhooks, secret from --secret-env); without it, they are
    /// printed. A failed delivery is given back for the next run.
    Remind(RemindArgs),
    /// Show a key's requests per hour.
    Usage(UsageArgs),
    /// Show a key's credits; --set, --add, --refill or --no-refill change
    /// them.
    ///
    /// A metered key spends one credit per request (or its route's cost)
    /// and is refused at 0 until a refill or a top-up. Changing the credits
    /// of a key that is not metered meters it, starting from 0 before the
    /// change. A key made by a metered key spends its creator's account:
    /// changing its credits changes that shared account.
    Credits(CreditsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The key's id: the 10 letters and digits after `{prefix}_live_`.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Who the key belongs to: user:<id> or service:<name>.
    #[arg(long, value_name = "OWNER")]
    pub(crate) owner: Owner,
    /// A name to tell the key apart, e.g. "CI deploy".
    #[arg(long)]
    pub(crate) name: String,
    /// What the key may do, comma-separated: read, write, delete, admin or
    /// your own (billing:read). Pass "" for none.
    #[arg(long, value_parser = parse_scopes, value_name = "SCOPES")]
    pub(crate) scopes: Scopes,
    /// Expire the key after this long, e.g. 90d (default:
    /// --default-key-lifetime, else never; at most --max-key-lifetime).
    #[arg(long, value_parser = duration::parse_positive, value_name = "DURATION")]
    pub(crate) expires_in: Option<Duration>,
    /// The key's own quota, e.g. 100/s or 600/min (default: the server's).
    /// Repeat, or separate with commas, for several enforced at once:
    /// 10/s,10000/d.
    #[arg(long, value_delimiter = ',', value_name = "N/UNIT")]
    pub(crate) rate_limit: Vec<Quota>,
    /// Only accept the key from this network or address (repeat, or
    /// separate with commas).
    #[arg(long = "allow-ip", value_parser = parse_net, value_delimiter = ',', value_name = "CIDR")]
    pub(crate) allow_ip: Vec<IpNet>,
    /// JSON object kept with the key, e.g. '{"plan":"pro"}'.
    #[arg(long, value_parser = parse_metadata, value_name = "JSON")]
    pub(crate) metadata: Option<Metadata>,
    /// Issue a `test` key instead of a `live` one.
    #[arg(long)]
    pub(crate) test: bool,
    /// Meter the key: the credits it starts with (0 to 10^15). Each request
    /// spends one (or its route's cost); at 0 the key is refused until a
    /// refill or a top-up (`keygate keys credits ID --add N`).
    #[arg(long, value_parser = parse_credits, allow_negative_numbers = true, value_name = "N")]
    pub(crate) credits: Option<u64>,
    /// Refill the key's credits to AMOUNT every INTERVAL, e.g. 20/day,
    /// 1000/month or 500/6h. Without --credits the key starts with AMOUNT.
    #[arg(
        long,
        value_parser = parse_refill,
        allow_hyphen_values = true,
        value_name = "AMOUNT/INTERVAL"
    )]
    pub(crate) refill: Option<Refill>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this owner's keys: user:<id> or service:<name> (default: every
    /// owner's).
    #[arg(long, value_name = "OWNER")]
    pub(crate) owner: Option<Owner>,
    /// Only keys in this state now: active (works: neither revoked nor
    /// expired), expiring (active, expires within 7 days, the window of the
    /// server's Sunset headers and of `keys expiring`), revoked, expired.
    #[arg(long, value_name = "STATUS", value_parser = ["active", "expiring", "revoked", "expired"])]
    pub(crate) status: Option<String>,
    /// Only keys of this environment.
    #[arg(long, value_name = "ENV", value_parser = ["live", "test"])]
    pub(crate) environment: Option<String>,
    /// Most keys to show.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) limit: u16,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long, value_parser = parse_cursor)]
    pub(crate) cursor: Option<Cursor>,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The key's id.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// A new name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// New scopes, comma-separated (they replace the old ones).
    #[arg(long, value_parser = parse_scopes, value_name = "SCOPES")]
    pub(crate) scopes: Option<Scopes>,
    /// New quotas for the key, e.g. 100/s; repeat, or separate with
    /// commas, for several (they replace the old ones).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N/UNIT",
        conflicts_with = "no_rate_limit"
    )]
    pub(crate) rate_limit: Vec<Quota>,
    /// Drop the key's own quota: the server's default applies.
    #[arg(long)]
    pub(crate) no_rate_limit: bool,
    /// Expire the key this long from now, e.g. 30d.
    #[arg(
        long,
        value_parser = duration::parse_positive,
        value_name = "DURATION",
        conflicts_with = "no_expiry"
    )]
    pub(crate) expires_in: Option<Duration>,
    /// Never expire the key.
    #[arg(long)]
    pub(crate) no_expiry: bool,
    /// Only accept the key from these networks (they replace the old ones;
    /// repeat, or separate with commas).
    #[arg(
        long = "allow-ip",
        value_parser = parse_net,
        value_delimiter = ',',
        value_name = "CIDR",
        conflicts_with = "any_ip"
    )]
    pub(crate) allow_ip: Vec<IpNet>,
    /// Accept the key from any address.
    #[arg(long)]
    pub(crate) any_ip: bool,
    /// New metadata, a JSON object (replaces the old one).
    #[arg(long, value_parser = parse_metadata, value_name = "JSON")]
    pub(crate) metadata: Option<Metadata>,
}

#[derive(Debug, Args)]
pub(crate) struct CreditsArgs {
    /// The key's id.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// Set the balance to N credits (0 to 10^15).
    #[arg(
        long,
        value_parser = parse_credits,
        allow_negative_numbers = true,
        value_name = "N",
        conflicts_with = "add"
    )]
    pub(crate) set: Option<u64>,
    /// Add N credits to the balance (a top-up; the balance stays at most
    /// 10^15).
    #[arg(long, value_parser = parse_credits, allow_negative_numbers = true, value_name = "N")]
    pub(crate) add: Option<u64>,
    /// Refill the balance to AMOUNT every INTERVAL from now on, e.g. 20/day,
    /// 1000/month or 500/6h.
    #[arg(
        long,
        value_parser = parse_refill,
        allow_hyphen_values = true,
        value_name = "AMOUNT/INTERVAL",
        conflicts_with = "no_refill"
    )]
    pub(crate) refill: Option<Refill>,
    /// Stop refilling the balance.
    #[arg(long)]
    pub(crate) no_refill: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The id of the key to replace.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// How long the old key keeps working, so clients can switch (0s: it
    /// stops now).
    #[arg(long, default_value = "24h", value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) grace: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ExpiringArgs {
    /// How far ahead to look.
    #[arg(long, default_value = "7d", value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) within: Duration,
    /// Most keys to show.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) limit: u16,
}

#[derive(Debug, Args)]
pub(crate) struct RemindArgs {
    /// POST each reminder to this http:// URL as a signed webhook.
    #[arg(long, value_name = "URL")]
    pub(crate) webhook_url: Option<String>,
    /// The environment variable holding the webhook secret (`whsec_…`).
    #[arg(long, default_value = "KEYGATE_WEBHOOK_SECRET", value_name = "VAR")]
    pub(crate) secret_env: String,
    /// How long before expiry reminders go out, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "14d,3d,1d",
        value_parser = duration::parse_positive,
        value_name = "DURATIONS"
    )]
    pub(crate) thresholds: Vec<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// The key's id (usage is counted for its whole rotation family).
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// How far back to look.
    #[arg(long, default_value = "24h", value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) since: Duration,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub(crate) command: Option<AuditCommand>,
    /// Only events about this key id.
    #[arg(long = "key", value_name = "ID")]
    pub(crate) key: Option<String>,
    /// Only events this recent, e.g. 1h or 7d.
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub(crate) since: Option<Duration>,
    /// Most events to show.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub(crate) limit: u16,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Delete audit events older than a duration, e.g. `--older-than 90d`.
    ///
    /// Nothing prunes the audit trail by itself: run this on a schedule to
    /// keep it to your retention period.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete events older than this, e.g. 90d or 52w (at least 1s).
    #[arg(long, value_parser = duration::parse_positive, value_name = "DURATION")]
    pub(crate) older_than: Duration,
}

fn parse_prefix(s: &str) -> Result<KeyFormat, String> {
    KeyFormat::new(s).map_err(|e| e.to_string())
}

fn parse_scopes(s: &str) -> Result<Scopes, String> {
    Scopes::parse_list(s).map_err(|e| {
        format!("{e}; built-in scopes are read, write, delete and admin, separated by commas")
    })
}

/// A network in CIDR form, or a single address; host bits cleared, as the
/// HTTP API does (see [`keygate_core::parse_allowed_net`]).
fn parse_net(s: &str) -> Result<IpNet, String> {
    keygate_core::parse_allowed_net(s).ok_or_else(|| {
        "expected a network in CIDR form or an address, e.g. 10.0.0.0/8, 203.0.113.7 or \
             2001:db8::/32"
            .to_owned()
    })
}

fn parse_metadata(s: &str) -> Result<Metadata, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(r#"metadata is a JSON object, e.g. '{"plan":"pro"}'"#.to_owned()),
        Err(e) => Err(format!(
            r#"not valid JSON ({e}); metadata is a JSON object, e.g. '{{"plan":"pro"}}'"#
        )),
    }
}

/// A balance or top-up: a whole number from 0 to [`MAX_CREDITS`].
fn parse_credits(s: &str) -> Result<u64, String> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match digits.parse::<u64>() {
            Ok(n) if n <= MAX_CREDITS => Ok(n),
            _ => Err(format!(
                "too many credits: a balance is at most {MAX_CREDITS} (10^15)"
            )),
        };
    }
    let why = if s.starts_with('-') {
        "credits cannot be negative"
    } else {
        "credits are a whole number, written with digits only"
    };
    Err(format!("{why}: pass 0 to {MAX_CREDITS} (10^15), e.g. 5000"))
}

/// A refill, `AMOUNT/INTERVAL`.
fn parse_refill(s: &str) -> Result<Refill, String> {
    s.parse().map_err(|e| {
        format!(
            "{e}; a refill is AMOUNT/INTERVAL with AMOUNT from 1 to {MAX_CREDITS}, e.g. 20/day, \
             1000/month or 500/6h (INTERVAL: day, month, or 1s to 366d as 90s, 15min, 6h, 7d)"
        )
    })
}

fn parse_cursor(s: &str) -> Result<Cursor, String> {
    s.parse().map_err(|_| {
        "not a page cursor: pass the value `keygate keys list` printed after its last page"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn networks_and_addresses_are_accepted() {
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_net("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            parse_net("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_net("10.0.0.0/40").unwrap_err().contains("CIDR"));
    }

    #[test]
    fn credits_are_whole_numbers_up_to_the_maximum() {
        assert_eq!(parse_credits("0"), Ok(0));
        assert_eq!(parse_credits("+5"), Ok(5));
        assert_eq!(parse_credits("1000000000000000"), Ok(MAX_CREDITS));
        for (bad, says) in [
            ("1000000000000001", "at most"),
            ("99999999999999999999", "at most"),
            ("-1", "negative"),
            ("1e3", "whole number"),
            ("1.5", "whole number"),
            ("", "whole number"),
            ("+", "whole number"),
            (" 5", "whole number"),
        ] {
            let err = parse_credits(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert_eq!(parse_refill("20/day").unwrap().to_string(), "20/day");
        for bad in [
            "0/day",
            "5/week",
            "20",
            "x/day",
            "1000000000000001/day",
            "5/0h",
        ] {
            assert!(parse_refill(bad).unwrap_err().contains("20/day"), "{bad}");
        }
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert_eq!(parse_metadata(r#"{"plan":"pro"}"#).unwrap()["plan"], "pro");
        assert!(parse_metadata("[1]").unwrap_err().contains("JSON object"));
        assert!(
            parse_metadata("{plan}")
                .unwrap_err()
                .starts_with("not valid JSON")
        );
    }
}
