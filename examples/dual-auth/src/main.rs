//! keygate dual auth: people sign in and get a JWT, machines call with API
//! keys, and some routes take either.
//!
//! ```text
//! cargo run -p keygate-example-dual-auth
//! ```
//!
//! It listens on 127.0.0.1:3000 (set `KEYGATE_ADDR` to change that), issues
//! one machine key and prints it with curl commands to paste into another
//! shell. The demo people are `alice` / `alice-password` and `bob` /
//! `bob-password`.
//!
//! | route                          | who may call                                     |
//! |--------------------------------|--------------------------------------------------|
//! | `POST /login`                  | anyone: a password gives a JWT (15 minutes)      |
//! | `GET /me`                      | people only (JWT)                                |
//! | `GET /reports`                 | a person (JWT) or a machine (key with `read`)    |
//! | `GET /export`                  | machines only (key with `read`)                  |
//! | `GET`, `POST /me/keys`         | a person, or a key with `keys:manage`: own keys  |
//! | `GET`, `PATCH`, `DELETE /me/keys/{id}` | the same: read, change, revoke one       |
//! | `POST /me/keys/{id}/rotate`    | the same: replace one, old key valid for a grace |
//! | `GET /me/keys/{id}/usage`, `GET /me/openapi.json` | the same: usage; the API's document |
//!
//! `/me/keys` is keygate's own management router
//! (`keygate::manage::self_service`): this service only tells it who is
//! calling ([`caller::identify`]); the handlers, checks and answers are
//! keygate's.
//!
//! Keys go in `X-API-Key` or `Authorization: Bearer dual_…`; a person's JWT
//! goes in `Authorization: Bearer eyJ…`. keygate only looks at bearer tokens
//! that start with its prefix, so JWTs pass through it untouched.
//!
//! The rules, all in one place ([`Caller`](caller::Caller)):
//!
//! - a request that presents a key is held to it: an invalid, revoked or
//!   expired key is a 401 even when a valid JWT comes with it;
//! - one request, one identity: a valid key and a JWT together are a 400;
//! - handlers learn who is calling from one extractor, never from headers.
//!
//! Browsers on `http://localhost:5173` may call cross-origin: CORS is the
//! outermost layer, so preflights are answered before keygate runs (see
//! `docs/recipes.md`, "Browser clients and CORS").
//!
//! The modules follow a request: [`app`](mod@app) builds the router, [`caller`]
//! says who is calling, [`tokens`] signs and checks JWTs, [`handlers`]
//! answer, and [`error`] renders every refusal.

// The modules name each other through `super::`, not `crate::`: keygate's
// `tests/dual_auth.rs` includes this file as a module of its own.
pub(crate) mod app;
mod caller;
mod error;
mod handlers;
#[path = "../../support/serve.rs"]
mod serve;
pub(crate) mod tokens;

use std::net::SocketAddr;

use keygate::{
    Keygate,
    core::{Environment, NewKey, Owner, Scope},
};

use self::app::{AppState, BROWSER_ORIGINS, app, build_keygate};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    serve::init_logging();

    let keys = build_keygate();
    let secret = jwt_secret(&keys)?;
    // A machine client to try the key routes with.
    let machine_key = keys
        .manager()
        .create(NewKey::new(Owner::service("nightly-export"), "export job").scopes([Scope::READ]))
        .await?
        .key;

    let app = app(AppState::new(keys.clone(), &secret));

    let (listener, addr) = serve::listen("dual_auth").await?;
    println!("Paste these lines into another shell:");
    println!();
    println!("MACHINE_KEY={}", machine_key.expose_secret());
    print_curl_commands(addr);

    serve::serve(listener, app, &keys).await
}

/// `KEYGATE_JWT_SECRET` if set, else 190 random bits for this run (the
/// tokens die with the process, like the keys in the memory store).
fn jwt_secret(keys: &Keygate) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    if let Ok(secret) = std::env::var("KEYGATE_JWT_SECRET") {
        if secret.len() < 32 {
            return Err("KEYGATE_JWT_SECRET must be at least 32 bytes".into());
        }
        return Ok(secret.into_bytes());
    }
    // Any CSPRNG output will do; keygate's key generator is one at hand.
    let random = keys.format().generate(Environment::Test)?;
    Ok(random.expose_secret().as_bytes().to_vec())
}

fn print_curl_commands(addr: SocketAddr) {
    let url = format!("http://{addr}");
    let origin = BROWSER_ORIGINS[0];
    println!(
        r#"
# A person signs in and gets a JWT
TOKEN=$(curl -s -X POST -H 'Content-Type: application/json' -d '{{"username":"alice","password":"alice-password"}}' {url}/login | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

# 200: the person's own routes; "either" routes tell who is calling
curl -i -H "Authorization: Bearer $TOKEN" {url}/me
curl -i -H "Authorization: Bearer $TOKEN" {url}/reports

# 200: the machine on the "either" and machines-only routes; 403: /me is for people
curl -i -H "X-API-Key: $MACHINE_KEY" {url}/reports
curl -i -H "Authorization: Bearer $MACHINE_KEY" {url}/export
curl -i -H "X-API-Key: $MACHINE_KEY" {url}/me

# 401: a JWT does not open machines-only routes, and a bad key sinks a good JWT
curl -i -H "Authorization: Bearer $TOKEN" {url}/export
curl -i -H "Authorization: Bearer $TOKEN" -H "X-API-Key: dual_live_not-a-real-key" {url}/reports

# The person manages their own keys: create (the key is shown once), list, rotate, revoke
curl -i -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"name":"laptop","scopes":["read"]}}' {url}/me/keys
curl -i -H "Authorization: Bearer $TOKEN" {url}/me/keys
curl -i -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"grace_seconds":600}}' {url}/me/keys/<id>/rotate
curl -i -X DELETE -H "Authorization: Bearer $TOKEN" {url}/me/keys/<id>

# A browser on {origin}: the preflight is answered without a key, then the call carries one
curl -i -X OPTIONS -H 'Origin: {origin}' -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: x-api-key' {url}/export
curl -i -H 'Origin: {origin}' -H "X-API-Key: $MACHINE_KEY" {url}/export
"#
    );
}
