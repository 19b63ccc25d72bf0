//! A persisted audit trail: authentication outcomes and management actions,
//! batched into a store off the request path.

mod log;

use std::{future::Future, net::IpAddr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use self::log::{AuditConfig, AuditLog};
use crate::{KeyId, StoreError, store::BoxFuture};

/// The `tracing` target of audit events: authentication attempts (logged by
/// the `keygate` layer), management actions, and the [`AuditLog`]'s own
/// trouble (dropped or lost events). One target, so a subscriber can route
/// the whole audit stream with one directive.
pub const AUDIT_TARGET: &str = "keygate::audit";

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A request presented a key (or none).
    Authenticate,
    /// A key was issued.
    Create,
    /// A key's settings changed.
    Update,
    /// A key was revoked.
    Revoke,
    /// A key was rotated (the event names the old key; `detail` the new one).
    Rotate,
    /// A reminder about a key nearing expiry was delivered (`detail`: why
    /// and how far ahead, `expiring 3d`).
    Remind,
    /// A key's credit balance or refill was set or topped up (`detail`:
    /// the change, `set 20`, `add 100`, `refill 20/day`).
    Credits,
}

impl AuditAction {
    /// The action as stored: `authenticate`, `create`, `update`, `revoke`,
    /// `rotate`, `remind`, `credits`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticate => "authenticate",
            Self::Create => "create",
            Self::Update => "update",
            Self::Revoke => "revoke",
            Self::Rotate => "rotate",
            Self::Remind => "remind",
            Self::Credits => "credits",
        }
    }
}

impl std::str::FromStr for AuditAction {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "authenticate" => Self::Authenticate,
            "create" => Self::Create,
            "update" => Self::Update,
            "revoke" => Self::Revoke,
            "rotate" => Self::Rotate,
            "remind" => Self::Remind,
            "credits" => Self::Credits,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown audit action {other:?}"
                )));
            }
        })
    }
}

/// One audit record. Never holds a key, only its public id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub action: AuditAction,
    /// `ok`, or the rejection code (`invalid_key`, `rate_limited`, …).
    pub outcome: String,
    /// Finer detail for operators (`checksum`, `digest_mismatch`, the new
    /// key's id on a rotation…).
    pub detail: Option<String>,
    /// The key concerned, if known.
    pub key_id: Option<KeyId>,
    /// Who made a management change (`key:<id>`, `user:<id>`, `cli`…).
    pub actor: Option<String>,
    /// The request's method, for authentication events.
    pub method: Option<String>,
    /// The request's path, for authentication events.
    pub path: Option<String>,
    /// The client's address, when known.
    pub peer: Option<IpAddr>,
}

impl AuditEvent {
    /// A management event.
    pub fn manage(at: OffsetDateTime, action: AuditAction, key_id: KeyId) -> Self {
        Self {
            at,
            action,
            outcome: "ok".to_owned(),
            detail: None,
            key_id: Some(key_id),
            actor: None,
            method: None,
            path: None,
            peer: None,
        }
    }
}

/// Which audit events to read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events about this key.
    pub key_id: Option<KeyId>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// At most this many, newest first (0 means 100).
    pub limit: usize,
}

/// Where audit events are kept.
pub trait AuditStore: Send + Sync + 'static {
    /// Appends a batch of events.
    fn append_audit(
        &self,
        events: &[AuditEvent],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Events matching `query`, newest first.
    fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;

    /// Deletes every event from before `before` (events at `before` stay),
    /// and returns how many went: the retention policy is the caller's,
    /// e.g. `keygate audit prune --older-than 90d` or
    /// [`AuditLog::prune`] on a timer.
    fn prune_audit(
        &self,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The object-safe form of [`AuditStore`].
pub trait DynAuditStore: Send + Sync + 'static {
    /// See [`AuditStore::append_audit`].
    fn append_audit<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`AuditStore::query_audit`].
    fn query_audit<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, StoreError>>;
    /// See [`AuditStore::prune_audit`].
    fn prune_audit(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>>;
}

impl<S: AuditStore> DynAuditStore for S {
    fn append_audit<'a>(
        &'a self,
        events: &'a [AuditEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(AuditStore::append_audit(self, events))
    }
    fn query_audit<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, StoreError>> {
        Box::pin(AuditStore::query_audit(self, query))
    }
    fn prune_audit(&self, before: OffsetDateTime) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(AuditStore::prune_audit(self, before))
    }
}
