//! Which endpoint group serves a path (`docs/api.md`, "Routes"). The custom
//! host routes every request with this rule, and the batch component
//! routes each request of a batch with it, so that both agree on what
//! exists.

/// An endpoint group: one component and the routes it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    /// `/executions/{id}/{input,output,context,condition}`.
    Executions,
    /// `/executions/{id}/variables/{key...}`.
    Variables,
    /// `/tool-actions` and `/tool-actions/execute`.
    ToolActions,
    /// `/executions/{id}/batch`.
    Batch,
}

impl RouteGroup {
    /// Every group.
    pub const ALL: [RouteGroup; 4] = [
        RouteGroup::Executions,
        RouteGroup::Variables,
        RouteGroup::ToolActions,
        RouteGroup::Batch,
    ];

    /// The group's name: its component id in `spin.toml`, its
    /// `CRONIUM_COMPONENT_<NAME>` override, its metrics label.
    pub fn name(self) -> &'static str {
        match self {
            RouteGroup::Executions => "executions",
            RouteGroup::Variables => "variables",
            RouteGroup::ToolActions => "tool-actions",
            RouteGroup::Batch => "batch",
        }
    }

    /// The group named `name`.
    pub fn named(name: &str) -> Option<RouteGroup> {
        RouteGroup::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The authority a component reaches the group at by service chaining
    /// (`<name>.spin.internal`): Spin serves it in process, and so does the
    /// custom host for the batch component.
    pub fn chaining_authority(self) -> String {
        format!("{}.spin.internal", self.name())
    }
}

/// The group serving the raw (still percent-encoded) `path`, without its
/// query; `None` for a path no component serves.
pub fn group_for_path(path: &str) -> Option<RouteGroup> {
    if matches!(path, "/tool-actions" | "/tool-actions/execute") {
        return Some(RouteGroup::ToolActions);
    }
    let mut segments = path.strip_prefix('/')?.splitn(4, '/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (
            Some("executions"),
            Some(id),
            Some("input" | "output" | "context" | "condition"),
            None,
        ) if !id.is_empty() => Some(RouteGroup::Executions),
        (Some("executions"), Some(id), Some("batch"), None) if !id.is_empty() => {
            Some(RouteGroup::Batch)
        }
        // The key is the rest of the path, slashes included.
        (Some("executions"), Some(id), Some("variables"), Some(_)) if !id.is_empty() => {
            Some(RouteGroup::Variables)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_execution_routes_belong_to_the_executions_group() {
        for path in [
            "/executions/e1/input",
            "/executions/e1/output",
            "/executions/e1/context",
            "/executions/e1/condition",
        ] {
            assert_eq!(group_for_path(path), Some(RouteGroup::Executions), "{path}");
        }
        for path in [
            "/executions//input",
            "/executions/e1/other",
            "/executions/e1/input/x",
            "/health",
            "/",
            "",
        ] {
            assert_eq!(group_for_path(path), None, "{path}");
        }
    }

    #[test]
    fn everything_under_variables_belongs_to_the_variables_group() {
        for path in [
            "/executions/e1/variables/k",
            "/executions/e1/variables/a/b/c",
            "/executions/e1/variables/",
        ] {
            assert_eq!(group_for_path(path), Some(RouteGroup::Variables), "{path}");
        }
        assert_eq!(group_for_path("/executions/e1/variables"), None);
    }

    #[test]
    fn the_catalogue_and_execute_belong_to_the_tool_actions_group() {
        for path in ["/tool-actions", "/tool-actions/execute"] {
            assert_eq!(
                group_for_path(path),
                Some(RouteGroup::ToolActions),
                "{path}"
            );
        }
        for path in ["/tool-actions/", "/tool-actions/execute/x", "/tool-action"] {
            assert_eq!(group_for_path(path), None, "{path}");
        }
    }

    #[test]
    fn only_an_execution_s_batch_belongs_to_the_batch_group() {
        assert_eq!(
            group_for_path("/executions/e1/batch"),
            Some(RouteGroup::Batch)
        );
        for path in [
            "/executions//batch",
            "/executions/e1/batch/x",
            "/batch",
            "/executions/e1/variables/batch",
        ] {
            assert_ne!(group_for_path(path), Some(RouteGroup::Batch), "{path}");
        }
    }

    #[test]
    fn groups_are_found_by_name_and_reached_at_their_component_id() {
        for group in RouteGroup::ALL {
            assert_eq!(RouteGroup::named(group.name()), Some(group));
        }
        assert_eq!(RouteGroup::named("tools"), None);
        assert_eq!(
            RouteGroup::Variables.chaining_authority(),
            "variables.spin.internal"
        );
    }
}
