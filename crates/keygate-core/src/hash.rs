//! Key digests: SHA-256, or HMAC-SHA-256 with a server-side pepper.
//!
//! Keys are 190-bit random strings, so a slow password hash (bcrypt, argon2)
//! buys nothing against guessing and would cost tens of milliseconds per
//! request. A digest plus a constant-time comparison is what key-issuing
//! platforms do. The optional pepper, kept out of the database, means a stolen
//! database cannot even confirm which leaked keys are real.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// The SHA-256 (or HMAC-SHA-256) digest of a key: what stores keep instead of
/// the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Wraps 32 raw digest bytes, e.g. read from a database.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lowercase or uppercase hex digits.
    ///
    /// # Errors
    ///
    /// [`InvalidDigest`] for anything else.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidDigest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(InvalidDigest(()));
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = hex_val(pair[0]).ok_or(InvalidDigest(()))?;
            let lo = hex_val(pair[1]).ok_or(InvalidDigest(()))?;
            *o = hi << 4 | lo;
        }
        Ok(Self(out))
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Compares two digests in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        // Compared as four words: the same guarantee as byte-wise, at a quarter
        // of the cost (`subtle` works element by element).
        let words = |d: &[u8; 32]| -> [u64; 4] {
            let mut w = [0u64; 4];
            for (w, c) in w.iter_mut().zip(d.chunks_exact(8)) {
                *w = u64::from_ne_bytes(c.try_into().unwrap_or_default());
            }
            w
        };
        words(&self.0).ct_eq(&words(&other.0)).into()
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell digests apart in a log.
        write!(
            f,
            "KeyDigest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl Serialize for KeyDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The error returned when a digest is not 64 hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a key digest is 64 hex digits")]
pub struct InvalidDigest(());

/// Computes key digests.
///
/// Every store and every node that verifies keys must use the same hasher
/// (and pepper) as the node that created them.
#[derive(Clone)]
pub struct KeyHasher {
    kind: HasherKind,
}

#[derive(Clone)]
enum HasherKind {
    Sha256,
    // The keyed state is computed once; each digest clones it (a copy of two
    // SHA-256 states) instead of re-deriving the pads from the pepper.
    Hmac {
        keyed: Box<Hmac<Sha256>>,
        _pepper: Zeroizing<Vec<u8>>,
    },
}

impl KeyHasher {
    /// Plain SHA-256.
    pub fn sha256() -> Self {
        Self {
            kind: HasherKind::Sha256,
        }
    }

    /// HMAC-SHA-256 keyed with a server-side pepper, which should be at least
    /// 32 random bytes kept outside the key database (an environment
    /// variable or a secrets manager).
    ///
    /// # Errors
    ///
    /// [`WeakPepper`] if the pepper is shorter than 16 bytes.
    pub fn hmac_sha256(pepper: impl Into<Vec<u8>>) -> Result<Self, WeakPepper> {
        let pepper = Zeroizing::new(pepper.into());
        if pepper.len() < 16 {
            return Err(WeakPepper(pepper.len()));
        }
        let keyed =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&pepper).map_err(|_| WeakPepper(0))?;
        Ok(Self {
            kind: HasherKind::Hmac {
                keyed: Box::new(keyed),
                _pepper: pepper,
            },
        })
    }

    /// The digest of a key.
    ///
    /// For a string shaped like a key, `{prefix}_{env}_{id}{secret}{checksum}`,
    /// the digest covers `{env}_{id}{secret}` (47 bytes): the prefix is the
    /// application's configuration and the checksum a function of the rest,
    /// and both are checked before a key is hashed, so two keys with equal
    /// digests are the same accepted key. Leaving them out keeps the input
    /// to one SHA-256 block, whatever the prefix's length. Anything else is
    /// hashed whole.
    pub fn digest(&self, key: &str) -> KeyDigest {
        let input = hashed_part(key.as_bytes());
        match &self.kind {
            HasherKind::Sha256 => KeyDigest(sha256(input)),
            HasherKind::Hmac { keyed, .. } => {
                let mut mac = (**keyed).clone();
                mac.update(input);
                KeyDigest(mac.finalize().into_bytes().into())
            }
        }
    }

    /// Whether this hasher uses a pepper.
    pub fn is_peppered(&self) -> bool {
        matches!(self.kind, HasherKind::Hmac { .. })
    }
}

/// SHA-256 of `input`.
///
/// A key's hashed part fits one block with its padding (at most 55 bytes):
/// the block is padded here and compressed once, without the streaming
/// hasher's buffer and bookkeeping, which cost about as much again as the
/// compression on this path. Longer input goes through the streaming hasher.
fn sha256(input: &[u8]) -> [u8; 32] {
    /// FIPS 180-4, 5.3.3.
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    const ONE_BLOCK: usize = 64 - 1 - 8;
    let len = input.len();
    if len > ONE_BLOCK {
        return Sha256::digest(input).into();
    }
    // FIPS 180-4, 5.1.1: the input, a 1 bit, zeros, and the length in bits.
    let mut block = [0u8; 64];
    block[..len].copy_from_slice(input);
    block[len] = 0x80;
    block[56..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
    let mut state = INITIAL;
    sha2::block_api::compress256(&mut state, &[block]);
    // The block holds the key's secret: leave no copy of it on the stack.
    block.zeroize();
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// The part of a key the digest covers: `{env}_{id}{secret}` when `key`
/// ends like a key (`_{env}_` then id, secret and checksum), all of it
/// otherwise.
fn hashed_part(key: &[u8]) -> &[u8] {
    const ENV: usize = 4;
    const TAIL: usize = crate::key::ID_LEN + crate::key::SECRET_LEN + crate::key::CHECKSUM_LEN;
    let len = key.len();
    match len.checked_sub(TAIL + ENV + 2) {
        // `_` before and after the environment, and a prefix before it.
        Some(start) if start > 0 && key[start] == b'_' && key[start + 1 + ENV] == b'_' => {
            &key[start + 1..len - crate::key::CHECKSUM_LEN]
        }
        _ => key,
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::sha256()
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            HasherKind::Sha256 => "KeyHasher(SHA-256)",
            HasherKind::Hmac { .. } => "KeyHasher(HMAC-SHA-256, pepper redacted)",
        })
    }
}

/// The error returned for a pepper too short to be useful.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the pepper is {0} bytes; use at least 16 (32 random bytes recommended)")]
pub struct WeakPepper(usize);

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-block path is SHA-256: for every length up to the block's
    /// limit and past it, and for every byte value, it answers what the
    /// streaming hasher does (and the published digest of `abc`).
    #[test]
    fn one_block_sha256_is_sha256() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(400).collect();
        for len in 0..=130 {
            for start in [0, 7, 200] {
                let input = &bytes[start..start + len];
                assert_eq!(
                    sha256(input),
                    <[u8; 32]>::from(Sha256::digest(input)),
                    "{len}"
                );
            }
        }
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_key_is_hashed_without_its_prefix_and_checksum_in_one_block() {
        let secret = "A".repeat(crate::key::SECRET_LEN);
        let body = format!("live_Ab3Cd5Ef7G{secret}");
        assert_eq!(body.len(), 47, "one SHA-256 block holds at most 55 bytes");
        let key = format!("mbk_{body}Zz9Yy8");
        let same_body = format!("a_much_longer_prefix_{body}Zz9Yy8");
        let sha = KeyHasher::sha256();
        assert_eq!(
            sha.digest(&key).as_bytes()[..],
            Sha256::digest(body.as_bytes())[..]
        );
        assert_eq!(sha.digest(&key), sha.digest(&same_body));
        // A different environment, id or secret is a different digest.
        for other in [
            key.replace("live_", "test_"),
            key.replace("Ab3Cd5Ef7G", "Ab3Cd5Ef7H"),
            key.replacen('A', "B", 1),
        ] {
            assert_ne!(sha.digest(&key), sha.digest(&other), "{other}");
        }
        let hmac = KeyHasher::hmac_sha256(vec![7; 32]).unwrap();
        assert_eq!(hmac.digest(&key), hmac.digest(&same_body));
        assert_ne!(hmac.digest(&key), sha.digest(&key));
        // Not shaped like a key: hashed whole (and never panics on short input).
        for s in ["", "_", "abc", &body, &format!("_{body}Zz9Yy8")] {
            assert_eq!(
                sha.digest(s).as_bytes()[..],
                Sha256::digest(s.as_bytes())[..],
                "{s}"
            );
        }
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        let d = KeyHasher::sha256().digest("abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape_and_differs_from_plain() {
        // RFC 4231 test case 2 uses the 4-byte key "Jefe", below our minimum;
        // check the construction with a longer key against a known value instead.
        let h = KeyHasher::hmac_sha256(vec![0x0b; 20]).unwrap();
        assert_eq!(
            h.digest("Hi There").to_hex(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_ne!(h.digest("k"), KeyHasher::sha256().digest("k"));
        assert!(KeyHasher::hmac_sha256(b"short".to_vec()).is_err());
    }

    #[test]
    fn digests_compare_and_round_trip() {
        let h = KeyHasher::sha256();
        let a = h.digest("one");
        let b = h.digest("two");
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
        assert_eq!(KeyDigest::from_hex(&a.to_hex()).unwrap(), a);
        assert!(KeyDigest::from_hex("zz").is_err());
        assert!(!format!("{a:?}").contains(&a.to_hex()));
    }
}
