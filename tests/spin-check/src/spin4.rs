//! What Spin 4.0.2 gives a component: the imports of its `platform` world
//! (`wit/world.wit` in Spin's repository at `v4.0.2`), and the capability
//! sets a dependency may inherit (`crates/capabilities/src/lib.rs`).
//! wasmtime's linker satisfies an import from a definition of any
//! semver-compatible version (`0.2.0` by `0.2.6`), and so does this check.

use wac_types::are_semver_compatible;

/// `wasi:cli/imports@0.2.6` and `wasi:http/outgoing-handler@0.2.6`.
const WASI_0_2: &[&str] = &[
    "wasi:cli/environment@0.2.6",
    "wasi:cli/exit@0.2.6",
    "wasi:cli/stdin@0.2.6",
    "wasi:cli/stdout@0.2.6",
    "wasi:cli/stderr@0.2.6",
    "wasi:cli/terminal-input@0.2.6",
    "wasi:cli/terminal-output@0.2.6",
    "wasi:cli/terminal-stdin@0.2.6",
    "wasi:cli/terminal-stdout@0.2.6",
    "wasi:cli/terminal-stderr@0.2.6",
    "wasi:clocks/monotonic-clock@0.2.6",
    "wasi:clocks/wall-clock@0.2.6",
    "wasi:filesystem/types@0.2.6",
    "wasi:filesystem/preopens@0.2.6",
    "wasi:io/error@0.2.6",
    "wasi:io/poll@0.2.6",
    "wasi:io/streams@0.2.6",
    "wasi:random/random@0.2.6",
    "wasi:random/insecure@0.2.6",
    "wasi:random/insecure-seed@0.2.6",
    "wasi:sockets/network@0.2.6",
    "wasi:sockets/instance-network@0.2.6",
    "wasi:sockets/udp@0.2.6",
    "wasi:sockets/udp-create-socket@0.2.6",
    "wasi:sockets/tcp@0.2.6",
    "wasi:sockets/tcp-create-socket@0.2.6",
    "wasi:sockets/ip-name-lookup@0.2.6",
    "wasi:http/types@0.2.6",
    "wasi:http/outgoing-handler@0.2.6",
];

/// Spin's own interfaces and the WASI drafts it implements.
const SPIN: &[&str] = &[
    "fermyon:spin/llm@2.0.0",
    "fermyon:spin/redis@2.0.0",
    "fermyon:spin/mqtt@2.0.0",
    "fermyon:spin/rdbms-types@2.0.0",
    "fermyon:spin/postgres@2.0.0",
    "fermyon:spin/mysql@2.0.0",
    "fermyon:spin/sqlite@2.0.0",
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/variables@2.0.0",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "spin:key-value/key-value@3.0.0",
    "spin:mqtt/mqtt@3.0.0",
    "spin:mysql/mysql@3.0.0",
    "spin:postgres/postgres@3.0.0",
    "spin:postgres/postgres@4.2.0",
    "spin:redis/redis@3.0.0",
    "spin:sqlite/sqlite@3.1.0",
    "spin:variables/variables@3.0.0",
    "wasi:config/store@0.2.0-draft-2024-09-27",
];

/// Whether Spin 4 satisfies an import named `name`.
pub fn provides(name: &str) -> bool {
    WASI_0_2
        .iter()
        .chain(SPIN)
        .any(|provided| *provided == name || are_semver_compatible(provided, name))
}

/// The capability sets of `inherit_configuration` and their interfaces.
pub const CAPABILITY_SETS: &[(&str, &[&str])] = &[
    ("ai_models", &["fermyon:spin/llm", "fermyon:spin/llm@2.0.0"]),
    (
        "allowed_outbound_hosts",
        &[
            "fermyon:spin/http",
            "fermyon:spin/mysql",
            "fermyon:spin/postgres",
            "fermyon:spin/redis",
            "fermyon:spin/mqtt@2.0.0",
            "fermyon:spin/mysql@2.0.0",
            "fermyon:spin/postgres@2.0.0",
            "fermyon:spin/redis@2.0.0",
            "spin:mqtt/mqtt@3.0.0",
            "spin:mysql/mysql@3.0.0",
            "spin:postgres/postgres@3.0.0",
            "spin:postgres/postgres@4.2.0",
            "spin:redis/redis@3.0.0",
            "wasi:http/client@0.3.0-rc-2026-03-15",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:sockets/ip-name-lookup@0.2.6",
            "wasi:sockets/tcp-create-socket@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:sockets/udp-create-socket@0.2.6",
            "wasi:sockets/udp@0.2.6",
        ],
    ),
    ("environment", &["wasi:cli/environment@0.2.6"]),
    ("files", &["wasi:filesystem/preopens@0.2.6"]),
    (
        "key_value_stores",
        &[
            "fermyon:spin/key-value",
            "fermyon:spin/key-value@2.0.0",
            "spin:key-value/key-value@3.0.0",
            "wasi:keyvalue/store@0.2.0-draft2",
        ],
    ),
    (
        "sqlite_databases",
        &[
            "fermyon:spin/sqlite",
            "fermyon:spin/sqlite@2.0.0",
            "spin:sqlite/sqlite@3.1.0",
        ],
    ),
    (
        "variables",
        &[
            "fermyon:spin/config",
            "fermyon:spin/variables@2.0.0",
            "spin:variables/variables@3.0.0",
            "wasi:config/store@0.2.0-draft-2024-09-27",
        ],
    ),
];

/// Capability sets whose denial is harmless to a component that does not
/// use them: Spin's deny adapter answers an empty environment and no
/// preopened directories (it traps for the others). Rust's standard
/// library imports both, so every adapter imports them without using them.
pub const DENIED_HARMLESSLY: &[&str] = &["environment", "files"];

/// The capability set an import belongs to, if Spin's deny adapter would
/// stand in for it in a dependency that does not inherit that set.
pub fn capability_set(import: &str) -> Option<&'static str> {
    CAPABILITY_SETS.iter().find_map(|(set, names)| {
        names
            .iter()
            .any(|name| *name == import || are_semver_compatible(name, import))
            .then_some(*set)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_wasi_0_2_patch_versions_are_provided() {
        assert!(provides("wasi:io/streams@0.2.0"));
        assert!(provides("wasi:http/outgoing-handler@0.2.3"));
        assert!(!provides("wasi:http/outgoing-handler@0.3.0"));
        assert!(!provides("cronium:runtime/cache@0.1.0"));
    }

    #[test]
    fn spin_interfaces_belong_to_their_capability_sets() {
        assert_eq!(
            capability_set("fermyon:spin/redis@2.0.0"),
            Some("allowed_outbound_hosts")
        );
        assert_eq!(
            capability_set("fermyon:spin/variables@2.0.0"),
            Some("variables")
        );
        assert_eq!(
            capability_set("wasi:http/outgoing-handler@0.2.0"),
            Some("allowed_outbound_hosts")
        );
        assert_eq!(capability_set("wasi:io/streams@0.2.0"), None);
    }
}
