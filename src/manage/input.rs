//! Request bodies and query strings, checked field by field.
//!
//! Bodies are read as plain JSON values and checked here rather than with
//! `serde` derives, so that every mistake in a request is reported at once,
//! each with the path of the field it concerns (`scopes[1]`), instead of
//! the first one only as a line of text.

use keygate_core::{Cursor, Environment, IpNet, KeyUpdate, Metadata, Owner, Quotas, Scope};
use serde::Serialize;
use serde_json::{Map, Value};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};
use utoipa::{IntoParams, ToSchema};

/// Longest key name accepted (the same bound the key manager enforces).
const MAX_NAME_CHARS: usize = 200;
/// Page size when the query gives none.
pub(super) const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub(super) const MAX_LIMIT: usize = 200;

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(super) struct FieldError {
    /// Where the problem is: a field name, an array element (`scopes[1]`),
    /// a query parameter, or `body` for the body as a whole.
    #[schema(example = "scopes[1]")]
    pub(super) field: String,
    /// What is wrong, and what is accepted instead.
    #[schema(
        example = "invalid scope \"Billing\": use 1 to 64 characters from a-z, 0-9 and `:._-`, starting with a letter"
    )]
    pub(super) message: String,
}

/// The settings of a new key.
#[derive(Debug, ToSchema)]
#[schema(as = CreateKey)]
pub(super) struct CreateKeyRequest {
    /// Who the key belongs to: `user:<id>` or `service:<name>`.
    #[schema(value_type = String, example = "user:42")]
    pub(super) owner: Owner,
    /// A name for people: 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, example = "CI deploy")]
    pub(super) name: String,
    /// What the key may do (may be empty). Each scope is 1 to 64
    /// characters from `a-z`, `0-9` and `:._-`, starting with a letter.
    #[schema(value_type = Vec<String>, example = json!(["read", "billing:read"]))]
    pub(super) scopes: Vec<Scope>,
    /// Expire the key this many seconds after creation (at least 1).
    /// Absent or `null`: never.
    #[schema(minimum = 1, example = 7_776_000)]
    pub(super) expires_in_seconds: Option<u64>,
    /// The key's own quota, `n/unit` (`10/s`, `600/min`, `10000/h`,
    /// `10/30s`), or up to 8 separated by commas (`10/s,10000/d`), all
    /// enforced at once. Absent or `null`: the service's default.
    #[schema(value_type = Option<String>, example = "10/s,10000/d")]
    pub(super) rate_limit: Option<Quotas>,
    /// Networks the key may be used from, as CIDR (`10.0.0.0/8`) or single
    /// addresses. Absent or empty: anywhere.
    #[schema(value_type = Vec<String>, example = json!(["10.0.0.0/8", "2001:db8::/32"]))]
    #[serde(default)]
    pub(super) allowed_ips: Vec<IpNet>,
    /// Free-form JSON object kept with the key.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub(super) metadata: Metadata,
    /// `live` or `test`. Absent: the environment of the key making the
    /// request.
    #[schema(value_type = Option<EnvironmentName>)]
    pub(super) environment: Option<Environment>,
}

/// Changes to a key: only the fields present change.
#[derive(Debug, Default, ToSchema)]
#[schema(as = UpdateKey)]
pub(super) struct UpdateKeyRequest {
    /// A new name: 1 to 200 characters.
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    #[serde(default)]
    pub(super) name: Option<String>,
    /// New scopes, replacing the old ones.
    #[schema(value_type = Vec<String>, example = json!(["read"]))]
    #[serde(default)]
    pub(super) scopes: Option<Vec<Scope>>,
    /// New quotas (`100/min`, or several: `10/s,10000/d`); `null` goes back
    /// to the service's default.
    #[schema(value_type = Option<String>, example = "100/min")]
    #[serde(default)]
    pub(super) rate_limit: Option<Option<Quotas>>,
    /// A new IP allowlist, replacing the old one; empty: anywhere.
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub(super) allowed_ips: Option<Vec<IpNet>>,
    /// New metadata, replacing the old object.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub(super) metadata: Option<Metadata>,
    /// A new expiry (RFC 3339); `null`: never.
    #[schema(value_type = Option<String>, format = DateTime, example = "2030-01-01T00:00:00Z")]
    #[serde(default)]
    pub(super) expires_at: Option<Option<OffsetDateTime>>,
}

impl From<UpdateKeyRequest> for KeyUpdate {
    fn from(r: UpdateKeyRequest) -> Self {
        Self {
            name: r.name,
            scopes: r.scopes.map(|s| s.into_iter().collect()),
            rate_limit: r.rate_limit,
            allowed_ips: r.allowed_ips,
            metadata: r.metadata,
            expires_at: r.expires_at,
        }
    }
}

/// How to rotate a key.
#[derive(Debug, ToSchema)]
#[schema(as = RotateKey)]
pub(super) struct RotateKeyRequest {
    /// How long the old key keeps working, in seconds (0: it stops now).
    #[schema(minimum = 0, example = 86_400)]
    pub(super) grace_seconds: u64,
}

/// `live` or `test`.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum EnvironmentName {
    /// Production keys.
    Live,
    /// Sandbox and CI keys.
    Test,
}

impl From<Environment> for EnvironmentName {
    fn from(e: Environment) -> Self {
        match e {
            Environment::Live => Self::Live,
            Environment::Test => Self::Test,
        }
    }
}

/// The query of `GET /keys`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Whose keys: `user:<id>` or `service:<name>`. Default: the owner of
    /// the key making the request.
    #[param(value_type = Option<String>, example = "user:42")]
    pub(super) owner: Option<Owner>,
    /// Most keys to return (1 to 200, default 50).
    #[param(value_type = Option<usize>, minimum = 1, maximum = 200)]
    pub(super) limit: usize,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>)]
    pub(super) cursor: Option<Cursor>,
}

/// The query of `GET /keys/{id}/usage`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageQuery {
    /// Start of the period (RFC 3339). Default: 24 hours ago.
    #[param(value_type = Option<String>, format = DateTime, example = "2030-01-01T00:00:00Z")]
    pub(super) since: Option<OffsetDateTime>,
}

/// Collects field errors while a request is read.
#[derive(Debug, Default)]
pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The value, or `None` after recording why there is none.
    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(field, message)).ok()
    }

    /// The request, if nothing was wrong. `value` is only called then, so it
    /// may unwrap what each check returned.
    fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty()
            && let Some(v) = value()
        {
            return Ok(v);
        }
        Err(self.0)
    }
}

fn one(field: &str, message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }]
}

/// The body as a JSON object. An empty body reads as `{}`, so a missing
/// body reports the fields it lacks.
fn object(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(one(
            "body",
            format!("expected a JSON object, found {}", kind(&other)),
        )),
        Err(e) => Err(one("body", format!("invalid JSON: {e}"))),
    }
}

/// Fields left over once the known ones are taken out.
fn unknown_fields(map: Map<String, Value>, expected: &str, errors: &mut Errors) {
    for (name, _) in map {
        errors.push(name, format!("unknown field; expected one of {expected}"));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(what: &str, v: &Value) -> String {
    format!("expected {what}, found {}", kind(v))
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str().ok_or_else(|| expected("a string", v))
}

fn owner(v: &Value) -> Result<Owner, String> {
    string(v)?.parse().map_err(|e| format!("{e}"))
}

fn name(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    if s.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if s.chars().count() > MAX_NAME_CHARS {
        Err(format!("must be at most {MAX_NAME_CHARS} characters"))
    } else {
        Ok(s.to_owned())
    }
}

/// The scopes in the request's order, so that `scopes[i]` in later errors
/// points at what the client sent.
fn scopes(field: &str, v: &Value, errors: &mut Errors) -> Option<Vec<Scope>> {
    let Some(items) = v.as_array() else {
        errors.push(field, expected("an array of scope names", v));
        return None;
    };
    let before = errors.0.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let parsed = string(item).and_then(|s| s.parse::<Scope>().map_err(|e| format!("{e}")));
        if let Some(scope) = errors.check(&at, parsed) {
            out.push(scope);
        }
    }
    (errors.0.len() == before).then_some(out)
}

fn quotas(v: &Value) -> Result<Option<Quotas>, String> {
    match v {
        Value::Null => Ok(None),
        _ => string(v)?.parse().map(Some).map_err(|e| format!("{e}")),
    }
}

fn networks(field: &str, v: &Value, errors: &mut Errors) -> Option<Vec<IpNet>> {
    let Some(items) = v.as_array() else {
        errors.push(field, expected("an array of CIDR strings", v));
        return None;
    };
    let before = errors.0.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(net) = errors.check(&at, string(item).and_then(network)) {
            out.push(net);
        }
    }
    (errors.0.len() == before).then_some(out)
}

/// See [`keygate_core::parse_allowed_net`].
fn network(s: &str) -> Result<IpNet, String> {
    keygate_core::parse_allowed_net(s).ok_or_else(|| {
            format!("{s:?} is not a network: write CIDR such as `10.0.0.0/8` or `2001:db8::/32`, or a single address")
        })
}

fn metadata(v: &Value) -> Result<Metadata, String> {
    match v {
        Value::Object(map) => Ok(map.clone()),
        _ => Err(expected("a JSON object", v)),
    }
}

fn environment(v: &Value) -> Result<Environment, String> {
    string(v)?
        .parse()
        .map_err(|_| "must be `live` or `test`".to_owned())
}

/// A whole number of seconds, at least `min`.
fn seconds(v: &Value, min: u64) -> Result<u64, String> {
    let whole = "a whole number of seconds";
    match v.as_u64() {
        Some(n) if n >= min => Ok(n),
        Some(_) if min == 1 => Err("must be at least 1 second".to_owned()),
        Some(_) => Err(format!("must be at least {min}")),
        None if v.as_i64().is_some() || v.as_f64().is_some_and(|f| f < 0.0) => {
            Err("must not be negative".to_owned())
        }
        None if v.is_number() => Err(format!("expected {whole}, found a fraction")),
        None => Err(expected(whole, v)),
    }
}

fn timestamp(s: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|_| format!("{s:?} is not an RFC 3339 time such as `2030-01-01T00:00:00Z`"))?;
    // An offset can carry a year-0000 or year-9999 time out of range in
    // UTC, where stores keep it and headers show it: refuse it here rather
    // than keep a key that no answer can show.
    match t.checked_to_offset(UtcOffset::UTC) {
        Some(utc) if (0..=9999).contains(&utc.year()) => Ok(t),
        _ => Err(format!(
            "{s:?} is out of range: use a time from year 0000 to 9999 in UTC"
        )),
    }
}

fn optional_timestamp(v: &Value) -> Result<Option<OffsetDateTime>, String> {
    match v {
        Value::Null => Ok(None),
        _ => timestamp(string(v)?).map(Some),
    }
}

/// A present, non-null field, or an error saying it is required.
fn required(map: &mut Map<String, Value>, field: &str, errors: &mut Errors) -> Option<Value> {
    match map.remove(field) {
        None | Some(Value::Null) => {
            errors.push(field, "required");
            None
        }
        some => some,
    }
}

/// A field that may be absent or `null`.
fn optional(map: &mut Map<String, Value>, field: &str) -> Option<Value> {
    map.remove(field).filter(|v| !v.is_null())
}

/// Reads the body of `POST /keys`.
pub(super) fn create(body: &[u8]) -> Result<CreateKeyRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let owner = required(&mut map, "owner", e).and_then(|v| e.check("owner", owner(&v)));
    let name = required(&mut map, "name", e).and_then(|v| e.check("name", name(&v)));
    let scopes = required(&mut map, "scopes", e).and_then(|v| scopes("scopes", &v, e));
    let expires_in = optional(&mut map, "expires_in_seconds")
        .map(|v| e.check("expires_in_seconds", seconds(&v, 1)));
    let rate_limit = map
        .remove("rate_limit")
        .map(|v| e.check("rate_limit", quotas(&v)));
    let allowed_ips = optional(&mut map, "allowed_ips").map(|v| networks("allowed_ips", &v, e));
    let metadata = optional(&mut map, "metadata").map(|v| e.check("metadata", metadata(&v)));
    let environment =
        optional(&mut map, "environment").map(|v| e.check("environment", environment(&v)));
    unknown_fields(
        map,
        "owner, name, scopes, expires_in_seconds, rate_limit, allowed_ips, metadata, environment",
        e,
    );
    errors.finish(|| {
        Some(CreateKeyRequest {
            owner: owner?,
            name: name?,
            scopes: scopes?,
            expires_in_seconds: expires_in.flatten(),
            rate_limit: rate_limit.flatten().flatten(),
            allowed_ips: allowed_ips.flatten().unwrap_or_default(),
            metadata: metadata.flatten().unwrap_or_default(),
            environment: environment.flatten(),
        })
    })
}

/// Reads the body of `PATCH /keys/{id}`.
pub(super) fn update(body: &[u8]) -> Result<UpdateKeyRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let mut req = UpdateKeyRequest::default();
    // `null` means "clear" for the settings that can be cleared, and is
    // an error for the others.
    if let Some(v) = map.remove("name") {
        req.name = e.check("name", name(&v));
    }
    if let Some(v) = map.remove("scopes") {
        req.scopes = scopes("scopes", &v, e);
    }
    if let Some(v) = map.remove("rate_limit") {
        req.rate_limit = e.check("rate_limit", quotas(&v));
    }
    if let Some(v) = map.remove("allowed_ips") {
        req.allowed_ips = networks("allowed_ips", &v, e);
    }
    if let Some(v) = map.remove("metadata") {
        req.metadata = e.check("metadata", metadata(&v));
    }
    if let Some(v) = map.remove("expires_at") {
        req.expires_at = e.check("expires_at", optional_timestamp(&v));
    }
    for fixed in [
        "id",
        "family",
        "owner",
        "environment",
        "created_at",
        "prefix",
    ] {
        if map.remove(fixed).is_some() {
            e.push(
                fixed,
                "cannot be changed; create a new key (or rotate this one) instead",
            );
        }
    }
    unknown_fields(
        map,
        "name, scopes, rate_limit, allowed_ips, metadata, expires_at",
        e,
    );
    errors.finish(|| Some(req))
}

/// Reads the body of `POST /keys/{id}/rotate`.
pub(super) fn rotate(body: &[u8]) -> Result<RotateKeyRequest, Vec<FieldError>> {
    let mut map = object(body)?;
    let mut errors = Errors::default();
    let e = &mut errors;
    let grace = match map.remove("grace_seconds") {
        None | Some(Value::Null) => {
            e.push(
                "grace_seconds",
                "required: how long the old key keeps working, in seconds (0 to stop it now)",
            );
            None
        }
        Some(v) => e.check("grace_seconds", seconds(&v, 0)),
    };
    unknown_fields(map, "grace_seconds", e);
    errors.finish(|| {
        Some(RotateKeyRequest {
            grace_seconds: grace?,
        })
    })
}

/// The query parameters, each at most once. Parameters this API does not
/// know are ignored: the query may carry the API key itself, or a client's
/// cache-buster.
fn params<const N: usize>(
    query: Option<&str>,
    names: [&str; N],
    errors: &mut Errors,
) -> [Option<String>; N] {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_some() {
                errors.push(k, "given more than once");
            }
            out[i] = Some(v.into_owned());
        }
    }
    out
}

/// Reads the query of `GET /keys`.
pub(super) fn list(query: Option<&str>) -> Result<ListQuery, Vec<FieldError>> {
    let mut errors = Errors::default();
    let e = &mut errors;
    let [owner, limit, cursor] = params(query, ["owner", "limit", "cursor"], e);
    let owner = owner.map(|s| e.check("owner", s.parse().map_err(|err| format!("{err}"))));
    let limit = limit.map(|s| {
        let parsed = s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("must be a whole number from 1 to {MAX_LIMIT}"));
        e.check("limit", parsed)
    });
    let cursor = cursor.map(|s| {
        let parsed = s.parse::<Cursor>().map_err(|_| {
            "not a cursor this API handed out; pass `next_cursor` unchanged".to_owned()
        });
        e.check("cursor", parsed)
    });
    errors.finish(|| {
        Some(ListQuery {
            owner: owner.flatten(),
            limit: limit.flatten().unwrap_or(DEFAULT_LIMIT),
            cursor: cursor.flatten(),
        })
    })
}

/// Reads the query of `GET /keys/{id}/usage`.
pub(super) fn usage(query: Option<&str>) -> Result<UsageQuery, Vec<FieldError>> {
    let mut errors = Errors::default();
    let e = &mut errors;
    let [since] = params(query, ["since"], e);
    let since = since.map(|s| e.check("since", timestamp(&s)));
    errors.finish(|| {
        Some(UsageQuery {
            since: since.flatten(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_core::Quota;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn create_reports_every_bad_field() {
        let body = br#"{"owner":"team:x","name":" ","scopes":["read","Bad",3],
            "expires_in_seconds":-5,"rate_limit":"5/fortnight","allowed_ips":["10.0.0.0/33"],
            "metadata":[],"environment":"prod","colour":"red"}"#;
        let errors = create(body).unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "owner",
                "name",
                "scopes[1]",
                "scopes[2]",
                "expires_in_seconds",
                "rate_limit",
                "allowed_ips[0]",
                "metadata",
                "environment",
                "colour"
            ]
        );
    }

    #[test]
    fn create_reads_a_full_body() {
        let body = br#"{"owner":"service:ci","name":"deploy","scopes":["write"],
            "expires_in_seconds":60,"rate_limit":"10/s","allowed_ips":["10.1.2.3/8","192.0.2.7"],
            "metadata":{"team":"infra"},"environment":"test"}"#;
        let req = create(body).unwrap();
        assert_eq!(req.owner, Owner::service("ci"));
        assert_eq!(req.expires_in_seconds, Some(60));
        assert_eq!(req.rate_limit, Some(Quota::per_second(10).into()));
        assert_eq!(
            req.allowed_ips,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert_eq!(req.environment, Some(Environment::Test));
    }

    #[test]
    fn bodies_that_are_not_objects_are_errors_on_body() {
        for body in [&b"{"[..], b"[]", b"\"x\"", b"{\"owner\":}"] {
            assert_eq!(fields(&create(body).unwrap_err()), vec!["body"]);
        }
        assert_eq!(
            fields(&create(b"").unwrap_err()),
            vec!["owner", "name", "scopes"]
        );
    }

    #[test]
    fn seconds_must_be_whole_and_positive() {
        assert!(seconds(&Value::from(0), 1).is_err());
        assert!(seconds(&Value::from(1.5), 1).is_err());
        assert!(seconds(&Value::from("60"), 1).is_err());
        assert_eq!(seconds(&Value::from(0), 0), Ok(0));
        assert!(
            seconds(&Value::from(-1), 0)
                .unwrap_err()
                .contains("negative")
        );
    }

    #[test]
    fn update_distinguishes_absent_null_and_fixed_fields() {
        let req = update(br#"{"rate_limit":null,"expires_at":"2030-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(req.rate_limit, Some(None));
        assert!(req.expires_at.unwrap().is_some());
        assert!(req.name.is_none());
        let errors = update(br#"{"owner":"user:b","name":null,"expires_at":"soon"}"#).unwrap_err();
        assert_eq!(fields(&errors), vec!["name", "expires_at", "owner"]);
    }

    #[test]
    fn queries_are_checked_and_unknown_parameters_ignored() {
        let q = list(Some("owner=user%3A7&limit=5&api_key=x")).unwrap();
        assert_eq!(q.owner, Some(Owner::user("7")));
        assert_eq!(q.limit, 5);
        assert_eq!(list(None).unwrap().limit, DEFAULT_LIMIT);
        let errors = list(Some("limit=0&cursor=nope&owner=x&limit=3")).unwrap_err();
        assert_eq!(fields(&errors), vec!["limit", "owner", "cursor"]);
        assert!(usage(Some("since=yesterday")).is_err());
    }
}
