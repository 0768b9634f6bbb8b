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
    match get(name) {
        None => Ok(default),
        Some(text) => duration::parse(&text)
            .ok_or_else(|| format!("variable {name}: {text:?} is not a duration (e.g. 30s, 5m)")),
    }
}

/// A whole number; `default` when unset.
pub fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match get(name) {
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
