//! Go-style durations (`300ms`, `30s`, `5m`, `1h30m`), the way the Go
//! service's variables (`CACHE_TTL`, `JWT_LEEWAY`, ...) are written: the
//! host reads its environment with this, the Spin adapters their Spin
//! variables, so one value means the same in both.

use std::time::Duration;

/// Parses a Go duration (`300ms`, `30s`, `5m`, `1h30m`); a bare number is
/// seconds. `None` for anything else, a negative or non-finite part, and
/// a total that does not fit a `Duration`.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(Duration::try_from_secs_f64(value * scale).ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse("5 parsecs"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn a_total_too_large_for_a_duration_is_refused_not_a_panic() {
        assert_eq!(parse("9999999999999999999s9999999999999999999s"), None);
        assert_eq!(parse("99999999999999999999999h"), None);
        assert_eq!(parse("1e400s"), None);
        assert_eq!(parse("."), None);
    }
}
