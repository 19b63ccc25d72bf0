//! The route table: which scope a path (and method) needs beyond its
//! method's, and how a forwarded path is put in the one form rules are
//! matched against.

use std::{collections::BTreeSet, fmt};

use http::Method;
use keygate_core::Scope;

/// One rule: requests to `path` (and below), with one of `methods` (any
/// when empty), need `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) path: String,
    pub(crate) methods: BTreeSet<Method>,
    pub(crate) scope: Scope,
}

impl Route {
    fn covers(&self, path: &str, method: &Method) -> bool {
        under(path, &self.path) && (self.methods.is_empty() || self.methods.contains(method))
    }
}

/// Whether `path` is `prefix` or lies below it (`/admin` covers
/// `/admin/keys`, not `/administrator`).
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The rules, most specific first: longer paths before shorter ones, and
/// for one path, rules naming methods before the rule for any method.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Adds a rule. Refuses one whose path and methods overlap a rule
    /// already there (the same path with a shared method, or both for any
    /// method), naming it: two rules for one request would make the order
    /// of the file decide.
    pub(crate) fn add(
        &mut self,
        path: String,
        methods: BTreeSet<Method>,
        scope: Scope,
    ) -> Result<(), String> {
        if let Some(clash) = self.routes.iter().find(|r| {
            r.path == path
                && (r.methods.is_empty() == methods.is_empty())
                && (methods.is_empty() || !r.methods.is_disjoint(&methods))
        }) {
            return Err(clash.to_string());
        }
        self.routes.push(Route {
            path,
            methods,
            scope,
        });
        self.routes.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.methods.is_empty().cmp(&b.methods.is_empty()))
        });
        Ok(())
    }

    /// The index of the rule for a request, if any.
    pub(crate) fn find(&self, path: &str, method: &Method) -> Option<usize> {
        self.routes.iter().position(|r| r.covers(path, method))
    }

    /// The rules, in matching order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let methods = if self.methods.is_empty() {
            "*".to_owned()
        } else {
            self.methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        let below = if self.path == "/" { "" } else { "/…" };
        write!(
            f,
            "{methods:<12} {path}{below:<4}  needs {scope}",
            path = self.path,
            scope = self.scope
        )
    }
}

impl fmt::Display for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.routes.is_empty() {
            return writeln!(f, "  (none: only the method's scope is needed)");
        }
        for (i, route) in self.routes.iter().enumerate() {
            writeln!(f, "  {:>2}. {route}", i + 1)?;
        }
        Ok(())
    }
}

/// A rule's path as written in the configuration, checked and put in
/// matching form (`/admin/` and `/admin/*` read as `/admin`). `None` for a
/// path that is not plain: it must start with `/` and hold no query,
/// fragment, percent-encoding, backslash, `;` or `.`/`..` segment, so what
/// the file says is what is matched.
pub(crate) fn normalize_route(path: &str) -> Option<String> {
    let path = match path.strip_suffix("/*") {
        Some("") => "/",
        Some(path) => path,
        None => path,
    };
    if !path.starts_with('/')
        || path.contains(['?', '#', '%', '\\', ';', '*'])
        || path.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return None;
        }
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    // Some upstreams route `/ADMIN` (or `/%41dmin`) to `/admin`: rules and
    // paths meet in one case, so a rule covers every spelling.
    out.make_ascii_lowercase();
    Some(out)
}

/// How many rounds of percent-decoding a path may need before it stops
/// changing; more is refused as malformed.
const MAX_DECODE_ROUNDS: usize = 3;

/// The path of a forwarded request target, in the form rules are matched
/// against, or `None` if it cannot be judged safely (the request is then
/// refused).
///
/// Upstreams disagree on what a path means, so this reads it as *widely* as
/// any of them might, to match rules at least as often as the upstream
/// would route there: percent-decoding repeated until nothing changes (so
/// `/%2561dmin` is `/admin`, for a server that decodes twice), `\` read as
/// `/`, `;parameters` dropped from segments (`/admin;x/keys`), trailing dots
/// and spaces dropped from segments (`/admin./keys`, as Windows servers
/// do), empty segments dropped. The query is not part of it.
///
/// What no reading can make safe is refused: a `.` or `..` segment at any
/// stage of decoding (`/admin/../notes` is `/notes` to one server and the
/// admin handler to another), a fragment (`#` cannot be in a request
/// target, and some servers take it as part of the path), control
/// characters, and paths still changing after [`MAX_DECODE_ROUNDS`] rounds
/// of decoding.
pub(crate) fn normalize_request_path(target: &str) -> Option<String> {
    if target.contains('#') {
        return None;
    }
    // Origin form (`/a?b`) or absolute form (`http://host/a?b`), as the
    // proxy received it.
    let path = match target.find("://") {
        Some(scheme_end) if !target.starts_with('/') => {
            let after = &target[scheme_end + 3..];
            after.find('/').map_or("/", |i| &after[i..])
        }
        _ => target,
    };
    if !path.starts_with('/') {
        return None;
    }
    let mut bytes = path.split('?').next().unwrap_or("").as_bytes().to_vec();
    let mut rounds = 0;
    loop {
        if has_dot_segment(&bytes) {
            return None;
        }
        if !bytes.contains(&b'%') {
            break;
        }
        let decoded = percent_decode(&bytes);
        if decoded == bytes {
            break;
        }
        rounds += 1;
        if rounds > MAX_DECODE_ROUNDS {
            return None;
        }
        bytes = decoded;
    }
    if bytes.iter().any(|b| *b == 0 || b.is_ascii_control()) {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let mut out = String::with_capacity(text.len());
    for segment in text.split('/') {
        let segment = segment
            .split(';')
            .next()
            .unwrap_or("")
            .trim_end_matches(['.', ' ']);
        if !segment.is_empty() {
            out.push('/');
            out.push_str(segment);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    // Some upstreams route `/ADMIN` (or `/%41dmin`) to `/admin`: rules and
    // paths meet in one case, so a rule covers every spelling.
    out.make_ascii_lowercase();
    Some(out)
}

/// Whether some segment of `path` (split at `/` and `\`, parameters after
/// `;` dropped) is `.` or `..`.
fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|b| *b == b'/' || *b == b'\\').any(|segment| {
        let name = segment.split(|b| *b == b';').next().unwrap_or(&[]);
        name == b"." || name == b".."
    })
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: at most 0xff.
            out.push(u8::try_from(h * 16 + l).unwrap_or(u8::MAX));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rules: &[(&str, &[&str], &str)]) -> RouteTable {
        let mut t = RouteTable::default();
        for (path, methods, scope) in rules {
            t.add(
                normalize_route(path).unwrap(),
                methods
                    .iter()
                    .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                    .collect(),
                Scope::new((*scope).to_owned()).unwrap(),
            )
            .unwrap();
        }
        t
    }

    fn scope_for(t: &RouteTable, path: &str, method: &str) -> Option<String> {
        let path = normalize_request_path(path)?;
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        t.find(&path, &method)
            .map(|i| t.iter().nth(i).unwrap().scope.to_string())
    }

    #[test]
    fn the_most_specific_rule_wins_whatever_the_file_order() {
        let t = table(&[
            ("/", &[], "api"),
            ("/admin", &[], "admin"),
            ("/admin/reports", &["GET"], "reports:read"),
        ]);
        assert_eq!(scope_for(&t, "/notes", "GET").as_deref(), Some("api"));
        assert_eq!(scope_for(&t, "/admin", "GET").as_deref(), Some("admin"));
        assert_eq!(
            scope_for(&t, "/admin/keys", "POST").as_deref(),
            Some("admin")
        );
        assert_eq!(
            scope_for(&t, "/admin/reports/1", "GET").as_deref(),
            Some("reports:read")
        );
        assert_eq!(
            scope_for(&t, "/admin/reports/1", "DELETE").as_deref(),
            Some("admin")
        );
        assert_eq!(
            scope_for(&t, "/administrator", "GET").as_deref(),
            Some("api")
        );
    }

    #[test]
    fn disguised_paths_still_meet_their_rule() {
        let t = table(&[("/admin", &[], "admin")]);
        for path in [
            "/admin",
            "/admin/",
            "//admin",
            "/%61dmin/keys",
            "/%2561dmin/keys",
            "/%252561dmin",
            "/admin;jsessionid=1/keys",
            "/admin%3bx/keys",
            "/admin./keys",
            "/admin%20/keys",
            "/admin.%2e./keys",
            "/\\admin",
            "/%5cadmin",
            "http://example.com/admin/keys?x=1",
            "HTTP://example.com/admin",
            "/admin?/notes",
        ] {
            assert_eq!(
                scope_for(&t, path, "GET").as_deref(),
                Some("admin"),
                "{path}"
            );
        }
        for path in ["/notes", "/notes?/admin", "/adminx", "/x/..admin"] {
            assert_eq!(scope_for(&t, path, "GET"), None, "{path}");
        }
    }

    #[test]
    fn dot_segments_and_fragments_are_refused_at_every_stage_of_decoding() {
        // Each is `/notes` to a server that resolves the dots and an admin
        // handler (or file) to one that does not: no rule can be right.
        for target in [
            "/admin/../notes",
            "/notes/../admin",
            "/./admin",
            "/admin/.",
            "/admin/..%2fnotes",
            "/admin/%2e%2e/notes",
            "/admin/%252e%252e/notes",
            "/admin/..;/notes",
            "/admin/..;x/notes",
            "/admin/..%5cnotes",
            "/admin\\..\\notes",
            "/admin/x/../../notes",
            "/notes/.%2e/admin",
            "/notes#/../admin/secret.txt",
            "/notes#x",
        ] {
            assert_eq!(normalize_request_path(target), None, "{target}");
        }
    }

    #[test]
    fn unreadable_targets_are_refused_not_guessed() {
        for target in [
            "",
            "admin",
            "*",
            "\\admin",
            "/a%00b",
            "/a\u{1}b",
            "/%25252525252561",
        ] {
            assert_eq!(normalize_request_path(target), None, "{target:?}");
        }
        // Invalid escapes are kept as they are (no rule can contain `%`).
        assert_eq!(normalize_request_path("/a%zz").as_deref(), Some("/a%zz"));
        assert_eq!(normalize_request_path("/a%").as_deref(), Some("/a%"));
        // `...` is a name, not a dot segment; trailing dots go.
        assert_eq!(normalize_request_path("/.../x").as_deref(), Some("/x"));
    }

    #[test]
    fn overlapping_rules_are_refused() {
        let mut t = table(&[("/a", &["GET"], "x")]);
        let get: BTreeSet<_> = [Method::GET].into();
        let s = Scope::new("y".to_owned()).unwrap();
        assert!(t.add("/a".into(), get.clone(), s.clone()).is_err());
        assert!(
            t.add("/a".into(), [Method::POST, Method::GET].into(), s.clone())
                .is_err()
        );
        assert!(t.add("/a".into(), [Method::POST].into(), s.clone()).is_ok());
        assert!(t.add("/a".into(), BTreeSet::new(), s.clone()).is_ok());
        assert!(t.add("/a".into(), BTreeSet::new(), s).is_err());
    }

    #[test]
    fn rule_paths_must_be_plain() {
        assert_eq!(normalize_route("/admin/*").as_deref(), Some("/admin"));
        assert_eq!(
            normalize_route("/Admin/Keys").as_deref(),
            Some("/admin/keys")
        );
        assert_eq!(normalize_route("/admin/").as_deref(), Some("/admin"));
        assert_eq!(normalize_route("/").as_deref(), Some("/"));
        assert_eq!(normalize_route("/*").as_deref(), Some("/"));
        for bad in [
            "admin", "/a?b", "/a%20", "/a/../b", "/./a", "/a b", "/a;b", "/a\\b", "/a/*/b",
        ] {
            assert_eq!(normalize_route(bad), None, "{bad}");
        }
    }
}
