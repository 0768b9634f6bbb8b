//! The parts of a Spin 4 manifest (`spin_manifest_version = 2`) this
//! project uses, with Spin's own field names. Components are parsed with
//! `deny_unknown_fields`, as Spin parses them, so a misspelt field fails
//! here rather than under `spin up`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// A `spin.toml`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

impl Manifest {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(toml::from_str(&text)?)
    }
}

/// `[application]`.
#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// An application variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// `[[trigger.*]]` tables; only HTTP is used.
#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    pub route: Route,
    pub component: String,
}

/// A route: a path pattern, or `{ private = true }` for a component only
/// reachable through service chaining.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Path(String),
    Private { private: bool },
}

/// One `[component.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub source: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    pub dependencies: BTreeMap<String, Dependency>,
    #[serde(default)]
    pub build: Option<Build>,
}

/// A component dependency given by path (the only kind used here).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub path: String,
    #[serde(default)]
    pub export: Option<String>,
    #[serde(default)]
    pub inherit_configuration: Option<Inherit>,
}

/// `inherit_configuration`: all (`true`), none (`false`), or named
/// capability sets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Inherit {
    All(bool),
    Some(Vec<String>),
}

/// `[component.<id>.build]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub command: Commands,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

/// One build command, or several run in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    Single(String),
    Multiple(Vec<String>),
}

impl Commands {
    /// The commands in the order `spin build` runs them.
    pub fn all(&self) -> Vec<String> {
        match self {
            Commands::Single(command) => vec![command.clone()],
            Commands::Multiple(commands) => commands.clone(),
        }
    }
}

impl Component {
    /// What each dependency inherits, after Spin's normalisation:
    /// `dependencies_inherit_configuration = true` means all for every
    /// dependency; an unset per-dependency value means none.
    pub fn inherited(&self, dependency: &Dependency) -> Inherit {
        if self.dependencies_inherit_configuration == Some(true) {
            return Inherit::All(true);
        }
        dependency
            .inherit_configuration
            .clone()
            .unwrap_or(Inherit::All(false))
    }
}
