//! The tool settings: where drop-in tools are found, their deadline and
//! memory, the hosts each may reach (`CRONIUM_TOOL_ALLOWED_HOSTS`), where
//! their traffic for an origin goes instead (`CRONIUM_TOOL_EGRESS`, read
//! into [`Origin`]s the host's `tools/egress.rs` redirects with), and the
//! operator's settings per tool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cronium_rules::tools::HostPattern;

use crate::ConfigError;
use crate::settings as s;
use crate::values::Values;

/// How tool components are found and fenced in.
#[derive(Debug, Clone)]
pub struct ToolsConfig {
    /// `CRONIUM_TOOLS_DIR` (`<CRONIUM_DATA_DIR>/tools`): drop-in `.wasm` tools.
    pub dir: PathBuf,
    /// `CRONIUM_TOOLS_POLL` (1s): how often the directory is rescanned.
    pub poll: Duration,
    /// `CRONIUM_BUILTIN_TOOLS` (true): serve the tools built into the
    /// binary (webhook, slack, discord, email); a file with the same id wins.
    pub builtin: bool,
    /// `CRONIUM_TOOL_TIMEOUT` (30s): the deadline of one tool call.
    pub timeout: Duration,
    /// `CRONIUM_TOOL_MEMORY` (64MiB): a tool instance's memory cap.
    pub memory: usize,
    /// `CRONIUM_TOOL_ALLOWED_HOSTS` (`tool=host,host;tool2=host`): narrows
    /// the hosts a tool declared. Only an exact host named here lets a tool
    /// reach a loopback or private address.
    pub allowed_hosts: HashMap<String, Vec<HostPattern>>,
    /// `CRONIUM_TOOL_EGRESS` (`https://hooks.slack.com=http://127.0.0.1:9001,...`):
    /// sends a tool's traffic for one origin to another (a sandbox, an
    /// egress proxy). Checked against the tool's hosts by the original origin.
    /// Shared with every tool's egress policy.
    pub egress: std::sync::Arc<Vec<(Origin, Origin)>>,
    /// `CRONIUM_TOOL_SETTINGS`: a JSON object of each tool's operator
    /// settings, keyed by tool id (`{"email":{"baseUrl":"..."}}`).
    pub settings: HashMap<String, serde_json::Value>,
}

/// `scheme://host[:port]`, lower-case, with the scheme's port made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// A DNS name or IP address, lower-case (an IPv6 literal keeps its
    /// brackets, `[::1]`).
    pub host: String,
    /// The port given, else the scheme's (80 or 443).
    pub port: u16,
}

impl Origin {
    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/` is allowed).
    pub fn parse(text: &str) -> Option<Origin> {
        let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
        let (scheme, rest) = text.split_once("://")?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = cronium_rules::tools::split_port(rest).ok()?;
        let port = port.unwrap_or(default_port);
        Some(Origin {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, as a URI authority.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl ToolsConfig {
    pub(crate) fn read(values: &Values, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let mut allowed_hosts = HashMap::new();
        if let Some(found) = values.find(&s::TOOL_ALLOWED_HOSTS) {
            for entry in found.text.split(';') {
                if entry.trim().is_empty() {
                    continue;
                }
                let (tool, hosts) = entry.split_once('=').ok_or_else(|| {
                    values.invalid(&s::TOOL_ALLOWED_HOSTS, &found, "is not tool=host,host;...")
                })?;
                let patterns = hosts
                    .split(',')
                    .filter(|h| !h.trim().is_empty())
                    .map(|h| {
                        HostPattern::parse(h).map_err(|e| {
                            values.invalid(&s::TOOL_ALLOWED_HOSTS, &found, &format!("{h:?}: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                allowed_hosts.insert(tool.trim().to_owned(), patterns);
            }
        }
        let mut egress = Vec::new();
        if let Some(found) = values.find(&s::TOOL_EGRESS) {
            for entry in found.text.split(',') {
                if entry.trim().is_empty() {
                    continue;
                }
                let parsed = entry
                    .split_once('=')
                    .and_then(|(from, to)| Some((Origin::parse(from)?, Origin::parse(to)?)))
                    .ok_or_else(|| {
                        values.invalid(
                            &s::TOOL_EGRESS,
                            &found,
                            &format!("{entry:?} is not origin=origin"),
                        )
                    })?;
                egress.push(parsed);
            }
        }
        let settings = match values.find(&s::TOOL_SETTINGS) {
            Some(found) => match serde_json::from_str(&found.text) {
                Ok(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .map(|(tool, value)| {
                        if value.is_object() {
                            Ok((tool, value))
                        } else {
                            Err(values.invalid(
                                &s::TOOL_SETTINGS,
                                &found,
                                &format!("{tool}: not an object"),
                            ))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(values.invalid(
                        &s::TOOL_SETTINGS,
                        &found,
                        "must be a JSON object keyed by tool id",
                    ));
                }
            },
            None => HashMap::new(),
        };
        Ok(ToolsConfig {
            dir: values
                .find(&s::TOOLS_DIR)
                .map(|found| PathBuf::from(found.text))
                .unwrap_or_else(|| data_dir.join("tools")),
            poll: values.duration(&s::TOOLS_POLL)?,
            builtin: values.boolean(&s::BUILTIN_TOOLS)?,
            timeout: values.duration(&s::TOOL_TIMEOUT)?,
            memory: values.size(&s::TOOL_MEMORY)?,
            allowed_hosts,
            egress: egress.into(),
            settings,
        })
    }
}
