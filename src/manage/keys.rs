//! The routes of `/keys`: issue, list, read, change, revoke and rotate
//! keys, and read their usage.
//!
//! Each handler extracts the [`Caller`] first, so a key that may not manage
//! keys learns nothing more; bodies and queries are checked before the key
//! they concern is looked up, so a bad request does not tell whether another
//! owner's key exists.

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{RawQuery, rejection::BytesRejection},
};
use http::StatusCode;
use keygate_core::{Cursor, KeyFilter, ManageError, NewKey, Page, Scopes, StatusFilter};

use super::{
    caller::Caller,
    id_param::KeyIdParam,
    input::{
        self, CreateKeyRequest, FieldError, ListQuery, RotateKeyRequest, UpdateKeyRequest,
        UsageQuery,
    },
    openapi,
    schema::KeySchema,
    view::{BucketView, CreatedKeyView, KeyListView, Problem, ProblemBody, UsageView, json},
};

/// What a handler answers: a JSON response, or problem+json.
pub(super) type Answer = Result<axum::response::Response, Problem>;

/// What a 422 says about a time outside keygate's bounds
/// ([`keygate_core::checked_utc`]).
const TIME_RANGE: &str = "must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (in UTC)";

/// The body read by `parse`, or a problem+json answer when it cannot be
/// read or is invalid.
pub(super) fn read<T>(
    body: Result<Bytes, BytesRejection>,
    parse: impl FnOnce(&[u8]) -> Result<T, Vec<FieldError>>,
) -> Result<T, Problem> {
    let body = body.map_err(|rejection| {
        Problem::unreadable_body(rejection.status(), &rejection.body_text())
    })?;
    parse(&body).map_err(Problem::invalid)
}

/// Issue a key.
///
/// The answer holds the key itself, which is shown this once. A
/// `keys:manage` key can only create keys for its own owner, with scopes
/// it holds itself. With `credits` or `refill` the key is metered; the keys
/// a metered `keys:manage` key makes spend its credits and may not ask for
/// their own (403 `not_grantable` on `credits`).
#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The key was issued", body = CreatedKeyView<'static>),
        (status = 403, description = "`insufficient_scope`, `owner_not_allowed`, `environment_not_allowed` or `not_grantable` (`credits`: the caller is a metered key, whose keys spend its credits)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not sent as `application/json`", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn create_key(caller: Caller, raw: Result<Bytes, BytesRejection>) -> Answer {
    let req = read(raw, |body| input::create(body, caller.owner()))?;
    caller.sees_owner(&req.owner, "owner")?;
    caller.may_grant(&req.scopes, "scopes")?;
    let environment = req.environment.unwrap_or(caller.environment());
    caller.may_use_environment(environment, Some("environment"))?;
    let expires_in = req.expires_in_seconds;
    // The bound the document states: the service's longest lifetime, and
    // never a time past year 9999.
    let max_in = openapi::max_expires_in_seconds(caller.state().limits());
    if let Some(secs) = expires_in
        && secs > max_in
    {
        return Err(Problem::invalid_field(
            "expires_in_seconds",
            format!(
                "must be at most {max_in} seconds: the longest lifetime this service gives a key"
            ),
        ));
    }
    let mut new = NewKey::new(req.owner, req.name)
        .scopes(req.scopes.into_iter().collect::<Scopes>())
        .environment(environment)
        .allowed_ips(req.allowed_ips)
        .metadata(req.metadata);
    if let Some(secs) = expires_in {
        new = new.expires_in(Duration::from_secs(secs));
    }
    if let Some(quota) = req.rate_limit {
        new = new.rate_limit(quota);
    }
    if let Some(credits) = req.credits {
        new = new.credits(credits);
    }
    if let Some(refill) = req.refill {
        new = new.refill(refill);
    }
    // A refusal about credits names the field the request used for them.
    let credits_field = if req.credits.is_none() && req.refill.is_some() {
        "refill"
    } else {
        "credits"
    };
    let manager = caller.manager();
    let created = match caller.grantor().await? {
        Some(grantor) => manager.create_as(&grantor, new).await,
        None => manager.create(new).await,
    };
    match created {
        Ok(created) => Ok(caller.created(&created)),
        Err(ManageError::ExpiryOutOfRange) => Err(Problem::invalid_field(
            "expires_in_seconds",
            "is too far in the future",
        )),
        Err(e) => Err(caller.refused_naming(e, "expires_in_seconds", credits_field)),
    }
}

/// List keys, newest first.
///
/// An `admin` key lists every owner's keys unless `owner` names one; a
/// `keys:manage` key lists its own owner's only (naming another owner is a
/// 403). `status` and `environment` narrow the list; without `status`,
/// revoked and expired keys are included.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of keys", body = KeyListView),
        (status = 403, description = "`insufficient_scope`, or `owner_not_allowed` for another owner's keys", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_keys(caller: Caller, RawQuery(query): RawQuery) -> Answer {
    let query = input::list(query.as_deref()).map_err(Problem::invalid)?;
    // A delegated caller's view is its own owner's keys, whatever the
    // filters say: the owner is decided here, before the store is asked.
    let owner = match query.owner {
        Some(owner) => {
            caller.sees_owner(&owner, "owner")?;
            Some(owner)
        }
        None if caller.is_admin() => None,
        None => Some(caller.owner().clone()),
    };
    let status = query.status.map(|status| match status {
        // The window in which this service's layer warns with `Sunset`.
        StatusFilter::Expiring { .. } => StatusFilter::Expiring {
            within: caller.state().expiry_warning(),
        },
        other => other,
    });
    let filter = KeyFilter {
        owner,
        environment: query.environment,
        status,
    };
    // One more than asked for tells whether there is a next page.
    let page = Page {
        limit: query.limit + 1,
        cursor: query.cursor,
    };
    let mut records = caller
        .manager()
        .list_keys(&filter, page)
        .await
        .map_err(|e| caller.failed(e))?;
    let next_cursor = if records.len() > query.limit {
        records.truncate(query.limit);
        records.last().map(|r| Cursor::after(r).to_string())
    } else {
        None
    };
    let keys = records.iter().map(|r| caller.view(r)).collect();
    Ok(json(StatusCode::OK, &KeyListView { keys, next_cursor }))
}

/// Get one key.
///
/// A revoked key is gone: 404 `revoked`, with its record as `key`.
#[utoipa::path(
    get,
    path = "/keys/{id}",
    tag = "keys",
    params(KeyIdParam),
    responses(
        (status = 200, description = "The key", body = KeySchema),
        (status = 404, description = "`not_found`: no such key, or another owner's; `revoked`: the key was revoked, and `key` holds its record", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_key(caller: Caller, KeyIdParam(id): KeyIdParam) -> Answer {
    let record = caller.load_live(&id).await?;
    Ok(json(StatusCode::OK, &caller.view(&record)))
}

/// Change a key's settings.
///
/// Only the fields present change; `rate_limit: null` goes back to the
/// service's default quota and `expires_at: null` removes the expiry. The
/// owner and environment never change. Effective at once.
#[utoipa::path(
    patch,
    path = "/keys/{id}",
    tag = "keys",
    params(KeyIdParam),
    request_body = UpdateKeyRequest,
    responses(
        (status = 200, description = "The updated key", body = KeySchema),
        (status = 403, description = "`insufficient_scope` or `environment_not_allowed`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not sent as `application/json`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such key, or another owner's; `revoked`: the key was revoked, and `key` holds its record", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn update_key(
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let req = read(raw, input::update)?;
    let record = caller.load_live(&id).await?;
    caller.may_modify(&record)?;
    if let Some(scopes) = &req.scopes {
        caller.may_grant(scopes, "scopes")?;
    }
    let manager = caller.manager();
    let updated = match caller.grantor().await? {
        Some(grantor) => manager.update_as(&grantor, record.id, req.into()).await,
        None => manager.update(record.id, req.into()).await,
    };
    match updated {
        Ok(updated) => Ok(json(StatusCode::OK, &caller.view(&updated))),
        Err(ManageError::ExpiryOutOfRange) => Err(Problem::invalid_field("expires_at", TIME_RANGE)),
        Err(e) => Err(caller.refused(e, "expires_at")),
    }
}

/// Revoke a key, at once.
///
/// Revoking a revoked key changes nothing and answers the same record.
/// Afterwards the key is gone from the other routes on it (404 `revoked`);
/// listings with `status=revoked` still show it.
#[utoipa::path(
    delete,
    path = "/keys/{id}",
    tag = "keys",
    params(KeyIdParam),
    responses(
        (status = 200, description = "The revoked key", body = KeySchema),
    )
)]
pub(super) async fn revoke_key(caller: Caller, KeyIdParam(id): KeyIdParam) -> Answer {
    let record = caller.load(&id).await?;
    match caller.manager().revoke(record.id).await {
        Ok(revoked) => Ok(json(StatusCode::OK, &caller.view(&revoked))),
        Err(e) => Err(caller.failed(e)),
    }
}

/// Replace a key with a new one.
///
/// The new key has the same owner, name, scopes, environment, quota, IP
/// allowlist and metadata, and continues the old one's usage and rate
/// limit. The old key keeps working for `grace_seconds` (its responses then
/// carry `Sunset` and `Deprecation` headers), so clients can switch without
/// a failed request.
#[utoipa::path(
    post,
    path = "/keys/{id}/rotate",
    tag = "keys",
    params(KeyIdParam),
    request_body = RotateKeyRequest,
    responses(
        (status = 201, description = "The new key", body = CreatedKeyView<'static>),
        (status = 403, description = "`insufficient_scope` or `environment_not_allowed`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body not sent as `application/json`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`not_rotatable`: the key is revoked, expired or already rotated", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn rotate_key(
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let req = read(raw, input::rotate)?;
    let record = caller.load(&id).await?;
    caller.may_modify(&record)?;
    let grace = Duration::from_secs(req.grace_seconds);
    let manager = caller.manager();
    let rotated = match caller.grantor().await? {
        Some(grantor) => manager.rotate_as(&grantor, record.id, grace).await,
        None => manager.rotate(record.id, grace).await,
    };
    match rotated {
        Ok(created) => Ok(caller.created(&created)),
        Err(ManageError::ExpiryOutOfRange) => {
            Err(Problem::invalid_field("grace_seconds", "is too long"))
        }
        Err(e) => Err(caller.failed(e)),
    }
}

/// Hourly request counts of a key's rotation family.
#[utoipa::path(
    get,
    path = "/keys/{id}/usage",
    tag = "keys",
    params(KeyIdParam, UsageQuery),
    responses(
        (status = 200, description = "Usage per hour", body = UsageView),
        (status = 404, description = "`not_found`: no such key, or another owner's; `revoked`: the key was revoked, and `key` holds its record", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(super) async fn key_usage(
    caller: Caller,
    KeyIdParam(id): KeyIdParam,
    RawQuery(query): RawQuery,
) -> Answer {
    let query = input::usage(query.as_deref()).map_err(Problem::invalid)?;
    let record = caller.load_live(&id).await?;
    let since = query
        .since
        .unwrap_or_else(|| caller.state().now() - time::Duration::DAY);
    let buckets = match caller.manager().usage(record.family, since).await {
        Ok(buckets) => buckets,
        Err(ManageError::TimeOutOfRange(field)) => {
            return Err(Problem::invalid_field(field, TIME_RANGE));
        }
        Err(e) => return Err(caller.failed(e)),
    };
    Ok(json(
        StatusCode::OK,
        &UsageView {
            id: record.id.to_string(),
            family: record.family.to_string(),
            since,
            buckets: buckets.into_iter().map(BucketView::from).collect(),
        },
    ))
}
