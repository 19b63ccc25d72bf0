//! Where the layer looks for a key: headers, a query parameter, `Authorization: Bearer`.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, Request, Uri, header::AUTHORIZATION};

/// Which parts of a request may carry the key.
///
/// By default only the `X-API-Key` header. A request that carries two
/// *different* keys (a repeated header, a header and a query parameter…) is
/// rejected, never silently resolved one way or the other.
#[derive(Clone, Debug)]
pub struct KeySources {
    headers: Vec<HeaderName>,
    query: Option<Box<str>>,
    bearer: bool,
}

impl Default for KeySources {
    fn default() -> Self {
        Self {
            headers: vec![HeaderName::from_static("x-api-key")],
            query: None,
            bearer: false,
        }
    }
}

impl KeySources {
    /// Only the `X-API-Key` header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Look in these headers instead of `X-API-Key`.
    #[must_use]
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.headers = names.into_iter().collect();
        self
    }

    /// Also accept the key in this query parameter (e.g. `api_key`).
    ///
    /// Keys in URLs end up in access logs and browser history; prefer headers
    /// and enable this only for clients that cannot set one. With a query
    /// source, the layer strips the credential from the request it passes
    /// on unless told otherwise
    /// ([`strip_credential`](crate::KeygateBuilder::strip_credential)); a
    /// layer *outside* keygate (tower-http's `TraceLayer`, an access log) and
    /// axum's `OriginalUri` still see the query as the client sent it.
    #[must_use]
    pub fn query(mut self, name: impl Into<String>) -> Self {
        self.query = Some(name.into().into_boxed_str());
        self
    }

    /// Also accept `Authorization: Bearer <key>`.
    ///
    /// Only bearer tokens that start with this application's key prefix
    /// (`mbk_…`) are taken for keys; others (a JWT, an OAuth token) are left
    /// for whatever other authentication runs on the same routes.
    #[must_use]
    pub fn bearer(mut self, enabled: bool) -> Self {
        self.bearer = enabled;
        self
    }

    #[cfg(feature = "manage")]
    pub(crate) fn header_names(&self) -> &[HeaderName] {
        &self.headers
    }

    pub(crate) fn query_name(&self) -> Option<&str> {
        self.query.as_deref()
    }

    #[cfg(feature = "manage")]
    pub(crate) fn bearer_enabled(&self) -> bool {
        self.bearer
    }

    /// The first header keys are read from as people write it
    /// (`X-API-Key`), for the `header` parameter of challenges.
    pub(crate) fn challenge_header(&self) -> String {
        display_header(self.headers.first().map_or("X-API-Key", HeaderName::as_str))
    }

    /// Where keys are read from, in words, for messages that tell callers
    /// where to send one.
    pub(crate) fn describe(&self) -> String {
        let mut s = match self.headers.first() {
            Some(header) => format!("the `{}` header", display_header(header.as_str())),
            None => String::new(),
        };
        let mut add = |part: &str| {
            if !s.is_empty() {
                s.push_str(" or ");
            }
            s.push_str(part);
        };
        if self.bearer {
            add("`Authorization: Bearer`");
        }
        if let Some(q) = &self.query {
            add(&format!("the `{q}` query parameter"));
        }
        s
    }

    /// Finds the key a request presents.
    ///
    /// `Ok(None)` when there is none; an error when a value is unreadable or
    /// two values differ.
    pub(crate) fn extract<'r, B>(
        &self,
        req: &'r Request<B>,
        prefix: &str,
    ) -> Result<Option<Cow<'r, str>>, SourceError> {
        let mut found: Option<Cow<'r, str>> = None;
        let mut offer = |value: Cow<'r, str>| -> Result<(), SourceError> {
            match &found {
                Some(first) if *first != value => Err(SourceError::Conflict),
                Some(_) => Ok(()),
                None => {
                    found = Some(value);
                    Ok(())
                }
            }
        };
        let headers = req.headers();
        for name in &self.headers {
            for value in headers.get_all(name) {
                // `to_str` accepts visible ASCII only: control bytes and
                // obs-text (non-UTF-8, non-ASCII) make the key malformed.
                let s = value.to_str().map_err(|_| SourceError::Unreadable)?;
                offer(Cow::Borrowed(s))?;
            }
        }
        if self.bearer {
            for token in bearer_tokens(headers, prefix) {
                offer(Cow::Borrowed(token?))?;
            }
        }
        if let Some(param) = self.query.as_deref()
            && let Some(query) = req.uri().query()
        {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k == param {
                    offer(v)?;
                }
            }
        }
        Ok(found)
    }

    /// Marks the key's header values sensitive, for a request that goes on
    /// with its credential: `Debug` renderings print `Sensitive` instead
    /// of the key, and HTTP/2 and HTTP/3 encoders never put it in their
    /// compression tables (a proxying handler that forwards the request).
    pub(crate) fn mark_sensitive<B>(&self, req: &mut Request<B>, prefix: &str) {
        let headers = req.headers_mut();
        for name in &self.headers {
            if let http::header::Entry::Occupied(mut entry) = headers.entry(name) {
                for value in entry.iter_mut() {
                    value.set_sensitive(true);
                }
            }
        }
        if self.bearer
            && bearer_tokens(headers, prefix).next().is_some()
            && let http::header::Entry::Occupied(mut entry) = headers.entry(AUTHORIZATION)
        {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }

    /// Removes the key from a request before the inner service sees it.
    pub(crate) fn strip<B>(&self, req: &mut Request<B>, prefix: &str) {
        for name in &self.headers {
            req.headers_mut().remove(name);
        }
        if self.bearer {
            let ours = bearer_tokens(req.headers(), prefix).next().is_some();
            if ours {
                req.headers_mut().remove(AUTHORIZATION);
            }
        }
        if let Some(param) = self.query.as_deref()
            && let Some(uri) = without_query_param(req.uri(), param)
        {
            *req.uri_mut() = uri;
        }
    }
}

/// Bearer tokens in `Authorization` headers that look like this
/// application's keys (`{prefix}_…`); others belong to someone else.
fn bearer_tokens<'h, 'p>(
    headers: &'h HeaderMap,
    prefix: &'p str,
) -> impl Iterator<Item = Result<&'h str, SourceError>> + use<'h, 'p> {
    headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(move |value| {
            let bytes = value.as_bytes();
            let (scheme, rest) = bytes.split_at(bytes.len().min(7));
            if !scheme.eq_ignore_ascii_case(b"bearer ") {
                return None;
            }
            let token = rest.trim_ascii();
            let ours = token.len() > prefix.len()
                && token.starts_with(prefix.as_bytes())
                && token[prefix.len()] == b'_';
            if !ours {
                return None;
            }
            Some(std::str::from_utf8(token).map_err(|_| SourceError::Unreadable))
        })
}

fn without_query_param(uri: &Uri, param: &str) -> Option<Uri> {
    let query = uri.query()?;
    // Drop only the segments whose decoded name is the parameter; keep every
    // other byte of the query as the client sent it (signatures over the raw
    // query, upstream forwarding).
    let is_param = |segment: &&str| {
        let name = segment.split_once('=').map_or(*segment, |(name, _)| name);
        form_urlencoded::parse(name.as_bytes()).any(|(k, v)| v.is_empty() && k == param)
    };
    if !query.split('&').any(|s| is_param(&s)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|s| !is_param(s)).collect();
    let mut pq = String::from(uri.path());
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(&kept.join("&"));
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// Why no usable key could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceError {
    /// Two different values.
    Conflict,
    /// A value with bytes that cannot be part of a key.
    Unreadable,
}

/// `x-api-key` → `X-API-Key`: how people write header names.
fn display_header(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "api" | "id" => part.to_ascii_uppercase(),
            _ => {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_descriptions_read_well() {
        assert_eq!(display_header("x-api-key"), "X-API-Key");
        let s = KeySources::new().query("api_key").bearer(true);
        assert_eq!(
            s.describe(),
            "the `X-API-Key` header or `Authorization: Bearer` or the `api_key` query parameter"
        );
        assert_eq!(s.challenge_header(), "X-API-Key");
    }

    fn req(uri: &str, headers: &[(&str, &[u8])]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        b.body(()).unwrap()
    }

    fn all() -> KeySources {
        KeySources::new().query("api_key").bearer(true)
    }

    #[test]
    fn finds_each_source() {
        let s = all();
        let r = req("/", &[("x-api-key", b"kg_a")]);
        assert_eq!(s.extract(&r, "kg").unwrap().as_deref(), Some("kg_a"));
        let r = req("/?x=1&api_key=kg%5Fa", &[]);
        assert_eq!(s.extract(&r, "kg").unwrap().as_deref(), Some("kg_a"));
        let r = req("/", &[("authorization", b"bearer kg_a")]);
        assert_eq!(s.extract(&r, "kg").unwrap().as_deref(), Some("kg_a"));
        let r = req("/", &[]);
        assert_eq!(s.extract(&r, "kg").unwrap(), None);
        // The default looks at the header only.
        let r = req("/?api_key=kg_a", &[("authorization", b"Bearer kg_a")]);
        assert_eq!(KeySources::new().extract(&r, "kg").unwrap(), None);
    }

    #[test]
    fn foreign_bearer_tokens_are_not_ours() {
        let r = req("/", &[("authorization", b"Bearer eyJhbGciOi.x.y")]);
        assert_eq!(all().extract(&r, "kg").unwrap(), None);
        let r = req("/", &[("authorization", b"Basic a2c6eA==")]);
        assert_eq!(all().extract(&r, "kg").unwrap(), None);
    }

    #[test]
    fn different_values_conflict_and_equal_ones_do_not() {
        let s = all();
        let mut r = req("/?api_key=kg_b", &[("x-api-key", b"kg_a")]);
        assert_eq!(s.extract(&r, "kg").unwrap_err(), SourceError::Conflict);
        r.headers_mut().append("x-api-key", "kg_b".parse().unwrap());
        assert_eq!(s.extract(&r, "kg").unwrap_err(), SourceError::Conflict);
        let r = req("/?api_key=kg_a", &[("x-api-key", b"kg_a")]);
        assert_eq!(s.extract(&r, "kg").unwrap().as_deref(), Some("kg_a"));
        let r = req("/?api_key=kg_a&api_key=kg_c", &[]);
        assert_eq!(s.extract(&r, "kg").unwrap_err(), SourceError::Conflict);
    }

    #[test]
    fn unreadable_bytes_are_errors() {
        let r = req("/", &[("x-api-key", b"kg_\xff\xfe")]);
        assert_eq!(
            all().extract(&r, "kg").unwrap_err(),
            SourceError::Unreadable
        );
    }

    #[test]
    fn strip_removes_only_the_key() {
        let s = all();
        let mut r = req(
            "/notes?a=1&api_key=kg_a&b=2",
            &[
                ("x-api-key", b"kg_a"),
                ("authorization", b"Bearer kg_a"),
                ("x-other", b"1"),
            ],
        );
        s.strip(&mut r, "kg");
        assert_eq!(r.uri().to_string(), "/notes?a=1&b=2");
        assert!(r.headers().get("x-api-key").is_none());
        assert!(r.headers().get("authorization").is_none());
        assert!(r.headers().get("x-other").is_some());

        let mut r = req("/n?api_key=kg_a", &[("authorization", b"Bearer jwt")]);
        s.strip(&mut r, "kg");
        assert_eq!(r.uri().to_string(), "/n");
        assert!(r.headers().get("authorization").is_some());

        // Other parameters stay byte for byte; encoded names are recognised.
        let raw = "since=2024-01-01T00:00:00Z&api%5Fkey=kg_a&tags=a,b&flag&q=a%20b";
        let mut r = req(&format!("/n?{raw}"), &[]);
        s.strip(&mut r, "kg");
        assert_eq!(
            r.uri().query(),
            Some("since=2024-01-01T00:00:00Z&tags=a,b&flag&q=a%20b")
        );
    }
}
