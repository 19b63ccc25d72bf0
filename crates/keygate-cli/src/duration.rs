//! Durations as people type them: `90d`, `12h`, `30m`, `45s`, `1w`, `1h30m`.

use std::time::Duration;

/// What every duration error ends with: the format that is expected.
const EXPECTED: &str = "write a number and a unit: s (seconds), m (minutes), h (hours), \
                        d (days) or w (weeks), e.g. 45s, 30m, 12h, 90d, 1w or 1h30m";

/// Parses a duration such as `90d` or `1h30m`.
///
/// # Errors
///
/// A message that says what format is expected.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(EXPECTED.to_owned());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || letters == 0 {
            return Err(EXPECTED.to_owned());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        let unit: u64 = match &rest[digits..digits + letters] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            other => {
                return Err(format!("unknown unit {other:?}: {EXPECTED}"));
            }
        };
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_long)?;
        rest = &rest[digits + letters..];
    }
    // Far beyond any sensible expiry, and keeps date arithmetic in range.
    if total > 100 * 365 * 86_400 {
        return Err(too_long());
    }
    Ok(Duration::from_secs(total))
}

/// Like [`parse`], but zero is refused: for lifetimes such as `--expires-in`.
///
/// # Errors
///
/// As [`parse`], or for a zero duration.
pub(crate) fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = parse(s)?;
    if d.is_zero() {
        return Err(format!("must be longer than 0s; {EXPECTED}"));
    }
    Ok(d)
}

fn too_long() -> String {
    "too long: at most 100 years (e.g. 36500d)".to_owned()
}

/// A duration in its two largest units: `90d`, `2h 5m`, `45s`.
pub(crate) fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let out: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if out.is_empty() {
        "0s".to_owned()
    } else {
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        let s = Duration::from_secs;
        for (text, want) in [
            ("45s", s(45)),
            ("30m", s(1_800)),
            ("12h", s(43_200)),
            ("90d", s(90 * 86_400)),
            ("1w", s(7 * 86_400)),
            ("1h30m", s(5_400)),
            (" 2d12h ", s(216_000)),
            ("0s", s(0)),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_expected() {
        for bad in [
            "", "90", "d", "1.5h", "-1h", "1 h", "h1", "90days", "1y", "1h30",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("e.g. 45s, 30m, 12h, 90d, 1w"),
                "{bad:?}: {err}"
            );
        }
        assert!(parse("1y").unwrap_err().starts_with("unknown unit \"y\""));
        assert!(
            parse("99999999999999999999s")
                .unwrap_err()
                .contains("too long")
        );
        assert!(parse("36501d").unwrap_err().contains("too long"));
        assert!(parse("36500d").is_ok());
        assert!(parse_positive("0d").unwrap_err().contains("longer than 0s"));
        assert_eq!(parse_positive("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn formats_the_two_largest_units() {
        let s = Duration::from_secs;
        assert_eq!(format(s(90 * 86_400)), "90d");
        assert_eq!(format(s(86_400 + 3_600 + 61)), "1d 1h");
        assert_eq!(format(s(86_400 + 61)), "1d");
        assert_eq!(format(s(7_500)), "2h 5m");
        assert_eq!(format(s(45)), "45s");
        assert_eq!(format(Duration::from_millis(300)), "0s");
    }
}
