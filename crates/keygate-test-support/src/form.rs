//! `application/x-www-form-urlencoded` written out by hand, so tests of the
//! query-parameter source do not trust the crate keygate decodes with.

use std::fmt::Write as _;

/// Percent-encodes every byte that is not an ASCII letter or digit (every
/// byte if `all`), so form decoding gives back exactly `s`.
pub fn encode(s: &str, all: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() && !all {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Form-decodes one name or value: `%XX` and `+`; a `%` not followed by two
/// hex digits stays as it is.
pub fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).expect("two hex digits make a byte"));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The decoded `name=value` pairs of a query, lossily as text; empty
/// segments skipped, a segment without `=` has an empty value.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    let text = |s: &str| String::from_utf8_lossy(&decode(s)).into_owned();
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (text(k), text(v))
        })
        .collect()
}
