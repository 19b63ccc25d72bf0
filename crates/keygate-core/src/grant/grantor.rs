//! A delegating key, or a person, acting on keys.

use super::{GrantDimension, GrantViolation, KeySettings, may_grant};
use crate::{KeyId, KeyRecord, ManageError, Owner, Quotas, Scope};

/// A delegating key, or a signed-in person, acting on keys: what it holds
/// (for a key, its record as the store has it now; for a person, the
/// ceiling the service allows people) and the service's default quota,
/// which stands in for a missing quota on both sides.
#[derive(Clone, Debug)]
pub struct Grantor {
    /// The grantor's key: its id and rotation family. `None` for a person.
    pub(crate) key: Option<GrantorKey>,
    pub(crate) owner: Owner,
    pub(crate) settings: KeySettings,
    pub(crate) default_rate_limit: Option<Quotas>,
}

/// The key a grantor is, when it is one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrantorKey {
    pub(crate) id: KeyId,
    pub(crate) family: KeyId,
    pub(crate) credit_account: Option<KeyId>,
}

impl Grantor {
    /// The key of `record` as a grantor, in a service whose default quota is
    /// `default_rate_limit`.
    pub fn new(record: &KeyRecord, default_rate_limit: Option<&Quotas>) -> Self {
        Self {
            key: Some(GrantorKey {
                id: record.id,
                family: record.family,
                credit_account: record.credit_account,
            }),
            owner: record.owner.clone(),
            settings: KeySettings::of(record, default_rate_limit),
            default_rate_limit: default_rate_limit.cloned(),
        }
    }

    /// A signed-in person, `owner`, as a grantor: it may make, change and
    /// rotate keys of `owner` only, each no more powerful than `ceiling`
    /// (what the service lets people hand out), under the same rule as a
    /// delegating key ([`may_grant`]). `default_rate_limit` stands in for a
    /// missing quota, on the ceiling and on the keys, as for a key.
    ///
    /// `admin` is taken out of `ceiling`: `admin` grants everything to
    /// everyone, which is an operator's power, never a person's.
    ///
    /// Unlike a delegating key's, a person's keys do not die with anything
    /// (a person is not revoked; revoke their keys), and a person may
    /// rotate every key of their own that fits under the ceiling.
    ///
    /// ```
    /// use keygate_core::{Environment, Grantor, KeySettings, Owner, Scope, Scopes};
    ///
    /// let ceiling = KeySettings {
    ///     scopes: Scopes::from([Scope::READ, Scope::ADMIN]),
    ///     environment: Environment::Live,
    ///     expires_at: None,
    ///     rate_limit: None,
    ///     allowed_ips: Vec::new(),
    ///     metadata: Default::default(),
    /// };
    /// let alice = Grantor::person(Owner::user("alice"), ceiling.clone(), None);
    /// assert!(!alice.is_admin());
    /// let read = KeySettings { scopes: Scopes::from([Scope::READ]), ..ceiling.clone() };
    /// assert!(alice.may_grant(&Owner::user("alice"), &read).is_ok());
    /// assert!(alice.may_grant(&Owner::user("bob"), &read).is_err());
    /// assert!(alice.may_grant(&Owner::user("alice"), &ceiling).is_err());
    /// ```
    pub fn person(
        owner: Owner,
        mut ceiling: KeySettings,
        default_rate_limit: Option<&Quotas>,
    ) -> Self {
        ceiling.scopes.remove(&Scope::ADMIN);
        if ceiling.rate_limit.is_none() {
            ceiling.rate_limit = default_rate_limit.cloned();
        }
        Self {
            key: None,
            owner,
            settings: ceiling,
            default_rate_limit: default_rate_limit.cloned(),
        }
    }

    /// The grantor's key id; `None` for a [person](Self::person).
    pub fn id(&self) -> Option<KeyId> {
        self.key.map(|k| k.id)
    }

    /// Whom the grantor manages keys for.
    pub fn owner(&self) -> &Owner {
        &self.owner
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
