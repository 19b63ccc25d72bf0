//! The OpenAPI 3.1 document of the management API, and its route.

use axum::{
    extract::{NestedPath, rejection::NestedPathRejection},
    response::Response,
};
use http::StatusCode;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Components, Content, RefOr, ResponseBuilder, Server,
        path::ParameterIn,
        security::{
            ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement,
            SecurityScheme,
        },
    },
};

use super::{
    caller::Caller,
    input::FieldError,
    keys,
    schema::{EnvironmentName, KeyStatus},
    view::{BucketView, json},
};
use crate::Keygate;

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
    let mut doc = caller.state().0.doc.clone();
    if let Ok(path) = nested {
        doc.servers = Some(vec![Server::new(path.as_str())]);
    }
    json(StatusCode::OK, &doc)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate key management",
        description = "Create, list, update, rotate and revoke API keys. Every operation needs an \
            API key with the `admin` scope (all keys) or `keys:manage` (keys of its own owner).",
    ),
    paths(
        keys::create_key, keys::list_keys, keys::get_key, keys::update_key, keys::revoke_key,
        keys::rotate_key, keys::key_usage, openapi_json,
    ),
    components(schemas(KeyStatus, EnvironmentName, FieldError, BucketView)),
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
/// bearer token) its layer reads keys from.
pub(super) fn document(keys: &Keygate) -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let sources = &keys.shared.settings.sources;
    let scheme = match sources.header_names().first() {
        Some(header) => {
            SecurityScheme::ApiKey(ApiKeyScheme::Header(ApiKeyValue::new(header.as_str())))
        }
        None if sources.bearer_enabled() => {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build())
        }
        None => SecurityScheme::ApiKey(ApiKeyScheme::Query(ApiKeyValue::new(
            sources.query_name().unwrap_or("api_key"),
        ))),
    };
    doc.components
        .get_or_insert_with(Components::new)
        .add_security_scheme("api_key", scheme);
    doc.security = Some(vec![SecurityRequirement::new(
        "api_key",
        Vec::<String>::new(),
    )]);
    doc
}
