//! Credit accounts as both backends keep them: one row of
//! `keygate_credits` per account, read and written inside a transaction
//! that holds the row, so that [`CreditOp::apply`] decides on what the row
//! is when the write lands.

use keygate_core::{CreditAccount, KeyId, Refill, RefillInterval, StoreError};
use time::OffsetDateTime;

use crate::{
    convert::corrupt,
    row::{Origin, StoreRow},
};

/// The columns of `keygate_credits` after its key, as both backends read
/// them (times in the backend's own form).
pub(crate) struct CreditRow {
    pub(crate) remaining: i64,
    pub(crate) refill_amount: Option<i64>,
    pub(crate) refill_seconds: Option<i64>,
    pub(crate) refilled_at: Option<OffsetDateTime>,
}

impl CreditRow {
    /// A row of `keygate_credits`, selected with its four columns.
    pub(crate) fn read(row: &impl StoreRow, account: KeyId) -> Result<Self, StoreError> {
        Ok(Self {
            remaining: row.int("remaining")?,
            refill_amount: row.opt_int("refill_amount")?,
            refill_seconds: row.opt_int("refill_seconds")?,
            refilled_at: row.time("refilled_at", Origin::Key(account.as_str()))?,
        })
    }

    /// The account the row holds; a row out of range is corrupt, never a
    /// panic or a free balance.
    pub(crate) fn account(self, account: KeyId) -> Result<CreditAccount, StoreError> {
        let k = account.as_str();
        let count = |n: i64, column: &str| {
            u64::try_from(n).map_err(|_| corrupt(k, column, format!("{n} is negative")))
        };
        let refill = match (self.refill_amount, self.refill_seconds) {
            (Some(amount), Some(seconds)) => {
                let interval = RefillInterval::from_seconds(count(seconds, "refill_seconds")?)
                    .map_err(|e| corrupt(k, "refill_seconds", e))?;
                let refill = Refill::new(count(amount, "refill_amount")?, interval)
                    .map_err(|e| corrupt(k, "refill_amount", e))?;
                Some(refill)
            }
            (None, None) => None,
            _ => return Err(corrupt(k, "refill_amount", "half a refill rule")),
        };
        Ok(CreditAccount {
            remaining: count(self.remaining, "remaining")?,
            refill,
            refilled_at: self.refilled_at,
        })
    }

    /// The row that keeps `account`.
    pub(crate) fn of(account: &CreditAccount) -> Self {
        // Every count is at most MAX_CREDITS (10^15) and every period at
        // most 366 days: both fit an i64.
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Self {
            remaining: int(account.remaining),
            refill_amount: account.refill.map(|r| int(r.amount)),
            refill_seconds: account.refill.map(|r| int(r.interval.as_seconds())),
            refilled_at: account.refilled_at,
        }
    }
}
