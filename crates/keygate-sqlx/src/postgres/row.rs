//! Reading PostgreSQL's columns: `timestamptz` without panics, arrays,
//! `jsonb` and `inet`.

use std::net::IpAddr;

use keygate_core::{IpNet, Metadata, Scope, Scopes, StoreError};
use sqlx::{
    Row,
    error::BoxDynError,
    postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef, Postgres},
    types::Json,
};
use time::OffsetDateTime;

use crate::{
    convert::{audit_corrupt, in_range, parse, store_error},
    query::Backend,
    row::{Origin, StoreRow},
};

/// A `timestamptz` read with checked arithmetic. sqlx's own decoder adds
/// the value to 2000-01-01 with `+`, which panics for what PostgreSQL can
/// hold but `time` cannot (`infinity`, years past 9999): such a row must be
/// an error, never a panic.
struct PgTime(OffsetDateTime);

impl sqlx::Type<Postgres> for PgTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for PgTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        /// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix microseconds.
        const PG_EPOCH_UNIX_MICROS: i128 = 946_684_800_000_000;
        match value.format() {
            PgValueFormat::Binary => {
                let us = <i64 as sqlx::Decode<'r, Postgres>>::decode(value)?;
                let nanos = (i128::from(us) + PG_EPOCH_UNIX_MICROS) * 1_000;
                Ok(Self(OffsetDateTime::from_unix_timestamp_nanos(nanos)?))
            }
            // The text form is parsed, not computed: it cannot overflow.
            PgValueFormat::Text => Ok(Self(
                <OffsetDateTime as sqlx::Decode<'r, Postgres>>::decode(value)?,
            )),
        }
    }
}

/// Scopes are a `text[]`, networks a `cidr[]`, metadata `jsonb` and the
/// client address `inet`.
impl StoreRow for PgRow {
    fn time(&self, column: &str, origin: Origin<'_>) -> Result<Option<OffsetDateTime>, StoreError> {
        self.try_get::<Option<PgTime>, _>(column)
            .map(|t| t.map(|t| t.0))
            .map_err(|e| origin.corrupt(column, e))
    }

    fn scopes(&self, key: &str) -> Result<Scopes, StoreError> {
        self.try_get::<Vec<String>, _>("scopes")
            .map_err(store_error)?
            .into_iter()
            .map(|s| parse::<Scope>(&s, key, "scopes"))
            .collect()
    }

    fn allowed_ips(&self, _key: &str) -> Result<Vec<IpNet>, StoreError> {
        self.try_get("allowed_ips").map_err(store_error)
    }

    fn metadata(&self, _key: &str) -> Result<Metadata, StoreError> {
        self.try_get::<Json<Metadata>, _>("metadata")
            .map(|json| json.0)
            .map_err(store_error)
    }

    fn peer(&self, event: i64) -> Result<Option<IpAddr>, StoreError> {
        // A network (`10.0.0.0/8`) put there by hand is not a client address.
        self.try_get("peer")
            .map_err(|e| audit_corrupt(event, "peer", e))
    }
}

impl Backend for Postgres {
    type Time = OffsetDateTime;

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    /// sqlx's encoder panics on a time whose UTC form is out of range.
    fn time_param(t: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
        in_range(t)
    }
}
