//! The caps every key obeys, whoever manages it.

use std::time::Duration;

use ipnet::IpNet;

use crate::{ManageError, Metadata};

/// Caps that apply to every key, whoever manages it (`admin`, a delegating
/// key, the CLI or the library): they bound what one owner can store and
/// how long a rotated key lingers.
///
/// ```
/// use keygate_core::Limits;
/// use std::time::Duration;
///
/// let limits = Limits {
///     max_keys_per_owner: 20,
///     ..Limits::default()
/// };
/// assert_eq!(limits.max_rotation_grace, Duration::from_secs(30 * 86_400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most keys one owner may hold that are neither revoked nor expired
    /// (default 100). Creating one more fails; a rotation, which replaces
    /// a key, is not counted.
    pub max_keys_per_owner: u64,
    /// Largest metadata, as compact JSON, in bytes (default 4 KiB).
    pub max_metadata_bytes: usize,
    /// Most entries of an IP allowlist (default 64).
    pub max_allowed_ips: usize,
    /// Longest grace period of a rotation (default 30 days).
    pub max_rotation_grace: Duration,
    /// The lifetime of a key created without an expiry (default none: such
    /// a key never expires). Also given to the successor of a key without an
    /// expiry when it is rotated.
    pub default_key_lifetime: Option<Duration>,
    /// The longest lifetime of a key, from its creation (default none).
    /// Creating a key that expires later is refused
    /// ([`Cap::KeyLifetime`]); so is changing a key's expiry to a time
    /// later than its creation plus this, or to none. A key created without
    /// an expiry gets [`default_key_lifetime`](Self::default_key_lifetime),
    /// or this when there is no default. A rotation's successor keeps its
    /// key's expiry, brought forward to this long after the rotation if
    /// it is later (or none).
    pub max_key_lifetime: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys_per_owner: 100,
            max_metadata_bytes: 4 * 1024,
            max_allowed_ips: 64,
            max_rotation_grace: Duration::from_secs(30 * 86_400),
            default_key_lifetime: None,
            max_key_lifetime: None,
        }
    }
}

/// Which of the [`Limits`] a request went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cap {
    /// [`Limits::max_keys_per_owner`].
    KeysPerOwner,
    /// [`Limits::max_metadata_bytes`].
    MetadataBytes,
    /// [`Limits::max_allowed_ips`].
    AllowedIps,
    /// [`Limits::max_rotation_grace`], in seconds.
    RotationGrace,
    /// [`Limits::max_key_lifetime`], in seconds.
    KeyLifetime,
}

impl Cap {
    /// The field of a request this cap is about: `owner`, `metadata`,
    /// `allowed_ips`, `grace_seconds` or `expires_in_seconds` (the key
    /// lifetime; a change names `expires_at` instead).
    pub fn field(self) -> &'static str {
        match self {
            Self::KeysPerOwner => "owner",
            Self::MetadataBytes => "metadata",
            Self::AllowedIps => "allowed_ips",
            Self::RotationGrace => "grace_seconds",
            Self::KeyLifetime => "expires_in_seconds",
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeysPerOwner => "keys per owner (neither revoked nor expired)",
            Self::MetadataBytes => "bytes of metadata (as compact JSON)",
            Self::AllowedIps => "IP allowlist entries",
            Self::RotationGrace => "seconds of rotation grace",
            Self::KeyLifetime => "seconds of key lifetime (from the key's creation)",
        })
    }
}

impl Limits {
    /// The lifetime a new key gets when it asks for `requested` (`None`:
    /// no expiry asked for): `requested` itself, the default lifetime, or
    /// the maximum when there is no default (a default longer than the
    /// maximum is cut to it).
    ///
    /// # Errors
    ///
    /// [`ManageError::OverCap`] ([`Cap::KeyLifetime`]) if `requested` is
    /// longer than [`max_key_lifetime`](Self::max_key_lifetime).
    pub fn key_lifetime(
        &self,
        requested: Option<Duration>,
    ) -> Result<Option<Duration>, ManageError> {
        match (requested, self.max_key_lifetime) {
            (Some(asked), Some(max)) if asked > max => Err(self.over_lifetime()),
            (Some(asked), _) => Ok(Some(asked)),
            (None, max) => Ok(match (self.default_key_lifetime, max) {
                (Some(default), Some(max)) => Some(default.min(max)),
                (default, max) => default.or(max),
            }),
        }
    }

    /// The error for a key that would live longer than
    /// [`max_key_lifetime`](Self::max_key_lifetime).
    pub(crate) fn over_lifetime(&self) -> ManageError {
        ManageError::OverCap {
            cap: Cap::KeyLifetime,
            max: self.max_key_lifetime.map_or(u64::MAX, |d| d.as_secs()),
        }
    }

    /// Checks the metadata and allowlist of a key being created or changed.
    pub(crate) fn check_settings(
        &self,
        metadata: Option<&Metadata>,
        allowed_ips: Option<&[IpNet]>,
    ) -> Result<(), ManageError> {
        if let Some(nets) = allowed_ips
            && nets.len() > self.max_allowed_ips
        {
            return Err(over(Cap::AllowedIps, self.max_allowed_ips));
        }
        if let Some(metadata) = metadata {
            // Counting bytes while serializing would be cheaper for huge
            // values, but bodies are already bounded by the HTTP body limit.
            let bytes = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
            if bytes > self.max_metadata_bytes {
                return Err(over(Cap::MetadataBytes, self.max_metadata_bytes));
            }
        }
        Ok(())
    }
}

fn over(cap: Cap, max: usize) -> ManageError {
    ManageError::OverCap {
        cap,
        max: u64::try_from(max).unwrap_or(u64::MAX),
    }
}
