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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys_per_owner: 100,
            max_metadata_bytes: 4 * 1024,
            max_allowed_ips: 64,
            max_rotation_grace: Duration::from_secs(30 * 86_400),
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
}

impl Cap {
    /// The field of a request this cap is about: `owner`, `metadata`,
    /// `allowed_ips` or `grace_seconds`.
    pub fn field(self) -> &'static str {
        match self {
            Self::KeysPerOwner => "owner",
            Self::MetadataBytes => "metadata",
            Self::AllowedIps => "allowed_ips",
            Self::RotationGrace => "grace_seconds",
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
        })
    }
}

impl Limits {
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
