//! What the commands print: aligned tables for people, JSON for scripts.
//!
//! The JSON shapes are those of keygate's HTTP management API, so a script
//! can move from one to the other.

use std::{fmt::Write as _, io::Write as _};

use keygate_core::{KeyRecord, UsageBucket};
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

use crate::duration;

/// A key as the CLI shows it: [`keygate_core::KeyView`], the shape the
/// HTTP management API answers too, serialized as it is, with the
/// one-field-per-line text form for people.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(crate) struct KeyView(keygate_core::KeyView);

impl std::ops::Deref for KeyView {
    type Target = keygate_core::KeyView;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl KeyView {
    pub(crate) fn new(r: &KeyRecord, prefix: &str, now: OffsetDateTime) -> Self {
        Self(keygate_core::KeyView::new(r, prefix, now))
    }

    /// The key, one field per line.
    pub(crate) fn details(&self, now: OffsetDateTime) -> String {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let list = |v: &[String], empty: &str| {
            if v.is_empty() {
                empty.to_owned()
            } else {
                v.join(",")
            }
        };
        let mut t = Table::new(["", ""]);
        t.row(["id", &self.id]);
        t.row(["prefix", &self.head]);
        t.row(["owner", &self.owner]);
        t.row(["name", &self.name]);
        t.row(["environment", self.environment]);
        t.row(["status", self.status]);
        t.row(["scopes", &list(&self.scopes, "(none)")]);
        t.row(["created", &timestamp(self.created_at)]);
        t.row([
            "expires",
            &self
                .expires_at
                .map_or_else(|| "never".to_owned(), |at| relative(at, now)),
        ]);
        t.row(["revoked", &or_dash(self.revoked_at.map(timestamp))]);
        t.row([
            "last used",
            &self
                .last_used_at
                .map_or_else(|| "never".to_owned(), timestamp),
        ]);
        t.row([
            "rate limit",
            self.rate_limit.as_deref().unwrap_or("server default"),
        ]);
        t.row(["allowed IPs", &list(&self.allowed_ips, "any")]);
        t.row([
            "metadata",
            &serde_json::Value::Object(self.metadata.clone()).to_string(),
        ]);
        t.row(["family", &self.family]);
        t.row(["superseded by", &or_dash(self.superseded_by.clone())]);
        t.row([
            "credit account",
            &match &self.credit_account {
                None => "- (not metered)".to_owned(),
                Some(account) if *account == self.family => format!("{account} (its own)"),
                Some(account) => format!("{account} (its creator's, shared)"),
            },
        ]);
        t.render_without_header()
    }
}

/// A key just issued: the key itself, shown this once, and its record.
/// Its `Debug` leaves the key out.
#[derive(Serialize)]
pub(crate) struct CreatedView<'a> {
    pub(crate) key: &'a str,
    #[serde(flatten)]
    pub(crate) record: KeyView,
    /// For a rotation: the key it replaces, as it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replaces: Option<KeyView>,
}

impl std::fmt::Debug for CreatedView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedView")
            .field("key", &"[redacted]")
            .field("record", &self.record)
            .field("replaces", &self.replaces)
            .finish()
    }
}

/// One page of an owner's keys.
#[derive(Debug, Serialize)]
pub(crate) struct KeyListView {
    pub(crate) keys: Vec<KeyView>,
    pub(crate) next_cursor: Option<String>,
}

/// Requests of a key family per hour.
#[derive(Debug, Serialize)]
pub(crate) struct UsageView {
    pub(crate) id: String,
    pub(crate) family: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) since: OffsetDateTime,
    pub(crate) total: u64,
    pub(crate) buckets: Vec<BucketView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct BucketView {
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) bucket: OffsetDateTime,
    pub(crate) requests: u64,
}

impl From<UsageBucket> for BucketView {
    fn from(b: UsageBucket) -> Self {
        Self {
            bucket: b.bucket,
            requests: b.requests,
        }
    }
}

/// Text columns, aligned on their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Self {
        Self::with_columns(&header)
    }

    /// A table whose columns are decided at run time.
    pub(crate) fn with_columns(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<const N: usize>(&mut self, cells: [&str; N]) {
        self.cells(&cells);
    }

    /// A row of a table made [`with_columns`](Self::with_columns).
    pub(crate) fn cells(&mut self, cells: &[&str]) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    pub(crate) fn render(&self) -> String {
        self.render_rows(std::iter::once(&self.header).chain(&self.rows))
    }

    pub(crate) fn render_without_header(&self) -> String {
        self.render_rows(self.rows.iter())
    }

    fn render_rows<'a>(&self, rows: impl Iterator<Item = &'a Vec<String>> + Clone) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in rows.clone() {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `s` with control characters escaped, so a key name or metadata written
/// through the HTTP API cannot move the cursor or recolour the terminal.
pub(crate) fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `2026-05-01 12:00:07Z`: UTC, to the second.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| t.format(&Rfc3339).unwrap_or_default())
}

/// A time and how far it is from now: `2026-05-01 12:00:07Z (in 89d 23h)`.
pub(crate) fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    format!("{} ({})", timestamp(t), from_now(t, now))
}

/// `in 89d 23h`, or `3h 2m ago`.
pub(crate) fn from_now(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = t - now;
    let abs = std::time::Duration::try_from(d.abs()).unwrap_or_default();
    if d.is_negative() {
        format!("{} ago", duration::format(abs))
    } else {
        format!("in {}", duration::format(abs))
    }
}

/// Writes to stdout; a closed pipe (`keygate … | head`) is not an error.
pub(crate) fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes to stderr, for what must reach a person even when stdout is piped.
pub(crate) fn stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `value` as one JSON document and a newline.
pub(crate) fn json(value: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        // Only maps with non-string keys fail, and none are printed.
        format!("{{\"error\":\"cannot encode the output: {e}\"}}")
    });
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn tables_align_and_escape_control_characters() {
        let mut t = Table::new(["ID", "NAME", "STATUS"]);
        t.row(["a", "short", "active"]);
        t.row(["bbbb", "évil\u{1b}[31m", "revoked"]);
        assert_eq!(
            t.render(),
            "ID    NAME            STATUS\n\
             a     short           active\n\
             bbbb  évil\\u{1b}[31m  revoked\n"
        );
    }

    #[test]
    fn times_are_utc_to_the_second_with_distance() {
        let now = datetime!(2030-01-01 12:00:00.5 UTC);
        assert_eq!(timestamp(now), "2030-01-01 12:00:00Z");
        assert_eq!(
            timestamp(datetime!(2030-01-01 14:00 +02:00)),
            "2030-01-01 12:00:00Z"
        );
        assert_eq!(
            relative(datetime!(2030-01-08 13:00 UTC), now),
            "2030-01-08 13:00:00Z (in 7d)"
        );
        assert_eq!(from_now(datetime!(2029-12-31 9:00 UTC), now), "1d 3h ago");
    }
}
