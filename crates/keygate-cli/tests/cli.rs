//! The `keygate` binary, run as a user runs it: a real process, a SQLite
//! file of its own per test (and, with `KEYGATE_TEST_POSTGRES_URL`, a fresh
//! PostgreSQL schema), checking what it prints and how it exits.

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use keygate_core::{
    CHECKSUM_LEN, Environment, KeyFormat, KeyHasher, KeyId, KeyRecord, KeyStore, SECRET_LEN,
    UsageDelta, usage_bucket,
};
use keygate_sqlx::{PostgresStore, SqliteStore};
use keygate_test_support::{
    Fixture, env::postgres_url, fixture::unique_suffix, sql::drop_schema_later,
};
use serde_json::Value;

/// A name unique to this test process and call.
fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", unique_suffix())
}

thread_local! {
    /// One runtime per test (each test has a thread of its own): pools
    /// opened in it stay usable for the whole test.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
}

fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}

/// What one run printed, and how it ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Both streams, for checks that something is printed nowhere.
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A database for one test, and the `keygate` command pointed at it.
struct Db {
    /// `KEYGATE_DATABASE_URL` for the runs.
    url: String,
    /// `--schema`, for PostgreSQL.
    schema: Option<String>,
    /// The SQLite file, removed at the end.
    file: Option<PathBuf>,
    /// Every run's output, to check no key or digest leaked.
    transcript: std::cell::RefCell<Vec<Run>>,
}

impl Db {
    /// A SQLite file in the temporary directory (not created yet).
    fn sqlite() -> Self {
        let file = std::env::temp_dir().join(format!("{}.db", unique("keygate_cli")));
        Self {
            url: format!("sqlite://{}", file.display()),
            schema: None,
            file: Some(file),
            transcript: std::cell::RefCell::default(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        cmd.args(args)
            .env("KEYGATE_DATABASE_URL", &self.url)
            .env_remove("KEYGATE_PREFIX")
            .env_remove("KEYGATE_SCHEMA");
        if let Some(schema) = &self.schema {
            cmd.env("KEYGATE_SCHEMA", schema);
        }
        cmd
    }

    fn run_with(&self, mut cmd: Command) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("the keygate binary runs");
        let run = Run {
            code: status.code(),
            stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
        };
        self.transcript.borrow_mut().push(Run {
            code: run.code,
            stdout: run.stdout.clone(),
            stderr: run.stderr.clone(),
        });
        run
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(args))
    }

    /// Runs `keygate args`, which must succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "keygate {args:?} failed: {run:#?}");
        run
    }

    /// Runs `keygate args`, which must fail with `code` and say `message`.
    fn fails(&self, args: &[&str], code: i32, message: &str) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(code), "keygate {args:?}: {run:#?}");
        assert!(
            run.stderr.contains(message),
            "keygate {args:?} should say {message:?}:\n{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "errors go to stderr: {run:#?}");
        run
    }

    /// The SQLite store under the CLI, to check what it wrote.
    fn sqlite_store(&self) -> SqliteStore {
        block_on(SqliteStore::connect(&self.url)).expect("the test database opens")
    }

    /// Checks that no run printed `key` (except the run that created it)
    /// or its digest.
    fn assert_never_printed(&self, key: &str, except_run: usize) {
        let digest = KeyHasher::sha256().digest(key).to_hex();
        let secret = &key[key.len() - SECRET_LEN - CHECKSUM_LEN..];
        for (i, run) in self.transcript.borrow().iter().enumerate() {
            let all = run.all();
            assert!(!all.contains(&digest), "run {i} printed a digest: {run:#?}");
            if i != except_run {
                assert!(!all.contains(secret), "run {i} printed the key: {run:#?}");
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = file.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The one key in `stderr` that starts with `head` (e.g. `kg_live_`).
fn key_in(text: &str, head: &str) -> String {
    let keys: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with(head))
        .collect();
    assert_eq!(keys.len(), 1, "expected one key in:\n{text}");
    keys[0].to_owned()
}

/// The id of a key, checking the key has the server's format.
fn id_of(key: &str, prefix: &str, env: Environment) -> KeyId {
    let parsed = KeyFormat::new(prefix)
        .unwrap()
        .parse(key)
        .unwrap_or_else(|e| panic!("{key:?} is not a {prefix} key: {e}"));
    assert_eq!(parsed.environment(), env);
    parsed.id()
}

/// `keys create` of a key of `owner` named `name` with `scopes`, then `more`.
fn keys_create<'a>(
    owner: &'a str,
    name: &'a str,
    scopes: &'a str,
    more: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "keys", "create", "--owner", owner, "--name", name, "--scopes", scopes,
    ];
    args.extend_from_slice(more);
    args
}

/// The `action` of each event of an `audit --json` answer, newest first.
fn actions(trail: &Value) -> Vec<&str> {
    trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

fn find(store: &SqliteStore, id: KeyId) -> KeyRecord {
    block_on(store.find(id))
        .unwrap()
        .expect("the key is stored")
}

#[test]
fn help_lists_the_commands_and_settings() {
    let db = Db::sqlite();
    let help = db.ok(&["--help"]).stdout;
    // Subcommands as clap lists them: a line under `Commands:` starting
    // with the name (the about text mentions some of them too).
    let lists = |help: &str, command: &str| {
        help.split("Commands:")
            .nth(1)
            .is_some_and(|rest| rest.lines().any(|l| l.trim_start().starts_with(command)))
    };
    for command in ["migrate", "keys", "audit"] {
        assert!(lists(&help, command), "--help lacks {command}:\n{help}");
    }
    for word in [
        "--database-url",
        "KEYGATE_DATABASE_URL",
        "--prefix",
        "KEYGATE_PREFIX",
        "--pepper-env",
        "--json",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let keys = db.ok(&["keys", "--help"]).stdout;
    for command in [
        "create", "list", "show", "update", "revoke", "rotate", "expiring", "usage", "credits",
    ] {
        assert!(
            lists(&keys, command),
            "keys --help lacks {command}:\n{keys}"
        );
    }
    // Help never touches the database.
    assert!(!db.file.as_ref().unwrap().exists());
}

/// The CLI acts as `admin`, but the caps every key obeys bind it too.
#[test]
fn the_caps_bind_the_cli() {
    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let big = format!(r#"{{"note":"{}"}}"#, "x".repeat(5000));
    db.fails(
        &[
            "keys",
            "create",
            "--owner",
            "user:a",
            "--name",
            "n",
            "--scopes",
            "read",
            "--metadata",
            &big,
        ],
        2,
        "at most 4096 bytes of metadata",
    );
    let run = db.ok(&[
        "--json", "keys", "create", "--owner", "user:a", "--name", "n", "--scopes", "read",
    ]);
    let id = run.json()["id"].as_str().unwrap().to_owned();
    db.fails(
        &["keys", "update", &id, "--metadata", &big],
        2,
        "at most 4096 bytes of metadata",
    );
    db.fails(
        &["keys", "rotate", &id, "--grace", "31d"],
        2,
        "at most 2592000 seconds of rotation grace",
    );
    let mut nets = vec!["keys", "update", &id];
    let addrs: Vec<String> = (0..65).map(|i| format!("10.0.{i}.1")).collect();
    for a in &addrs {
        nets.extend(["--allow-ip", a]);
    }
    db.fails(&nets, 2, "at most 64 IP allowlist entries");
    let store = db.sqlite_store();
    let record = find(&store, id.parse().unwrap());
    assert!(record.metadata.is_empty() && record.allowed_ips.is_empty());
    assert_eq!(record.superseded_by, None);
}

#[test]
fn the_whole_lifecycle_through_the_binary() {
    let db = Db::sqlite();
    let migrated = db.ok(&["migrate"]);
    assert!(migrated.stdout.contains("up to date"), "{migrated:#?}");
    // Migrating again is harmless.
    db.ok(&["migrate"]);

    // Create: the key is printed once, on stderr, in the server's format.
    let created = db.ok(&keys_create(
        "user:alice",
        "laptop",
        "read,write",
        &[
            "--expires-in",
            "90d",
            "--rate-limit",
            "100000/d",
            "--rate-limit",
            "100/s",
            "--allow-ip",
            "10.0.0.0/8",
            "--allow-ip",
            "2001:db8::/32,203.0.113.7",
            "--metadata",
            r#"{"plan":"pro"}"#,
        ],
    ));
    let create_run = db.transcript.borrow().len() - 1;
    let key = key_in(&created.stderr, "kg_live_");
    assert!(
        !created.stdout.contains(&key),
        "the key goes to stderr only"
    );
    assert!(created.stderr.contains("shown this once"), "{created:#?}");
    let id = id_of(&key, "kg", Environment::Live);
    let id_text = id.to_string();
    assert!(created.stdout.contains(&id_text), "{created:#?}");

    // What the store holds is the digest of the printed key, with the settings.
    let store = db.sqlite_store();
    let record = find(&store, id);
    assert!(record.digest.ct_eq(&KeyHasher::sha256().digest(&key)));
    assert_eq!(record.owner.to_string(), "user:alice");
    assert_eq!(record.scopes.to_string(), "read,write");
    assert_eq!(record.rate_limit.unwrap().to_string(), "100/s,100000/d");
    assert_eq!(
        record
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.0.0.0/8", "2001:db8::/32", "203.0.113.7/32"]
    );
    assert_eq!(record.metadata["plan"], "pro");
    let lifetime = record.expires_at.unwrap() - record.created_at;
    assert_eq!(lifetime.whole_days(), 90);

    // List and show: ids and settings, never the key.
    let list = db.ok(&["keys", "list", "--owner", "user:alice"]);
    assert!(list.stdout.contains(&id_text) && list.stdout.contains("laptop"));
    assert!(list.stdout.contains("active"), "{list:#?}");
    let shown = db.ok(&["keys", "show", &id_text]).stdout;
    for field in [
        "user:alice",
        "100/s,100000/d",
        "10.0.0.0/8",
        r#"{"plan":"pro"}"#,
        "(in 89d",
    ] {
        assert!(shown.contains(field), "show lacks {field}:\n{shown}");
    }
    // The public head of a key (as listings show it) works as an id too.
    db.ok(&["keys", "show", &format!("kg_live_{id}")]);

    // Update: only what is asked changes.
    db.ok(&[
        "keys",
        "update",
        &id_text,
        "--name",
        "old laptop",
        "--scopes",
        "read",
        "--no-rate-limit",
        "--any-ip",
    ]);
    let record = find(&store, id);
    assert_eq!(record.name, "old laptop");
    assert_eq!(record.scopes.to_string(), "read");
    assert_eq!(record.rate_limit, None);
    assert!(record.allowed_ips.is_empty());
    assert_eq!(
        record.metadata["plan"], "pro",
        "metadata was not asked to change"
    );
    assert!(
        record.expires_at.is_some(),
        "expiry was not asked to change"
    );

    // Rotate with a grace period: a new key, printed once; the old one ends.
    let rotated = db.ok(&["keys", "rotate", &id_text, "--grace", "1h"]);
    let rotate_run = db.transcript.borrow().len() - 1;
    let new_key = key_in(&rotated.stderr, "kg_live_");
    assert_ne!(new_key, key);
    let new_id = id_of(&new_key, "kg", Environment::Live);
    let new_id_text = new_id.to_string();
    assert!(
        rotated.stdout.contains("keeps working until"),
        "{rotated:#?}"
    );
    let new_record = find(&store, new_id);
    assert!(
        new_record
            .digest
            .ct_eq(&KeyHasher::sha256().digest(&new_key))
    );
    assert_eq!(new_record.family, id);
    let old = find(&store, id);
    assert_eq!(old.superseded_by, Some(new_id));
    let grace_left = old.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    assert!(
        grace_left > time::Duration::minutes(55) && grace_left <= time::Duration::hours(1),
        "{grace_left}"
    );
    let list = db.ok(&["keys", "list", "--owner", "user:alice"]).stdout;
    assert!(
        list.contains("superseded") && list.contains(&new_id_text),
        "{list}"
    );

    // Expiring: the old key ends within the hour; the new one never does.
    let soon = db.ok(&["keys", "expiring", "--within", "2h"]).stdout;
    assert!(soon.contains(&id_text), "{soon}");
    assert!(!soon.contains(&new_id_text), "{soon}");
    let none = db.ok(&["keys", "expiring", "--within", "30m"]).stdout;
    assert!(none.contains("No keys expire within 30m"), "{none}");

    // Usage: what servers flushed, per hour, for the whole family.
    let quiet = db.ok(&["keys", "usage", &new_id_text]).stdout;
    assert!(quiet.contains("No requests"), "{quiet}");
    let hour = usage_bucket(time::OffsetDateTime::now_utc());
    block_on(store.record_usage(&[UsageDelta {
        refused: Default::default(),
        key_id: id,
        family: id,
        bucket: hour,
        requests: 42,
        last_used_at: hour,
    }]))
    .unwrap();
    let busy = db
        .ok(&["keys", "usage", &new_id_text, "--since", "2h"])
        .stdout;
    assert!(busy.contains("42"), "{busy}");
    assert!(busy.contains("rotation family"), "{busy}");

    // Revoke, and revoking again is a no-op that says so.
    let revoked = db.ok(&["keys", "revoke", &new_id_text]).stdout;
    assert!(revoked.contains("Revoked"), "{revoked}");
    assert!(find(&store, new_id).revoked_at.is_some());
    let again = db.ok(&["keys", "revoke", &new_id_text]).stdout;
    assert!(again.contains("already revoked"), "{again}");

    // The audit trail has every change, by `cli`, newest first.
    let trail = db.ok(&["--json", "audit", "--key", &id_text]).json();
    let events = trail["events"].as_array().unwrap();
    assert_eq!(actions(&trail), ["rotate", "update", "create"]);
    assert!(events.iter().all(|e| e["actor"] == "cli"), "{events:?}");
    assert_eq!(events[0]["detail"], new_id_text);
    let trail = db.ok(&["--json", "audit", "--key", &new_id_text]).json();
    assert_eq!(actions(&trail), ["revoke", "create"]);
    let table = db.ok(&["audit", "--since", "1h"]).stdout;
    for action in ["create", "update", "rotate", "revoke"] {
        assert!(table.contains(action), "audit lacks {action}:\n{table}");
    }
    assert!(table.contains("cli"), "{table}");
    let last = db.ok(&["--json", "audit", "--limit", "1"]).json();
    assert_eq!(last["events"].as_array().unwrap().len(), 1);
    assert_eq!(last["events"][0]["action"], "revoke");

    block_on(store.pool().close());
    db.assert_never_printed(&key, create_run);
    db.assert_never_printed(&new_key, rotate_run);
}

#[test]
fn json_output_parses_and_holds_the_key_only_at_creation() {
    let db = Db::sqlite();
    assert_eq!(db.ok(&["--json", "migrate"]).json()["migrated"], true);
    let created = db.ok(&[
        "keys",
        "create",
        "--json",
        "--owner",
        "service:billing",
        "--name",
        "export",
        "--scopes",
        "billing:read",
        "--test",
    ]);
    let doc = created.json();
    let key = doc["key"].as_str().unwrap().to_owned();
    let id = id_of(&key, "kg", Environment::Test);
    assert_eq!(doc["id"], id.to_string());
    assert_eq!(doc["prefix"], format!("kg_test_{id}"));
    assert_eq!(doc["owner"], "service:billing");
    assert_eq!(doc["environment"], "test");
    assert_eq!(doc["status"], "active");
    assert_eq!(doc["scopes"], serde_json::json!(["billing:read"]));
    assert_eq!(doc["expires_at"], Value::Null);
    assert!(doc.get("digest").is_none(), "{doc}");
    assert!(
        !created.stderr.contains(&key),
        "in JSON mode the key is in the JSON only"
    );
    let id = id.to_string();

    let shown = db.ok(&["--json", "keys", "show", &id]).json();
    assert_eq!(shown["name"], "export");
    assert!(shown.get("key").is_none() && shown.get("digest").is_none());

    let updated = db
        .ok(&["--json", "keys", "update", &id, "--expires-in", "2d"])
        .json();
    assert!(updated["expires_at"].is_string(), "{updated}");

    let rotated = db
        .ok(&["--json", "keys", "rotate", &id, "--grace", "0s"])
        .json();
    let rotate_run = db.transcript.borrow().len() - 1;
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let new_key = new_key.as_str();
    let new_id = id_of(new_key, "kg", Environment::Test).to_string();
    assert_eq!(rotated["id"], new_id);
    assert_eq!(rotated["replaces"]["id"], id);
    assert_eq!(rotated["replaces"]["superseded_by"], new_id);
    assert_eq!(
        rotated["replaces"]["status"], "expired",
        "a grace of 0s ends it now"
    );
    assert_eq!(rotated["family"], id);

    let first_page = [
        "--json",
        "keys",
        "list",
        "--owner",
        "service:billing",
        "--limit",
        "1",
    ];
    let page = db.ok(&first_page).json();
    assert_eq!(page["keys"].as_array().unwrap().len(), 1);
    assert_eq!(page["keys"][0]["id"], new_id, "newest first");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let next = db
        .ok(&[&first_page[..], &["--cursor", &cursor]].concat())
        .json();
    assert_eq!(next["keys"][0]["id"], id);
    assert_eq!(next["next_cursor"], Value::Null);

    let expiring = db
        .ok(&["--json", "keys", "expiring", "--within", "1d"])
        .json();
    assert_eq!(expiring["keys"][0]["id"], id);
    let usage = db.ok(&["--json", "keys", "usage", &new_id]).json();
    assert_eq!(usage["family"], id);
    assert_eq!(usage["total"], 0);
    assert_eq!(usage["buckets"], serde_json::json!([]));
    let revoked = db.ok(&["--json", "keys", "revoke", &new_id]).json();
    assert_eq!(revoked["status"], "revoked");
    let audit = db.ok(&["--json", "audit"]).json();
    assert_eq!(audit["events"].as_array().unwrap().len(), 5);
    // Runs: 0 migrate, 1 create; the new key only by the rotation.
    db.assert_never_printed(&key, 1);
    db.assert_never_printed(new_key, rotate_run);
}

#[test]
fn prefix_and_pepper_must_match_the_server() {
    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let pepper = "0123456789abcdef0123456789abcdef";
    let mut cmd = db.command(&[
        "--prefix",
        "acme",
        "--pepper-env",
        "TEST_KEYGATE_PEPPER",
        "keys",
        "create",
        "--owner",
        "user:bob",
        "--name",
        "peppered",
        "--scopes",
        "read",
    ]);
    cmd.env("TEST_KEYGATE_PEPPER", pepper);
    let run = db.run_with(cmd);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(!run.all().contains(pepper), "the pepper is never printed");
    let key = key_in(&run.stderr, "acme_live_");
    let id = id_of(&key, "acme", Environment::Live);
    let record = find(&db.sqlite_store(), id);
    let hmac = KeyHasher::hmac_sha256(pepper.as_bytes().to_vec()).unwrap();
    assert!(record.digest.ct_eq(&hmac.digest(&key)));
    assert!(!record.digest.ct_eq(&KeyHasher::sha256().digest(&key)));

    db.fails(
        &[
            "--pepper-env",
            "TEST_KEYGATE_UNSET_PEPPER",
            "keys",
            "create",
            "--owner",
            "user:bob",
            "--name",
            "n",
            "--scopes",
            "read",
        ],
        2,
        "TEST_KEYGATE_UNSET_PEPPER (named by --pepper-env) is not set",
    );
    let mut short = db.command(&["--pepper-env", "TEST_KEYGATE_PEPPER", "keys", "show", "x"]);
    short.env("TEST_KEYGATE_PEPPER", "short");
    let run = db.run_with(short);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("use at least 16"), "{run:#?}");
    db.fails(
        &["--prefix", "Acme_", "keys", "list", "--owner", "user:bob"],
        2,
        "a key prefix is 1 to 16 lowercase letters or digits",
    );
}

#[test]
fn errors_exit_non_zero_and_say_what_to_do() {
    let db = Db::sqlite();
    // Before `migrate`, the file does not exist, and is not created.
    let run = db.fails(
        &["keys", "list", "--owner", "user:alice"],
        1,
        "there is no database file",
    );
    assert!(run.stderr.contains("keygate migrate"), "{run:#?}");
    assert!(
        !db.file.as_ref().unwrap().exists(),
        "a typo must not create a file"
    );

    // A database that exists but was never migrated.
    block_on(async {
        let store = SqliteStore::connect(&db.url).await.unwrap();
        store.pool().close().await;
    });
    let run = db.fails(&["keys", "show", "Ab3Cd5Ef7G"], 1, "has no keygate tables");
    assert!(run.stderr.contains("run `keygate migrate`"), "{run:#?}");
    db.fails(&["audit"], 1, "has no keygate tables");
    db.ok(&["migrate"]);

    // `keys create` with one option replaced (or added).
    let create = |option: &str, value: &str| -> Vec<String> {
        let mut args: Vec<String> = ["keys", "create"].map(String::from).to_vec();
        let mut options = vec![("--owner", "user:a"), ("--name", "n"), ("--scopes", "read")];
        match options.iter_mut().find(|(o, _)| *o == option) {
            Some(slot) => slot.1 = value,
            None => options.push((option, value)),
        }
        for (o, v) in options {
            args.extend([o.to_owned(), v.to_owned()]);
        }
        args
    };
    let cases = [
        (
            "--owner",
            "alice",
            "an owner is `user:<id>` or `service:<name>`",
        ),
        ("--scopes", "read,Write", "invalid scope \"Write\""),
        ("--expires-in", "90", "e.g. 45s, 30m, 12h, 90d, 1w"),
        ("--expires-in", "3mo", "unknown unit \"mo\""),
        ("--expires-in", "0s", "must be longer than 0s"),
        ("--rate-limit", "100", "write a quota as `n/unit`"),
        ("--rate-limit", "0/s", "at least one request per period"),
        ("--rate-limit", "10/s,", "write a quota as `n/unit`"),
        (
            "--rate-limit",
            "1/s,2/s,3/s,4/s,5/s,6/s,7/s,8/s,9/s",
            "a key has at most 8 quotas",
        ),
        (
            "--allow-ip",
            "10.0.0.0/33",
            "expected a network in CIDR form",
        ),
        ("--metadata", "[1]", "metadata is a JSON object"),
        ("--metadata", "{plan}", "not valid JSON"),
        ("--name", "  ", "a key name is 1 to 200 characters"),
    ];
    for (option, value, message) in cases {
        let args = create(option, value);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        db.fails(&args, 2, message);
    }

    // Ids.
    for command in [
        &["keys", "show", "Ab3Cd5Ef7G"][..],
        &["keys", "revoke", "Ab3Cd5Ef7G"],
        &["keys", "rotate", "Ab3Cd5Ef7G"],
        &["keys", "usage", "Ab3Cd5Ef7G"],
        &["keys", "update", "Ab3Cd5Ef7G", "--name", "x"],
    ] {
        let run = db.fails(command, 1, "no key with id Ab3Cd5Ef7G");
        assert!(run.stderr.contains("keygate keys list --owner"), "{run:#?}");
    }
    db.fails(
        &["keys", "show", "abc"],
        2,
        "a key id is exactly 10 letters and digits",
    );
    let whole = KeyFormat::new("kg")
        .unwrap()
        .generate(Environment::Live)
        .unwrap();
    let run = db.fails(
        &["keys", "revoke", whole.expose_secret()],
        2,
        "looks like a whole API key",
    );
    assert!(!run.stderr.contains(whole.expose_secret()), "{run:#?}");
    // The secret part alone (with or without its checksum) is not echoed
    // either.
    let key = whole.expose_secret();
    let secret_and_checksum = &key[key.len() - SECRET_LEN - CHECKSUM_LEN..];
    let secret = &secret_and_checksum[..SECRET_LEN];
    for part in [secret, secret_and_checksum] {
        let run = db.fails(
            &["keys", "show", part],
            2,
            "a key id is exactly 10 letters and digits",
        );
        assert!(!run.stderr.contains(part), "{run:#?}");
        assert!(!run.stdout.contains(part), "{run:#?}");
    }
    db.fails(&["keys", "update", "Ab3Cd5Ef7G"], 2, "nothing to update");
    db.fails(
        &[
            "keys",
            "update",
            "Ab3Cd5Ef7G",
            "--any-ip",
            "--allow-ip",
            "10.0.0.1",
        ],
        2,
        "cannot be used with",
    );
    db.fails(
        &["keys", "list", "--owner", "user:a", "--cursor", "x"],
        2,
        "not a page cursor",
    );
    db.fails(
        &["keys", "list", "--owner", "user:a", "--limit", "0"],
        2,
        "--limit",
    );
    db.fails(&["audit", "--since", "yesterday"], 2, "e.g. 45s, 30m");
    db.fails(&["keys", "frobnicate"], 2, "unrecognized subcommand");

    // A key that cannot be rotated says why and what to do instead.
    let created = db.ok(&create("--name", "revoked soon")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let id = id_of(
        &key_in(&created.stderr, "kg_live_"),
        "kg",
        Environment::Live,
    )
    .to_string();
    db.ok(&["keys", "revoke", &id]);
    let run = db.fails(&["keys", "rotate", &id], 1, "cannot be rotated");
    assert!(run.stderr.contains("keygate keys create"), "{run:#?}");

    // Databases: unsupported, unreachable (with the password hidden).
    db.fails(
        &["--database-url", "mysql://root:hunter2@db/keys", "migrate"],
        2,
        "unsupported database URL mysql://root:***@db/keys",
    );
    let run = db.fails(
        &[
            "--database-url",
            "postgres://keygate:hunter2@127.0.0.1:1/keys",
            "keys",
            "list",
            "--owner",
            "user:a",
        ],
        1,
        "cannot open the database at postgres://keygate:***@127.0.0.1:1/keys",
    );
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    assert!(run.stderr.contains("keygate migrate"), "{run:#?}");
    // The password as a query parameter is hidden as well.
    let run = db.fails(
        &[
            "--database-url",
            "postgres://127.0.0.1:1/keys?user=keygate&password=hunter2",
            "keys",
            "list",
            "--owner",
            "user:a",
        ],
        1,
        "cannot open the database at postgres://127.0.0.1:1/keys?user=keygate&password=***",
    );
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    assert!(!run.stdout.contains("hunter2"), "{run:#?}");
    db.fails(
        &["--schema", "auth", "keys", "list", "--owner", "user:a"],
        2,
        "--schema applies to PostgreSQL only",
    );
    let missing_dir = std::env::temp_dir()
        .join(unique("keygate_cli_no_dir"))
        .join("keys.db");
    db.fails(
        &[
            "--database-url",
            &format!("sqlite://{}", missing_dir.display()),
            "migrate",
        ],
        1,
        "cannot open the database",
    );
}

#[test]
fn postgres_in_a_schema_of_its_own() {
    let Some(url) = postgres_url() else { return };
    let schema = unique("keygate_cli_test");
    let _cleanup = Fixture::new((), drop_schema_later(url.clone(), schema.clone()));
    let db = Db {
        url: url.clone(),
        schema: Some(schema.clone()),
        file: None,
        transcript: std::cell::RefCell::default(),
    };
    db.fails(
        &["keys", "list", "--owner", "user:pg"],
        1,
        "has no keygate tables",
    );
    db.ok(&["migrate"]);
    let created = db.ok(&keys_create(
        "user:pg",
        "on postgres",
        "read",
        &["--allow-ip", "2001:db8::/32"],
    ));
    let key = key_in(&created.stderr, "kg_live_");
    let id = id_of(&key, "kg", Environment::Live);
    let id_text = id.to_string();

    // The CLI wrote to the schema it was given, as a server's store reads it.
    let store = block_on(async {
        PostgresStore::connect(&url)
            .await
            .unwrap()
            .with_schema(schema.clone())
            .unwrap()
    });
    let record = block_on(store.find(id)).unwrap().expect("in the schema");
    assert!(record.digest.ct_eq(&KeyHasher::sha256().digest(&key)));
    assert_eq!(record.allowed_ips[0].to_string(), "2001:db8::/32");

    let list = db
        .ok(&["--json", "keys", "list", "--owner", "user:pg"])
        .json();
    assert_eq!(list["keys"][0]["id"], id_text);
    let revoked = db.ok(&["keys", "revoke", &id_text]).stdout;
    assert!(revoked.contains("PostgreSQL"), "{revoked}");
    assert!(
        block_on(store.find(id))
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let audit = db.ok(&["--json", "audit", "--key", &id_text]).json();
    assert_eq!(actions(&audit), ["revoke", "create"]);
    assert_eq!(audit["events"][0]["actor"], "cli");
    // The default schema holds none of it.
    let elsewhere = db.run_with({
        let mut cmd = db.command(&["keys", "show", &id_text]);
        cmd.env_remove("KEYGATE_SCHEMA");
        cmd
    });
    // (Whether an earlier run left keygate tables in `public` or not.)
    assert_ne!(elsewhere.code, Some(0), "{elsewhere:#?}");
    assert!(
        elsewhere
            .stderr
            .contains(&format!("no key with id {id_text}"))
            || elsewhere.stderr.contains("no keygate tables"),
        "{elsewhere:#?}"
    );
    block_on(store.pool().close());
    // Runs: 0 the failed list, 1 migrate, 2 create.
    db.assert_never_printed(&key, 2);
}

#[test]
fn audit_prune_deletes_exactly_the_events_older_than_asked() {
    use keygate_core::{AuditAction, AuditEvent, AuditQuery, AuditStore, time::OffsetDateTime};

    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let store = db.sqlite_store();
    let id: KeyId = "PruneKey01".parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let events: Vec<AuditEvent> = [400, 91, 89, 1]
        .iter()
        .map(|&days| AuditEvent::manage(now - day * days, AuditAction::Update, id))
        .collect();
    block_on(store.append_audit(&events)).unwrap();

    let run = db
        .ok(&["--json", "audit", "prune", "--older-than", "90d"])
        .json();
    assert_eq!(run["deleted"], 2);
    let left = block_on(store.query_audit(&AuditQuery::default())).unwrap();
    let ages: Vec<u64> = left
        .iter()
        .map(|e| (now - e.at).whole_days().unsigned_abs())
        .collect();
    assert_eq!(ages, [1, 89]);

    let table = db.ok(&["audit", "prune", "--older-than", "1w"]).stdout;
    assert!(
        table.starts_with("Deleted 1 audit event from before "),
        "{table}"
    );
    // The listing still works beside the subcommand.
    assert_eq!(
        db.ok(&["--json", "audit"]).json()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A typo must not wipe the trail: zero, no unit and a missing value are refused.
    db.fails(
        &["audit", "prune", "--older-than", "0d"],
        2,
        "longer than 0s",
    );
    db.fails(
        &["audit", "prune", "--older-than", "90"],
        2,
        "e.g. 45s, 30m",
    );
    db.fails(&["audit", "prune"], 2, "--older-than");
    db.fails(
        &["audit", "--since", "1h", "prune", "--older-than", "1d"],
        2,
        "",
    );
    assert_eq!(
        block_on(store.query_audit(&AuditQuery::default()))
            .unwrap()
            .len(),
        1
    );
}

/// Every flag that takes a time or a duration, driven with extreme values:
/// each is refused as a usage error (exit 2) that says what is accepted, or,
/// at the largest accepted value, works; never a panic (exit 101) and never
/// a stored time that cannot be read back. The key works and lists after.
fn time_flags_take_extremes(db: &Db) {
    db.ok(&["migrate"]);
    let create = |extra: &[&str]| -> Run {
        let mut args = vec![
            "keys",
            "create",
            "--owner",
            "user:times",
            "--name",
            "far",
            "--scopes",
            "read",
        ];
        args.extend_from_slice(extra);
        db.run(&args)
    };
    let created = create(&[]);
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = id_of(
        &key_in(&created.stderr, "kg_live_"),
        "kg",
        Environment::Live,
    )
    .to_string();
    let spare = create(&[]);
    let spare = id_of(&key_in(&spare.stderr, "kg_live_"), "kg", Environment::Live).to_string();

    let too_long = [
        "18446744073709551615s",
        "18446744073709551616s",
        "99999999999999999999w",
        "2562047788015215w",
        "36501d",
        "5215w",
        "1000000h",
        "36500d1s",
    ];
    let flags: [(&str, Vec<&str>); 6] = [
        (
            "--expires-in",
            vec![
                "keys",
                "create",
                "--owner",
                "user:times",
                "--name",
                "x",
                "--scopes",
                "read",
            ],
        ),
        ("--expires-in", vec!["keys", "update", &id]),
        ("--grace", vec!["keys", "rotate", &id]),
        ("--within", vec!["keys", "expiring"]),
        ("--since", vec!["keys", "usage", &id]),
        ("--since", vec!["audit"]),
    ];
    for (flag, command) in &flags {
        for value in too_long {
            let mut args = command.clone();
            args.extend([*flag, value]);
            let run = db.fails(&args, 2, "too long: at most 100 years");
            assert!(run.stderr.contains(flag), "{run:#?}");
        }
    }
    // The longest accepted: 100 years ahead, or back (which looks back to
    // 1970, the earliest time keygate keeps).
    for (flag, command) in &flags {
        // Rotating uses a key up: rotate the spare one.
        let mut args = if *flag == "--grace" {
            vec!["keys", "rotate", spare.as_str()]
        } else {
            command.clone()
        };
        if *flag == "--grace" {
            // Rotation grace has its own cap, below the calendar's end.
            let mut over = args.clone();
            over.extend([*flag, "36500d"]);
            let run = db.run(&over);
            assert_eq!(run.code, Some(2), "keygate {over:?}: {run:#?}");
            assert!(run.stderr.contains("rotation grace"), "{run:#?}");
            args.extend([*flag, "30d"]);
        } else {
            args.extend([*flag, "36500d"]);
        }
        let run = db.run(&args);
        assert_eq!(run.code, Some(0), "keygate {args:?}: {run:#?}");
    }
    let shown = db.ok(&["--json", "keys", "show", &id]).json();
    assert!(
        shown["expires_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("21")),
        "{shown}"
    );
    let usage = db
        .ok(&["--json", "keys", "usage", &id, "--since", "36500d"])
        .json();
    assert_eq!(usage["since"], "1970-01-01T00:00:00Z", "{usage}");
    let list = db
        .ok(&["--json", "keys", "list", "--owner", "user:times"])
        .json();
    // Two created, one more by `create --expires-in 36500d`, one by rotating
    // the spare key.
    assert_eq!(list["keys"].as_array().unwrap().len(), 4, "{list}");
    assert!(
        db.transcript.borrow().iter().all(|r| r.code != Some(101)),
        "a run panicked"
    );
}

#[test]
fn time_flags_take_extremes_on_sqlite() {
    time_flags_take_extremes(&Db::sqlite());
}

#[test]
fn time_flags_take_extremes_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = unique("keygate_cli_times");
    let _cleanup = Fixture::new((), drop_schema_later(url.clone(), schema.clone()));
    time_flags_take_extremes(&Db {
        url,
        schema: Some(schema),
        file: None,
        transcript: std::cell::RefCell::default(),
    });
}

/// `keys list` without `--owner` lists every owner's keys, and its filters
/// pick exactly the keys in each state, paged with the cursor it prints; a
/// bad filter is a usage error.
#[test]
fn keys_list_lists_every_key_and_filters_by_status_environment_and_owner() {
    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let id = |run: Run| run.json()["id"].as_str().unwrap().to_owned();
    let create = |owner: &str, name: &str, more: &[&str]| {
        let mut args = vec!["--json"];
        args.extend(keys_create(owner, name, "read", more));
        id(db.ok(&args))
    };
    let live = create("user:ann", "live", &[]);
    let soon = create("user:bob", "soon", &["--expires-in", "1d", "--test"]);
    let later = create("service:ci", "later", &["--expires-in", "30d"]);
    let revoked = create("user:ann", "revoked", &[]);
    db.ok(&["keys", "revoke", &revoked]);
    // Expired: its expiry moved into the past behind the CLI's back.
    let expired = create("user:bob", "expired", &[]);
    let store = db.sqlite_store();
    let past = keygate_core::time::OffsetDateTime::now_utc() - keygate_core::time::Duration::HOUR;
    block_on(store.update(
        expired.parse().unwrap(),
        &keygate_core::KeyUpdate {
            expires_at: Some(Some(keygate_core::to_micros(past))),
            ..Default::default()
        },
    ))
    .unwrap();

    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json", "keys", "list"];
        all.extend_from_slice(args);
        db.ok(&all).json()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first, every owner.
    assert_eq!(
        ids(&[]),
        [
            expired.as_str(),
            revoked.as_str(),
            later.as_str(),
            soon.as_str(),
            live.as_str()
        ]
    );
    assert_eq!(
        ids(&["--status", "active"]),
        [later.as_str(), soon.as_str(), live.as_str()]
    );
    assert_eq!(ids(&["--status", "expiring"]), [soon.as_str()]);
    assert_eq!(ids(&["--status", "revoked"]), [revoked.as_str()]);
    assert_eq!(ids(&["--status", "expired"]), [expired.as_str()]);
    assert_eq!(ids(&["--environment", "test"]), [soon.as_str()]);
    assert_eq!(
        ids(&["--owner", "user:ann", "--status", "active"]),
        [live.as_str()]
    );
    assert!(ids(&["--owner", "user:nobody"]).is_empty());

    // The table names each key's owner, and the next page's command keeps
    // the filters.
    let page = db.ok(&["keys", "list", "--status", "active", "--limit", "2"]);
    assert!(page.stdout.contains("OWNER"), "{}", page.stdout);
    assert!(page.stdout.contains("service:ci"), "{}", page.stdout);
    let next = page
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("More keys: keygate "))
        .unwrap_or_else(|| panic!("no next page in:\n{}", page.stdout))
        .to_owned();
    assert!(
        next.starts_with("keys list --status active --limit 2 --cursor "),
        "{next}"
    );
    let mut args = vec!["--json"];
    args.extend(next.split_whitespace());
    let rest = db.ok(&args).json();
    assert_eq!(rest["keys"][0]["id"], live.as_str());
    assert_eq!(rest["keys"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let none = db.ok(&[
        "keys",
        "list",
        "--owner",
        "user:nobody",
        "--status",
        "revoked",
    ]);
    assert_eq!(
        none.stdout,
        "No keys match --owner user:nobody --status revoked.\n"
    );

    db.fails(
        &["keys", "list", "--status", "superseded"],
        2,
        "possible values",
    );
    db.fails(
        &["keys", "list", "--environment", "prod"],
        2,
        "possible values",
    );
}

/// `--default-key-lifetime` and `--max-key-lifetime` bind every way the CLI
/// makes or changes a key: create with and without `--expires-in`, huge
/// values, update past the maximum or to no expiry, and rotation of a key
/// made before the policy. Refusals are usage errors that store nothing.
#[test]
fn the_lifetime_policy_binds_the_cli() {
    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let policy = ["--default-key-lifetime", "30d", "--max-key-lifetime", "90d"];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = policy.to_vec();
        all.push("--json");
        all.extend_from_slice(args);
        all.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    let lifetime = |key: &Value| {
        let at = |f: &str| {
            keygate_core::time::OffsetDateTime::parse(
                key[f].as_str().unwrap(),
                &keygate_core::time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        (at("expires_at") - at("created_at")).whole_days()
    };
    let ok = |args: &[&str]| {
        let args = run(args);
        db.ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .json()
    };
    // A key from before the policy: no expiry.
    let legacy = db
        .ok(&[
            "--json", "keys", "create", "--owner", "user:a", "--name", "old", "--scopes", "read",
        ])
        .json();
    assert!(legacy["expires_at"].is_null());

    assert_eq!(
        lifetime(&ok(&keys_create("user:a", "plain", "read", &[]))),
        30
    );
    assert_eq!(
        lifetime(&ok(&keys_create(
            "user:a",
            "max",
            "read",
            &["--expires-in", "90d"]
        ))),
        90
    );
    let before = block_on(db.sqlite_store().list_keys(
        &keygate_core::KeyFilter::all(),
        keygate_core::time::OffsetDateTime::now_utc(),
        keygate_core::Page::first(100),
    ))
    .unwrap()
    .len();
    for asked in ["91d", "90d1s", "36500d"] {
        let mut args: Vec<&str> = policy.to_vec();
        args.extend(keys_create(
            "user:a",
            "long",
            "read",
            &["--expires-in", asked],
        ));
        db.fails(&args, 2, "a key lives at most 90d from its creation");
    }
    // Past the parser's own bound: refused before the database is touched.
    let mut args: Vec<&str> = policy.to_vec();
    args.extend(keys_create(
        "user:a",
        "huge",
        "read",
        &["--expires-in", "99999999999999999999d"],
    ));
    db.fails(&args, 2, "too long");
    let after = block_on(db.sqlite_store().list_keys(
        &keygate_core::KeyFilter::all(),
        keygate_core::time::OffsetDateTime::now_utc(),
        keygate_core::Page::first(100),
    ))
    .unwrap()
    .len();
    assert_eq!(before, after, "a refused key is not stored");

    // Changes count from creation; no expiry at all is refused.
    let plain = ok(&keys_create("user:a", "changed", "read", &[]));
    let id = plain["id"].as_str().unwrap();
    for change in [&["--expires-in", "91d"][..], &["--no-expiry"]] {
        let mut args: Vec<&str> = policy.to_vec();
        args.extend(["keys", "update", id]);
        args.extend_from_slice(change);
        db.fails(&args, 2, "a key lives at most 90d from its creation");
    }
    assert_eq!(
        lifetime(&ok(&["keys", "update", id, "--expires-in", "60d"])),
        60
    );

    // Rotating the pre-policy key gives its successor the default lifetime.
    let legacy_id = legacy["id"].as_str().unwrap();
    let rotated = ok(&["keys", "rotate", legacy_id, "--grace", "0s"]);
    assert_eq!(lifetime(&rotated), 30);

    // The policy is in the help, with its environment variables.
    let help = db.ok(&["keys", "create", "--help"]).stdout;
    assert!(help.contains("--max-key-lifetime"), "{help}");
    let help = db.ok(&["--help"]).stdout;
    assert!(help.contains("KEYGATE_MAX_KEY_LIFETIME"), "{help}");
    assert!(help.contains("KEYGATE_DEFAULT_KEY_LIFETIME"), "{help}");
}

/// Credits through the binary: a key metered at creation (credits and a
/// refill, or a refill alone), shown with its account by `show` and `list`,
/// read and changed by `keys credits` in text and JSON (the HTTP API's
/// shape), every change in the audit trail; a key that is not metered says
/// so, and a first top-up meters it.
#[test]
fn credits_through_the_binary() {
    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let created = db.ok(&[
        "--json",
        "keys",
        "create",
        "--owner",
        "user:ann",
        "--name",
        "trial",
        "--scopes",
        "read",
        "--credits",
        "100",
        "--refill",
        "20/day",
    ]);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["credit_account"], id.as_str());
    let store = db.sqlite_store();
    assert_eq!(
        find(&store, id.parse().unwrap()).credit_account,
        Some(id.parse().unwrap())
    );

    let shown = db.ok(&["keys", "show", &id]).stdout;
    assert!(
        shown.contains(&format!("credit account  {id} (its own)")),
        "{shown}"
    );
    let listed = db.ok(&["keys", "list"]).stdout;
    assert!(listed.contains("CREDIT ACCOUNT"), "{listed}");
    assert_eq!(
        db.ok(&["--json", "keys", "list"]).json()["keys"][0]["credit_account"],
        id.as_str()
    );

    let text = db.ok(&["keys", "credits", &id]).stdout;
    for part in ["100 credits", "20/day", "next refill", &id] {
        assert!(text.contains(part), "{part} in:\n{text}");
    }
    let json = db.ok(&["--json", "keys", "credits", &id]).json();
    assert_eq!(json["metered"], true);
    assert_eq!(json["account"], id.as_str());
    assert_eq!(json["remaining"], 100);
    assert_eq!(
        json["refill"],
        serde_json::json!({"amount": 20, "interval": "day"})
    );
    assert!(
        json["next_refill"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );

    let credits = |args: &[&str]| {
        let mut all = vec!["--json", "keys", "credits", &id];
        all.extend_from_slice(args);
        db.ok(&all).json()
    };
    assert_eq!(credits(&["--add", "5"])["remaining"], 105);
    assert_eq!(credits(&["--set", "7"])["remaining"], 7);
    let monthly = credits(&["--refill", "1000/month"]);
    assert_eq!(
        monthly["refill"],
        serde_json::json!({"amount": 1000, "interval": "month"})
    );
    assert_eq!(monthly["remaining"], 7);
    let none = credits(&["--set", "1000000000000000", "--no-refill"]);
    assert_eq!(none["remaining"], 1_000_000_000_000_000_u64);
    assert_eq!(none["refill"], Value::Null);
    assert_eq!(none["next_refill"], Value::Null);
    let changed = db.ok(&["keys", "credits", &id, "--add", "1"]).stdout;
    assert!(
        changed.starts_with(&format!("Changed the credits of key {id}: 1 added.")),
        "{changed}"
    );
    let audit = db.ok(&["--json", "audit", "--key", &id]).json();
    assert_eq!(
        actions(&audit),
        [
            "credits", "credits", "credits", "credits", "credits", "create"
        ]
    );

    // A refill alone meters a key with its amount.
    let free = db
        .ok(&[
            "--json", "keys", "create", "--owner", "user:ann", "--name", "free", "--scopes", "",
            "--refill", "50/6h",
        ])
        .json();
    let free = free["id"].as_str().unwrap().to_owned();
    let json = db.ok(&["--json", "keys", "credits", &free]).json();
    assert_eq!(json["remaining"], 50);
    assert_eq!(json["refill"]["interval"], "6h");

    // Not metered: said so; `--no-refill` alone changes nothing (it must
    // not meter the key with nothing to spend); a top-up meters it.
    let plain = db
        .ok(&keys_create("user:ann", "plain", "read", &["--json"]))
        .json();
    let plain = plain["id"].as_str().unwrap().to_owned();
    let text = db.ok(&["keys", "credits", &plain]).stdout;
    assert!(text.contains("is not metered"), "{text}");
    assert_eq!(
        db.ok(&["--json", "keys", "credits", &plain]).json(),
        serde_json::json!({
            "metered": false, "account": null, "remaining": null, "refill": null, "next_refill": null
        })
    );
    assert!(
        db.ok(&["keys", "show", &plain])
            .stdout
            .contains("- (not metered)")
    );
    let nothing = db.ok(&["keys", "credits", &plain, "--no-refill"]).stdout;
    assert!(
        nothing.contains("has no refill to remove: nothing changed"),
        "{nothing}"
    );
    assert_eq!(
        db.ok(&["--json", "keys", "credits", &plain, "--no-refill"])
            .json()["metered"],
        false
    );
    assert_eq!(find(&store, plain.parse().unwrap()).credit_account, None);
    let metered = db.ok(&["keys", "credits", &plain, "--add", "30"]).stdout;
    assert!(metered.contains("metered from now on"), "{metered}");
    assert!(metered.contains("30 credits"), "{metered}");
    assert_eq!(
        find(&store, plain.parse().unwrap()).credit_account,
        Some(plain.parse().unwrap())
    );
    // A key rotated away is not metered alone: its successor would stay
    // free. Rotating a metered key keeps its account.
    let old = db
        .ok(&keys_create("user:ann", "rotating", "read", &["--json"]))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let new = db
        .ok(&["--json", "keys", "rotate", &old, "--grace", "1h"])
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = db.fails(
        &["keys", "credits", &old, "--set", "5"],
        1,
        &format!("key {old} was rotated to {new} and is not metered"),
    );
    assert!(
        run.stderr.contains(&format!("keygate keys show {new}")),
        "{run:#?}"
    );
    assert_eq!(find(&store, old.parse().unwrap()).credit_account, None);
    let rotated = db
        .ok(&["--json", "keys", "rotate", &id, "--grace", "0s"])
        .json();
    assert_eq!(rotated["credit_account"], id.as_str());
    let new_id = rotated["id"].as_str().unwrap();
    assert_eq!(
        db.ok(&["--json", "keys", "credits", new_id]).json()["account"],
        id.as_str()
    );
    db.fails(
        &["keys", "credits", "Ab3Cd5Ef7G"],
        1,
        "no key with id Ab3Cd5Ef7G",
    );
    db.fails(
        &["keys", "credits", "Ab3Cd5Ef7G", "--add", "1"],
        1,
        "no key with id Ab3Cd5Ef7G",
    );
}

/// Hostile credit values are usage errors that say what is accepted, never
/// a panic, and change nothing.
#[test]
fn credits_flags_refuse_hostile_values() {
    let db = Db::sqlite();
    db.ok(&["migrate"]);
    let id = db
        .ok(&keys_create(
            "user:ann",
            "m",
            "read",
            &["--json", "--credits", "5"],
        ))
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refill_forms = "e.g. 20/day, 1000/month or 500/6h";
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "-1"], "credits cannot be negative"),
        (&["--add", "-1"], "credits cannot be negative"),
        (&["--add", "1e3"], "credits are a whole number"),
        (&["--set", "1.5"], "credits are a whole number"),
        (&["--set", "five"], "credits are a whole number"),
        (&["--set", ""], "credits are a whole number"),
        (
            &["--set", "99999999999999999999"],
            "at most 1000000000000000",
        ),
        (&["--add", "1000000000000001"], "at most 1000000000000000"),
        (&["--refill", "0/day"], refill_forms),
        (&["--refill", "5/week"], "unknown refill interval \"week\""),
        (&["--refill", "5/week"], refill_forms),
        (&["--refill", "20"], refill_forms),
        (&["--refill", "-5/day"], refill_forms),
        (&["--refill", "1000000000000001/day"], refill_forms),
        (&["--refill", "5/367d"], refill_forms),
        (&["--refill", "5/0h"], refill_forms),
        (&["--set", "1", "--add", "1"], "cannot be used with"),
        (&["--refill", "5/day", "--no-refill"], "cannot be used with"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["keys", "credits", &id];
        args.extend_from_slice(flags);
        let run = db.fails(&args, 2, message);
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
    }
    for (flags, message) in [
        (&["--credits", "-5"][..], "credits cannot be negative"),
        (&["--credits", "1e3"], "credits are a whole number"),
        (
            &["--credits", "1000000000000001"],
            "at most 1000000000000000",
        ),
        (&["--refill", "0/day"], refill_forms),
        (&["--refill", "5/week"], refill_forms),
    ] {
        let mut args = keys_create("user:ann", "hostile", "read", flags);
        args.insert(0, "--json");
        let run = db.fails(&args, 2, message);
        assert!(!run.stderr.contains("panicked"), "{run:#?}");
    }
    let json = db.ok(&["--json", "keys", "credits", &id]).json();
    assert_eq!(json["remaining"], 5, "nothing changed");
    assert_eq!(
        db.ok(&["--json", "keys", "list"]).json()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no key was made"
    );
}
