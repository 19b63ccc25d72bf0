//! `keygate keys …`: create, list, show, update, revoke, rotate, credits,
//! and the expiry and usage reports.

use std::fmt::Write as _;

use keygate_core::{
    BalanceChange, BoxError, BoxFuture, CreatedKey, CreditUpdate, CreditsView, Cursor, Environment,
    KeyFilter, KeyRecord, KeyUpdate, NewKey, Notifier, Page, Reminder, ReminderPolicy,
};
use keygate_webhook::{WebhookNotifier, WebhookSigner};
use serde_json::json;

use super::{Ctx, parse_id, quotas, shell_word};
use crate::{
    args::{
        CreateArgs, CreditsArgs, ExpiringArgs, ListArgs, RemindArgs, RotateArgs, UpdateArgs,
        UsageArgs,
    },
    duration,
    error::CliError,
    output::{
        self, BucketView, CreatedView, KeyListView, KeyView, Table, UsageView, from_now, printable,
        timestamp,
    },
};

pub(super) async fn create(ctx: &Ctx, args: CreateArgs) -> Result<(), CliError> {
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
    if let Some(credits) = args.credits {
        new = new.credits(credits);
    }
    if let Some(refill) = args.refill {
        new = new.refill(refill);
    }
    let created = ctx.manage(ctx.manager.create(new)).await?;
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

pub(super) async fn list(ctx: &Ctx, args: ListArgs) -> Result<(), CliError> {
    let limit = usize::from(args.limit);
    // clap accepts only the documented words.
    let filter = KeyFilter {
        owner: args.owner.clone(),
        environment: args.environment.as_deref().and_then(|e| e.parse().ok()),
        status: args.status.as_deref().and_then(|s| s.parse().ok()),
    };
    // One more than asked, to know whether there is a next page.
    let page = Page {
        limit: limit + 1,
        cursor: args.cursor,
    };
    let mut records = ctx.manage(ctx.manager.list_keys(&filter, page)).await?;
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
    // The filters again, as flags: for the "none" line and the next page.
    let mut flags = String::new();
    if let Some(owner) = &args.owner {
        let _ = write!(flags, " --owner {}", shell_word(&owner.to_string()));
    }
    if let Some(status) = &args.status {
        let _ = write!(flags, " --status {status}");
    }
    if let Some(environment) = &args.environment {
        let _ = write!(flags, " --environment {environment}");
    }
    if views.is_empty() {
        let more = if args.cursor.is_some() {
            " after this cursor"
        } else {
            ""
        };
        let which = if flags.is_empty() {
            "No keys".to_owned()
        } else {
            format!("No keys match{flags}")
        };
        output::stdout(&format!("{which}{more}.\n"));
        return Ok(());
    }
    // Without --owner the list mixes owners: say whose each key is.
    let owners = args.owner.is_none();
    // The account each metered key spends, when the page has one.
    let metered = views.iter().any(|v| v.credit_account.is_some());
    let mut headings = vec!["ID"];
    if owners {
        headings.push("OWNER");
    }
    headings.extend([
        "NAME",
        "ENV",
        "STATUS",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
    ]);
    if metered {
        headings.push("CREDIT ACCOUNT");
    }
    let mut table = Table::with_columns(&headings);
    for v in &views {
        let scopes = if v.scopes.is_empty() {
            "-".to_owned()
        } else {
            v.scopes.join(",")
        };
        let created = timestamp(v.created_at);
        let expires = v.expires_at.map_or_else(|| "never".to_owned(), timestamp);
        let used = v.last_used_at.map_or_else(|| "never".to_owned(), timestamp);
        let mut row: Vec<&str> = vec![&v.id];
        if owners {
            row.push(&v.owner);
        }
        row.extend([
            v.name.as_str(),
            v.environment,
            v.status,
            &scopes,
            &created,
            &expires,
            &used,
        ]);
        if metered {
            row.push(v.credit_account.as_deref().unwrap_or("-"));
        }
        table.cells(&row);
    }
    let mut text = table.render();
    if let Some(cursor) = next_cursor {
        let _ = write!(
            text,
            "\nMore keys: keygate keys list{flags} --limit {limit} --cursor {cursor}\n"
        );
    }
    output::stdout(&text);
    Ok(())
}

pub(super) async fn show(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let record = ctx.record(parse_id(id, ctx.prefix())?).await?;
    let view = ctx.view(&record);
    ctx.print(|| view.details(Ctx::now()), || json!(view));
    Ok(())
}

pub(super) async fn update(ctx: &Ctx, args: UpdateArgs) -> Result<(), CliError> {
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
        credit_account: None,
    };
    if changes.is_empty() {
        return Err(CliError::usage("nothing to update").hint(
            "pass at least one of --name, --scopes, --rate-limit or --no-rate-limit, \
             --expires-in or --no-expiry, --allow-ip or --any-ip, --metadata",
        ));
    }
    let record = ctx.manage(ctx.manager.update(id, changes)).await?;
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

pub(super) async fn revoke(ctx: &Ctx, id: &str) -> Result<(), CliError> {
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
    let record = ctx.manage(ctx.manager.revoke(id)).await?;
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

pub(super) async fn rotate(ctx: &Ctx, args: RotateArgs) -> Result<(), CliError> {
    let old_id = parse_id(&args.id, ctx.prefix())?;
    let created = ctx.manage(ctx.manager.rotate(old_id, args.grace)).await?;
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

pub(super) async fn expiring(ctx: &Ctx, args: ExpiringArgs) -> Result<(), CliError> {
    let records = ctx
        .manage(ctx.manager.expiring(args.within, usize::from(args.limit)))
        .await?;
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

/// Takes every reminder as delivered: `keys remind` prints them.
struct Printed;

impl Notifier for Printed {
    fn notify<'a>(&'a self, _: &'a Reminder) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

pub(super) async fn remind(ctx: &Ctx, args: RemindArgs) -> Result<(), CliError> {
    let policy = ReminderPolicy::default().thresholds(args.thresholds);
    let webhook = match &args.webhook_url {
        None => None,
        Some(url) => {
            let secret = super::webhook::read_secret(
                keygate_webhook::Scheme::StandardWebhooks,
                &args.secret_env,
                std::env::var_os(&args.secret_env),
            )?;
            let notifier =
                WebhookNotifier::new(url, WebhookSigner::standard(secret)).map_err(|e| {
                    CliError::usage(e.to_string()).hint("pass --webhook-url http://HOST:PORT/PATH")
                })?;
            Some(notifier)
        }
    };
    let notifier: &dyn Notifier = match &webhook {
        Some(w) => w,
        None => &Printed,
    };
    let report = ctx
        .manage(ctx.manager.send_reminders(&policy, notifier))
        .await?;
    let now = Ctx::now();
    ctx.print(
        || {
            let mut out = String::new();
            if report.sent.is_empty() && report.failed == 0 {
                out.push_str("No reminders due.\n");
            } else if report.sent.is_empty() {
                out.push_str("No reminders delivered.\n");
            } else {
                let mut table = Table::new(["KEY", "OWNER", "NAME", "WHY", "EXPIRES", "WHEN"]);
                for r in &report.sent {
                    table.row([
                        &r.key_head,
                        &r.owner.to_string(),
                        &r.name,
                        r.kind.as_str(),
                        &timestamp(r.expires_at),
                        &from_now(r.expires_at, now),
                    ]);
                }
                out.push_str(&table.render());
            }
            if report.already_sent > 0 {
                let _ = writeln!(out, "{} already sent earlier.", report.already_sent);
            }
            out
        },
        || json!(report),
    );
    if report.failed > 0 {
        return Err(CliError::new(format!(
            "{} reminder(s) could not be delivered to {}",
            report.failed,
            args.webhook_url.as_deref().unwrap_or("stdout")
        ))
        .hint("they were given back: the next run tries again"));
    }
    Ok(())
}

pub(super) async fn credits(ctx: &Ctx, args: CreditsArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id, ctx.prefix())?;
    let update = CreditUpdate {
        balance: match (args.set, args.add) {
            (Some(n), _) => Some(BalanceChange::Set(n)),
            (None, Some(n)) => Some(BalanceChange::Add(n)),
            (None, None) => None,
        },
        refill: match (args.refill, args.no_refill) {
            (Some(refill), _) => Some(Some(refill)),
            (None, true) => Some(None),
            (None, false) => None,
        },
    };
    let record = ctx.record(id).await?;
    if update.is_empty() {
        let balance = ctx.manage(ctx.manager.credits(id)).await?;
        // A key metered between the two reads spends its own family's
        // account: the one `update_credits` opens.
        let account = record
            .credit_account
            .or_else(|| balance.is_some().then_some(record.family));
        let view = CreditsView::new(account, balance);
        ctx.print(|| credits_text(&record, &view), || json!(view));
        return Ok(());
    }
    if record.credit_account.is_none() && update.balance.is_none() && update.refill == Some(None) {
        // Nothing to remove, and the key must not become metered with no
        // credits at all: nothing changes.
        let view = CreditsView::new(None, None);
        ctx.print(
            || {
                format!(
                    "Key {id} is not metered, so it has no refill to remove: nothing changed.\n\
                     Meter it with: keygate keys credits {id} --set N [--refill 1000/month]\n"
                )
            },
            || json!(view),
        );
        return Ok(());
    }
    // A first change meters the key it names, and only that one: a key in
    // its grace period would be metered while its successor stayed free.
    if let (None, Some(successor)) = (record.credit_account, record.superseded_by) {
        return Err(CliError::new(format!(
            "key {id} was rotated to {successor} and is not metered: metering it would leave its \
             successor free"
        ))
        .hint(format!(
            "change the credits of its newest successor (`keygate keys show {successor}`); keys \
             rotated from a metered key spend its account"
        )));
    }
    let account = record.credit_account.unwrap_or(record.family);
    let balance = ctx.manage(ctx.manager.update_credits(id, update)).await?;
    let view = CreditsView::new(Some(account), Some(balance));
    let metered_now = if record.credit_account.is_none() {
        format!(" The key is metered from now on. {}", ctx.propagation())
    } else {
        String::new()
    };
    ctx.print(
        || {
            format!(
                "Changed the credits of key {id}: {}.{metered_now}\n\n{}",
                describe(&update),
                credits_text(&record, &view)
            )
        },
        || json!(view),
    );
    Ok(())
}

/// A change to credits in words: `balance set to 500, refills to 20/day`.
fn describe(update: &CreditUpdate) -> String {
    let mut parts = Vec::new();
    match update.balance {
        Some(BalanceChange::Set(n)) => parts.push(format!("balance set to {n}")),
        Some(BalanceChange::Add(n)) => parts.push(format!("{n} added")),
        None => {}
    }
    match update.refill {
        Some(Some(refill)) => parts.push(format!("refills to {refill}")),
        Some(None) => parts.push("no longer refills".to_owned()),
        None => {}
    }
    parts.join(", ")
}

/// The credits of `record`'s key, for people.
fn credits_text(record: &KeyRecord, view: &CreditsView) -> String {
    let id = record.id;
    let Some(account) = &view.account else {
        return format!(
            "Key {id} is not metered: its requests spend no credits.\n\
             Meter it with: keygate keys credits {id} --set N [--refill 1000/month]\n"
        );
    };
    let now = Ctx::now();
    let mut t = Table::new(["", ""]);
    t.row([
        "remaining",
        &format!("{} credits", view.remaining.unwrap_or(0)),
    ]);
    t.row([
        "refill",
        &view
            .refill
            .map_or_else(|| "none".to_owned(), |r| r.to_string()),
    ]);
    t.row([
        "next refill",
        &view
            .next_refill
            .map_or_else(|| "-".to_owned(), |at| output::relative(at, now)),
    ]);
    t.row(["account", account.as_str()]);
    let mut text = t.render_without_header();
    if *account != record.family {
        let _ = writeln!(
            text,
            "\nKey {id} spends the credits of account {account} (the key that created it): the \
             balance is shared by every key spending it, and a change applies to all of them."
        );
    }
    text
}

pub(super) async fn usage(ctx: &Ctx, args: UsageArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id, ctx.prefix())?;
    let record = ctx.record(id).await?;
    let since = Ctx::ago(args.since);
    let buckets = ctx.manage(ctx.manager.usage(record.family, since)).await?;
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
