//! Where setting values come from, lowest precedence first: the defaults
//! of the settings table, `config.yaml` (or the file `CONFIG_FILE`
//! names), `<NAME>`, `RUNTIME_<SECTION>_<NAME>` and `RUNTIME_<NAME>`
//! variables (`docs/configuration.md`). Each layer
//! is a `figment` provider; figment merges them and remembers which one
//! every value came from, which `cronium-runtime config` reports.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::ConfigError;
use super::settings::{self, ALL, COMPONENT_OVERRIDE_KEY, COMPONENT_OVERRIDE_PREFIX, Setting};

/// The process environment (or a test's), empty values left out: an
/// empty variable reads as unset, as it does for the Go service.
pub type Env = HashMap<String, String>;

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The settings table.
    Default,
    /// The configuration file, at its dotted key.
    File {
        /// The file, as found (`CONFIG_FILE` joined to the working
        /// directory, or its `config.yaml`).
        path: PathBuf,
        /// The dotted key in it (`security.rateLimitPerMin`).
        key: String,
    },
    /// An environment variable, by its exact name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, key } => write!(f, "{} ({key})", path.display()),
            Origin::Env(name) => write!(f, "${name}"),
        }
    }
}

/// A value as configured, before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The value as text: lists joined with commas, maps as JSON.
    pub text: String,
    /// The layer it came from: the one with the highest precedence that
    /// sets it.
    pub origin: Origin,
}

/// The merged layers.
pub struct Sources {
    figment: Figment,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
}

/// The three spellings of a setting's variable, lowest precedence first.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    /// `RATE_LIMIT_PER_MIN`.
    Plain,
    /// `RUNTIME_SECURITY_RATE_LIMIT_PER_MIN` (the Go service's envconfig).
    Sectioned,
    /// `RUNTIME_RATE_LIMIT_PER_MIN`.
    Prefixed,
}

impl Spelling {
    fn of(self, setting: &Setting) -> String {
        match self {
            Spelling::Plain => setting.var.to_owned(),
            Spelling::Sectioned => setting.sectioned_var(),
            Spelling::Prefixed => setting.prefixed_var(),
        }
    }

    /// The prefix of component overrides in this spelling.
    fn override_prefix(self) -> String {
        match self {
            Spelling::Plain => COMPONENT_OVERRIDE_PREFIX.to_owned(),
            Spelling::Sectioned => format!("RUNTIME_CRONIUM_{COMPONENT_OVERRIDE_PREFIX}"),
            Spelling::Prefixed => format!("RUNTIME_{COMPONENT_OVERRIDE_PREFIX}"),
        }
    }
}

/// Metadata names, which tell the layers apart again in `origin`.
const DEFAULT_LAYER: &str = "default";
const FILE_LAYER: &str = "configuration file";
const ENV_LAYER: &str = "environment variable";

impl Sources {
    /// Reads the configuration file (`CONFIG_FILE`, else `config.yaml` in
    /// `dir` when it exists) and layers `env` over it.
    pub fn load(env: &Env, dir: &Path) -> Result<Sources, ConfigError> {
        let env: Arc<Env> = Arc::new(
            env.iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                .collect(),
        );
        let file = match env.get(settings::CONFIG_FILE) {
            Some(path) => Some(dir.join(path)),
            None => Some(dir.join(settings::DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let mut figment = Figment::from(Defaults);
        if let Some(path) = &file {
            figment = figment.merge(ConfigFile::read(path, &env)?);
        }
        for spelling in [Spelling::Plain, Spelling::Sectioned, Spelling::Prefixed] {
            figment = figment.merge(EnvLayer {
                spelling,
                env: env.clone(),
            });
        }
        Ok(Sources { figment, file })
    }

    /// The value of `setting`, with where it came from; `None` when unset
    /// and without a default.
    pub fn find(&self, setting: &Setting) -> Option<Found> {
        let value = self.figment.find_value(setting.key).ok()?;
        let text = text_of(&value)?;
        Some(Found {
            text,
            origin: self.origin(setting.key),
        })
    }

    /// Component overrides: group (lower case, `-` for `_`) to path.
    pub fn component_overrides(&self) -> Vec<(String, Found)> {
        let Ok(Value::Dict(_, groups)) = self.figment.find_value(COMPONENT_OVERRIDE_KEY) else {
            return Vec::new();
        };
        groups
            .iter()
            .filter_map(|(group, value)| {
                let key = format!("{COMPONENT_OVERRIDE_KEY}.{group}");
                Some((
                    group.to_ascii_lowercase().replace('_', "-"),
                    Found {
                        text: text_of(value)?,
                        origin: self.origin(&key),
                    },
                ))
            })
            .collect()
    }

    fn origin(&self, key: &str) -> Origin {
        let Some(metadata) = self.figment.find_metadata(key) else {
            return Origin::Default;
        };
        match metadata.name.as_ref() {
            FILE_LAYER => Origin::File {
                path: match &metadata.source {
                    Some(figment::Source::File(path)) => path.clone(),
                    _ => PathBuf::new(),
                },
                key: key.to_owned(),
            },
            ENV_LAYER => {
                let keys: Vec<&str> = key.split('.').collect();
                Origin::Env(metadata.interpolate(&Profile::Default, &keys))
            }
            _ => Origin::Default,
        }
    }
}

/// A value as text; `None` for an empty one (YAML `~`, `""`, `[]`).
fn text_of(value: &Value) -> Option<String> {
    let text = match serde_json::to_value(value).ok()? {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let text = text.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Inserts `value` at the dotted `key` of `dict`.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

fn profile_map(dict: Dict) -> Map<Profile, Dict> {
    Map::from([(Profile::Default, dict)])
}

/// The settings table's defaults.
struct Defaults;

impl Provider for Defaults {
    fn metadata(&self) -> Metadata {
        Metadata::named(DEFAULT_LAYER)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for setting in ALL {
            if let Some(default) = setting.default {
                insert(&mut dict, setting.key, Value::from(default.to_owned()));
            }
        }
        Ok(profile_map(dict))
    }
}

/// `config.yaml` in the Go service's schema, read once; `${NAME}` in a
/// string value is replaced by the variable `NAME` (a value naming an
/// unset variable is left out, so a layer above or the default decides).
struct ConfigFile {
    path: PathBuf,
    data: Dict,
}

impl ConfigFile {
    fn read(path: &Path, env: &Env) -> Result<ConfigFile, ConfigError> {
        let fail = |problem: String| ConfigError::new(settings::CONFIG_FILE, problem);
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let yaml: serde_norway::Value = serde_norway::from_str(&text)
            .map_err(|e| fail(format!("{} is not YAML: {e}", path.display())))?;
        let data = match yaml {
            serde_norway::Value::Null => Dict::new(),
            serde_norway::Value::Mapping(_) => match from_yaml(yaml, env) {
                Some(Value::Dict(_, dict)) => dict,
                _ => Dict::new(),
            },
            _ => return Err(fail(format!("{} is not a YAML mapping", path.display()))),
        };
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        Ok(ConfigFile { path, data })
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> Metadata {
        Metadata::from(FILE_LAYER, figment::Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(profile_map(self.data.clone()))
    }
}

/// A YAML value as a figment value (`None`: null, or a string naming an
/// unset variable).
fn from_yaml(yaml: serde_norway::Value, env: &Env) -> Option<Value> {
    use serde_norway::Value as Y;
    Some(match yaml {
        Y::Null => return None,
        Y::Bool(b) => Value::from(b),
        Y::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, Some(f)) => Value::from(f),
            _ => return None,
        },
        Y::String(s) => Value::from(expand(&s, env)?),
        Y::Sequence(items) => Value::from(
            items
                .into_iter()
                .filter_map(|item| from_yaml(item, env))
                .collect::<Vec<_>>(),
        ),
        Y::Mapping(map) => {
            let mut dict = Dict::new();
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => continue,
                };
                if let Some(value) = from_yaml(value, env) {
                    dict.insert(key, value);
                }
            }
            Value::from(dict)
        }
        Y::Tagged(tagged) => return from_yaml(tagged.value, env),
    })
}

/// `text` with each `${NAME}` replaced by the variable; `None` when one
/// is unset.
fn expand(text: &str, env: &Env) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        out.push_str(&rest[..start]);
        if valid {
            out.push_str(env.get(name)?);
        } else {
            out.push_str(&rest[start..start + 3 + len]);
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Some(out)
}

/// One spelling of every variable.
struct EnvLayer {
    spelling: Spelling,
    env: Arc<Env>,
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        let spelling = self.spelling;
        Metadata::named(ENV_LAYER).interpolater(move |_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            if let Some(setting) = ALL.iter().find(|s| s.key == key) {
                return spelling.of(setting);
            }
            match key
                .strip_prefix(COMPONENT_OVERRIDE_KEY)
                .and_then(|k| k.strip_prefix('.'))
            {
                Some(group) => format!("{}{group}", spelling.override_prefix()),
                None => key,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for setting in ALL {
            if let Some(value) = self.env.get(&self.spelling.of(setting)) {
                insert(&mut dict, setting.key, Value::from(value.clone()));
            }
        }
        let prefix = self.spelling.override_prefix();
        for (name, value) in self.env.iter() {
            let Some(group) = name.strip_prefix(&prefix) else {
                continue;
            };
            // CRONIUM_COMPONENT_EXPORT is a setting, not a group.
            let is_setting = ALL.iter().any(|s| self.spelling.of(s) == *name);
            if !group.is_empty() && !is_setting {
                let key = format!("{COMPONENT_OVERRIDE_KEY}.{group}");
                insert(&mut dict, &key, Value::from(value.clone()));
            }
        }
        Ok(profile_map(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_are_replaced_from_the_environment() {
        let e = env(&[("JWT_SECRET", "s3cret"), ("EMPTY", "")]);
        assert_eq!(expand("${JWT_SECRET}", &e).as_deref(), Some("s3cret"));
        assert_eq!(
            expand("a-${JWT_SECRET}-b", &e).as_deref(),
            Some("a-s3cret-b")
        );
        assert_eq!(expand("${UNSET}", &e), None);
        assert_eq!(expand("${not valid}", &e).as_deref(), Some("${not valid}"));
        assert_eq!(
            expand("$JWT_SECRET {", &e).as_deref(),
            Some("$JWT_SECRET {")
        );
        assert_eq!(expand("${", &e).as_deref(), Some("${"));
    }

    #[test]
    fn lists_become_comma_separated_text_and_maps_json() {
        let list = Value::from(vec![
            Value::from("a".to_owned()),
            Value::from("b".to_owned()),
        ]);
        assert_eq!(text_of(&list).as_deref(), Some("a,b"));
        let mut dict = Dict::new();
        dict.insert("x".into(), Value::from(1u64));
        assert_eq!(text_of(&Value::from(dict)).as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(text_of(&Value::from(String::new())), None);
        assert_eq!(text_of(&Value::from(8081u64)).as_deref(), Some("8081"));
    }
}
