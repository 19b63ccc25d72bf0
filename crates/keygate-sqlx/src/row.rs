//! Reading rows, once for both backends: a key record, an audit event and a
//! usage bucket are decoded here, and each backend says only how it stores
//! the columns whose types differ ([`StoreRow`]).

use std::{fmt, net::IpAddr, str::FromStr};

use keygate_core::{
    AuditEvent, IpNet, KeyRecord, Metadata, Owner, RefusalKind, Refusals, Scopes, StoreError,
    UsageBucket,
};
use sqlx::{ColumnIndex, Decode, Row, Type};
use time::OffsetDateTime;

use crate::convert::{audit_corrupt, corrupt, digest, parse, requests, store_error};

/// The row a column belongs to, to name it when its value is unreadable.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin<'a> {
    /// A row of `keygate_keys` (or of `keygate_usage`, by key family).
    Key(&'a str),
    /// A row of `keygate_audit`, by its sequence number.
    Audit(i64),
}

impl Origin<'_> {
    /// [`StoreError::Corrupt`] naming this row and `column`.
    pub(crate) fn corrupt(self, column: &str, err: impl fmt::Display) -> StoreError {
        match self {
            Origin::Key(key) => corrupt(key, column, err),
            Origin::Audit(n) => audit_corrupt(n, column, err),
        }
    }
}

/// The columns both backends store alike: text, bytes and integers.
pub(crate) trait Columns {
    /// A `NOT NULL` text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A `NOT NULL` byte column.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
    /// A `NOT NULL` integer column.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

impl<R: Row> Columns for R
where
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(store_error)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(store_error)
    }
}

/// A row of one backend: how it stores what the other stores differently.
/// SQLite keeps times as Unix microseconds and lists as JSON text;
/// PostgreSQL has `timestamptz`, arrays, `jsonb` and `inet`.
pub(crate) trait StoreRow: Columns {
    /// A nullable time column.
    fn time(&self, column: &str, origin: Origin<'_>) -> Result<Option<OffsetDateTime>, StoreError>;
    /// The `scopes` column of the key `key`.
    fn scopes(&self, key: &str) -> Result<Scopes, StoreError>;
    /// The `allowed_ips` column of the key `key`.
    fn allowed_ips(&self, key: &str) -> Result<Vec<IpNet>, StoreError>;
    /// The `metadata` column of the key `key`.
    fn metadata(&self, key: &str) -> Result<Metadata, StoreError>;
    /// The `peer` column of the audit event numbered `event`.
    fn peer(&self, event: i64) -> Result<Option<IpAddr>, StoreError>;
}

/// A row of `keygate_keys`, selected with `key_columns!()`.
pub(crate) fn record(row: &impl StoreRow) -> Result<KeyRecord, StoreError> {
    let id = row.text("id")?;
    let k = id.as_str();
    let time = |column: &str| row.time(column, Origin::Key(k));
    Ok(KeyRecord {
        id: parse(k, k, "id")?,
        family: parse(&row.text("family")?, k, "family")?,
        owner: parse::<Owner>(&row.text("owner")?, k, "owner")?,
        name: row.text("name")?,
        scopes: row.scopes(k)?,
        environment: parse(&row.text("environment")?, k, "environment")?,
        digest: digest(&row.bytes("digest")?, k)?,
        created_at: time("created_at")?.ok_or_else(|| corrupt(k, "created_at", "NULL"))?,
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
        rate_limit: parse_opt(row, "rate_limit", k)?,
        allowed_ips: row.allowed_ips(k)?,
        metadata: row.metadata(k)?,
        last_used_at: time("last_used_at")?,
        superseded_by: parse_opt(row, "superseded_by", k)?,
        created_by: parse_opt(row, "created_by", k)?,
        credit_account: parse_opt(row, "credit_account", k)?,
    })
}

/// Rows of `keygate_keys`, as [`record`] reads each.
pub(crate) fn records<R: StoreRow>(rows: &[R]) -> Result<Vec<KeyRecord>, StoreError> {
    rows.iter().map(record).collect()
}

/// A nullable text column of the key `key`, parsed.
fn parse_opt<T>(row: &impl Columns, column: &str, key: &str) -> Result<Option<T>, StoreError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    row.opt_text(column)?
        .map(|s| parse(&s, key, column))
        .transpose()
}

/// A row of `keygate_audit`, selected with `id, audit_columns!()`.
pub(crate) fn audit_event(row: &impl StoreRow) -> Result<AuditEvent, StoreError> {
    let n = row.int("id")?;
    Ok(AuditEvent {
        at: row
            .time("at", Origin::Audit(n))?
            .ok_or_else(|| audit_corrupt(n, "at", "NULL"))?,
        action: row
            .text("action")?
            .parse()
            .map_err(|e| audit_corrupt(n, "action", e))?,
        outcome: row.text("outcome")?,
        detail: row.opt_text("detail")?,
        key_id: row
            .opt_text("key_id")?
            .map(|s| s.parse().map_err(|e| audit_corrupt(n, "key_id", e)))
            .transpose()?,
        actor: row.opt_text("actor")?,
        method: row.opt_text("method")?,
        path: row.opt_text("path")?,
        peer: row.peer(n)?,
    })
}

/// A row of `keygate_usage` (`usage_columns!()`) of the key family `family`.
pub(crate) fn usage(row: &impl StoreRow, family: &str) -> Result<UsageBucket, StoreError> {
    let mut refused = Refusals::default();
    for kind in RefusalKind::ALL {
        let column = format!("refused_{}", kind.as_str());
        *refused.get_mut(kind) = requests(row.int(&column)?, family)?;
    }
    Ok(UsageBucket {
        bucket: row
            .time("bucket", Origin::Key(family))?
            .ok_or_else(|| corrupt(family, "bucket", "NULL"))?,
        requests: requests(row.int("requests")?, family)?,
        refused,
    })
}
