//! Opening the store a `--database-url` names, and explaining what went
//! wrong in terms of what to do next.

use std::{io, str::FromStr, sync::Arc, time::Duration};

use keygate_core::{DynAuditStore, DynKeyStore, StoreError};
use keygate_sqlx::{
    PostgresStore, SqliteStore,
    sqlx::{
        self, Connection as _,
        postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
    },
};

use crate::error::CliError;

/// How long to wait for PostgreSQL to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A store, held through the object-safe traits the key manager and the
/// audit log take, plus what only the concrete type can do.
pub(crate) struct Database {
    /// The keys.
    pub(crate) keys: Arc<dyn DynKeyStore>,
    /// The audit trail (the same database).
    pub(crate) audit: Arc<dyn DynAuditStore>,
    /// The URL with any password hidden, for messages.
    pub(crate) url: String,
    backend: Backend,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Which database a URL names.
enum Scheme {
    Sqlite,
    Postgres,
}

fn scheme(url: &str) -> Result<Scheme, CliError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("sqlite:") {
        Ok(Scheme::Sqlite)
    } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Ok(Scheme::Postgres)
    } else {
        Err(
            CliError::usage(format!("unsupported database URL {}", redact(url))).hint(
                "use sqlite://PATH (e.g. sqlite://keygate.db) or postgres://USER@HOST/DATABASE, \
             with --database-url or KEYGATE_DATABASE_URL",
            ),
        )
    }
}

impl Database {
    /// Connects to `url`. `create` makes a missing SQLite file (only
    /// `migrate` does; other commands say to run it). `schema` is the
    /// PostgreSQL schema, as [`PostgresStore::with_schema`].
    pub(crate) async fn open(
        url: &str,
        schema: Option<&str>,
        create: bool,
    ) -> Result<Self, CliError> {
        Self::open_with(url, schema, create, 2).await
    }

    /// As [`open`](Self::open), with up to `connections` PostgreSQL
    /// connections (a server needs more than a one-shot command).
    pub(crate) async fn open_with(
        url: &str,
        schema: Option<&str>,
        create: bool,
        connections: u32,
    ) -> Result<Self, CliError> {
        let shown = redact(url);
        let unreachable = |e: sqlx::Error| connect_error(&shown, &e);
        let shown = shown.as_str();
        let backend = match scheme(url)? {
            Scheme::Sqlite => {
                if schema.is_some() {
                    return Err(CliError::usage("--schema applies to PostgreSQL only")
                        .hint("remove --schema (or KEYGATE_SCHEMA) when using a sqlite:// URL"));
                }
                let store = if create {
                    SqliteStore::connect(url).await
                } else {
                    // A typo in the path should not leave an empty database.
                    SqliteStore::connect_existing(url).await
                };
                let store = store.map_err(|e| match e {
                    sqlx::Error::Io(missing) if missing.kind() == io::ErrorKind::NotFound => {
                        CliError::new(format!("{missing} (from {shown})")).hint(format!(
                            "check --database-url (or KEYGATE_DATABASE_URL); to start a new \
                             database there, run `keygate migrate --database-url {shown}`"
                        ))
                    }
                    e => unreachable(e),
                })?;
                Backend::Sqlite(store)
            }
            Scheme::Postgres => {
                // One connection first: a pool reports only that it timed
                // out, this says why (refused, bad password, no database…).
                let options = PgConnectOptions::from_str(url).map_err(unreachable)?;
                let probe =
                    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
                        .await
                        .map_err(|_| {
                            connect_error(shown, &format!("no answer within {CONNECT_TIMEOUT:?}"))
                        })?
                        .map_err(unreachable)?;
                let _ = probe.close().await;
                let pool = PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(unreachable)?;
                let store = PostgresStore::new(pool);
                let store = match schema {
                    None => store,
                    Some(name) => store.with_schema(name).map_err(|e| {
                        CliError::usage(e.to_string())
                            .hint("pass the schema your server's PostgresStore uses")
                    })?,
                };
                Backend::Postgres(store)
            }
        };
        let (keys, audit): (Arc<dyn DynKeyStore>, Arc<dyn DynAuditStore>) = match &backend {
            Backend::Sqlite(s) => (Arc::new(s.clone()), Arc::new(s.clone())),
            Backend::Postgres(s) => (Arc::new(s.clone()), Arc::new(s.clone())),
        };
        Ok(Self {
            keys,
            audit,
            url: shown.to_owned(),
            backend,
        })
    }

    /// Creates or upgrades keygate's tables.
    pub(crate) async fn migrate(&self) -> Result<(), CliError> {
        let result = match &self.backend {
            Backend::Sqlite(s) => s.migrate().await,
            Backend::Postgres(s) => s.migrate().await,
        };
        result.map_err(|e| {
            CliError::new(format!(
                "could not migrate the database at {}: {e}",
                self.url
            ))
            .hint(
                "check that the database user may create tables (and, with --schema, the \
                 schema); a migration that was changed after it was applied needs a fresh \
                 database",
            )
        })
    }

    /// Whether this is PostgreSQL (whose servers hear about changes at once).
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Closes the pool, so SQLite checkpoints its WAL and PostgreSQL
    /// connections end cleanly.
    pub(crate) async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.pool().close().await,
            Backend::Postgres(s) => s.pool().close().await,
        }
    }

    /// What to tell the user about a store error.
    pub(crate) fn store_error(&self, err: &StoreError) -> CliError {
        match err {
            StoreError::NotFound(id) => not_found(*id),
            StoreError::Unavailable(source) if is_missing_table(source.as_ref()) => {
                CliError::new(format!(
                    "the database at {} has no keygate tables (or not all of them)",
                    self.url
                ))
                .hint(
                    "run `keygate migrate` with the same --database-url (and --schema) first; \
                     it is safe to repeat",
                )
            }
            StoreError::Unavailable(source) => CliError::new(format!(
                "the database at {} did not answer: {source}",
                self.url
            ))
            .hint("check that it is running and reachable, then try again"),
            StoreError::Corrupt(what) => CliError::new(format!(
                "the database at {} holds data keygate cannot read: {what}",
                self.url
            )),
            other => CliError::new(format!("{other} (database {})", self.url)),
        }
    }
}

/// The message for an id the store does not have.
pub(crate) fn not_found(id: keygate_core::KeyId) -> CliError {
    CliError::new(format!("no key with id {id}"))
        .hint("list keys with `keygate keys list --owner user:<id>` (or service:<name>)")
}

fn connect_error(url: &str, err: &dyn std::fmt::Display) -> CliError {
    let hint = if url.to_ascii_lowercase().starts_with("sqlite:") {
        "check --database-url (or KEYGATE_DATABASE_URL), and that its directory exists and you \
         may read and write there"
    } else {
        "check --database-url (or KEYGATE_DATABASE_URL), that the server is running and that it \
         accepts this user; then `keygate migrate` sets up keygate's tables in the database"
    };
    CliError::new(format!("cannot open the database at {url}: {err}")).hint(hint)
}

/// Whether a driver error says a table is missing: the database was never
/// migrated (or not up to this version).
fn is_missing_table(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            // 42P01: PostgreSQL's undefined_table.
            return db.code().as_deref() == Some("42P01") || db.message().contains("no such table");
        }
        next = e.source();
    }
    false
}

/// `url` with its credentials replaced by `***` — the password in
/// `user:password@` (up to the last `@`, whatever characters it holds) and
/// the value of any query parameter or keyword/value setting that holds one
/// (`password=`, `sslpassword=`, `passwd=`, `pwd=`, or a name with `secret`
/// or `token` in it) — so messages can show which database they mean
/// without leaking what opens it.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL: perhaps a keyword/value connection string
        // (`host=… password=…`); hide every value that holds a secret.
        return redact_keywords(url);
    };
    let rest = &url[scheme_end + 3..];
    // The password ends at the last `@` before the host; an unescaped `?`,
    // `/` or `#` inside it must not end it early. It is userinfo if a `:`
    // comes before any `/` (`db/keys?user=a@b` is a path and a query).
    let (prefix, rest) = match rest.rfind('@') {
        Some(at)
            if rest[..at]
                .find(':')
                .is_some_and(|colon| rest[..colon].find('/').is_none()) =>
        {
            let colon = rest.find(':').unwrap_or(at);
            (
                format!("{}{}:***@", &url[..scheme_end + 3], &rest[..colon]),
                &rest[at + 1..],
            )
        }
        _ => (url[..scheme_end + 3].to_owned(), rest),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let mut out = prefix + before_query;
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if holds_secret(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
    }
    out
}

/// A libpq-style keyword/value string with the value of every secret
/// keyword replaced by `***`. Values may be single-quoted, with `\'` and
/// `\\` escapes inside (`password='a b\'c'`), as libpq allows.
fn redact_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        // `name = value`, spaces allowed around `=`.
        let name_len = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        let Some(after_eq) = rest[name_len..].trim_start().strip_prefix('=') else {
            // Not a keyword: keep the word and go on.
            out.push_str(name);
            rest = &rest[name_len..];
            continue;
        };
        let value = after_eq.trim_start();
        let len = value_len(value);
        if holds_secret(name) {
            out.push_str(name);
            out.push_str("=***");
        } else {
            out.push_str(&rest[..rest.len() - value.len() + len]);
        }
        rest = &value[len..];
    }
    out
}

/// The length of a keyword's value at the start of `s`: up to the closing
/// quote of a quoted value (or the end), else up to the next white space.
fn value_len(s: &str) -> usize {
    if let Some(quoted) = s.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 2,
                _ => {}
            }
        }
        return s.len();
    }
    s.find(char::is_whitespace).unwrap_or(s.len())
}

fn holds_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        for (url, shown) in [
            (
                "postgres://app:s3cr%40t@db:5432/keys?sslmode=require",
                "postgres://app:***@db:5432/keys?sslmode=require",
            ),
            (
                "postgresql://app:p@ss@db/keys",
                "postgresql://app:***@db/keys",
            ),
            ("postgres://app@db/keys", "postgres://app@db/keys"),
            ("postgres://db/keys?user=a@b", "postgres://db/keys?user=a@b"),
            (
                "postgres://db/keys?user=app&password=hunter2&sslmode=require",
                "postgres://db/keys?user=app&password=***&sslmode=require",
            ),
            (
                "postgres://db/keys?PassWord=x&sslpassword=y&auth_token=z#frag",
                "postgres://db/keys?PassWord=***&sslpassword=***&auth_token=***#frag",
            ),
            (
                "postgres://u:pw@db?password=hunter2",
                "postgres://u:***@db?password=***",
            ),
            (
                "postgres://keygate:hun?ter2@127.0.0.1:1/keys",
                "postgres://keygate:***@127.0.0.1:1/keys",
            ),
            (
                "postgres://keygate:h@n/t#r2@db/keys?sslmode=require",
                "postgres://keygate:***@db/keys?sslmode=require",
            ),
            (
                "host=db user=keygate password=hunter2 dbname=keys",
                "host=db user=keygate password=*** dbname=keys",
            ),
            (
                "host=db password='hun ter2' dbname=keys",
                "host=db password=*** dbname=keys",
            ),
            (
                r"password = 'a\' b c' user=k sslpassword='x",
                "password=*** user=k sslpassword=***",
            ),
            ("host=db", "host=db"),
            ("not a url at all", "not a url at all"),
            ("sqlite://keygate.db", "sqlite://keygate.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    /// Every command's reads and writes, and the audit log's, reach one
    /// database for an in-memory URL, even with a private cache (where each
    /// connection would open a database of its own).
    #[tokio::test]
    async fn an_in_memory_url_is_one_database() {
        for create in [true, false] {
            let db = Database::open("sqlite://?mode=memory&cache=private", None, create)
                .await
                .unwrap();
            db.migrate().await.unwrap();
            let id = "Ab3Cd5Ef7G".parse().unwrap();
            let query = keygate_core::AuditQuery::default();
            let (found, events) = tokio::join!(db.keys.find(id), db.audit.query_audit(&query));
            assert_eq!(found.unwrap(), None);
            assert_eq!(events.unwrap(), []);
            db.close().await;
        }
    }

    #[test]
    fn schemes_pick_the_backend() {
        assert!(matches!(scheme("sqlite://k.db"), Ok(Scheme::Sqlite)));
        assert!(matches!(scheme("sqlite::memory:"), Ok(Scheme::Sqlite)));
        assert!(matches!(scheme("postgres://h/d"), Ok(Scheme::Postgres)));
        assert!(matches!(scheme("PostgreSQL://h/d"), Ok(Scheme::Postgres)));
        let err = scheme("mysql://u:pw@h/d").err().unwrap().to_string();
        assert!(err.contains("mysql://u:***@h/d"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        assert!(scheme("keygate.db").is_err());
    }
}
