//! Routing: what serves a path. The host answers `/health`, `/ready`,
//! `/metrics` and `/openapi.json` itself; every other route belongs to
//! the endpoint group whose component serves it
//! (`cronium_rules::routes`, the one routing rule of both hosts, also
//! used for the batch component's in-process requests).

/// An endpoint group: a component and the routes it serves
/// (`cronium_rules::routes`, the one routing rule of both hosts).
pub use cronium_rules::routes::RouteGroup as Group;

/// What a path is served by, resolved once per request.
#[derive(Clone, Copy)]
pub enum Target {
    /// A route the host answers itself.
    Native(Native),
    /// A route of an endpoint group.
    Component(Group),
    /// No route.
    Unknown,
}

impl Target {
    /// What serves `path`.
    pub fn of(path: &str) -> Target {
        match path {
            "/health" => Target::Native(Native::Health),
            "/ready" => Target::Native(Native::Ready),
            "/metrics" => Target::Native(Native::Metrics),
            "/openapi.json" => Target::Native(Native::OpenApi),
            _ => cronium_rules::routes::group_for_path(path)
                .map_or(Target::Unknown, Target::Component),
        }
    }

    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Target::Native(Native::Health) => "health",
            Target::Native(Native::Ready) => "ready",
            Target::Native(Native::Metrics) => "metrics",
            Target::Native(Native::OpenApi) => "openapi",
            Target::Component(group) => group.name(),
            Target::Unknown => "unknown",
        }
    }
}

/// The routes the host answers itself.
#[derive(Clone, Copy)]
pub enum Native {
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// `/openapi.json`.
    OpenApi,
}
