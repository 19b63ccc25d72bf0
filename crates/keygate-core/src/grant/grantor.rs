//! A delegating key acting on keys.

use super::{GrantDimension, GrantViolation, KeySettings, may_grant};
use crate::{KeyId, KeyRecord, ManageError, Owner, Quotas};

/// A delegating key acting on keys: the key's record (as the store has it
/// now) and the service's default quota, which stands in for a missing
/// quota on both sides.
#[derive(Clone, Debug)]
pub struct Grantor {
    pub(crate) id: KeyId,
    pub(crate) family: KeyId,
    pub(crate) owner: Owner,
    pub(crate) settings: KeySettings,
    pub(crate) default_rate_limit: Option<Quotas>,
}

impl Grantor {
    /// The key of `record` as a grantor, in a service whose default quota is
    /// `default_rate_limit`.
    pub fn new(record: &KeyRecord, default_rate_limit: Option<&Quotas>) -> Self {
        Self {
            id: record.id,
            family: record.family,
            owner: record.owner.clone(),
            settings: KeySettings::of(record, default_rate_limit),
            default_rate_limit: default_rate_limit.cloned(),
        }
    }

    /// The grantor's key id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// What the grantor holds.
    pub fn settings(&self) -> &KeySettings {
        &self.settings
    }

    /// Whether the grantor is `admin` (and so may grant anything).
    pub fn is_admin(&self) -> bool {
        self.settings.is_admin()
    }

    /// The whole delegation rule for a key of `owner` with the settings
    /// `requested`: [`may_grant`], and (for a delegating key) its own
    /// owner's keys only. This is what [`KeyManager::create_as`],
    /// [`update_as`](crate::KeyManager::update_as) and
    /// [`rotate_as`](crate::KeyManager::rotate_as) apply.
    ///
    /// [`KeyManager::create_as`]: crate::KeyManager::create_as
    ///
    /// # Errors
    ///
    /// Every [`GrantViolation`] found, at least one.
    pub fn may_grant(
        &self,
        owner: &Owner,
        requested: &KeySettings,
    ) -> Result<(), Vec<GrantViolation>> {
        let mut violations = may_grant(&self.settings, requested)
            .err()
            .unwrap_or_default();
        if !self.is_admin() && *owner != self.owner {
            violations.push(GrantViolation::new(
                GrantDimension::Owner,
                format!("this API key manages the keys of {} only", self.owner),
            ));
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// [`may_grant`](Self::may_grant) for the key `record` (as it is, or as
    /// a change or rotation would store it): whether this grantor may
    /// manage it at all.
    ///
    /// # Errors
    ///
    /// Every [`GrantViolation`] found, at least one.
    pub fn may_manage(&self, record: &KeyRecord) -> Result<(), Vec<GrantViolation>> {
        self.may_grant(
            &record.owner,
            &KeySettings::of(record, self.default_rate_limit.as_ref()),
        )
    }

    /// [`may_grant`](Self::may_grant), as the manager's error.
    pub(crate) fn check(&self, owner: &Owner, requested: &KeySettings) -> Result<(), ManageError> {
        self.may_grant(owner, requested)
            .map_err(ManageError::NotGrantable)
    }

    /// [`may_manage`](Self::may_manage), as the manager's error.
    pub(crate) fn check_record(&self, record: &KeyRecord) -> Result<(), ManageError> {
        self.may_manage(record).map_err(ManageError::NotGrantable)
    }
}
