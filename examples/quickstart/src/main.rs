//! keygate quickstart: a small notes API behind API keys.
//!
//! ```text
//! cargo run -p keygate-quickstart
//! ```
//!
//! It listens on 127.0.0.1:3000 (set `KEYGATE_ADDR` to change that). Keys
//! live in the SQLite file `keygate.db` in the current directory, created on
//! the first run; set `KEYGATE_DATABASE_URL=postgres://…` to use PostgreSQL
//! instead. The first run issues three keys and prints them, with curl
//! commands to paste into another shell: a read-only key, an admin key, and
//! a *metered* read-only key with 20 usage credits a day (refilled at
//! midnight UTC), so the 21st `GET /notes` of the day is refused with 429
//! `usage_exceeded`, restart or not. Later runs reuse those keys: keygate
//! stores only their SHA-256 digests, so it cannot print them again — run
//! with `-- --new-keys` to revoke them and issue fresh ones.
//!
//! The key-management API is mounted at `/admin` (`/admin/keys`,
//! `/admin/openapi.json`; the admin key may use it), with its interactive
//! docs at `/admin/docs/` (open it in a browser, "Authorize" with the admin
//! key, try any call). Keys created without an expiry expire after a year.
//!
//! `POST /webhooks` takes webhooks signed the Standard Webhooks way instead
//! of a key. Its secret (`whsec_…`) is made on the first run and kept in
//! the file `keygate-webhook.secret` beside `keygate.db` (readable by its
//! owner only); every run prints it, with commands that sign a message with
//! `keygate webhook sign` and send it with curl.
//! Every authentication attempt is logged to stderr as a `keygate::audit`
//! event (set `RUST_LOG` to change the filter, default `info`).
//!
//! | route                | scope the key needs                  |
//! |----------------------|--------------------------------------|
//! | `GET /notes`         | `read` (from the method)             |
//! | `POST /notes`        | `write` (from the method)            |
//! | `DELETE /notes/{id}` | `delete` (from the method)           |
//! | `GET /admin/stats`   | `read`, and `admin` (from the route) |
//! | `POST /webhooks`     | none: a valid webhook signature      |
//!
//! The `admin` scope grants every other scope.

#[path = "../../support/serve.rs"]
mod serve;

use std::{
    collections::BTreeMap,
    error::Error,
    io::{self, Write as _},
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, post},
};
use keygate::{
    ApiKey, Keygate,
    core::{DynKeyStore, KeyManager, NewKey, Owner, Page, PlaintextKey, Quota, Refill, Scope},
};
use keygate_sqlx::{PostgresStore, SqliteStore};
use keygate_webhook::{VerifiedWebhook, WebhookSecret, WebhookVerifier};
use serde::{Deserialize, Serialize};

/// Where the webhook secret is kept: beside `keygate.db`.
const WEBHOOK_SECRET_FILE: &str = "keygate-webhook.secret";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    serve::init_logging();

    // Where keys live; the one place the store is created.
    let (store, location) = open_store().await?;

    let keys = Keygate::builder_from_arc(store)
        .prefix("demo")
        // Besides the `X-API-Key` header, also accept `?api_key=…` (handy for
        // a browser; headers are better, URLs end up in logs).
        .query_param("api_key")
        // Keys created without an expiry (here, through the admin API or
        // the docs page) expire after a year.
        .default_key_lifetime(Duration::from_secs(365 * 86_400))
        .build();

    let new_keys = std::env::args().any(|a| a == "--new-keys");
    let issued = demo_keys(keys.manager(), new_keys).await?;

    // `route_layer`: these routes need a key; paths the app does not have
    // stay 404.
    let notes = Router::new()
        .route("/notes", get(list_notes).post(create_note))
        .route("/notes/{id}", delete(delete_note))
        .route_layer(keys.layer());
    // A route that needs `admin` on top of the method's scope. This layer
    // checks both before the quota, so a refused request costs nothing.
    let stats_route = Router::new()
        .route("/admin/stats", get(stats))
        .route_layer(keys.layer().require_scope(Scope::ADMIN));
    // Webhooks carry a signature instead of a key: a layer of their own,
    // on their route only.
    let webhook_secret = webhook_secret()?;
    let webhooks = WebhookVerifier::standard(webhook_secret.clone()).build();
    let webhook_route = Router::new()
        .route("/webhooks", post(receive_webhook))
        .route_layer(webhooks.layer());
    let app = notes
        .merge(stats_route)
        .merge(webhook_route)
        .with_state(Notes::default());
    // The key-management API protects itself (admin or keys:manage keys),
    // with its own rules rather than the method scopes above. Beside it, its
    // interactive docs at /admin/docs/: the page loads without a key, and
    // every call it makes carries the key pasted into "Authorize".
    // And the key-management page at /admin/ui/: paste the admin key, then
    // create, rotate, revoke keys and read their usage.
    let admin = keygate::manage::router(&keys)
        .merge(keygate::manage::docs(&keys))
        .merge(keygate::manage::ui(&keys));
    let app = app.nest("/admin", admin);

    let (listener, addr) = serve::listen("quickstart").await?;
    println!("keys are kept in {location}");
    if issued.len() < DEMO_KEYS.len() {
        println!(
            "Reusing the demo keys issued on an earlier run; they were printed then as \
             KEYGATE_READ_KEY=…, KEYGATE_ADMIN_KEY=… and KEYGATE_METERED_KEY=…. keygate keeps \
             only their digests, so it cannot show them again. Lost them? Stop and run \
             `cargo run -p keygate-quickstart -- --new-keys`."
        );
    }
    if !issued.is_empty() {
        println!("Paste these lines into another shell (shown once: only digests are stored):");
        println!();
        for (variable, key) in &issued {
            println!("{variable}={}", key.expose_secret());
        }
    }
    println!();
    println!(
        "# The webhook secret, kept in {WEBHOOK_SECRET_FILE}; `keygate webhook sign` reads it \
         from this variable"
    );
    println!(
        "export KEYGATE_WEBHOOK_SECRET={}",
        &*webhook_secret.expose_whsec()
    );
    print_curl_commands(addr);

    serve::serve(listener, app, &keys).await
}

/// The store: `KEYGATE_DATABASE_URL` if set (`postgres://…` or
/// `sqlite://…`), else the SQLite file `keygate.db` here, created on first
/// use. Migrations run every start; they are idempotent.
async fn open_store() -> Result<(Arc<dyn DynKeyStore>, String), Box<dyn std::error::Error>> {
    let url = std::env::var("KEYGATE_DATABASE_URL").unwrap_or_default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(&url).await?;
        store.migrate().await?;
        let shown = url.split('@').next_back().unwrap_or("PostgreSQL");
        return Ok((Arc::new(store), format!("PostgreSQL at {shown}")));
    }
    let store = if url.is_empty() {
        SqliteStore::open("keygate.db").await?
    } else {
        let store = SqliteStore::connect(&url).await?;
        store.migrate().await?;
        store
    };
    let shown = if url.is_empty() {
        "keygate.db (SQLite)"
    } else {
        url.as_str()
    };
    Ok((Arc::new(store), shown.to_owned()))
}

/// The webhook secret: read from [`WEBHOOK_SECRET_FILE`], or made and
/// written there (owner-only permissions) on the first run. Unlike keys,
/// a webhook secret must be kept as it is: the receiver computes the
/// signature with it.
fn webhook_secret() -> Result<WebhookSecret, Box<dyn Error>> {
    match std::fs::read_to_string(WEBHOOK_SECRET_FILE) {
        Ok(text) => WebhookSecret::standard(&text).map_err(|e| {
            format!("{WEBHOOK_SECRET_FILE}: {e} (delete it to make a new one)").into()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = WebhookSecret::generate()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(WEBHOOK_SECRET_FILE)?;
            writeln!(file, "{}", &*secret.expose_whsec())?;
            Ok(secret)
        }
        Err(e) => Err(format!("cannot read {WEBHOOK_SECRET_FILE}: {e}").into()),
    }
}

/// The demo keys: the variable the quickstart prints each as, its name,
/// and its settings. Five requests per second makes a 429 `rate_limited`
/// easy to see; the metered key's 20 credits a day a 429 `usage_exceeded`.
const DEMO_KEYS: [(&str, &str); 3] = [
    ("KEYGATE_READ_KEY", "quickstart read-only"),
    ("KEYGATE_ADMIN_KEY", "quickstart admin"),
    ("KEYGATE_METERED_KEY", "quickstart metered"),
];

fn demo_key(owner: &Owner, name: &str) -> Result<NewKey, Box<dyn Error>> {
    let new = NewKey::new(owner.clone(), name);
    Ok(match name {
        "quickstart admin" => new.scopes([Scope::ADMIN]).rate_limit(Quota::per_second(5)),
        "quickstart metered" => new
            .scopes([Scope::READ])
            // 20 a day, topped up to 20 at midnight UTC; a generous rate
            // limit, so the credits are what refuses.
            .refill(Refill::daily(20)?)
            .rate_limit(Quota::per_second(100)),
        _ => new.scopes([Scope::READ]).rate_limit(Quota::per_second(5)),
    })
}

/// Issues the demo keys that are missing (all of them on the first run, or
/// with `--new-keys` after revoking the old ones; the metered key alone for
/// a `keygate.db` from before it existed), and returns those it issued with
/// the variable to print each as. The others are reused.
async fn demo_keys(
    manager: &KeyManager,
    renew: bool,
) -> Result<Vec<(&'static str, PlaintextKey)>, Box<dyn Error>> {
    let owner = Owner::service("quickstart");
    let existing: Vec<_> = manager
        .list(&owner, Page::first(100))
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    if renew {
        for old in &existing {
            manager.revoke(old.id).await?;
        }
    }
    let mut issued = Vec::new();
    for (variable, name) in DEMO_KEYS {
        if !renew && existing.iter().any(|k| k.name == name) {
            continue;
        }
        // The plaintext exists only in `.key`: the store keeps a SHA-256
        // digest.
        let created = manager.create(demo_key(&owner, name)?).await?;
        issued.push((variable, created.key));
    }
    Ok(issued)
}

fn print_curl_commands(addr: SocketAddr) {
    let url = format!("http://{addr}");
    println!(
        r#"
# 200: the read key lists notes
curl -i -H "X-API-Key: $KEYGATE_READ_KEY" {url}/notes

# 401: no key; a key that is not valid (here in the query parameter)
curl -i {url}/notes
curl -i "{url}/notes?api_key=demo_live_not-a-real-key"

# 403: the read key cannot write, nor read admin routes
curl -i -X POST -H "X-API-Key: $KEYGATE_READ_KEY" -H 'Content-Type: application/json' -d '{{"text":"hi"}}' {url}/notes
curl -i -H "X-API-Key: $KEYGATE_READ_KEY" {url}/admin/stats

# 201: the admin key can do everything
curl -i -X POST -H "X-API-Key: $KEYGATE_ADMIN_KEY" -H 'Content-Type: application/json' -d '{{"text":"hi"}}' {url}/notes
curl -i -H "X-API-Key: $KEYGATE_ADMIN_KEY" {url}/admin/stats

# the key-management API: list the demo keys, never their secrets
curl -s -H "X-API-Key: $KEYGATE_ADMIN_KEY" '{url}/admin/keys?owner=service:quickstart'
# every active key; in a browser: the key-management page at {url}/admin/ui/, the interactive docs at {url}/admin/docs/
curl -s -H "X-API-Key: $KEYGATE_ADMIN_KEY" '{url}/admin/keys?status=active'

# 429: ten quick requests against a quota of 5 per second
for i in $(seq 10); do curl -s -o /dev/null -w '%{{http_code}}\n' -H "X-API-Key: $KEYGATE_READ_KEY" {url}/notes; done

# the metered key: 20 credits a day; each answer tells the balance (X-Credits-Remaining)
for i in $(seq 20); do curl -s -o /dev/null -w '%{{http_code}} %header{{x-credits-remaining}}\n' -H "X-API-Key: $KEYGATE_METERED_KEY" {url}/notes; done
# 429 usage_exceeded: the 21st, also after a restart; Retry-After says when the credits refill (midnight UTC)
curl -i -H "X-API-Key: $KEYGATE_METERED_KEY" {url}/notes

# webhooks: sign a message with the CLI (secret from $KEYGATE_WEBHOOK_SECRET), keep its headers as a curl config
echo '{{"type":"note.created","text":"hi"}}' > /tmp/keygate-webhook.json
cargo run -q -p keygate-cli -- webhook sign --body-file /tmp/keygate-webhook.json --format curl-config > /tmp/keygate-webhook.curl

# 200: the signed message reaches the handler
curl -i -K /tmp/keygate-webhook.curl --data-binary @/tmp/keygate-webhook.json {url}/webhooks

# 401 replayed_message: the same message again; 401 invalid_signature: a body that was not signed
curl -i -K /tmp/keygate-webhook.curl --data-binary @/tmp/keygate-webhook.json {url}/webhooks
curl -i -K /tmp/keygate-webhook.curl --data-binary '{{"type":"note.created","text":"forged"}}' {url}/webhooks
"#
    );
}

// ---- the application: in-memory notes ----

#[derive(Clone, Serialize)]
struct Note {
    id: u64,
    text: String,
    /// Who wrote it: the owner of the key that created it.
    author: String,
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

#[derive(Clone, Default)]
struct Notes(Arc<Mutex<NoteList>>);

#[derive(Default)]
struct NoteList {
    last_id: u64,
    notes: BTreeMap<u64, Note>,
}

impl Notes {
    fn lock(&self) -> std::sync::MutexGuard<'_, NoteList> {
        // A panic while holding the lock leaves the map consistent enough
        // for a demo; keep serving.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn list_notes(State(notes): State<Notes>) -> Json<Vec<Note>> {
    Json(notes.lock().notes.values().cloned().collect())
}

/// The handler takes the authenticated key as an argument.
async fn create_note(
    key: ApiKey,
    State(notes): State<Notes>,
    Json(new): Json<NewNote>,
) -> (StatusCode, Json<Note>) {
    let mut list = notes.lock();
    list.last_id += 1;
    let note = Note {
        id: list.last_id,
        text: new.text,
        author: key.owner().to_string(),
    };
    list.notes.insert(note.id, note.clone());
    (StatusCode::CREATED, Json(note))
}

async fn delete_note(State(notes): State<Notes>, Path(id): Path<u64>) -> StatusCode {
    match notes.lock().notes.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

#[derive(Serialize)]
struct Received {
    id: String,
    bytes: usize,
}

/// Runs only for a message whose signature verified (and that is not a
/// replay); `body` is the signed bytes, unchanged.
async fn receive_webhook(
    Extension(msg): Extension<VerifiedWebhook>,
    body: Bytes,
) -> Json<Received> {
    Json(Received {
        id: msg.id().unwrap_or_default().to_owned(),
        bytes: body.len(),
    })
}

#[derive(Serialize)]
struct Stats {
    notes: usize,
    asked_by: String,
}

async fn stats(key: ApiKey, State(notes): State<Notes>) -> Json<Stats> {
    Json(Stats {
        notes: notes.lock().notes.len(),
        asked_by: format!("{} ({})", key.name(), key.owner()),
    })
}
