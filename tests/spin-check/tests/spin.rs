//! `spin.toml` runs under Spin 4 and serves what the custom host serves:
//! checked without a Spin CLI, by building what it points at and
//! composing each component with its dependencies the way Spin 4.0.2 does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cronium_rules::routes::{RouteGroup, group_for_path};
use cronium_spin_check::build::{self, artifact};
use cronium_spin_check::compose::{self, Plug, matches_import};
use cronium_spin_check::manifest::{Inherit, Manifest, Route};
use cronium_spin_check::{root, spin4};

/// The endpoint groups: their component ids and crates.
const ENDPOINTS: &[(&str, &str)] = &[
    ("executions", "cronium-executions"),
    ("variables", "cronium-variables"),
    ("tool-actions", "cronium-tool-actions"),
    ("batch", "cronium-batch"),
];

/// The tools built into the runtime: their component ids and crates.
const TOOLS: &[(&str, &str)] = &[
    ("webhook", "cronium-tool-webhook"),
    ("slack", "cronium-tool-slack"),
    ("discord", "cronium-tool-discord"),
    ("email", "cronium-tool-email"),
];

/// What the builds left: the manifest, and the digests of the host's
/// components before and after `spin build`.
struct Built {
    manifest: Manifest,
    host_build_command: String,
    before: BTreeMap<PathBuf, String>,
    after: BTreeMap<PathBuf, String>,
}

/// Builds once per test run: the host's components with the host's own
/// command, then every `spin build` command of the manifest.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        let manifest = Manifest::read(&root.join("spin.toml")).expect("spin.toml parses");
        let crates = build::host_build_crates(&root).expect("host/build.rs lists its crates");
        let host_build_command = build::host_build_command(&crates);
        build::run(&root, &host_build_command).expect("the host's components build");
        let embedded: Vec<PathBuf> = crates.iter().map(|c| artifact(&root, c)).collect();
        let before = build::digests(&embedded);
        for command in build::spin_build_commands(&manifest) {
            build::run(&root, &command).expect("a spin build command succeeds");
        }
        let after = build::digests(&embedded);
        Built {
            manifest,
            host_build_command,
            before,
            after,
        }
    })
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The component's imports and exports, by name.
fn world(bytes: &[u8]) -> (Vec<compose::Item>, Vec<compose::Item>) {
    compose::world(bytes).expect("a valid component")
}

#[test]
fn spin_build_leaves_the_bytes_the_custom_host_embeds_untouched() {
    let built = built();
    assert!(!built.before.is_empty());
    assert_eq!(
        built.before, built.after,
        "`spin build` rebuilt a component the host embeds into different bytes"
    );
}

#[test]
fn endpoints_and_tools_point_at_the_host_s_own_artifacts_and_build_command() {
    let built = built();
    let root = root();
    for (id, krate) in ENDPOINTS.iter().chain(TOOLS) {
        let component = &built.manifest.component[*id];
        assert_eq!(
            root.join(&component.source),
            artifact(&root, krate),
            "component {id}"
        );
        let commands = component
            .build
            .as_ref()
            .expect("a build command")
            .command
            .all();
        assert_eq!(
            commands[0], built.host_build_command,
            "component {id} is built by host/build.rs's command"
        );
    }
}

#[test]
fn every_source_and_dependency_exists_after_spin_build() {
    let built = built();
    let root = root();
    for (id, component) in &built.manifest.component {
        assert!(
            root.join(&component.source).is_file(),
            "{id}: {}",
            component.source
        );
        for (name, dependency) in &component.dependencies {
            assert!(
                root.join(&dependency.path).is_file(),
                "{id} / {name}: {}",
                dependency.path
            );
        }
    }
}

#[test]
fn every_route_is_unique_and_names_a_component() {
    let manifest = &built().manifest;
    assert_eq!(manifest.spin_manifest_version, 2);
    let mut seen = BTreeSet::new();
    for trigger in &manifest.trigger.http {
        assert!(
            manifest.component.contains_key(&trigger.component),
            "route to unknown component {}",
            trigger.component
        );
        if let Route::Path(path) = &trigger.route {
            assert!(seen.insert(path.clone()), "route {path} appears twice");
        }
    }
    for route in [
        "/health",
        "/executions/:id/input",
        "/executions/:id/output",
        "/executions/:id/context",
        "/executions/:id/condition",
        "/executions/:id/variables/...",
        "/tool-actions/execute",
        "/tool-actions",
        "/executions/:id/batch",
    ] {
        assert!(seen.contains(route), "no trigger for {route}");
    }
}

#[test]
fn tools_are_private_components_exporting_the_tool_and_its_http_face() {
    let built = built();
    let root = root();
    for (id, _) in TOOLS {
        let trigger = built
            .manifest
            .trigger
            .http
            .iter()
            .find(|t| t.component == *id)
            .unwrap_or_else(|| panic!("tool {id} has no trigger"));
        assert_eq!(trigger.route, Route::Private { private: true }, "tool {id}");
        let (_, exports) = world(&read(&root.join(&built.manifest.component[*id].source)));
        let names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("wasi:http/incoming-handler@0.2.")),
            "tool {id} exports {names:?}"
        );
        assert!(
            names.contains(&"cronium:runtime/tool@0.1.0"),
            "tool {id} exports {names:?}"
        );
    }
}

#[test]
fn every_dependency_names_an_import_of_its_component() {
    let built = built();
    let root = root();
    for (id, component) in &built.manifest.component {
        if component.dependencies.is_empty() {
            continue;
        }
        let (imports, _) = world(&read(&root.join(&component.source)));
        for name in component.dependencies.keys() {
            assert!(
                imports.iter().any(|i| matches_import(name, &i.name)),
                "{id}: dependency {name} matches none of {:?}",
                imports.iter().map(|i| &i.name).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn composed_components_import_only_what_spin_4_provides() {
    let built = built();
    let root = root();
    for (id, component) in &built.manifest.component {
        let plugs = component
            .dependencies
            .iter()
            .map(|(name, dependency)| Plug {
                name,
                bytes: read(&root.join(&dependency.path)),
                export: dependency.export.as_deref(),
            })
            .collect();
        let composed = compose::compose(&read(&root.join(&component.source)), plugs)
            .unwrap_or_else(|e| panic!("{id} does not compose: {e:#}"));
        let (imports, _) = world(&composed);
        let names: Vec<&str> = imports.iter().map(|i| i.name.as_str()).collect();
        println!("{id} composed imports: {names:?}");
        let unmet: Vec<&str> = imports
            .iter()
            .filter(|i| !i.types_only && !spin4::provides(&i.name))
            .map(|i| i.name.as_str())
            .collect();
        assert!(unmet.is_empty(), "{id} still imports {unmet:?}");
    }
}

#[test]
fn adapters_inherit_every_capability_they_use() {
    let built = built();
    let root = root();
    for (id, component) in &built.manifest.component {
        assert!(
            component.dependencies_inherit_configuration.is_none()
                || component
                    .dependencies
                    .values()
                    .all(|d| d.inherit_configuration.is_none()),
            "{id}: Spin refuses both dependencies_inherit_configuration and inherit_configuration"
        );
        for (name, dependency) in &component.dependencies {
            let inherited = component.inherited(dependency);
            let (imports, _) = world(&read(&root.join(&dependency.path)));
            for import in &imports {
                let Some(set) = spin4::capability_set(&import.name) else {
                    continue;
                };
                if spin4::DENIED_HARMLESSLY.contains(&set) {
                    continue;
                }
                let granted = match &inherited {
                    Inherit::All(all) => *all,
                    Inherit::Some(sets) => sets.iter().any(|s| s == set),
                };
                assert!(
                    granted,
                    "{id} / {name} uses {} but does not inherit {set}: Spin would deny it",
                    import.name
                );
            }
        }
    }
}

#[test]
fn adapters_reach_valkey_the_backend_and_the_tools_through_their_component_s_grants() {
    let manifest = &built().manifest;
    for (id, _) in ENDPOINTS {
        let component = &manifest.component[*id];
        let hosts = &component.allowed_outbound_hosts;
        for needed in ["{{ valkey_url }}", "{{ backend_url }}"] {
            assert!(hosts.iter().any(|h| h == needed), "{id} lacks {needed}");
        }
        for variable in ["jwt_secret", "valkey_url", "backend_url", "backend_token"] {
            assert_eq!(
                component.variables.get(variable).map(String::as_str),
                Some(format!("{{{{ {variable} }}}}").as_str()),
                "{id} passes {variable} to its adapters"
            );
        }
        // The adapter builds its cache keys in this group's space, as the
        // custom host does in the space of the group it serves.
        assert_eq!(
            component.variables.get("group").map(String::as_str),
            Some(*id),
            "{id} names its own group for its adapter's cache space"
        );
    }
    let tool_actions = &manifest.component["tool-actions"];
    let listed = manifest.variables["tools"]
        .default
        .clone()
        .unwrap_or_default();
    for tool in listed.split(',').map(str::trim) {
        assert!(
            manifest.component.contains_key(tool),
            "tools lists {tool}, not a component"
        );
        let chained = format!("http://{tool}.spin.internal");
        assert!(
            tool_actions.allowed_outbound_hosts.contains(&chained),
            "tool-actions cannot reach {chained}"
        );
    }
    for (name, variable) in &manifest.variables {
        assert!(
            variable.required || variable.default.is_some(),
            "variable {name} needs a default or required = true"
        );
        if ["jwt_secret", "backend_token", "valkey_password"].contains(&name.as_str()) {
            assert!(variable.secret, "variable {name} must be secret");
        }
    }
}

#[test]
fn allowed_outbound_hosts_are_scheme_host_port_with_defaults_resolved() {
    let manifest = &built().manifest;
    for (id, component) in &manifest.component {
        for host in &component.allowed_outbound_hosts {
            // Spin checks templates with the variables' defaults at load.
            let resolved = manifest
                .variables
                .iter()
                .fold(host.clone(), |text, (name, v)| {
                    text.replace(
                        &format!("{{{{ {name} }}}}"),
                        v.default.as_deref().unwrap_or("http://required.invalid"),
                    )
                });
            let (scheme, rest) = resolved
                .split_once("://")
                .unwrap_or_else(|| panic!("{id}: {host} has no scheme"));
            assert!(!scheme.is_empty(), "{id}: {host}");
            assert!(
                !rest.trim_end_matches('/').contains('/') && !rest.contains('@'),
                "{id}: {host} resolves to {resolved}, with a path or credentials Spin refuses"
            );
        }
    }
}

/// A path that `route` (a Spin route pattern) matches: `:id` is `e1`, a
/// trailing `...` is `k`.
fn sample_path(route: &str) -> String {
    route.replace(":id", "e1").replace("...", "k")
}

#[test]
fn every_route_goes_to_the_component_the_shared_routing_rule_names() {
    let manifest = &built().manifest;
    let mut checked = 0;
    for trigger in &manifest.trigger.http {
        let Route::Path(route) = &trigger.route else {
            continue;
        };
        // Spin's catch-all and /health (which the custom host answers
        // itself) are the executions component's under Spin.
        if route == "/..." || route == "/health" {
            assert_eq!(trigger.component, "executions", "{route}");
            continue;
        }
        let group = group_for_path(&sample_path(route))
            .unwrap_or_else(|| panic!("{route}: no group serves it in the custom host"));
        assert_eq!(
            trigger.component,
            group.name(),
            "{route} goes to another component than the custom host's"
        );
        checked += 1;
    }
    assert!(checked >= 8, "checked {checked} routes");
}

#[test]
fn the_batch_reaches_every_other_group_by_service_chaining_and_only_it_does() {
    let built = built();
    let manifest = &built.manifest;
    let root = root();
    let batch = &manifest.component["batch"];
    for group in RouteGroup::ALL {
        let chained = format!("http://{}", group.chaining_authority());
        if group == RouteGroup::Batch {
            assert!(
                !batch.allowed_outbound_hosts.contains(&chained),
                "a batch must not reach the batch route"
            );
            continue;
        }
        assert!(
            batch.allowed_outbound_hosts.contains(&chained),
            "the batch component cannot reach {chained}"
        );
        // Service chaining reaches a component of the app that has an
        // HTTP trigger, by its id.
        assert!(
            manifest
                .trigger
                .http
                .iter()
                .any(|t| t.component == group.name()),
            "{chained}: no component {} with an HTTP trigger",
            group.name()
        );
    }
    for (id, component) in &manifest.component {
        let reaches_a_group = RouteGroup::ALL.iter().any(|g| {
            component
                .allowed_outbound_hosts
                .contains(&format!("http://{}", g.chaining_authority()))
        });
        assert_eq!(
            reaches_a_group,
            id == "batch",
            "{id}: only the batch component may call the endpoint groups"
        );
    }
    // The batch component sends its requests through wasi:http, which Spin
    // provides; the other endpoint components never call out that way (the
    // custom host would refuse them).
    for (id, krate) in ENDPOINTS {
        let (imports, _) = world(&read(&artifact(&root, krate)));
        let calls_out = imports
            .iter()
            .any(|i| i.name.starts_with("wasi:http/outgoing-handler@0.2."));
        let names: Vec<&str> = imports.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(calls_out, *id == "batch", "{id} imports {names:?}");
    }
}

/// Spin variables with no setting of the custom host, and why.
const SPIN_ONLY: &[(&str, &str)] = &[(
    "tools",
    "which tool components the Spin app composes; the host loads its built-in tools and a tools directory",
)];

/// Variables Spin requires although the host has a fallback, and why.
const REQUIRED_UNDER_SPIN: &[(&str, &str)] = &[
    ("backend_url", "Spin has no embedded store to fall back on"),
    ("backend_token", "the backend always needs its token"),
];

/// Variables whose default differs from the host's, and why.
const OTHER_DEFAULT_UNDER_SPIN: &[(&str, &str)] = &[(
    "valkey_url",
    "Spin has no in-process cache to fall back on: it needs a Valkey, by default the local one",
)];

#[test]
fn every_spin_variable_is_a_host_setting_with_the_same_default_and_secrecy() {
    use cronium_host::config::settings::ALL;

    let manifest = Manifest::read(&root().join("spin.toml")).expect("spin.toml parses");
    for (name, variable) in &manifest.variables {
        if SPIN_ONLY.iter().any(|(n, _)| n == name) {
            continue;
        }
        let upper = name.to_ascii_uppercase();
        let setting = ALL
            .iter()
            .find(|s| s.var == upper || s.var == format!("CRONIUM_{upper}"))
            .unwrap_or_else(|| panic!("spin variable {name} is no setting of the host"));
        // The adapters read an empty variable as unset.
        let spin_default = variable.default.as_deref().filter(|d| !d.is_empty());
        if !OTHER_DEFAULT_UNDER_SPIN.iter().any(|(n, _)| n == name) {
            assert_eq!(
                spin_default, setting.default,
                "{name}: Spin's default, then the host's ({})",
                setting.var
            );
        }
        assert_eq!(variable.secret, setting.secret, "{name}: secret");
        if variable.required {
            assert!(
                setting.default.is_none(),
                "{name} is required under Spin but has a default in the host"
            );
            let reason = REQUIRED_UNDER_SPIN.iter().any(|(n, _)| n == name)
                || setting.var.ends_with("JWT_SECRET");
            assert!(reason, "{name} is required under Spin only: say why");
        }
    }
}
