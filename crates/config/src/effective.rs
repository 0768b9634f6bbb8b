//! The configuration as `cronium-runtime config` prints it: every setting,
//! its value (secrets and URL passwords redacted) and where it came from.

use std::path::PathBuf;

use crate::settings::{self as s, Setting};
use crate::sources::{Env, Origin as SourceOrigin, Sources};
use crate::values::Values;
use crate::{Config, ConfigError};

/// One effective setting, as `cronium-runtime config` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The variable (`RATE_LIMIT_PER_MIN`, `CRONIUM_COMPONENT_EXECUTIONS`).
    pub name: String,
    /// The value, secrets redacted; `None`: unset.
    pub value: Option<String>,
    /// Where it came from (`None`: computed from other settings).
    pub origin: Option<SourceOrigin>,
}

/// The configuration as it is in effect: every setting, its value (secrets
/// and URL passwords redacted) and where it came from; and the file read.
pub fn effective(
    env: &Env,
    dir: &std::path::Path,
) -> Result<(Option<PathBuf>, Vec<Effective>), ConfigError> {
    let values = Values {
        sources: Sources::load(env, dir)?,
        env: env.clone(),
    };
    let config = Config::read(&values)?;
    let mut out = Vec::new();
    for setting in s::ALL {
        let (value, origin) = match values.find(setting) {
            Some(found) => (Some(found.text), Some(found.origin)),
            None => (computed(&config, setting), None),
        };
        let value = value.map(|v| {
            if setting.secret {
                "<redacted>".to_owned()
            } else {
                redact_url(&v)
            }
        });
        out.push(Effective {
            name: setting.var.to_owned(),
            value,
            origin,
        });
    }
    for (group, found) in values.sources.component_overrides() {
        out.push(Effective {
            name: format!(
                "{}{}",
                s::COMPONENT_OVERRIDE_PREFIX,
                group.to_ascii_uppercase().replace('-', "_")
            ),
            value: Some(found.text),
            origin: Some(found.origin),
        });
    }
    Ok((values.sources.file.clone(), out))
}

/// The value of a setting whose default depends on others.
fn computed(config: &Config, setting: &Setting) -> Option<String> {
    match setting.var {
        v if v == s::CACHE_DIR.var => config
            .compile_cache
            .as_ref()
            .map(|p| p.display().to_string()),
        v if v == s::TOOLS_DIR.var => Some(config.tools.dir.display().to_string()),
        v if v == s::MAX_IN_FLIGHT.var => Some(config.max_in_flight.to_string()),
        _ => None,
    }
}

/// Every URL of a comma-separated list with its credentials redacted.
pub(crate) fn redact_url(value: &str) -> String {
    value
        .split(',')
        .map(redact_one_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// `scheme://user:password@host` with the credentials replaced.
fn redact_one_url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => value.to_owned(),
    }
}
