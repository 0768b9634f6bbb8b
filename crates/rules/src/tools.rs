//! Rules of tool actions: what a valid tool manifest is, how a caller's
//! action name finds an action, and which outbound hosts a tool may reach.
//! (How idempotent calls are remembered: [`crate::idempotency`].)

use serde_json::Value;

use crate::schema::{Schema, SchemaError};

/// Checks a tool id: 1 to 64 bytes of `a-z`, `0-9`, `-`, `_`, starting
/// with a letter. Ids appear in URLs, file names and cache keys.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tool id {id:?} must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter"
        ))
    }
}

/// One action as a manifest declares it, for the checks below.
pub struct ActionDecl<'a> {
    /// The action's name, as callers ask for it (ASCII case ignored).
    pub name: &'a str,
    /// Other names the action answers to; no name or alias may repeat
    /// within the tool.
    pub aliases: &'a [String],
    /// The parameters' JSON Schema, as JSON text.
    pub parameters: &'a str,
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The tool id is not valid ([`check_id`]); the message says why.
    #[error("{0}")]
    Id(String),
    /// The manifest declares no action.
    #[error("the tool declares no actions")]
    NoActions,
    /// A name or alias used twice (ignoring ASCII case), or an empty one.
    #[error("the action name {0:?} is used twice (as a name or an alias)")]
    DuplicateName(String),
    /// An action's `parameters` text is not JSON.
    #[error("action {action:?}: parameters are not a JSON object schema: {problem}")]
    Parameters {
        /// The action's name.
        action: String,
        /// The JSON parser's message.
        problem: String,
    },
    /// An action's parameter schema does not compile.
    #[error("action {action:?}: {source}")]
    Schema {
        /// The action's name.
        action: String,
        /// Why the schema does not compile.
        source: SchemaError,
    },
    /// An outbound host that is no valid [`HostPattern`]: the host as
    /// written, and why.
    #[error("outbound host {0:?}: {1}")]
    Host(String, String),
}

/// Checks a manifest: a valid id, at least one action, no name used twice,
/// every parameter schema compiles, every outbound host parses.
pub fn check_manifest<'a>(
    id: &str,
    actions: impl IntoIterator<Item = ActionDecl<'a>>,
    outbound_hosts: &[String],
) -> Result<(), ManifestError> {
    check_id(id).map_err(ManifestError::Id)?;
    let mut names: Vec<&str> = Vec::new();
    let mut any = false;
    for action in actions {
        any = true;
        for name in std::iter::once(action.name).chain(action.aliases.iter().map(String::as_str)) {
            if name.is_empty() || names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(ManifestError::DuplicateName(name.to_owned()));
            }
            names.push(name);
        }
        let schema: Value =
            serde_json::from_str(action.parameters).map_err(|e| ManifestError::Parameters {
                action: action.name.to_owned(),
                problem: e.to_string(),
            })?;
        Schema::compile(&schema).map_err(|source| ManifestError::Schema {
            action: action.name.to_owned(),
            source,
        })?;
    }
    if !any {
        return Err(ManifestError::NoActions);
    }
    for host in outbound_hosts {
        HostPattern::parse(host).map_err(|e| ManifestError::Host(host.clone(), e))?;
    }
    Ok(())
}

/// The action a caller asked for: the one of `actions` whose name or alias
/// (given by `names`) equals `requested`, ignoring ASCII case.
pub fn resolve_action<'a, A>(
    actions: &'a [A],
    requested: &str,
    names: impl Fn(&A) -> (&str, &[String]),
) -> Option<&'a A> {
    actions.iter().find(|action| {
        let (name, aliases) = names(action);
        name.eq_ignore_ascii_case(requested)
            || aliases.iter().any(|a| a.eq_ignore_ascii_case(requested))
    })
}

/// A host a tool may call, as manifests and operators write them:
/// `api.example.com`, `*.example.com` (any subdomain), `*` (any host),
/// each optionally with `:port` (any port when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl HostPattern {
    /// Parses a pattern (case-insensitive).
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let pattern = pattern.trim().to_ascii_lowercase();
        let (host, port) = split_port(&pattern).map_err(|port| format!("bad port {port:?}"))?;
        let host = host.to_owned();
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
                })
        };
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_name(domain) {
                return Err("not a host name".into());
            }
            HostMatch::Suffix(format!(".{domain}"))
        } else if valid_name(&host) && !host.contains('*') {
            HostMatch::Exact(host)
        } else {
            return Err("not a host name, `*.domain` or `*`".into());
        };
        Ok(HostPattern { host, port })
    }

    /// Whether `host` (a name or IP literal, lower-case) on `port` matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Suffix(s) => host.ends_with(s.as_str()),
        }
    }

    /// Whether this pattern names one host exactly (no wildcard). Only an
    /// operator's exact pattern lets a tool reach a private address.
    pub fn is_exact(&self) -> bool {
        matches!(self.host, HostMatch::Exact(_))
    }
}

/// Splits `host[:port]` (an IPv6 literal in brackets: `[::1]:8080`); the
/// error is the text that is not a port number.
pub fn split_port(authority: &str) -> Result<(&str, Option<u16>), &str> {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            let port = port.parse::<u16>().map_err(|_| port)?;
            Ok((host, Some(port)))
        }
        _ => Ok((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action<'a>(name: &'a str, aliases: &'a [String], schema: &'a str) -> ActionDecl<'a> {
        ActionDecl {
            name,
            aliases,
            parameters: schema,
        }
    }

    #[test]
    fn tool_ids_are_short_lower_case_names() {
        assert!(check_id("slack").is_ok());
        assert!(check_id("my-tool_2").is_ok());
        for bad in ["", "Slack", "2fa", "a/b", "../x", &"a".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_manifest_needs_actions_unique_names_and_good_schemas() {
        let aliases = vec!["send".to_owned()];
        let object = r#"{"type":"object"}"#;
        assert!(check_manifest("t", [action("send_message", &aliases, object)], &[]).is_ok());
        assert_eq!(check_manifest("t", [], &[]), Err(ManifestError::NoActions));
        assert_eq!(
            check_manifest(
                "t",
                [action("send", &[], object), action("x", &aliases, object)],
                &[]
            ),
            Err(ManifestError::DuplicateName("send".into()))
        );
        assert!(matches!(
            check_manifest("t", [action("a", &[], r#"{"pattern":"x"}"#)], &[]),
            Err(ManifestError::Schema { .. })
        ));
        assert!(matches!(
            check_manifest("t", [action("a", &[], object)], &["ex ample".into()]),
            Err(ManifestError::Host(..))
        ));
    }

    #[test]
    fn actions_are_found_by_name_or_alias_in_any_case() {
        let slack = vec!["send".to_owned(), "sendMessage".to_owned()];
        let other: Vec<String> = vec![];
        let actions = [
            ("send_message", slack.as_slice()),
            ("upload", other.as_slice()),
        ];
        let resolve =
            |requested| resolve_action(&actions, requested, |&(n, a)| (n, a)).map(|a| a.0);
        assert_eq!(resolve("send_message"), Some("send_message"));
        assert_eq!(resolve("SENDMESSAGE"), Some("send_message"));
        assert_eq!(resolve("upload"), Some("upload"));
        assert_eq!(resolve("delete"), None);
    }

    #[test]
    fn host_patterns_match_exact_names_subdomains_ports_and_anything() {
        let exact = HostPattern::parse("hooks.slack.com").unwrap();
        assert!(exact.matches("hooks.slack.com", 443));
        assert!(exact.matches("HOOKS.slack.com", 80));
        assert!(!exact.matches("evil-hooks.slack.com", 443));
        let sub = HostPattern::parse("*.slack.com").unwrap();
        assert!(sub.matches("hooks.slack.com", 443));
        assert!(!sub.matches("slack.com", 443));
        assert!(!sub.matches("notslack.com", 443));
        let port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(port.matches("127.0.0.1", 8080));
        assert!(!port.matches("127.0.0.1", 8081));
        assert!(port.is_exact());
        let v6 = HostPattern::parse("[::1]:9000").unwrap();
        assert!(v6.matches("[::1]", 9000));
        assert!(
            HostPattern::parse("*")
                .unwrap()
                .matches("anything.example", 1)
        );
        assert!(!HostPattern::parse("*").unwrap().is_exact());
        for bad in ["", "a b", "*a.com", "host:port", "a.*.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
