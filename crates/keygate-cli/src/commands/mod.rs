//! The commands: each reads its arguments, calls the key manager or the
//! store, and prints a table or JSON. Key commands are in [`keys`], the
//! audit trail's in [`audit`]; what they share is here.

mod audit;
mod keys;
pub(crate) mod webhook;

use keygate_core::{
    AuditLog, Environment, ID_LEN, KeyId, KeyManager, KeyRecord, ManageError, Quota, Quotas,
    time::OffsetDateTime,
};
use serde_json::json;

use crate::{
    args::{Command, IdArg, KeysCommand},
    db::{self, Database},
    error::CliError,
    output::{self, KeyView, printable},
};

/// What every command works with.
pub(crate) struct Ctx {
    pub(crate) db: Database,
    pub(crate) manager: KeyManager,
    pub(crate) log: AuditLog,
    pub(crate) json: bool,
}

impl Ctx {
    fn prefix(&self) -> &str {
        self.manager.format().prefix()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// `d` before now, but never before 1970 (the earliest time keygate
    /// keeps, see [`keygate_core::MIN_TIME`]): looking back further finds
    /// nothing more.
    fn ago(d: std::time::Duration) -> OffsetDateTime {
        time::Duration::try_from(d)
            .ok()
            .and_then(|d| Self::now().checked_sub(d))
            .map_or(keygate_core::MIN_TIME, |t| t.max(keygate_core::MIN_TIME))
    }

    fn view(&self, r: &KeyRecord) -> KeyView {
        KeyView::new(r, self.prefix(), Self::now())
    }

    /// Prints `table` for people, or `value` as JSON with `--json`.
    fn print(&self, table: impl FnOnce() -> String, value: impl FnOnce() -> serde_json::Value) {
        if self.json {
            output::stdout(&output::json(&value()));
        } else {
            output::stdout(&table());
        }
    }

    fn manage_error(&self, err: ManageError) -> CliError {
        match err {
            ManageError::Store(e) => self.db.store_error(&e),
            ManageError::InvalidName => {
                CliError::usage("a key name is 1 to 200 characters and not only spaces")
                    .hint(r#"pass e.g. --name "CI deploy""#)
            }
            ManageError::ExpiryOutOfRange => {
                CliError::usage("the expiry or grace period is too far in the future")
            }
            ManageError::TimeOutOfRange(what) => CliError::usage(format!(
                "{what} is out of range: times are from 1970 to 9999 (UTC)"
            )),
            ManageError::NotRotatable(id) => CliError::new(format!(
                "key {id} cannot be rotated: it is revoked, expired or already rotated"
            ))
            .hint(format!(
                "`keygate keys show {id}` says which; rotate the key that replaced it (its \
                 `superseded by`), or issue a new one with `keygate keys create`"
            )),
            ManageError::OverCap {
                cap: keygate_core::Cap::KeyLifetime,
                max,
            } => CliError::usage(format!(
                "a key lives at most {} from its creation (--max-key-lifetime)",
                crate::duration::format(std::time::Duration::from_secs(max))
            ))
            .hint("pass a shorter --expires-in, or none to get --default-key-lifetime"),
            ManageError::OverCap { cap, max } => {
                let hint = match cap {
                    keygate_core::Cap::KeysPerOwner => {
                        "revoke keys the owner no longer uses (`keygate keys list --owner …`)"
                    }
                    keygate_core::Cap::RotationGrace => "pass a shorter --grace",
                    _ => "keep the key's settings within the cap",
                };
                CliError::usage(format!("at most {max} {cap}: the cap every key obeys")).hint(hint)
            }
            other => CliError::new(other.to_string()),
        }
    }

    /// Awaits a key manager call, explaining its error.
    async fn manage<T>(
        &self,
        call: impl Future<Output = Result<T, ManageError>>,
    ) -> Result<T, CliError> {
        call.await.map_err(|e| self.manage_error(e))
    }

    /// The record of `id`, or the "no such key" error.
    async fn record(&self, id: KeyId) -> Result<KeyRecord, CliError> {
        self.manage(self.manager.get(id))
            .await?
            .ok_or_else(|| db::not_found(id))
    }

    /// How soon servers see a change made here.
    fn propagation(&self) -> &'static str {
        if self.db.is_postgres() {
            "Servers sharing this PostgreSQL database (and schema) see the change at once."
        } else {
            "Servers reading this SQLite file see the change within their store's poll \
             interval (1 s by default), as they poll the file's change log."
        }
    }
}

/// Runs one command.
pub(crate) async fn run(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Migrate => migrate(ctx).await,
        Command::Keys(keys) => match keys {
            KeysCommand::Create(args) => keys::create(ctx, args).await,
            KeysCommand::List(args) => keys::list(ctx, args).await,
            KeysCommand::Show(IdArg { id }) => keys::show(ctx, &id).await,
            KeysCommand::Update(args) => keys::update(ctx, args).await,
            KeysCommand::Revoke(IdArg { id }) => keys::revoke(ctx, &id).await,
            KeysCommand::Rotate(args) => keys::rotate(ctx, args).await,
            KeysCommand::Expiring(args) => keys::expiring(ctx, args).await,
            KeysCommand::Remind(args) => keys::remind(ctx, args).await,
            KeysCommand::Usage(args) => keys::usage(ctx, args).await,
            KeysCommand::Credits(args) => keys::credits(ctx, args).await,
        },
        Command::Audit(args) => audit::audit(ctx, args).await,
        Command::Webhook(command) => webhook::run(command, ctx.json),
        // `main` runs the server on a runtime of its own, with its own
        // settings; it never opens a one-shot context for it.
        Command::Serve(_) => Err(CliError::new("`serve` is a server, not a one-shot command")),
    }
}

async fn migrate(ctx: &Ctx) -> Result<(), CliError> {
    ctx.db.migrate().await?;
    ctx.print(
        || {
            format!(
                "Database {} is up to date: keygate_keys, keygate_usage, keygate_credits, keygate_audit \
                 and keygate_reminders are ready.\n",
                ctx.db.url
            )
        },
        || json!({ "database": ctx.db.url, "migrated": true }),
    );
    Ok(())
}

/// The quotas of `--rate-limit` (repeated or comma-separated), if any.
fn quotas(given: Vec<Quota>) -> Result<Option<Quotas>, CliError> {
    if given.is_empty() {
        return Ok(None);
    }
    Quotas::new(given).map(Some).map_err(|e| {
        CliError::usage(format!("--rate-limit: {e}"))
            .hint("combine the limits that matter, e.g. --rate-limit 10/s,10000/d")
    })
}

/// A key id from the command line. Also takes the public head of a key
/// (`kg_live_Ab3Cd5Ef7G`, as listings show it); refuses a whole key without
/// echoing it.
fn parse_id(s: &str, prefix: &str) -> Result<KeyId, CliError> {
    let s = s.trim();
    if let Ok(id) = s.parse() {
        return Ok(id);
    }
    for env in [Environment::Live, Environment::Test] {
        let head = format!("{prefix}_{env}_");
        if let Some(id) = s.strip_prefix(&head).and_then(|rest| rest.parse().ok()) {
            return Ok(id);
        }
    }
    if s.contains("_live_") || s.contains("_test_") || s.len() > 40 {
        return Err(CliError::usage(
            "that looks like a whole API key, not a key id (it is not shown here)",
        )
        .hint(format!(
            "pass only the id: the 10 letters and digits after `{prefix}_live_` or \
             `{prefix}_test_`. Keys typed on a command line stay in shell history; \
             consider rotating this one"
        )));
    }
    // Echo only what is short enough to be a mistyped id: a longer string
    // may be a key's secret part, pasted on its own.
    let message = if s.len() <= ID_LEN + 2 {
        format!(
            "invalid key id {:?}: a key id is exactly 10 letters and digits",
            printable(s)
        )
    } else {
        format!(
            "that is not a key id ({} characters, not shown): a key id is exactly 10 letters \
             and digits",
            s.chars().count()
        )
    };
    Err(CliError::usage(message).hint("`keygate keys list --owner …` shows key ids"))
}

/// `s`, quoted for a POSIX shell if it needs to be.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use keygate_core::Owner;

    use super::*;

    #[test]
    fn ids_heads_and_whole_keys() {
        let id: KeyId = "Ab3Cd5Ef7G".parse().unwrap();
        assert_eq!(parse_id("Ab3Cd5Ef7G", "kg").unwrap(), id);
        assert_eq!(parse_id(" kg_live_Ab3Cd5Ef7G ", "kg").unwrap(), id);
        assert_eq!(parse_id("kg_test_Ab3Cd5Ef7G", "kg").unwrap(), id);
        let whole = keygate_core::KeyFormat::new("kg")
            .unwrap()
            .generate(Environment::Live)
            .unwrap();
        let err = parse_id(whole.expose_secret(), "kg")
            .unwrap_err()
            .to_string();
        assert!(!err.contains(whole.expose_secret()), "{err}");
        assert!(!err.contains(whole.id().as_str()), "{err}");
        assert!(err.contains("whole API key"), "{err}");
        let err = parse_id("short", "kg").unwrap_err().to_string();
        assert!(err.contains("exactly 10 letters and digits"), "{err}");
    }

    #[test]
    fn owners_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_word(&Owner::user("alice").to_string()), "user:alice");
        assert_eq!(
            shell_word(&Owner::user("o'brien smith").to_string()),
            r"'user:o'\''brien smith'"
        );
    }
}
