//! Sign-in and the routes for people, machines, or both.

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    app::AppState,
    caller::{Caller, Machine, Person},
    error::ApiError,
    tokens::TOKEN_TTL,
};

/// The demo's people: user id (also the login name) and password. A real
/// service keeps password hashes (argon2) in a database.
const DEMO_USERS: [(&str, &str); 2] = [("alice", "alice-password"), ("bob", "bob-password")];

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Json(form): Json<LoginForm>,
) -> Result<Response, ApiError> {
    // Demo only: real passwords are checked against a slow hash.
    let known = DEMO_USERS
        .iter()
        .any(|(user, password)| *user == form.username && *password == form.password);
    if !known {
        return Err(ApiError::BadLogin);
    }
    let token = state.tokens.issue(&form.username)?;
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL.as_secs(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// People only.
pub(crate) async fn me(person: Person) -> Json<Value> {
    Json(json!({ "user_id": person.user_id }))
}

/// People and machines: one extractor says which.
pub(crate) async fn reports(caller: Caller) -> Json<Value> {
    Json(match caller {
        Caller::Person(person) => json!({
            "caller": "person",
            "user_id": person.user_id,
        }),
        Caller::Key(key) => json!({
            "caller": "key",
            "key_id": key.id().to_string(),
            "owner": key.owner().to_string(),
        }),
    })
}

/// Machines only.
pub(crate) async fn export(Machine(key): Machine) -> Json<Value> {
    Json(json!({ "exported_for": key.owner().to_string() }))
}
