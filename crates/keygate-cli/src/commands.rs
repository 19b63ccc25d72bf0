//! The commands: each reads its arguments, calls the key manager or the
//! store, and prints a table or JSON.

use std::fmt::Write as _;

use keygate_core::{
    AuditEvent, AuditLog, AuditQuery, CreatedKey, Cursor, Environment, ID_LEN, KeyId, KeyManager,
    KeyRecord, KeyUpdate, ManageError, NewKey, Page, Quota, Quotas, time::OffsetDateTime,
};
use serde_json::json;

use crate::{
    args::{
        AuditArgs, AuditCommand, Command, CreateArgs, ExpiringArgs, IdArg, KeysCommand, ListArgs,
        RotateArgs, UpdateArgs, UsageArgs,
    },
    db::{self, Database},
    duration,
    error::CliError,
    output::{
        self, BucketView, CreatedView, KeyListView, KeyView, Table, UsageView, from_now, printable,
        timestamp,
    },
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

    /// The record of `id`, or the "no such key" error.
    async fn record(&self, id: KeyId) -> Result<KeyRecord, CliError> {
        self.manager
            .get(id)
            .await
            .map_err(|e| self.manage_error(e))?
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
            KeysCommand::Create(args) => create(ctx, args).await,
            KeysCommand::List(args) => list(ctx, args).await,
            KeysCommand::Show(IdArg { id }) => show(ctx, &id).await,
            KeysCommand::Update(args) => update(ctx, args).await,
            KeysCommand::Revoke(IdArg { id }) => revoke(ctx, &id).await,
            KeysCommand::Rotate(args) => rotate(ctx, args).await,
            KeysCommand::Expiring(args) => expiring(ctx, args).await,
            KeysCommand::Usage(args) => usage(ctx, args).await,
        },
        Command::Audit(args) => audit(ctx, args).await,
    }
}

async fn migrate(ctx: &Ctx) -> Result<(), CliError> {
    ctx.db.migrate().await?;
    ctx.print(
        || {
            format!(
                "Database {} is up to date: keygate_keys, keygate_usage and keygate_audit \
                 are ready.\n",
                ctx.db.url
            )
        },
        || json!({ "database": ctx.db.url, "migrated": true }),
    );
    Ok(())
}

async fn create(ctx: &Ctx, args: CreateArgs) -> Result<(), CliError> {
    let environment = if args.test {
        Environment::Test
    } else {
        Environment::Live
    };
    let mut new = NewKey::new(args.owner, args.name)
        .scopes(args.scopes)
        .environment(environment)
        .allowed_ips(args.allow_ip);
    if let Some(after) = args.expires_in {
        new = new.expires_in(after);
    }
    if let Some(quotas) = quotas(args.rate_limit)? {
        new = new.rate_limit(quotas);
    }
    if let Some(metadata) = args.metadata {
        new = new.metadata(metadata);
    }
    let created = ctx
        .manager
        .create(new)
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let view = ctx.view(&created.record);
    let heading = format!(
        "Created key {} ({}) for {}.\n",
        view.id,
        printable(&view.name),
        view.owner
    );
    print_created(ctx, &created, view, None, &heading);
    Ok(())
}

/// Prints a new key's record and the key itself, this once: inside the
/// JSON document with `--json`, otherwise on stderr so that it reaches the
/// terminal even when stdout is piped to a file.
fn print_created(
    ctx: &Ctx,
    created: &CreatedKey,
    view: KeyView,
    replaces: Option<KeyView>,
    heading: &str,
) {
    let key = created.key.expose_secret();
    if ctx.json {
        output::stdout(&output::json(&CreatedView {
            key,
            record: view,
            replaces,
        }));
        output::stderr(
            "keygate: the \"key\" field above is shown this once and cannot be recovered; \
             store it now.\n",
        );
    } else {
        output::stdout(&format!("{heading}\n{}", view.details(Ctx::now())));
        output::stderr(&format!(
            "\nThe new key, shown this once (keygate keeps only its digest; store it now, \
             e.g. in your secrets manager):\n\n    {key}\n\n"
        ));
    }
}

async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let limit = usize::from(args.limit);
    // One more than asked, to know whether there is a next page.
    let page = Page {
        limit: limit + 1,
        cursor: args.cursor,
    };
    let mut records = ctx
        .manager
        .list(&args.owner, page)
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let next_cursor = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| Cursor::after(r).to_string())
    } else {
        None
    };
    let views: Vec<KeyView> = records.iter().map(|r| ctx.view(r)).collect();
    if ctx.json {
        output::stdout(&output::json(&KeyListView {
            keys: views,
            next_cursor,
        }));
        return Ok(());
    }
    if views.is_empty() {
        let more = if args.cursor.is_some() {
            " after this cursor"
        } else {
            ""
        };
        output::stdout(&format!("No keys for {}{more}.\n", args.owner));
        return Ok(());
    }
    let mut table = Table::new([
        "ID",
        "NAME",
        "ENV",
        "STATUS",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
    ]);
    for v in &views {
        table.row([
            &v.id,
            &v.name,
            v.environment,
            v.status,
            &if v.scopes.is_empty() {
                "-".to_owned()
            } else {
                v.scopes.join(",")
            },
            &timestamp(v.created_at),
            &v.expires_at.map_or_else(|| "never".to_owned(), timestamp),
            &v.last_used_at.map_or_else(|| "never".to_owned(), timestamp),
        ]);
    }
    let mut text = table.render();
    if let Some(cursor) = next_cursor {
        let _ = write!(
            text,
            "\nMore keys: keygate keys list --owner {} --limit {limit} --cursor {cursor}\n",
            shell_word(&args.owner.to_string())
        );
    }
    output::stdout(&text);
    Ok(())
}

async fn show(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let record = ctx.record(parse_id(id, ctx.prefix())?).await?;
    let view = ctx.view(&record);
    ctx.print(|| view.details(Ctx::now()), || json!(view));
    Ok(())
}

async fn update(ctx: &Ctx, args: UpdateArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id, ctx.prefix())?;
    let changes = KeyUpdate {
        name: args.name,
        scopes: args.scopes,
        rate_limit: match (quotas(args.rate_limit)?, args.no_rate_limit) {
            (Some(quotas), _) => Some(Some(quotas)),
            (None, true) => Some(None),
            (None, false) => None,
        },
        allowed_ips: if args.any_ip {
            Some(Vec::new())
        } else if args.allow_ip.is_empty() {
            None
        } else {
            Some(args.allow_ip)
        },
        metadata: args.metadata,
        expires_at: match (args.expires_in, args.no_expiry) {
            (Some(after), _) => Some(Some(
                keygate_core::checked_after(Ctx::now(), after)
                    .map_err(|_| CliError::usage("--expires-in is too far in the future"))?,
            )),
            (None, true) => Some(None),
            (None, false) => None,
        },
    };
    if changes.is_empty() {
        return Err(CliError::usage("nothing to update").hint(
            "pass at least one of --name, --scopes, --rate-limit or --no-rate-limit, \
             --expires-in or --no-expiry, --allow-ip or --any-ip, --metadata",
        ));
    }
    let record = ctx
        .manager
        .update(id, changes)
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let view = ctx.view(&record);
    ctx.print(
        || {
            format!(
                "Updated key {id}. {}\n\n{}",
                ctx.propagation(),
                view.details(Ctx::now())
            )
        },
        || json!(view),
    );
    Ok(())
}

async fn revoke(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let id = parse_id(id, ctx.prefix())?;
    let before = ctx.record(id).await?;
    if let Some(at) = before.revoked_at {
        // Revoking is idempotent: say so, and change nothing.
        let view = ctx.view(&before);
        ctx.print(
            || format!("Key {id} was already revoked at {}.\n", timestamp(at)),
            || json!(view),
        );
        return Ok(());
    }
    let record = ctx
        .manager
        .revoke(id)
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let view = ctx.view(&record);
    ctx.print(
        || {
            format!(
                "Revoked key {id} ({}) of {}. {}\n",
                printable(&view.name),
                view.owner,
                ctx.propagation()
            )
        },
        || json!(view),
    );
    Ok(())
}

async fn rotate(ctx: &Ctx, args: RotateArgs) -> Result<(), CliError> {
    let old_id = parse_id(&args.id, ctx.prefix())?;
    let created = ctx
        .manager
        .rotate(old_id, args.grace)
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let old = ctx.record(old_id).await?;
    let until = old
        .expires_at
        .map_or_else(|| "-".to_owned(), |at| output::relative(at, Ctx::now()));
    let heading = format!(
        "Rotated key {old_id} to {new}. The old key keeps working until {until}: switch \
         clients to the new key before then.\n",
        new = created.record.id,
    );
    let view = ctx.view(&created.record);
    print_created(ctx, &created, view, Some(ctx.view(&old)), &heading);
    Ok(())
}

async fn expiring(ctx: &Ctx, args: ExpiringArgs) -> Result<(), CliError> {
    let records = ctx
        .manager
        .expiring(args.within, usize::from(args.limit))
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let views: Vec<KeyView> = records.iter().map(|r| ctx.view(r)).collect();
    if ctx.json {
        output::stdout(&output::json(&json!({ "keys": views })));
        return Ok(());
    }
    if views.is_empty() {
        output::stdout(&format!(
            "No keys expire within {}.\n",
            duration::format(args.within)
        ));
        return Ok(());
    }
    let now = Ctx::now();
    let mut table = Table::new(["ID", "OWNER", "NAME", "STATUS", "EXPIRES", "WHEN"]);
    for v in &views {
        let at = v.expires_at.unwrap_or(now);
        table.row([
            &v.id,
            &v.owner,
            &v.name,
            v.status,
            &timestamp(at),
            &from_now(at, now),
        ]);
    }
    output::stdout(&table.render());
    Ok(())
}

async fn usage(ctx: &Ctx, args: UsageArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id, ctx.prefix())?;
    let record = ctx.record(id).await?;
    let since = Ctx::ago(args.since);
    let buckets = ctx
        .manager
        .usage(record.family, since)
        .await
        .map_err(|e| ctx.manage_error(e))?;
    let total = buckets.iter().map(|b| b.requests).sum();
    let view = UsageView {
        id: id.to_string(),
        family: record.family.to_string(),
        since,
        total,
        buckets: buckets.into_iter().map(BucketView::from).collect(),
    };
    if ctx.json {
        output::stdout(&output::json(&view));
        return Ok(());
    }
    let mut text = String::new();
    if view.buckets.is_empty() {
        let _ = writeln!(text, "No requests since {}.", timestamp(since));
    } else {
        let mut table = Table::new(["HOUR (UTC)", "REQUESTS"]);
        for b in &view.buckets {
            table.row([&timestamp(b.bucket), &b.requests.to_string()]);
        }
        text.push_str(&table.render());
        let _ = writeln!(
            text,
            "\nTotal: {total} requests since {}.",
            timestamp(since)
        );
    }
    if record.family != record.id {
        let _ = writeln!(
            text,
            "Counted for the rotation family {}: keys rotated from one another share usage.",
            record.family
        );
    }
    text.push_str("Servers write usage in batches (every 5 seconds by default).\n");
    output::stdout(&text);
    Ok(())
}

async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<(), CliError> {
    if let Some(AuditCommand::Prune(prune)) = args.command {
        return prune_audit(ctx, prune.older_than).await;
    }
    let key_id = args
        .key
        .as_deref()
        .map(|id| parse_id(id, ctx.prefix()))
        .transpose()?;
    let query = AuditQuery {
        key_id,
        since: args.since.map(Ctx::ago),
        limit: usize::from(args.limit),
    };
    let events = ctx
        .db
        .audit
        .query_audit(&query)
        .await
        .map_err(|e| ctx.db.store_error(&e))?;
    if ctx.json {
        output::stdout(&output::json(&json!({ "events": events })));
        return Ok(());
    }
    if events.is_empty() {
        output::stdout("No audit events match.\n");
        return Ok(());
    }
    let mut table = Table::new([
        "TIME", "ACTION", "OUTCOME", "KEY", "ACTOR", "REQUEST", "DETAIL",
    ]);
    for e in &events {
        table.row([
            &timestamp(e.at),
            e.action.as_str(),
            &e.outcome,
            e.key_id.as_ref().map_or("-", KeyId::as_str),
            e.actor.as_deref().unwrap_or("-"),
            &request(e),
            e.detail.as_deref().unwrap_or("-"),
        ]);
    }
    output::stdout(&table.render());
    Ok(())
}

/// `GET /notes from 203.0.113.7`, or `-` for a management event.
async fn prune_audit(ctx: &Ctx, older_than: std::time::Duration) -> Result<(), CliError> {
    let before = Ctx::now() - older_than;
    let deleted = ctx
        .db
        .audit
        .prune_audit(before)
        .await
        .map_err(|e| ctx.db.store_error(&e))?;
    ctx.print(
        || {
            format!(
                "Deleted {deleted} audit event{} from before {}.\n",
                if deleted == 1 { "" } else { "s" },
                timestamp(before)
            )
        },
        || {
            let before = before
                .format(&keygate_core::time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            json!({ "deleted": deleted, "before": before })
        },
    );
    Ok(())
}

fn request(e: &AuditEvent) -> String {
    let mut parts: Vec<String> = [e.method.as_deref(), e.path.as_deref()]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    if let Some(peer) = e.peer {
        parts.push(format!("from {peer}"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
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
