//! Headers keygate adds to responses: the quota (`RateLimit-*`), a metered
//! key's balance (`X-Credits-Remaining`) and the end of a key's life
//! (`Sunset`, `Deprecation`).

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_core::Decision;

/// Adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
pub(crate) fn insert_rate_limit_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert(RATELIMIT_LIMIT, d.quota.limit().into());
    headers.insert(RATELIMIT_REMAINING, d.remaining.into());
    let reset = d.reset.as_secs() + u64::from(d.reset.subsec_nanos() > 0);
    headers.insert(RATELIMIT_RESET, reset.into());
}

/// The header that tells a metered key's holder the credits left after
/// the request (or, on a `usage_exceeded` refusal, before it).
pub const CREDITS_REMAINING: HeaderName = HeaderName::from_static("x-credits-remaining");

/// Adds `X-Credits-Remaining`.
pub(crate) fn insert_credits_header(headers: &mut HeaderMap, remaining: u64) {
    headers.insert(CREDITS_REMAINING, remaining.into());
}

/// Adds `Sunset` (RFC 8594, an HTTP-date) and `Deprecation` (RFC 9745, a
/// structured date `@<unix seconds>`) for a key that stops working at `at`.
pub(crate) fn insert_sunset_headers(headers: &mut HeaderMap, at: time::OffsetDateTime) {
    const IMF_FIXDATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    // `to_offset` panics when the UTC form is out of `time`'s range; a
    // record from a store the application wrote itself may hold anything.
    let Some(utc) = at.checked_to_offset(time::UtcOffset::UTC) else {
        return;
    };
    if let Ok(date) = utc.format(IMF_FIXDATE)
        && let Ok(v) = HeaderValue::from_str(&date)
    {
        headers.insert(SUNSET, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("@{}", utc.unix_timestamp())) {
        headers.insert(DEPRECATION, v);
    }
}

const SUNSET: HeaderName = HeaderName::from_static("sunset");
const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
