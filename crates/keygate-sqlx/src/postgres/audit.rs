//! [`PostgresStore`]'s audit trail.

use keygate_core::{AuditEvent, AuditQuery, AuditStore, StoreError};
use sqlx::Postgres;
use time::OffsetDateTime;

use super::PostgresStore;
use crate::{
    convert::{in_range, store_error},
    query::audit_query,
    row::audit_event,
};

/// The persisted audit trail, in `keygate_audit`. Times keep microseconds;
/// events come back newest first, and events of the same microsecond in
/// reverse order of writing.
impl AuditStore for PostgresStore {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let texts = |f: fn(&AuditEvent) -> Option<&str>| -> Vec<Option<String>> {
            events.iter().map(|e| f(e).map(str::to_owned)).collect()
        };
        // A single statement: the batch is written whole or not at all.
        Self::query(&self.shared.sql.add_audit)
            .bind(
                events
                    .iter()
                    .map(|e| in_range(e.at))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .bind(texts(|e| Some(e.action.as_str())))
            .bind(texts(|e| Some(e.outcome.as_str())))
            .bind(texts(|e| e.detail.as_deref()))
            .bind(
                events
                    .iter()
                    .map(|e| e.key_id.map(|id| id.to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(texts(|e| e.actor.as_deref()))
            .bind(texts(|e| e.method.as_deref()))
            .bind(texts(|e| e.path.as_deref()))
            .bind(events.iter().map(|e| e.peer).collect::<Vec<_>>())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = audit_query::<Postgres>(&self.shared.sql.audit, query)?
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(audit_event).collect()
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = Self::query(&self.shared.sql.prune_audit)
            .bind(in_range(before)?)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}
