//! The merged sources read as typed values (durations, sizes, numbers,
//! booleans, the Valkey seed list): every error names the setting's
//! variable and where the bad value came from.

use std::time::Duration;

use crate::ConfigError;
use crate::settings::Setting;
use crate::sources::{Env, Found, Sources};

/// The merged sources, read as typed values. Every error names the
/// setting's variable and where the bad value came from.
pub(crate) struct Values {
    pub(crate) sources: Sources,
    pub(crate) env: Env,
}

impl Values {
    pub(crate) fn find(&self, setting: &Setting) -> Option<Found> {
        self.sources.find(setting)
    }

    pub(crate) fn text(&self, setting: &Setting) -> Option<String> {
        self.find(setting).map(|found| found.text)
    }

    pub(crate) fn invalid(&self, setting: &Setting, found: &Found, problem: &str) -> ConfigError {
        let shown = if setting.secret {
            "<redacted>".to_owned()
        } else {
            format!("{:?}", found.text)
        };
        ConfigError::new(
            setting.var,
            format!("{shown} (from {}) {problem}", found.origin),
        )
    }

    pub(crate) fn invalid_text(&self, setting: &Setting, problem: &str) -> ConfigError {
        match self.find(setting) {
            Some(found) => self.invalid(setting, &found, problem),
            None => ConfigError::new(setting.var, problem.to_owned()),
        }
    }

    /// The value parsed by `parse`; `None` when unset without a default.
    pub(crate) fn optional<T>(
        &self,
        setting: &Setting,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.find(setting) {
            None => Ok(None),
            Some(found) => match parse(&found.text) {
                Some(value) => Ok(Some(value)),
                None => Err(self.invalid(setting, &found, expected)),
            },
        }
    }

    /// The value parsed by `parse`, which the table's default guarantees.
    pub(crate) fn parsed<T>(
        &self,
        setting: &Setting,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.optional(setting, parse, expected)?
            .ok_or_else(|| ConfigError::new(setting.var, "is required"))
    }

    pub(crate) fn duration(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.parsed(
            setting,
            parse_duration,
            "is not a duration (e.g. 30s, 5m, 1h30m)",
        )
    }

    pub(crate) fn size(&self, setting: &Setting) -> Result<usize, ConfigError> {
        self.parsed(setting, parse_size, "is not a size (e.g. 64MiB)")
    }

    pub(crate) fn number<T: std::str::FromStr>(&self, setting: &Setting) -> Result<T, ConfigError> {
        self.parsed(
            setting,
            |v| v.parse().ok(),
            "is not a whole number in range",
        )
    }

    pub(crate) fn optional_number<T: std::str::FromStr>(
        &self,
        setting: &Setting,
    ) -> Result<Option<T>, ConfigError> {
        self.optional(
            setting,
            |v| v.parse().ok(),
            "is not a whole number in range",
        )
    }

    pub(crate) fn boolean(&self, setting: &Setting) -> Result<bool, ConfigError> {
        self.parsed(
            setting,
            |v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => None,
            },
            "is not a boolean",
        )
    }
}

/// Parses a Go duration (`300ms`, `30s`, `5m`, `1h30m`); a bare number is
/// seconds. The rule is shared with the Spin adapter.
pub use cronium_rules::duration::parse as parse_duration;

/// Parses `64MiB`, `512KiB`, `1GiB`, `1048576` (bytes).
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: usize = text[..digits].parse().ok()?;
    let scale = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `VALKEY_URL` as one URL per seed, each read as the Go service reads
/// it (`valkey://` as `redis://`), joined by commas; `None` when any is
/// not a Valkey URL.
pub(crate) fn normalize_seeds(text: &str) -> Option<String> {
    let seeds = text
        .split(',')
        .map(|seed| cronium_rules::valkey::normalize_url(seed.trim()))
        .collect::<Option<Vec<_>>>()?;
    Some(seeds.join(","))
}
