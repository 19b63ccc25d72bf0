//! `keygate serve`'s configuration: a TOML file, environment overrides,
//! and the checks that turn it into settings the server can run with.

use std::{
    collections::BTreeSet,
    fmt::{self, Write as _},
    net::SocketAddr,
    path::Path,
};

use http::{HeaderName, Method};
use keygate_core::{Environment, IpNet, KeyFormat, Quota, Quotas, Scope};
use serde::Deserialize;

use super::routes::{RouteTable, normalize_route};
use crate::error::CliError;

/// The file as written. Every field is optional; unknown fields are an
/// error, so a typo never silently leaves a default in place.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    listen: Option<String>,
    database_url: Option<String>,
    schema: Option<String>,
    prefix: Option<String>,
    pepper_env: Option<String>,
    redis_url: Option<String>,
    default_rate_limit: Option<Vec<String>>,
    environment: Option<String>,
    auth_path: Option<String>,
    persist_audit: Option<bool>,
    #[serde(default)]
    keys: KeysFile,
    #[serde(default)]
    proxy: ProxyFile,
    #[serde(default)]
    identity: IdentityFile,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    headers: Option<Vec<String>>,
    bearer: Option<bool>,
    query: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyFile {
    kind: Option<String>,
    trusted: Option<Vec<String>>,
    method_header: Option<String>,
    uri_header: Option<String>,
    client_header: Option<String>,
    problem_header: Option<String>,
    allow_method_override: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    key_id: Option<String>,
    owner: Option<String>,
    name: Option<String>,
    scopes: Option<String>,
    environment: Option<String>,
    remaining: Option<String>,
    credits: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    path: String,
    #[serde(default)]
    methods: Vec<String>,
    scope: String,
}

/// What the command line and the environment say, each `None` when not
/// given: they override the file.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) listen: Option<String>,
    pub(crate) database_url: Option<String>,
    pub(crate) schema: Option<String>,
    pub(crate) prefix: Option<KeyFormat>,
    pub(crate) pepper_env: Option<String>,
    pub(crate) redis_url: Option<String>,
}

/// Which proxy asks: it decides which headers describe the original
/// request. Each proxy sets its own headers itself (overwriting what a
/// client sent), so keygate reads exactly those and no others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    /// nginx `auth_request`, with the configuration in the README: it sets
    /// `X-Original-Method` and `X-Original-URI`, and needs refusals in a
    /// header to send them on (its `auth_request` keeps no response body).
    Nginx,
    /// Caddy `forward_auth`: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Caddy,
    /// Traefik `ForwardAuth`: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Traefik,
}

impl ProxyKind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "nginx" => Some(Self::Nginx),
            "caddy" => Some(Self::Caddy),
            "traefik" => Some(Self::Traefik),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Caddy => "caddy",
            Self::Traefik => "traefik",
        }
    }

    fn method_header(self) -> &'static str {
        match self {
            Self::Nginx => "x-original-method",
            Self::Caddy | Self::Traefik => "x-forwarded-method",
        }
    }

    fn uri_header(self) -> &'static str {
        match self {
            Self::Nginx => "x-original-uri",
            Self::Caddy | Self::Traefik => "x-forwarded-uri",
        }
    }

    fn problem_header(self) -> Option<&'static str> {
        match self {
            Self::Nginx => Some("x-keygate-problem"),
            Self::Caddy | Self::Traefik => None,
        }
    }
}

/// How the proxy describes the original request, and whom to believe.
#[derive(Clone, Debug)]
pub(crate) struct Proxy {
    pub(crate) kind: ProxyKind,
    /// Only connections from these networks may ask; the forwarding
    /// headers of anyone else are never read.
    pub(crate) trusted: Vec<IpNet>,
    pub(crate) method: HeaderName,
    pub(crate) uri: HeaderName,
    /// Where the proxy writes the client's address.
    pub(crate) client: HeaderName,
    /// A header that repeats a refusal's problem+json body, for proxies that
    /// drop the body of the auth answer.
    pub(crate) problem: Option<HeaderName>,
    /// The description headers of the *other* proxy kinds: this proxy does
    /// not set them, so a request carrying one is a client's forgery.
    pub(crate) foreign: Vec<HeaderName>,
    /// Whether requests may carry a method override (`X-HTTP-Method-Override`
    /// and kin, `?_method=`), which some upstreams obey after keygate judged
    /// the method. Default: refused.
    pub(crate) allow_method_override: bool,
}

/// The headers an admitted answer carries, for the proxy to copy to the
/// upstream.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) key_id: HeaderName,
    pub(crate) owner: HeaderName,
    pub(crate) name: HeaderName,
    pub(crate) scopes: HeaderName,
    pub(crate) environment: HeaderName,
    pub(crate) remaining: HeaderName,
    /// A metered key's credits left after the request.
    pub(crate) credits: HeaderName,
}

impl Identity {
    /// Every identity header, for the docs' "strip these" lists and tests.
    pub(crate) fn all(&self) -> [&HeaderName; 7] {
        [
            &self.key_id,
            &self.owner,
            &self.name,
            &self.scopes,
            &self.environment,
            &self.remaining,
            &self.credits,
        ]
    }
}

/// Where keys are read from in the original request.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) bearer: bool,
    pub(crate) query: Option<String>,
}

/// Everything `keygate serve` runs with, checked.
#[derive(Clone, Debug)]
pub(crate) struct ServeConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) database_url: String,
    pub(crate) schema: Option<String>,
    pub(crate) prefix: KeyFormat,
    pub(crate) pepper_env: Option<String>,
    pub(crate) redis_url: Option<String>,
    pub(crate) default_rate_limit: Option<Quotas>,
    pub(crate) environment: Option<Environment>,
    pub(crate) auth_path: String,
    pub(crate) persist_audit: bool,
    pub(crate) sources: Sources,
    pub(crate) proxy: Proxy,
    pub(crate) identity: Identity,
    pub(crate) routes: RouteTable,
}

/// The address `keygate serve` listens on by default: loopback only, for a
/// proxy on the same machine.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

impl ServeConfig {
    /// Reads `path` (if any), applies `overrides`, and checks the result.
    pub(crate) fn load(path: Option<&Path>, overrides: Overrides) -> Result<Self, CliError> {
        let file = match path {
            None => File::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(format!("cannot read {}: {e}", path.display()))
                        .hint("pass the path of a keygate serve TOML file with --config")
                })?;
                toml::from_str(&text).map_err(|e| {
                    CliError::usage(format!(
                        "{} is not a valid configuration: {e}",
                        path.display()
                    ))
                    .hint("see `keygate serve --help` and the README's \"Not a Rust service?\"")
                })?
            }
        };
        Self::resolve(file, overrides)
    }

    pub(crate) fn resolve(file: File, overrides: Overrides) -> Result<Self, CliError> {
        let listen = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen.parse().map_err(|_| {
            bad(
                "listen",
                &listen,
                "an address and port, e.g. 127.0.0.1:9090",
            )
        })?;
        let prefix = match (overrides.prefix, file.prefix) {
            (Some(p), _) => p,
            (None, Some(p)) => KeyFormat::new(&p).map_err(|e| bad("prefix", &p, &e.to_string()))?,
            (None, None) => KeyFormat::new("kg").map_err(|e| CliError::new(e.to_string()))?,
        };
        let default_rate_limit = match file.default_rate_limit {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => {
                let quotas = list
                    .iter()
                    .map(|q| {
                        q.parse::<Quota>()
                            .map_err(|e| bad("default_rate_limit", q, &e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(
                    Quotas::new(quotas)
                        .map_err(|e| bad("default_rate_limit", &list.join(","), &e.to_string()))?,
                )
            }
        };
        let environment = match file.environment.as_deref() {
            None => None,
            Some("live") => Some(Environment::Live),
            Some("test") => Some(Environment::Test),
            Some(other) => return Err(bad("environment", other, "live or test")),
        };
        let auth_path = file.auth_path.unwrap_or_else(|| "/auth".to_owned());
        if !auth_path.starts_with('/')
            || auth_path.len() < 2
            || ["/healthz", "/readyz", "/metrics"].contains(&auth_path.as_str())
            || auth_path.contains(['?', '#', '{', '}', '*'])
        {
            return Err(bad(
                "auth_path",
                &auth_path,
                "a path such as /auth, not /, /healthz, /readyz or /metrics",
            ));
        }
        Ok(Self {
            listen,
            database_url: overrides
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| "sqlite://keygate.db".to_owned()),
            schema: overrides.schema.or(file.schema),
            prefix,
            pepper_env: overrides.pepper_env.or(file.pepper_env),
            redis_url: overrides.redis_url.or(file.redis_url),
            default_rate_limit,
            environment,
            auth_path,
            persist_audit: file.persist_audit.unwrap_or(false),
            sources: sources(file.keys)?,
            proxy: proxy(file.proxy)?,
            identity: identity(file.identity)?,
            routes: routes(file.routes)?,
        })
    }

    /// What `keygate serve --check` prints: the effective settings and the
    /// route table, in the order requests are matched.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        let names = |v: &[HeaderName]| {
            v.iter()
                .map(HeaderName::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "listen          {}", self.listen);
        let _ = writeln!(out, "auth endpoint   {} (any method)", self.auth_path);
        let _ = writeln!(
            out,
            "database        {}",
            crate::db::redact(&self.database_url)
        );
        if let Some(schema) = &self.schema {
            let _ = writeln!(out, "schema          {schema}");
        }
        let _ = writeln!(out, "key prefix      {}", self.prefix.prefix());
        let _ = writeln!(
            out,
            "keys from       headers {}{}{}",
            names(&self.sources.headers),
            if self.sources.bearer {
                "; Authorization: Bearer"
            } else {
                ""
            },
            self.sources
                .query
                .as_ref()
                .map(|q| format!("; query parameter {q}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "rate limit      {}",
            self.default_rate_limit.as_ref().map_or_else(
                || "none by default (keys' own quotas apply)".to_owned(),
                |q| {
                    q.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" and ")
                }
            )
        );
        let _ = writeln!(
            out,
            "limiter         {}",
            self.redis_url.as_ref().map_or_else(
                || "in process".to_owned(),
                |u| format!("Redis at {}", crate::db::redact(u))
            )
        );
        let _ = writeln!(
            out,
            "proxy           {} at {}",
            self.proxy.kind.as_str(),
            self.proxy
                .trusted
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "original request {} + {}; client address from {}",
            self.proxy.method, self.proxy.uri, self.proxy.client
        );
        if let Some(problem) = &self.proxy.problem {
            let _ = writeln!(out, "refusal header  {problem}");
        }
        let _ = writeln!(
            out,
            "identity        {}",
            self.identity
                .all()
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "\nroutes (first match wins; every request also needs its method's scope:"
        );
        let _ = writeln!(
            out,
            "        read for GET/HEAD/OPTIONS, write for POST/PUT/PATCH, delete for DELETE,"
        );
        let _ = writeln!(out, "        admin for any other method)");
        let _ = write!(out, "{}", self.routes);
        for warning in self.warnings() {
            let _ = writeln!(out, "\nwarning: {warning}");
        }
        out
    }
}

impl ServeConfig {
    /// What is allowed but deserves a second look, printed by `--check` and
    /// at start.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.listen.ip().is_loopback() {
            out.push(format!(
                "listening on {}: only the proxy should reach this port (the trust check is by \
                 address)",
                self.listen
            ));
        }
        if self.sources.bearer || self.sources.query.is_some() {
            out.push(
                "keys may come in Authorization or the query string: make the proxy drop them \
                 before the upstream (nginx: proxy_set_header Authorization \"\"; the query \
                 stays in the URL the upstream sees)"
                    .to_owned(),
            );
        }
        if self.proxy.allow_method_override {
            out.push(
                "method overrides are allowed: an upstream that obeys X-HTTP-Method-Override or \
                 _method runs a method keygate did not judge"
                    .to_owned(),
            );
        }
        out
    }
}

fn bad(field: &str, value: &str, expected: &str) -> CliError {
    CliError::usage(format!("{field} = {value:?} is not valid: expected {expected}"))
        .hint("fix the configuration file (or the variable that overrides it), then run `keygate serve --check`")
}

fn header(field: &str, value: &str) -> Result<HeaderName, CliError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| bad(field, value, "an HTTP header name"))
}

fn sources(file: KeysFile) -> Result<Sources, CliError> {
    let headers = match file.headers {
        None => vec![HeaderName::from_static("x-api-key")],
        Some(list) => list
            .iter()
            .map(|h| header("keys.headers", h))
            .collect::<Result<_, _>>()?,
    };
    if let Some(q) = &file.query
        && (q.is_empty()
            || !q
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(bad(
            "keys.query",
            q,
            "a parameter name of letters, digits, _ and -",
        ));
    }
    let bearer = file.bearer.unwrap_or(false);
    if headers.is_empty() && !bearer && file.query.is_none() {
        return Err(bad(
            "keys.headers",
            "[]",
            "at least one place to read keys from",
        ));
    }
    Ok(Sources {
        headers,
        bearer,
        query: file.query,
    })
}

fn proxy(file: ProxyFile) -> Result<Proxy, CliError> {
    // Which headers describe the request depends on the proxy, and reading
    // the wrong pair lets clients write the description: no default.
    let kind = match file.kind.as_deref() {
        None => {
            return Err(CliError::usage(
                "proxy.kind is not set: say which proxy asks (nginx, caddy or traefik)",
            )
            .hint("add `[proxy]` with `kind = \"nginx\"` (or caddy, traefik) to the configuration file; see docs/proxies/"));
        }
        Some(k) => {
            ProxyKind::parse(k).ok_or_else(|| bad("proxy.kind", k, "nginx, caddy or traefik"))?
        }
    };
    let trusted = match file.trusted {
        None => vec![
            IpNet::V4(
                "127.0.0.0/8"
                    .parse()
                    .map_err(|_| CliError::new("loopback"))?,
            ),
            IpNet::V6("::1/128".parse().map_err(|_| CliError::new("loopback"))?),
        ],
        Some(list) => list
            .iter()
            .map(|n| {
                keygate_core::parse_allowed_net(n).ok_or_else(|| {
                    bad(
                        "proxy.trusted",
                        n,
                        "networks or addresses, e.g. 10.0.0.0/8 or 127.0.0.1",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if trusted.is_empty() {
        return Err(bad(
            "proxy.trusted",
            "[]",
            "the addresses of the proxies that ask",
        ));
    }
    if let Some(everyone) = trusted.iter().find(|n| n.prefix_len() == 0) {
        return Err(bad(
            "proxy.trusted",
            &everyone.to_string(),
            "the proxies' own addresses: a network of every address lets anyone describe requests",
        ));
    }
    let method = header(
        "proxy.method_header",
        file.method_header
            .as_deref()
            .unwrap_or(kind.method_header()),
    )?;
    let uri = header(
        "proxy.uri_header",
        file.uri_header.as_deref().unwrap_or(kind.uri_header()),
    )?;
    if method == uri {
        return Err(bad(
            "proxy.uri_header",
            uri.as_str(),
            "a header other than the method's",
        ));
    }
    let client = header(
        "proxy.client_header",
        file.client_header.as_deref().unwrap_or("x-forwarded-for"),
    )?;
    let problem = match file.problem_header.as_deref() {
        Some("") => None,
        Some(h) => Some(header("proxy.problem_header", h)?),
        None => kind.problem_header().map(HeaderName::from_static),
    };
    let foreign = [
        "x-forwarded-method",
        "x-forwarded-uri",
        "x-original-method",
        "x-original-uri",
    ]
    .into_iter()
    .map(HeaderName::from_static)
    .filter(|h| *h != method && *h != uri)
    .collect();
    Ok(Proxy {
        kind,
        trusted,
        method,
        uri,
        client,
        problem,
        foreign,
        allow_method_override: file.allow_method_override.unwrap_or(false),
    })
}

fn identity(file: IdentityFile) -> Result<Identity, CliError> {
    let pick = |field: &str, v: Option<String>, default: &'static str| match v {
        None => Ok(HeaderName::from_static(default)),
        Some(v) => header(field, &v),
    };
    let identity = Identity {
        key_id: pick("identity.key_id", file.key_id, "x-keygate-key-id")?,
        owner: pick("identity.owner", file.owner, "x-keygate-owner")?,
        name: pick("identity.name", file.name, "x-keygate-key-name")?,
        scopes: pick("identity.scopes", file.scopes, "x-keygate-scopes")?,
        environment: pick(
            "identity.environment",
            file.environment,
            "x-keygate-environment",
        )?,
        remaining: pick(
            "identity.remaining",
            file.remaining,
            "x-keygate-ratelimit-remaining",
        )?,
        credits: pick(
            "identity.credits",
            file.credits,
            "x-keygate-credits-remaining",
        )?,
    };
    let distinct: BTreeSet<_> = identity.all().iter().map(|h| h.as_str()).collect();
    if distinct.len() != identity.all().len() {
        return Err(bad(
            "identity",
            "…",
            "a different header name for each field",
        ));
    }
    Ok(identity)
}

fn routes(file: Vec<RouteFile>) -> Result<RouteTable, CliError> {
    let mut table = RouteTable::default();
    for route in file {
        let path = normalize_route(&route.path).ok_or_else(|| {
            bad(
                "routes.path",
                &route.path,
                "a path starting with /, e.g. /admin (which also covers /admin/…); no query, \
                 no percent-encoding, no . or .. segments",
            )
        })?;
        let methods = route
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    bad(
                        "routes.methods",
                        m,
                        "HTTP methods, e.g. [\"GET\", \"POST\"]",
                    )
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        // Upstreams answer HEAD with their GET handler: a GET rule covers it.
        let mut methods = methods;
        if methods.contains(&Method::GET) {
            methods.insert(Method::HEAD);
        }
        let scope = Scope::new(route.scope.clone())
            .map_err(|e| bad("routes.scope", &route.scope, &e.to_string()))?;
        table.add(path, methods, scope).map_err(|existing| {
            bad(
                "routes",
                &route.path,
                &format!("one rule per path and method; this one overlaps {existing}"),
            )
        })?;
    }
    Ok(table)
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text`, behind Caddy unless it names a proxy kind.
    fn parse(text: &str) -> Result<ServeConfig, CliError> {
        let text = if text.is_empty() || text.contains("kind =") {
            text.to_owned()
        } else if text.contains("[proxy]") {
            text.replace("[proxy]", "[proxy]\nkind = \"caddy\"")
        } else {
            format!("{text}\n[proxy]\nkind = \"caddy\"")
        };
        ServeConfig::resolve(
            toml::from_str(&text).map_err(|e| CliError::usage(e.to_string()))?,
            Overrides::default(),
        )
    }

    #[test]
    fn defaults_are_safe_for_a_proxy_on_the_same_machine() {
        assert!(parse("").unwrap_err().to_string().contains("proxy.kind"));
        let c = parse("[proxy]\nkind = \"caddy\"").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.proxy.kind, ProxyKind::Caddy);
        assert_eq!(c.proxy.method, "x-forwarded-method");
        assert!(c.proxy.trusted.iter().all(|n| n.addr().is_loopback()));
        assert_eq!(c.auth_path, "/auth");
        assert!(!c.persist_audit);
        assert!(!c.proxy.allow_method_override);
        assert!(c.warnings().is_empty());
        assert_eq!(c.proxy.foreign, ["x-original-method", "x-original-uri"]);
    }

    #[test]
    fn nginx_reads_its_own_headers_and_repeats_refusals_in_one() {
        let c = parse("[proxy]\nkind = \"nginx\"").unwrap();
        assert_eq!(c.proxy.method, "x-original-method");
        assert_eq!(c.proxy.uri, "x-original-uri");
        assert_eq!(c.proxy.problem.unwrap(), "x-keygate-problem");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let file: File = toml::from_str(
            "listen = \"127.0.0.1:1\"\ndatabase_url = \"sqlite://a.db\"\n[proxy]\nkind = \"caddy\"",
        )
        .unwrap();
        let c = ServeConfig::resolve(
            file,
            Overrides {
                listen: Some("127.0.0.1:2".into()),
                database_url: Some("sqlite://b.db".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.database_url, "sqlite://b.db");
    }

    #[test]
    fn mistakes_are_refused_with_the_field_named() {
        for (text, field) in [
            ("lisen = \"x\"", "unknown field"),
            ("listen = \"nowhere\"", "listen"),
            ("prefix = \"Bad!\"", "prefix"),
            ("environment = \"prod\"", "environment"),
            ("default_rate_limit = [\"lots\"]", "default_rate_limit"),
            ("auth_path = \"/metrics\"", "auth_path"),
            ("[proxy]\nkind = \"apache\"", "proxy.kind"),
            ("[proxy]\ntrusted = []", "proxy.trusted"),
            ("[proxy]\ntrusted = [\"everyone\"]", "proxy.trusted"),
            (
                "[proxy]\nmethod_header = \"x-a\"\nuri_header = \"x-a\"",
                "proxy.uri_header",
            ),
            ("[identity]\nowner = \"x-keygate-key-id\"", "identity"),
            ("[identity]\nowner = \"bad header\"", "identity.owner"),
            ("[keys]\nquery = \"a b\"", "keys.query"),
            ("[keys]\nheaders = []", "keys.headers"),
            (
                "[[routes]]\npath = \"admin\"\nscope = \"admin\"",
                "routes.path",
            ),
            (
                "[[routes]]\npath = \"/a/../b\"\nscope = \"admin\"",
                "routes.path",
            ),
            (
                "[[routes]]\npath = \"/%61dmin\"\nscope = \"admin\"",
                "routes.path",
            ),
            (
                "[[routes]]\npath = \"/a\"\nscope = \"Not A Scope\"",
                "routes.scope",
            ),
            (
                "[[routes]]\npath = \"/a\"\nmethods = [\"G ET\"]\nscope = \"admin\"",
                "routes.methods",
            ),
            (
                "[[routes]]\npath = \"/a\"\nscope = \"x\"\n[[routes]]\npath = \"/a/\"\nscope = \"y\"",
                "overlaps",
            ),
        ] {
            let err = parse(text).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?}: {err}");
        }
    }
}
