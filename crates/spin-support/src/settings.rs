//! The adapters' settings, read from Spin variables. Each variable has the
//! name of the custom host's environment variable in lower case
//! (`CACHE_TTL` is `cache_ttl`) and the same default, so one value means
//! the same under both hosts. A variable the component does not declare
//! takes its default.

use std::time::Duration;

use cronium_rules::duration;

/// The value of Spin variable `name`, if the component declares one and
/// it is not empty.
pub fn get(name: &str) -> Option<String> {
    spin_sdk::variables::get(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A Go-style duration (`30s`, `5m`); `default` when unset.
pub fn duration(name: &str, default: Duration) -> Result<Duration, String> {
    duration_from(name, get(name), default)
}

/// `rate_limit_per_min` from its text (unset: the rules' default, as for
/// the custom host's `RATE_LIMIT_PER_MIN`).
pub fn rate_limit_per_min(text: Option<String>) -> Result<u32, String> {
    number_from(
        "rate_limit_per_min",
        text,
        cronium_rules::settings::RATE_LIMIT_PER_MIN,
    )
}

/// `cache_ttl` from its text (unset: the rules' default, as for the
/// custom host's `CACHE_TTL`).
pub fn cache_ttl(text: Option<String>) -> Result<Duration, String> {
    duration_from("cache_ttl", text, cronium_rules::settings::CACHE_TTL)
}

/// `backend_timeout` from its text (unset: the rules' default).
pub fn backend_timeout(text: Option<String>) -> Result<Duration, String> {
    duration_from(
        "backend_timeout",
        text,
        cronium_rules::settings::BACKEND_TIMEOUT,
    )
}

/// `variable_key_max` from its text (unset: the Cronium app's 255, as
/// for the custom host's `CRONIUM_VARIABLE_KEY_MAX`); at least 1.
pub fn variable_key_max(text: Option<String>) -> Result<u32, String> {
    number_from(
        "variable_key_max",
        text,
        cronium_rules::variables::BACKEND_KEY_MAX_CHARS,
    )
    .and_then(|max| {
        (max > 0)
            .then_some(max)
            .ok_or_else(|| "variable variable_key_max: must be above 0".to_owned())
    })
}

/// [`duration()`] of a value already read.
pub fn duration_from(
    name: &str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => duration::parse(&text)
            .ok_or_else(|| format!("variable {name}: {text:?} is not a duration (e.g. 30s, 5m)")),
    }
}

/// A whole number; `default` when unset.
pub fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    number_from(name, get(name), default)
}

/// [`number`] of a value already read.
pub fn number_from<T: std::str::FromStr>(
    name: &str,
    text: Option<String>,
    default: T,
) -> Result<T, String> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("variable {name}: {text:?} is not a number")),
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`); `default` when unset.
pub fn boolean(name: &str, default: bool) -> Result<bool, String> {
    match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(format!("variable {name}: {other:?} is not a boolean")),
    }
}
