//! The OpenAPI 3.1 document of the management API, and its route.

use axum::{
    extract::{NestedPath, rejection::NestedPathRejection},
    response::Response,
};
use http::StatusCode;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Components, Content, RefOr, ResponseBuilder,
        path::ParameterIn,
        security::{
            ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement,
            SecurityScheme,
        },
    },
};

use super::{
    caller::Caller,
    credits,
    input::{FieldError, ListStatus},
    keys,
    schema::{EnvironmentName, KeyStatus, RefillSchema},
    self_service::{AuthScheme, SchemeKind},
    view::{BucketView, json},
};
use crate::Keygate;
use keygate_core::{Limits, MAX_CREDITS};

/// This API's OpenAPI 3.1 document.
///
/// Its `servers` entry is the path the router is mounted at, so the paths
/// in it resolve.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
)]
pub(super) async fn openapi_json(
    caller: Caller,
    nested: Result<NestedPath, NestedPathRejection>,
) -> Response {
    served(
        &caller.state().0.doc,
        nested.ok().as_ref().map(NestedPath::as_str),
    )
}

/// `doc` as served from under `mounted_at`: its `servers` entry is that
/// path, so the paths in it resolve.
pub(super) fn served(doc: &serde_json::Value, mounted_at: Option<&str>) -> Response {
    let mut doc = doc.clone();
    if let (Some(path), Some(doc)) = (mounted_at, doc.as_object_mut()) {
        doc.insert("servers".to_owned(), serde_json::json!([{ "url": path }]));
    }
    json(StatusCode::OK, &doc)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate key management",
        description = "Create, list, update, rotate and revoke API keys, and read or change the \
            credits of metered keys. Every operation needs an API key with the `admin` scope (all \
            keys) or `keys:manage` (keys of its own owner); changing credits needs `admin`.",
    ),
    paths(
        keys::create_key, keys::list_keys, keys::get_key, keys::update_key, keys::revoke_key,
        keys::rotate_key, keys::key_usage, credits::get_credits, credits::update_credits,
        openapi_json,
    ),
    components(schemas(
        KeyStatus, EnvironmentName, ListStatus, FieldError, BucketView, RefillSchema
    )),
    modifiers(&CommonResponses),
    tags(
        (name = "keys", description = "API keys"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// Adds the answers that follow from rules rather than from one
/// operation: the layer's 401, 403, 429 and 503 on every operation, the
/// 404 of every route on one key (a missing key and another owner's look
/// the same), and the 422 of every operation that reads a body or a query.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    Content::new(Some(RefOr::Ref(openapi::Ref::from_schema_name("Problem")))),
                )
                .build()
        };
        let common = [
            (
                "401",
                "The API key is missing, malformed, unknown, revoked or expired",
            ),
            (
                "403",
                "`insufficient_scope`: the API key has neither `admin` nor `keys:manage`; or `ip_not_allowed`",
            ),
            ("429", "`rate_limited`: the API key's quota is used up"),
            ("503", "`unavailable`: the key store cannot answer"),
        ];
        for (path, item) in &mut doc.paths.paths {
            let one_key = path.contains("{id}").then_some(("404", NOT_FOUND));
            for op in operations(item) {
                let invalid = if op.request_body.is_some() {
                    Some(("422", "Invalid input"))
                } else if reads_query(op) {
                    Some(("422", "Invalid query"))
                } else {
                    None
                };
                for (status, description) in common.into_iter().chain(one_key).chain(invalid) {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(problem(description)));
                }
            }
        }
    }
}

/// What a route on one key answers when the key does not exist or belongs
/// to an owner the caller may not see.
const NOT_FOUND: &str = "No such key, or another owner's";

/// Whether `op` takes query parameters.
fn reads_query(op: &openapi::path::Operation) -> bool {
    op.parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query))
}

fn operations(item: &mut openapi::PathItem) -> impl Iterator<Item = &mut openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.patch.as_mut(),
        item.delete.as_mut(),
        item.put.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The document for `keys`: the security scheme names the header (or
/// bearer token) its layer reads keys from — or, behind the application's
/// own sign-in, `people` — and every input carries the bounds the server
/// enforces ([`bounds`]), so a request the document calls valid is accepted
/// and one it calls invalid is refused.
pub(super) fn document(keys: &Keygate, people: Option<&AuthScheme>) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let (name, scheme) = match people {
        Some(people) => ("sign_in", sign_in_scheme(people)),
        None => ("api_key", api_key_scheme(keys)),
    };
    doc.components
        .get_or_insert_with(Components::new)
        .add_security_scheme(name, scheme);
    doc.security = Some(vec![SecurityRequirement::new(name, Vec::<String>::new())]);
    if people.is_some() {
        doc.info.description = Some(
            "Create, list, update, rotate and revoke API keys, and read their credits, signed in \
             with this service's own sign-in: people manage the keys they own, operators every \
             key (and alone change credits)."
                .to_owned(),
        );
    }
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    bounds(&mut doc, keys.manager().limits());
    if people.is_some() {
        signed_in_answers(&mut doc);
    }
    doc
}

/// The header (or bearer token, or query parameter) `keys`' layer reads
/// keys from.
fn api_key_scheme(keys: &Keygate) -> SecurityScheme {
    let sources = &keys.shared.settings.sources;
    match sources.header_names().first() {
        Some(header) => {
            SecurityScheme::ApiKey(ApiKeyScheme::Header(ApiKeyValue::new(header.as_str())))
        }
        None if sources.bearer_enabled() => {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build())
        }
        None => SecurityScheme::ApiKey(ApiKeyScheme::Query(ApiKeyValue::new(
            sources.query_name().unwrap_or("api_key"),
        ))),
    }
}

/// The application's sign-in, as it told [`SelfService`](super::SelfService).
fn sign_in_scheme(people: &AuthScheme) -> SecurityScheme {
    let description = people.description.clone();
    match &people.kind {
        SchemeKind::Bearer { format } => {
            let mut http = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(description);
            if let Some(format) = format {
                http = http.bearer_format(format.clone());
            }
            SecurityScheme::Http(http.build())
        }
        SchemeKind::Cookie(name) => SecurityScheme::ApiKey(ApiKeyScheme::Cookie(
            ApiKeyValue::with_description(name.clone(), description.unwrap_or_default()),
        )),
        SchemeKind::Header(name) => SecurityScheme::ApiKey(ApiKeyScheme::Header(
            ApiKeyValue::with_description(name.clone(), description.unwrap_or_default()),
        )),
    }
}

/// Behind the application's sign-in, the 401 and 403 of every operation
/// are the router's, not keygate's layer's: say so.
fn signed_in_answers(doc: &mut serde_json::Value) {
    let Some(serde_json::Value::Object(paths)) = doc.pointer_mut("/paths") else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            for (status, description) in [
                (
                    "401",
                    "`not_signed_in`: the request carries no valid sign-in",
                ),
                (
                    "403",
                    "`insufficient_scope`: a scope people may not grant, or an API key with \
                     neither `admin` nor `keys:manage`",
                ),
            ] {
                if let Some(serde_json::Value::String(d)) =
                    op.pointer_mut(&format!("/responses/{status}/description"))
                {
                    // An operation's own 403 (`owner_not_allowed`, …) says
                    // more than the common one: keep it.
                    if status == "401" || d.starts_with("`insufficient_scope`: the API key") {
                        *d = description.to_owned();
                    }
                }
            }
        }
    }
}

/// The longest `expires_in_seconds` accepted when the service sets no
/// maximum lifetime: 100 years, so every expiry stays before year 9999.
pub(super) const MAX_EXPIRES_IN_SECONDS: u64 = 100 * 365 * 86_400;

/// The longest `expires_in_seconds` this service accepts: its maximum key
/// lifetime, and never more than [`MAX_EXPIRES_IN_SECONDS`].
pub(super) fn max_expires_in_seconds(limits: &Limits) -> u64 {
    limits
        .max_key_lifetime
        .map_or(MAX_EXPIRES_IN_SECONDS, |d| d.as_secs())
        .min(MAX_EXPIRES_IN_SECONDS)
}

/// A name with at least one character that is not Unicode `White_Space`
/// (what `str::trim` removes): the server refuses names that are blank.
const NAME: &str = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/// [`keygate_core::Owner`]'s text form: 1 to 256 characters after the
/// kind, none of them a control character.
const OWNER: &str = "^(user|service):[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$";
/// [`keygate_core::Scope`]'s rule.
const SCOPE: &str = "^[a-z][a-z0-9:._-]{0,63}$";
/// One to eight quotas (`n/unit`, comma-separated), each admitting 1 to
/// 999 999 999 requests per period of at most 366 days.
const QUOTAS: &str = concat!(
    "^(?:[1-9][0-9]{0,8}/(?:(?:[1-9][0-9]{0,2})?(?:ms|s|sec|second|seconds|m|min|minute|minutes|h|hour|hours)",
    "|(?:[1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])?(?:d|day|days)))",
    "(?:,[1-9][0-9]{0,8}/(?:(?:[1-9][0-9]{0,2})?(?:ms|s|sec|second|seconds|m|min|minute|minutes|h|hour|hours)",
    "|(?:[1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])?(?:d|day|days))){0,7}$",
);
/// An IPv4 or IPv6 address, optionally with a prefix length: what
/// [`keygate_core::parse_allowed_net`] reads.
const NETWORK: &str = concat!(
    "^(?:(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    "(?:/(?:3[0-2]|[12]?[0-9]))?",
    "|(?:(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
    "|(?:[0-9a-fA-F]{1,4}:){1,7}:",
    "|(?:[0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    "|(?:[0-9a-fA-F]{1,4}:){1,5}(?::[0-9a-fA-F]{1,4}){1,2}",
    "|(?:[0-9a-fA-F]{1,4}:){1,4}(?::[0-9a-fA-F]{1,4}){1,3}",
    "|(?:[0-9a-fA-F]{1,4}:){1,3}(?::[0-9a-fA-F]{1,4}){1,4}",
    "|(?:[0-9a-fA-F]{1,4}:){1,2}(?::[0-9a-fA-F]{1,4}){1,5}",
    "|[0-9a-fA-F]{1,4}:(?::[0-9a-fA-F]{1,4}){1,6}",
    "|:(?:(?::[0-9a-fA-F]{1,4}){1,7}|:)",
    "|::(?:[fF]{4}(?::0{1,4})?:)?(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    "|(?:[0-9a-fA-F]{1,4}:){1,4}:(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))",
    "(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$",
);
/// An RFC 3339 time from year 1970 to 9999, as the server keeps them (the
/// server also refuses the few that fall outside once converted to UTC).
const TIME: &str = "^(?:19[7-9][0-9]|[2-9][0-9]{3})-";
/// A refill interval as the server reads it (see
/// [`keygate_core::RefillInterval`]): `day`, `month` (or `daily`,
/// `monthly`), or a period of 1 s to 366 days in seconds, minutes, hours or
/// days, without leading zeros.
pub(super) const REFILL_INTERVAL: &str = concat!(
    "^(?:day|daily|month|monthly",
    "|(?:[1-9][0-9]{0,6}|[12][0-9]{7}|30[0-9]{6}|31[0-5][0-9]{5}|316[01][0-9]{4}",
    "|3162[01][0-9]{3}|31622[0-3][0-9]{2}|31622400)s",
    "|(?:[1-9][0-9]{0,4}|[1-4][0-9]{5}|5[01][0-9]{4}|52[0-6][0-9]{3}|5270[0-3][0-9]|527040)min",
    "|(?:[1-9][0-9]{0,2}|[1-7][0-9]{3}|8[0-6][0-9]{2}|87[0-7][0-9]|878[0-4])h",
    "|(?:[1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d)$",
);
/// A cursor as `next_cursor` hands it out: `{unix-nanos}.{id}`.
const CURSOR: &str = "^[0-9]{1,20}\\.[0-9A-Za-z]{10}$";

/// Writes the server's bounds into the document: the patterns of every text
/// field, the caps of [`Limits`], and which fields take `null`.
fn bounds(doc: &mut serde_json::Value, limits: &Limits) {
    use serde_json::json;
    let day = |secs: u64| secs as f64 / 86_400.0;
    let max_in = max_expires_in_seconds(limits);
    let schemas = "/components/schemas";
    for (schema, field, change) in [
        ("CreateKey", "owner", json!({"pattern": OWNER})),
        ("CreateKey", "name", json!({"pattern": NAME})),
        ("UpdateKey", "name", json!({"pattern": NAME})),
        ("CreateKey", "rate_limit", json!({"pattern": QUOTAS})),
        ("UpdateKey", "rate_limit", json!({"pattern": QUOTAS})),
        ("UpdateKey", "expires_at", json!({"pattern": TIME})),
        (
            "CreateKey",
            "expires_in_seconds",
            json!({"maximum": max_in, "description": format!(
                "Expire the key this many seconds after creation: at least 1, at most {max_in} \
                 ({:.0} days, this service's longest key lifetime). Absent or `null`: {}.",
                day(max_in),
                match limits.key_lifetime(None).ok().flatten() {
                    Some(d) => format!("{} seconds ({:.0} days), this service's default", d.as_secs(), day(d.as_secs())),
                    None => "never".to_owned(),
                }
            )}),
        ),
        (
            "RotateKey",
            "grace_seconds",
            json!({"maximum": limits.max_rotation_grace.as_secs()}),
        ),
        (
            "CreateKey",
            "credits",
            json!({"minimum": 0, "maximum": MAX_CREDITS}),
        ),
        (
            "UpdateCredits",
            "set",
            json!({"minimum": 0, "maximum": MAX_CREDITS}),
        ),
        (
            "UpdateCredits",
            "add",
            json!({"minimum": 0, "maximum": MAX_CREDITS}),
        ),
        ("Refill", "amount", json!({"maximum": MAX_CREDITS})),
        ("Refill", "interval", json!({"pattern": REFILL_INTERVAL})),
    ] {
        if let Some(target) = doc.pointer_mut(&format!("{schemas}/{schema}/properties/{field}")) {
            merge(target, change);
        }
    }
    if let Some(max) = limits.max_key_lifetime
        && let Some(target) = doc.pointer_mut(&format!("{schemas}/UpdateKey/properties/expires_at"))
    {
        let note = format!(
            " This service's keys live at most {} seconds ({:.0} days) from their creation: \
             a later expiry, or `null`, is refused with 422.",
            max.as_secs(),
            day(max.as_secs())
        );
        if let Some(serde_json::Value::String(d)) = target.get_mut("description") {
            d.push_str(&note);
        }
    }
    for schema in ["CreateKey", "UpdateKey"] {
        let props = format!("{schemas}/{schema}/properties");
        if let Some(items) = doc.pointer_mut(&format!("{props}/scopes/items")) {
            merge(items, json!({"pattern": SCOPE}));
        }
        if let Some(nets) = doc.pointer_mut(&format!("{props}/allowed_ips")) {
            merge(nets, json!({"maxItems": limits.max_allowed_ips}));
            if let Some(items) = nets.get_mut("items") {
                merge(items, json!({"pattern": NETWORK}));
            }
        }
    }
    // Unknown body fields are refused (a misspelt field must not go
    // unnoticed).
    for schema in [
        "CreateKey",
        "UpdateKey",
        "RotateKey",
        "UpdateCredits",
        "Refill",
    ] {
        if let Some(target) = doc.pointer_mut(&format!("{schemas}/{schema}")) {
            merge(target, json!({"additionalProperties": false}));
        }
    }
    // `POST /keys` reads an absent or `null` allowlist and metadata alike.
    for (field, kind) in [("allowed_ips", "array"), ("metadata", "object")] {
        if let Some(target) = doc.pointer_mut(&format!("{schemas}/CreateKey/properties/{field}")) {
            merge(target, json!({"type": [kind, "null"]}));
        }
    }
    // A change to credits changes something, and one balance at most.
    if let Some(target) = doc.pointer_mut(&format!("{schemas}/UpdateCredits")) {
        merge(
            target,
            json!({"minProperties": 1, "not": {"required": ["set", "add"]}}),
        );
    }
    // An empty `PATCH` changes nothing, and answers the key as it is.
    if let Some(body) = doc.pointer_mut("/paths/~1keys~1{id}/patch/requestBody") {
        merge(body, json!({"required": false}));
    }
    for (path, name, change) in [
        (
            "/paths/~1keys/get/parameters",
            "owner",
            json!({"pattern": OWNER}),
        ),
        (
            "/paths/~1keys/get/parameters",
            "cursor",
            json!({"pattern": CURSOR}),
        ),
        (
            "/paths/~1keys~1{id}~1usage/get/parameters",
            "since",
            json!({"pattern": TIME}),
        ),
    ] {
        let Some(serde_json::Value::Array(params)) = doc.pointer_mut(path) else {
            continue;
        };
        for param in params {
            if param.get("name").and_then(|n| n.as_str()) == Some(name)
                && let Some(schema) = param.get_mut("schema")
            {
                merge(schema, change.clone());
            }
        }
    }
}

/// Sets each member of `change` in `target`.
fn merge(target: &mut serde_json::Value, change: serde_json::Value) {
    if let (Some(target), serde_json::Value::Object(change)) = (target.as_object_mut(), change) {
        target.extend(change);
    }
}
