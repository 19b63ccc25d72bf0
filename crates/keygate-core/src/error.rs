//! Errors at the store boundary.

use crate::KeyId;

/// A boxed error from a store's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong talking to a [`KeyStore`](crate::KeyStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No key with this id.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// A key with this id already exists.
    #[error("a key with id {0} already exists")]
    Duplicate(KeyId),
    /// The store could not be reached or did not answer in time. Requests
    /// whose key is not cached get 503, never 401.
    #[error("the key store is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The store answered with data keygate cannot read.
    #[error("the key store returned invalid data: {0}")]
    Corrupt(String),
    /// The store refused to write a value it cannot keep, e.g. a NUL
    /// character in metadata, which PostgreSQL's `jsonb` rejects. Retrying
    /// the same write fails the same way; the management API answers 422.
    #[error("the key store refused a value: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Wraps a driver error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Self::Unavailable(err.into())
    }
}
