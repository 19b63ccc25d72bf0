//! Keys written by hand: the key format's checksum re-implemented so tests
//! do not trust the code under test for it, and keys damaged on purpose.

use keygate_core::{CHECKSUM_LEN, KeyManager, NewKey, SECRET_LEN};

/// The base62 alphabet of key bodies and checksums.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The key format's checksum of `data` (the key without its checksum):
/// CRC32 as 6 base62 digits.
pub fn checksum(data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    let mut n = !crc;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// [`checksum`] as text.
pub fn checksum_str(data: &[u8]) -> String {
    String::from_utf8(checksum(data).to_vec()).expect("base62 is ASCII")
}

/// The 32 secret characters of a key.
pub fn secret_part(key: &str) -> &str {
    let end = key.len() - CHECKSUM_LEN;
    &key[end - SECRET_LEN..end]
}

/// The key with one secret character changed and the checksum left alone:
/// a typo the checksum catches.
pub fn typo(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let at = key.len() - CHECKSUM_LEN - 1;
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("keys are ASCII")
}

/// The key with one secret character changed and a correct checksum: the
/// right id and shape, but not the key that was issued.
pub fn forge(key: &str) -> String {
    let typo = typo(key);
    let signed = &typo[..typo.len() - CHECKSUM_LEN];
    format!("{signed}{}", checksum_str(signed.as_bytes()))
}

/// The key with its last character (part of the checksum) replaced by
/// another base62 character, so only the checksum check can fail.
pub fn break_checksum(key: &str) -> String {
    let (body, last) = key.split_at(key.len() - 1);
    let other = if last == "A" { 'B' } else { 'A' };
    format!("{body}{other}")
}

/// The id part of a key `{prefix}_{env}_{id}…` (for prefixes without `_`).
pub fn id_of(key: &str) -> &str {
    let body = key
        .splitn(3, '_')
        .nth(2)
        .expect("a key {prefix}_{env}_{body}");
    &body[..keygate_core::ID_LEN]
}

/// Issues a key through `manager` and returns its plaintext.
pub async fn issue(manager: &KeyManager, new: NewKey) -> String {
    manager
        .create(new)
        .await
        .expect("create key")
        .key
        .expose_secret()
        .to_owned()
}
