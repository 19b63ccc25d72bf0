//! Scopes: what a key may do.
//!
//! Four are built in — `read`, `write`, `delete` and `admin` — and the layer
//! maps HTTP methods onto them. `admin` grants every scope, including custom
//! ones. Custom scopes (`billing:read`, `reports.export`) are declared by
//! routes.

use std::{borrow::Cow, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Longest scope name accepted.
pub const MAX_SCOPE_LEN: usize = 64;

/// One permission a key can hold, e.g. `read` or `billing:read`.
///
/// A scope name is 1 to 64 characters from `a-z`, `0-9` and `: . _ -`,
/// starting with a letter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Cow<'static, str>);

impl Scope {
    /// Read access: `GET`, `HEAD` and `OPTIONS` by default.
    pub const READ: Self = Self(Cow::Borrowed("read"));
    /// Write access: `POST`, `PUT` and `PATCH` by default.
    pub const WRITE: Self = Self(Cow::Borrowed("write"));
    /// Delete access: `DELETE` by default.
    pub const DELETE: Self = Self(Cow::Borrowed("delete"));
    /// Everything, including every custom scope.
    pub const ADMIN: Self = Self(Cow::Borrowed("admin"));

    /// A scope from a string, checked.
    ///
    /// # Errors
    ///
    /// [`InvalidScope`] if the name is empty, too long or has other characters.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Result<Self, InvalidScope> {
        let name = name.into();
        if is_valid(&name) {
            Ok(Self(name))
        } else {
            Err(InvalidScope(name.into_owned()))
        }
    }

    /// A scope from a string literal.
    ///
    /// # Panics
    ///
    /// If the name is not a valid scope name; meant for constants in code,
    /// where that is a programming error.
    pub fn from_static(name: &'static str) -> Self {
        assert!(is_valid(name), "invalid scope name {name:?}");
        Self(Cow::Borrowed(name))
    }

    /// Whether `name` is a valid scope name; usable in constants, so a macro
    /// can reject a bad literal at compile time.
    pub const fn is_valid_name(name: &str) -> bool {
        is_valid(name)
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn builtin_bit(&self) -> u8 {
        match &*self.0 {
            "read" => READ_BIT,
            "write" => WRITE_BIT,
            "delete" => DELETE_BIT,
            "admin" => ADMIN_BIT,
            _ => 0,
        }
    }
}

const fn is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_SCOPE_LEN || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b':' | b'.' | b'_' | b'-'))
        {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Scope {
    type Err = InvalidScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.to_owned())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// The error returned for an invalid scope name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "invalid scope {0:?}: use 1 to {MAX_SCOPE_LEN} characters from a-z, 0-9 and `:._-`, starting with a letter"
)]
pub struct InvalidScope(String);

const READ_BIT: u8 = 1;
const WRITE_BIT: u8 = 2;
const DELETE_BIT: u8 = 4;
const ADMIN_BIT: u8 = 8;

/// The set of scopes a key holds.
///
/// Checking a built-in scope is a bit test; a custom scope is a search in a
/// short sorted list. `admin` grants everything.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    sorted: Vec<Scope>,
    builtin: u8,
}

impl Scopes {
    /// No scopes at all: such a key authenticates but is allowed nothing that
    /// needs a scope.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether a key with these scopes may do what `required` guards.
    pub fn allows(&self, required: &Scope) -> bool {
        if self.builtin & ADMIN_BIT != 0 {
            return true;
        }
        match required.builtin_bit() {
            0 => self.sorted.binary_search(required).is_ok(),
            bit => self.builtin & bit != 0,
        }
    }

    /// Whether the set literally contains `scope` (without `admin` implying it).
    pub fn contains(&self, scope: &Scope) -> bool {
        self.sorted.binary_search(scope).is_ok()
    }

    /// Whether every scope in `other` is allowed by this set.
    pub fn allows_all(&self, other: &Self) -> bool {
        other.iter().all(|s| self.allows(s))
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) {
        if let Err(at) = self.sorted.binary_search(&scope) {
            self.builtin |= scope.builtin_bit();
            self.sorted.insert(at, scope);
        }
    }

    /// Removes a scope; returns whether it was there.
    pub fn remove(&mut self, scope: &Scope) -> bool {
        match self.sorted.binary_search(scope) {
            Ok(at) => {
                self.sorted.remove(at);
                self.builtin &= !scope.builtin_bit();
                true
            }
            Err(_) => false,
        }
    }

    /// The scopes, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Scope> + '_ {
        self.sorted.iter()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are no scopes.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Parses a comma- or space-separated list such as `"read, billing:read"`.
    ///
    /// # Errors
    ///
    /// [`InvalidScope`] for the first invalid name.
    pub fn parse_list(list: &str) -> Result<Self, InvalidScope> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut s = Self::default();
        for scope in iter {
            s.insert(scope);
        }
        s
    }
}

impl<const N: usize> From<[Scope; N]> for Scopes {
    fn from(arr: [Scope; N]) -> Self {
        arr.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.sorted.iter()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.sorted.iter().map(Scope::as_str))
            .finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.sorted.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.sorted)
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Scope>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything_and_builtins_are_separate() {
        let admin = Scopes::from([Scope::ADMIN]);
        assert!(admin.allows(&Scope::DELETE));
        assert!(admin.allows(&Scope::from_static("billing:read")));
        let read = Scopes::from([Scope::READ]);
        assert!(read.allows(&Scope::READ));
        assert!(!read.allows(&Scope::WRITE));
        assert!(!read.allows(&Scope::ADMIN));
    }

    #[test]
    fn custom_scopes_match_exactly() {
        let s = Scopes::parse_list("read, billing:read reports.export").unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.allows(&"billing:read".parse().unwrap()));
        assert!(!s.allows(&"billing:write".parse().unwrap()));
        assert_eq!(s.to_string(), "billing:read,read,reports.export");
    }

    #[test]
    fn names_are_validated() {
        for bad in [
            "",
            "Read",
            "1read",
            "bill ing",
            "x".repeat(65).as_str(),
            "ünï",
        ] {
            assert!(Scope::new(bad.to_owned()).is_err(), "{bad:?} accepted");
        }
        assert!(Scope::new("billing:read").is_ok());
        assert!(Scopes::parse_list("read,,Bad").is_err());
    }

    #[test]
    fn insert_and_remove_keep_bits_in_step() {
        let mut s = Scopes::none();
        s.insert(Scope::WRITE);
        s.insert(Scope::WRITE);
        assert_eq!(s.len(), 1);
        assert!(s.allows(&Scope::WRITE));
        assert!(s.remove(&Scope::WRITE));
        assert!(!s.allows(&Scope::WRITE));
        assert!(s.is_empty());
    }

    #[test]
    fn serde_round_trip() {
        let s = Scopes::parse_list("write read").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["read","write"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Scopes>(r#"["NOPE"]"#).is_err());
    }
}
