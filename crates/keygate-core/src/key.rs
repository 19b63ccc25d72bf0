//! The key format: `{prefix}_{env}_{id}{secret}{checksum}`.
//!
//! ```text
//! mbk_live_Ab3Cd5Ef7G hJ2kL4mN6pQ8rS0tU2vW4xY6zA8bC0dE 1f9XkQ
//! └┬┘ └┬─┘ └───┬────┘ └──────────────┬───────────────┘ └─┬──┘
//! prefix env  public id (10)       secret (32)         CRC32 (6)
//! ```
//!
//! (shown with spaces for reading; a real key has none)
//!
//! * **prefix** belongs to the application (`mbk`, `acme`, …) so leaked keys
//!   are recognisable by secret scanners;
//! * **env** is `live` or `test`;
//! * **id** is 10 base62 characters from the OS CSPRNG. It is *not* secret:
//!   stores index by it and listings, logs and audit events show it;
//! * **secret** is 32 base62 characters from the OS CSPRNG (≈ 190 bits);
//! * **checksum** is the CRC32 of everything before it, as 6 base62 digits,
//!   so typos and guessed keys are rejected without a store lookup.
//!
//! [`KeyFormat::parse`] checks all of that without allocating.

use std::{fmt, str::FromStr};

use rand::{
    RngExt, SeedableRng,
    distr::Alphanumeric,
    rngs::{StdRng, SysRng},
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Number of base62 characters in a key's public id.
pub const ID_LEN: usize = 10;
/// Number of base62 characters of secret randomness in a key.
pub const SECRET_LEN: usize = 32;
/// Number of base62 characters in a key's checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Longest prefix [`KeyFormat::new`] accepts.
pub const MAX_PREFIX_LEN: usize = 16;

const ENV_LEN: usize = 4;
const BODY_LEN: usize = ID_LEN + SECRET_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Which environment a key belongs to: `live` keys for production traffic,
/// `test` keys for sandboxes and CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production keys (`…_live_…`).
    Live,
    /// Test keys (`…_test_…`).
    Test,
}

impl Environment {
    /// The environment as it appears in a key: `"live"` or `"test"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        match b {
            b"live" => Some(Self::Live),
            b"test" => Some(Self::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = ParseEnvironmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(s.as_bytes()).ok_or(ParseEnvironmentError(()))
    }
}

/// The error returned when a string is neither `live` nor `test`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("environment must be `live` or `test`")]
pub struct ParseEnvironmentError(());

/// The public identifier of a key: 10 base62 characters.
///
/// It is part of the key but carries none of its secret, so it is safe to log,
/// show in listings and use as a database key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Every constructor checks the bytes are base62, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    fn from_base62(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; ID_LEN] = bytes.try_into().ok()?;
        arr.iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(Self(arr))
    }

    fn random(rng: &mut StdRng) -> Self {
        let mut id = [0u8; ID_LEN];
        for (b, c) in id.iter_mut().zip(rng.sample_iter(Alphanumeric)) {
            *b = c;
        }
        Self(id)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyId {
    type Err = ParseKeyIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_base62(s.as_bytes()).ok_or(ParseKeyIdError(()))
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The error returned when a string is not a valid [`KeyId`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("a key id is exactly {ID_LEN} letters and digits")]
pub struct ParseKeyIdError(());

/// A plaintext API key.
///
/// This is the only type that ever holds a whole key. It is returned once,
/// when a key is created or rotated, so it can be handed to the client.
/// Its `Debug` shows only the public part, it has no `Display`, and its
/// memory is zeroed when it is dropped.
pub struct PlaintextKey {
    key: Zeroizing<String>,
    id: KeyId,
}

impl PlaintextKey {
    /// The whole key. Hand it to the client and do not keep it.
    pub fn expose_secret(&self) -> &str {
        &self.key
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The public head of the key (`mbk_live_Ab3Cd5Ef7G`), safe to display.
    pub fn redacted(&self) -> &str {
        let head = self.key.len() - SECRET_LEN - CHECKSUM_LEN;
        &self.key[..head]
    }
}

impl fmt::Debug for PlaintextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlaintextKey({}…[redacted])", self.redacted())
    }
}

/// A presented key that passed [`KeyFormat::parse`]: right prefix,
/// environment, length, alphabet and checksum. Borrowed, not copied.
///
/// Its `Debug` shows only the public part.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    raw: &'a str,
    environment: Environment,
    id: KeyId,
}

impl<'a> ParsedKey<'a> {
    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's environment.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The whole key as presented; only for hashing it.
    pub fn expose_secret(&self) -> &'a str {
        self.raw
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("environment", &self.environment)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a presented string is not a key of this format.
///
/// The variants are for logs and metrics; clients should only be told the key
/// is malformed, since the details help nobody but someone guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The string is empty.
    #[error("the key is empty")]
    Empty,
    /// The string has the wrong length for this format.
    #[error("the key has the wrong length")]
    Length,
    /// The string does not start with this application's prefix.
    #[error("the key does not start with the expected prefix")]
    Prefix,
    /// The environment is neither `live` nor `test`.
    #[error("the key's environment is neither `live` nor `test`")]
    Environment,
    /// A character outside base62 where the id, secret or checksum should be.
    #[error("the key contains characters outside A-Z, a-z, 0-9")]
    Alphabet,
    /// The checksum does not match: a typo, a truncated copy or a guess.
    #[error("the key's checksum does not match")]
    Checksum,
}

/// The error returned by [`KeyFormat::new`] for an unusable prefix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a key prefix is 1 to {MAX_PREFIX_LEN} lowercase letters or digits, got {0:?}")]
pub struct InvalidPrefix(String);

/// The error returned when the operating system cannot provide randomness.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomnessError(rand::rngs::SysError);

/// An application's key format: its prefix, e.g. `mbk` for `mbk_live_…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: Box<str>,
}

impl KeyFormat {
    /// A format whose keys start with `prefix` followed by `_live_` or `_test_`.
    ///
    /// The prefix is 1 to 16 lowercase ASCII letters or digits.
    ///
    /// # Errors
    ///
    /// [`InvalidPrefix`] if the prefix is empty, too long or has other characters.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        let ok = (1..=MAX_PREFIX_LEN).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self {
                prefix: prefix.into_boxed_str(),
            })
        } else {
            Err(InvalidPrefix(prefix))
        }
    }

    /// The prefix, without the trailing underscore.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The exact length of every key of this format.
    pub fn key_len(&self) -> usize {
        self.prefix.len() + 1 + ENV_LEN + 1 + BODY_LEN
    }

    /// Generates a new key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`RandomnessError`] if the operating system cannot provide entropy.
    pub fn generate(&self, environment: Environment) -> Result<PlaintextKey, RandomnessError> {
        // A ChaCha20 generator seeded from the OS for each key: every byte
        // comes from OS entropy, and a failing OS source is an error, not a panic.
        let mut rng = StdRng::try_from_rng(&mut SysRng).map_err(RandomnessError)?;
        let id = KeyId::random(&mut rng);
        let mut key = Zeroizing::new(String::with_capacity(self.key_len()));
        key.push_str(&self.prefix);
        key.push('_');
        key.push_str(environment.as_str());
        key.push('_');
        key.push_str(id.as_str());
        for c in (&mut rng).sample_iter(Alphanumeric).take(SECRET_LEN) {
            key.push(char::from(c));
        }
        let checksum = checksum(key.as_bytes());
        key.push_str(std::str::from_utf8(&checksum).unwrap_or_default());
        Ok(PlaintextKey { key, id })
    }

    /// Checks a presented key's syntax and checksum, without allocating and
    /// without any I/O.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] naming the first check that failed.
    pub fn parse<'a>(&self, presented: &'a str) -> Result<ParsedKey<'a>, ParseError> {
        let bytes = presented.as_bytes();
        if bytes.is_empty() {
            return Err(ParseError::Empty);
        }
        if bytes.len() != self.key_len() {
            return Err(ParseError::Length);
        }
        let p = self.prefix.len();
        if &bytes[..p] != self.prefix.as_bytes() || bytes[p] != b'_' {
            return Err(ParseError::Prefix);
        }
        let env_end = p + 1 + ENV_LEN;
        let environment =
            Environment::from_bytes(&bytes[p + 1..env_end]).ok_or(ParseError::Environment)?;
        if bytes[env_end] != b'_' {
            return Err(ParseError::Environment);
        }
        let body = &bytes[env_end + 1..];
        // A fold, not `all`: no early exit, so the check vectorises.
        if !body
            .iter()
            .fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
        {
            return Err(ParseError::Alphabet);
        }
        let (signed, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if checksum(signed) != sum {
            return Err(ParseError::Checksum);
        }
        let id = KeyId::from_base62(&body[..ID_LEN]).ok_or(ParseError::Alphabet)?;
        Ok(ParsedKey {
            raw: presented,
            environment,
            id,
        })
    }
}

/// CRC32 of `data` as 6 base62 digits, most significant first.
fn checksum(data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(data);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> KeyFormat {
        KeyFormat::new("mbk").unwrap()
    }

    #[test]
    fn generated_keys_parse_back() {
        let f = format();
        for env in [Environment::Live, Environment::Test] {
            let key = f.generate(env).unwrap();
            let s = key.expose_secret();
            assert!(s.starts_with(&format!("mbk_{env}_")));
            assert_eq!(s.len(), f.key_len());
            let parsed = f.parse(s).unwrap();
            assert_eq!(parsed.id(), key.id());
            assert_eq!(parsed.environment(), env);
        }
    }

    #[test]
    fn generated_keys_differ_and_use_the_whole_alphabet() {
        let f = format();
        let keys: Vec<_> = (0..200)
            .map(|_| f.generate(Environment::Live).unwrap())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for k in &keys {
            assert!(ids.insert(k.id()));
            seen.extend(k.expose_secret()[9..9 + ID_LEN + SECRET_LEN].bytes());
        }
        assert_eq!(
            seen.len(),
            62,
            "200 keys should cover all 62 base62 characters"
        );
    }

    #[test]
    fn parse_rejects_each_defect() {
        let f = format();
        let key = f.generate(Environment::Live).unwrap();
        let good = key.expose_secret().to_owned();
        assert_eq!(f.parse("").unwrap_err(), ParseError::Empty);
        assert_eq!(
            f.parse(&good[..good.len() - 1]).unwrap_err(),
            ParseError::Length
        );
        assert_eq!(
            f.parse(&"a".repeat(10_000)).unwrap_err(),
            ParseError::Length
        );
        let other = good.replacen("mbk_", "xyz_", 1);
        assert_eq!(f.parse(&other).unwrap_err(), ParseError::Prefix);
        let prod = good.replacen("_live_", "_prod_", 1);
        assert_eq!(f.parse(&prod).unwrap_err(), ParseError::Environment);
        let mut bad = good.clone().into_bytes();
        bad[20] = b'-';
        assert_eq!(
            f.parse(std::str::from_utf8(&bad).unwrap()).unwrap_err(),
            ParseError::Alphabet
        );
        // One changed secret character: right shape, wrong checksum.
        let mut typo = good.clone().into_bytes();
        typo[25] = if typo[25] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            f.parse(std::str::from_utf8(&typo).unwrap()).unwrap_err(),
            ParseError::Checksum
        );
        // Same length, multi-byte UTF-8 inside.
        let mut utf = good[..good.len() - 2].to_owned();
        utf.push('é');
        assert_eq!(utf.len(), good.len());
        assert_eq!(f.parse(&utf).unwrap_err(), ParseError::Alphabet);
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeyFormat::new("").is_err());
        assert!(KeyFormat::new("Mbk").is_err());
        assert!(KeyFormat::new("m_b").is_err());
        assert!(KeyFormat::new("a".repeat(17)).is_err());
        assert!(KeyFormat::new("acme2").is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let f = format();
        let key = f.generate(Environment::Test).unwrap();
        let secret = key.expose_secret();
        let dbg = format!("{key:?} {:?}", f.parse(secret).unwrap());
        assert!(!dbg.contains(secret));
        assert!(!dbg.contains(&secret[9 + ID_LEN..9 + ID_LEN + SECRET_LEN]));
        assert!(dbg.contains(key.id().as_str()));
    }

    #[test]
    fn key_ids_round_trip() {
        let id: KeyId = "Ab3Cd5Ef7G".parse().unwrap();
        assert_eq!(id.to_string(), "Ab3Cd5Ef7G");
        assert!("Ab3Cd5Ef7".parse::<KeyId>().is_err());
        assert!("Ab3Cd5Ef7_".parse::<KeyId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
    }
}
