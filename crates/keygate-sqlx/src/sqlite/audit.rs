//! [`SqliteStore`]'s audit trail.

use keygate_core::{AuditEvent, AuditQuery, AuditStore, KeyId, StoreError, unix_micros};
use sqlx::Sqlite;
use time::OffsetDateTime;

use super::SqliteStore;
use crate::{convert::store_error, query::audit_query, row::audit_event};

/// The persisted audit trail, in `keygate_audit`. Times keep microseconds;
/// events come back newest first, and events of the same microsecond in
/// reverse order of writing.
impl AuditStore for SqliteStore {
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO keygate_audit (",
            audit_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        );
        if events.is_empty() {
            return Ok(());
        }
        // One transaction: the batch is written whole or not at all, and
        // costs one commit (one fsync) instead of one per event.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        for e in events {
            sqlx::query(SQL)
                .bind(unix_micros(e.at))
                .bind(e.action.as_str())
                .bind(e.outcome.as_str())
                .bind(e.detail.as_deref())
                .bind(e.key_id.as_ref().map(KeyId::as_str))
                .bind(e.actor.as_deref())
                .bind(e.method.as_deref())
                .bind(e.path.as_deref())
                .bind(e.peer.map(|ip| ip.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        const SELECT: &str = concat!("SELECT id, ", audit_columns!(), " FROM keygate_audit");
        let rows = audit_query::<Sqlite>(SELECT, query)?
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(audit_event).collect()
    }

    async fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM keygate_audit WHERE at < ?1")
            .bind(unix_micros(before))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}
