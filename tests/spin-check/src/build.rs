//! Builds what `spin.toml` points at, as `spin build` would: each distinct
//! `[component.*.build]` command, run by the shell from the repository
//! root. And builds the custom host's components with the host's own
//! command (`host/build.rs`), so the tests can check that `spin build`
//! leaves the bytes the host embeds untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::manifest::Manifest;

/// Variables a `cargo test` run sets that would redirect or re-flag a
/// nested cargo (the same list `host/build.rs` clears).
const CARGO_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
];

/// Runs `command` with the shell in `root`.
pub fn run(root: &Path, command: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(root);
    for var in CARGO_VARS {
        cmd.env_remove(var);
    }
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "`{command}` failed: {status}");
    Ok(())
}

/// The distinct build commands of the manifest, in component order.
pub fn spin_build_commands(manifest: &Manifest) -> Vec<String> {
    let mut commands: Vec<String> = Vec::new();
    for component in manifest.component.values() {
        for command in component.build.iter().flat_map(|b| b.command.all()) {
            if !commands.contains(&command) {
                commands.push(command);
            }
        }
    }
    commands
}

/// The crates `host/build.rs` builds (embedded and test-only), read from
/// its `("crate-name", "CRONIUM_..._WASM")` tables, however rustfmt wraps
/// them: each crate is the string literal just before an env var's.
pub fn host_build_crates(root: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(root.join("host/build.rs"))?;
    let literals: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
    let crates: Vec<String> = literals
        .windows(2)
        .filter(|pair| pair[1].starts_with("CRONIUM_") && pair[1].ends_with("_WASM"))
        .map(|pair| pair[0].to_owned())
        .collect();
    anyhow::ensure!(
        !crates.is_empty(),
        "found no (crate, env var) tables in host/build.rs"
    );
    Ok(crates)
}

/// The command `host/build.rs` runs for `crates`.
pub fn host_build_command(crates: &[String]) -> String {
    let mut command = String::from(
        "cargo build --target wasm32-wasip2 --profile component --target-dir target/components",
    );
    for krate in crates {
        command.push_str(" -p ");
        command.push_str(krate);
    }
    command
}

/// Where a guest crate's component lands.
pub fn artifact(root: &Path, krate: &str) -> PathBuf {
    root.join("target/components/wasm32-wasip2/component")
        .join(format!("{}.wasm", krate.replace('-', "_")))
}

/// SHA-256 of each existing file among `paths`.
pub fn digests(paths: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    paths
        .iter()
        .filter_map(|path| {
            let bytes = std::fs::read(path).ok()?;
            let digest = Sha256::digest(&bytes);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            Some((path.clone(), hex))
        })
        .collect()
}
