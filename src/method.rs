//! Which scope an HTTP method needs.

use http::Method;
use keygate_core::Scope;

/// Maps HTTP methods to the scope a key needs to use them.
///
/// The default: `read` for `GET`, `HEAD` and `OPTIONS`; `write` for `POST`,
/// `PUT` and `PATCH`; `delete` for `DELETE`; `admin` for any other method.
/// (`admin` satisfies every requirement.)
///
/// ```
/// use keygate::MethodScopes;
/// use keygate::core::Scope;
/// use http::Method;
///
/// // A read-mostly API where POST searches count as reads.
/// let scopes = MethodScopes::default().require(Method::POST, Scope::READ);
/// assert_eq!(scopes.required(&Method::POST), Some(&Scope::READ));
///
/// // Only route-level `require_scope` checks.
/// assert_eq!(MethodScopes::none().required(&Method::DELETE), None);
/// ```
#[derive(Clone, Debug)]
pub struct MethodScopes {
    table: Vec<(Method, Option<Scope>)>,
    fallback: Option<Scope>,
}

impl Default for MethodScopes {
    fn default() -> Self {
        Self {
            table: vec![
                (Method::GET, Some(Scope::READ)),
                (Method::HEAD, Some(Scope::READ)),
                (Method::OPTIONS, Some(Scope::READ)),
                (Method::POST, Some(Scope::WRITE)),
                (Method::PUT, Some(Scope::WRITE)),
                (Method::PATCH, Some(Scope::WRITE)),
                (Method::DELETE, Some(Scope::DELETE)),
            ],
            fallback: Some(Scope::ADMIN),
        }
    }
}

impl MethodScopes {
    /// No method needs a scope: any valid key may use any method, and routes
    /// declare what they need with [`require_scope`](crate::require_scope).
    pub fn none() -> Self {
        Self {
            table: Vec::new(),
            fallback: None,
        }
    }

    /// `method` needs `scope`.
    #[must_use]
    pub fn require(mut self, method: Method, scope: Scope) -> Self {
        self.set(method, Some(scope));
        self
    }

    /// `method` needs no scope.
    #[must_use]
    pub fn allow(mut self, method: Method) -> Self {
        self.set(method, None);
        self
    }

    /// What methods not listed need (default `admin`; `None` for nothing).
    #[must_use]
    pub fn fallback(mut self, scope: Option<Scope>) -> Self {
        self.fallback = scope;
        self
    }

    /// The scope `method` needs, if any.
    pub fn required(&self, method: &Method) -> Option<&Scope> {
        match self.table.iter().find(|(m, _)| m == method) {
            Some((_, scope)) => scope.as_ref(),
            None => self.fallback.as_ref(),
        }
    }

    fn set(&mut self, method: Method, scope: Option<Scope>) {
        match self.table.iter_mut().find(|(m, _)| *m == method) {
            Some(entry) => entry.1 = scope,
            None => self.table.push((method, scope)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mapping() {
        let m = MethodScopes::default();
        for (method, scope) in [
            (Method::GET, Scope::READ),
            (Method::HEAD, Scope::READ),
            (Method::OPTIONS, Scope::READ),
            (Method::POST, Scope::WRITE),
            (Method::PUT, Scope::WRITE),
            (Method::PATCH, Scope::WRITE),
            (Method::DELETE, Scope::DELETE),
            (Method::TRACE, Scope::ADMIN),
            (Method::from_bytes(b"PURGE").unwrap(), Scope::ADMIN),
        ] {
            assert_eq!(m.required(&method), Some(&scope), "{method}");
        }
    }

    #[test]
    fn overrides() {
        let m = MethodScopes::default()
            .allow(Method::OPTIONS)
            .fallback(None);
        assert_eq!(m.required(&Method::OPTIONS), None);
        assert_eq!(m.required(&Method::TRACE), None);
        assert_eq!(m.required(&Method::GET), Some(&Scope::READ));
    }
}
