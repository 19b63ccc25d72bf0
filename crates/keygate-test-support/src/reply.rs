//! [`Reply`]: a response read whole, with the assertions black-box tests
//! make on keygate's answers.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;

/// A request to `path` carrying `X-API-Key: key` if there is a key, and
/// `body` as `application/json` if there is a body: what the management
/// API's tests send. A `String` body: axum routers take any body type.
pub fn json_request(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Request<String> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            b.to_owned()
        }
        None => String::new(),
    };
    req.body(body).expect("a valid request")
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// Reads `res` whole.
    ///
    /// # Panics
    ///
    /// When the body fails.
    pub async fn read<B>(res: Response<B>) -> Self
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("read the body").to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    /// The body as text, with any bytes that are not UTF-8 replaced: for
    /// messages and for searching answers to input that may not be UTF-8.
    pub fn lossy_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", self.text()))
    }

    /// The body as JSON, or `null` when it is not JSON (empty included).
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("visible ASCII header"))
    }

    /// The `Content-Type`, or `""`.
    pub fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE.as_str()).unwrap_or("")
    }

    /// A header as a number.
    pub fn number(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not a whole number: {e}"))
    }

    /// The problem document's `code`.
    pub fn code(&self) -> String {
        self.json()["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {}", self.text()))
            .to_owned()
    }

    /// The `field` of each entry of the problem's `errors`, in order.
    pub fn fields(&self) -> Vec<String> {
        self.json_or_null()["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["field"].as_str().expect("a field name").to_owned())
            .collect()
    }

    /// Asserts a 200 (with the body in the message otherwise).
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "expected 200, got {self:?}");
        self
    }

    /// Asserts this status; returns the body as JSON (`null` if it is not).
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self.json_or_null()
    }

    /// Asserts an RFC 9457 problem+json answer with this status and code,
    /// as every keygate answer that is not a success is; returns it.
    #[track_caller]
    pub fn problem(&self, status: StatusCode, code: &str) -> Value {
        let text = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status, status, "{text}");
        assert_eq!(self.content_type(), "application/problem+json", "{text}");
        let body = self.json();
        assert_eq!(body["code"], code, "{text}");
        assert_eq!(body["status"], status.as_u16(), "{text}");
        assert_eq!(body["type"], "about:blank", "{text}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "a detail: {text}"
        );
        body
    }

    /// Asserts a [`problem`](Self::problem) and returns the `field` of each
    /// of its `errors`, sorted.
    #[track_caller]
    pub fn problem_fields(&self, status: StatusCode, code: &str) -> Vec<String> {
        self.problem(status, code);
        let mut fields = self.fields();
        fields.sort();
        fields
    }

    /// Asserts one of the layer's rejections: a [`problem`](Self::problem)
    /// with this status and code that is not cached, titled by its status,
    /// with a detail that says what to do, and `WWW-Authenticate` on every
    /// 401 and only there.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        let status = StatusCode::from_u16(status).expect("a status code");
        let body = self.problem(status, code);
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(
            body["title"],
            status.canonical_reason().expect("standard status")
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| d.len() > 20),
            "a detail that says what to do: {body}"
        );
        let challenged = self.headers.contains_key(header::WWW_AUTHENTICATE);
        assert_eq!(
            challenged,
            status == StatusCode::UNAUTHORIZED,
            "WWW-Authenticate on every 401 and only there: {self:?}"
        );
        body
    }

    /// Asserts a 401 with this code and an `ApiKey` challenge for the
    /// `X-API-Key` header; `missing_key` gets the plain challenge, the
    /// others add `error="<code>"`.
    #[track_caller]
    pub fn assert_unauthorized(&self, code: &str) -> Value {
        let body = self.assert_problem(401, code);
        let challenge = self.header("www-authenticate").expect("a challenge");
        assert!(challenge.starts_with("ApiKey "), "{challenge}");
        assert!(challenge.contains(r#"realm="api""#), "{challenge}");
        assert!(
            challenge
                .to_ascii_lowercase()
                .contains(r#"header="x-api-key""#),
            "{challenge}"
        );
        if code == "missing_key" {
            assert!(!challenge.contains("error="), "{challenge}");
        } else {
            assert!(
                challenge.ends_with(&format!(r#", error="{code}""#)),
                "the challenge's error is the code: {challenge}"
            );
        }
        body
    }
}
