//! Readers of single JSON values: each says what it expected and what it
//! found, in words a client can act on.

use keygate_core::{
    Environment, IpNet, MAX_CREDITS, Metadata, Owner, Quotas, Refill, RefillInterval, Scope,
};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Errors, FieldError};

/// Longest key name accepted (the same bound the key manager enforces).
const MAX_NAME_CHARS: usize = 200;

fn one(field: &str, message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }]
}

/// The body as a JSON object. An empty body reads as `{}`, so a missing
/// body reports the fields it lacks.
pub(super) fn object(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
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
pub(super) fn unknown_fields(map: Map<String, Value>, expected: &str, errors: &mut Errors) {
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

pub(super) fn owner(v: &Value) -> Result<Owner, String> {
    string(v)?.parse().map_err(|e| format!("{e}"))
}

pub(super) fn name(v: &Value) -> Result<String, String> {
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
pub(super) fn scopes(field: &str, v: &Value, errors: &mut Errors) -> Option<Vec<Scope>> {
    let scope = |s: &str| s.parse::<Scope>().map_err(|e| format!("{e}"));
    each_string(field, v, "an array of scope names", scope, errors)
}

pub(super) fn quotas(v: &Value) -> Result<Option<Quotas>, String> {
    match v {
        Value::Null => Ok(None),
        _ => string(v)?.parse().map(Some).map_err(|e| format!("{e}")),
    }
}

pub(super) fn networks(field: &str, v: &Value, errors: &mut Errors) -> Option<Vec<IpNet>> {
    each_string(field, v, "an array of CIDR strings", network, errors)
}

/// An array of strings, each read by `parse`; a bad element is reported at
/// its index (`field[i]`), every one of them, and the array is then `None`.
fn each_string<T>(
    field: &str,
    v: &Value,
    what: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    errors: &mut Errors,
) -> Option<Vec<T>> {
    let Some(items) = v.as_array() else {
        errors.push(field, expected(what, v));
        return None;
    };
    let before = errors.0.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(parsed) = errors.check(&at, string(item).and_then(&parse)) {
            out.push(parsed);
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

pub(super) fn metadata(v: &Value) -> Result<Metadata, String> {
    match v {
        Value::Object(map) => Ok(map.clone()),
        _ => Err(expected("a JSON object", v)),
    }
}

pub(super) fn environment(v: &Value) -> Result<Environment, String> {
    string(v)?
        .parse()
        .map_err(|_| "must be `live` or `test`".to_owned())
}

/// A whole number of seconds, at least `min`. A number written with a
/// zero fraction (`60.0`) is whole, as JSON Schema's `integer` says.
pub(super) fn seconds(v: &Value, min: u64) -> Result<u64, String> {
    let whole = "a whole number of seconds";
    match as_whole(v) {
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

/// `v` as a whole, non-negative number a `u64` holds, if it is one. A
/// number written with a zero fraction (`60.0`) is whole, as JSON Schema's
/// `integer` says.
fn as_whole(v: &Value) -> Option<u64> {
    // 2^64: the first whole float a u64 cannot hold.
    let integral = |f: f64| f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f);
    // Whole, non-negative and below 2^64, checked just before: the cast is
    // exact.
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| integral(*f)).map(|f| f as u64))
}

/// A whole number from `min` to `max` (see [`as_whole`]), for the quantity
/// `what` (`credits`).
fn whole(v: &Value, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let range = || format!("must be a whole number of {what} from {min} to {max}");
    match as_whole(v) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(range()),
        None if v.as_i64().is_some() || v.as_f64().is_some_and(|f| f < 0.0) => {
            Err(format!("must not be negative: {}", range()))
        }
        None if v.is_number() => Err(format!(
            "expected a whole number of {what}, found a fraction"
        )),
        None => Err(expected(&format!("a whole number of {what}"), v)),
    }
}

/// A credit balance or top-up: 0 to [`MAX_CREDITS`].
pub(super) fn credits(v: &Value) -> Result<u64, String> {
    whole(v, 0, MAX_CREDITS, "credits")
}

/// A refill, `{"amount": 20, "interval": "day"}`: each problem at its own
/// path (`refill.amount`), unknown members refused. `None` after recording
/// what is wrong.
pub(super) fn refill(field: &str, v: &Value, errors: &mut Errors) -> Option<Refill> {
    let Value::Object(map) = v else {
        errors.push(
            field,
            expected(r#"an object such as {"amount": 20, "interval": "day"}"#, v),
        );
        return None;
    };
    let mut map = map.clone();
    let at = |member: &str| format!("{field}.{member}");
    let amount = match map.remove("amount") {
        None | Some(Value::Null) => {
            errors.push(at("amount"), "required: the balance each refill tops up to");
            None
        }
        Some(v) => errors.check(&at("amount"), whole(&v, 1, MAX_CREDITS, "credits")),
    };
    let interval = match map.remove("interval") {
        None | Some(Value::Null) => {
            errors.push(at("interval"), format!("required: {INTERVALS}"));
            None
        }
        Some(v) => errors.check(&at("interval"), string(&v).and_then(refill_interval)),
    };
    for (name, _) in map {
        errors.push(at(&name), "unknown field; expected amount, interval");
    }
    Refill::new(amount?, interval?).ok()
}

/// What a refill interval may be, for messages.
const INTERVALS: &str = "`day`, `month`, or a period from 1 s to 366 days written `{n}s`, \
    `{n}min`, `{n}h` or `{n}d` (`90s`, `15min`, `6h`, `7d`)";

/// A refill interval, exactly as the document's pattern describes it: no
/// surrounding spaces, no leading zeros.
fn refill_interval(s: &str) -> Result<RefillInterval, String> {
    let shown = || s.chars().take(32).collect::<String>();
    if s.trim() != s || s.starts_with('0') {
        return Err(format!(
            "{:?} is not a refill interval: use {INTERVALS}",
            shown()
        ));
    }
    s.parse()
        .map_err(|_| format!("{:?} is not a refill interval: use {INTERVALS}", shown()))
}

/// An RFC 3339 time, in UTC, within keygate's bounds
/// ([`keygate_core::checked_utc`]): `9999-12-31T23:59:59-23:59` parses, but
/// is in year 10000 in UTC.
pub(super) fn timestamp(s: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|_| format!("{s:?} is not an RFC 3339 time such as `2030-01-01T00:00:00Z`"))?;
    keygate_core::checked_utc(t).map_err(|e| format!("{s:?} is out of range: {e}"))
}

pub(super) fn optional_timestamp(v: &Value) -> Result<Option<OffsetDateTime>, String> {
    match v {
        Value::Null => Ok(None),
        _ => timestamp(string(v)?).map(Some),
    }
}

/// A present, non-null field, or an error saying it is required.
pub(super) fn required(
    map: &mut Map<String, Value>,
    field: &str,
    errors: &mut Errors,
) -> Option<Value> {
    match map.remove(field) {
        None | Some(Value::Null) => {
            errors.push(field, "required");
            None
        }
        some => some,
    }
}

/// A field that may be absent or `null`.
pub(super) fn optional(map: &mut Map<String, Value>, field: &str) -> Option<Value> {
    map.remove(field).filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_whole_and_positive() {
        assert!(seconds(&Value::from(0), 1).is_err());
        assert!(seconds(&Value::from(1.5), 1).is_err());
        assert!(seconds(&Value::from("60"), 1).is_err());
        assert_eq!(seconds(&Value::from(0), 0), Ok(0));
        assert_eq!(seconds(&Value::from(60.0), 1), Ok(60));
        assert!(seconds(&Value::from(1e300), 1).is_err());
        assert!(seconds(&Value::from(-60.0), 1).is_err());
        assert!(
            seconds(&Value::from(-1), 0)
                .unwrap_err()
                .contains("negative")
        );
    }
}
