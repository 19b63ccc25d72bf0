//! The JWTs `POST /login` hands out to people (HS256).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::{caller::Person, error::ApiError};

/// Who issues and who accepts the JWTs.
pub(crate) const ISSUER: &str = "keygate-dual-auth-example";

/// How long a JWT is valid. Short: a person signs in again, a machine uses
/// a key.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) iss: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

/// Signs and checks the JWTs `POST /login` hands out (HS256).
pub(crate) struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub(crate) fn new(secret: &[u8]) -> Self {
        // One algorithm only: a token cannot choose how it is checked.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Issuer and checker share a clock here.
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub(crate) fn issue(&self, user_id: &str) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + TOKEN_TTL.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            ApiError::Internal
        })
    }

    pub(crate) fn verify(&self, token: &str) -> Result<Person, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(Person {
                user_id: data.claims.sub,
            }),
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(ApiError::ExpiredToken),
            Err(_) => Err(ApiError::InvalidToken),
        }
    }
}
