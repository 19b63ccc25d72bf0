//! `keygate audit …`: read the audit trail, and prune it.

use keygate_core::{AuditEvent, AuditQuery, KeyId};
use serde_json::json;

use super::{Ctx, parse_id};
use crate::{
    args::{AuditArgs, AuditCommand},
    error::CliError,
    output::{self, Table, timestamp},
};

pub(super) async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<(), CliError> {
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

/// `GET /notes from 203.0.113.7`, or `-` for a management event.
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
