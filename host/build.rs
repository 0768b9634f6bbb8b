//! Builds the wasm components once per host build, the way wasmtime's own
//! test programs are built: one nested `cargo build` for `wasm32-wasip2`,
//! in its own target directory (`target/components`), so it never waits on
//! the outer build's lock.
//!
//! The production components are embedded in the binary; the test and
//! benchmark ones are only built, and their paths handed to the tests.
//!
//! The `wasm32-wasip2` target is added with rustup when it is missing:
//! `rust-toolchain.toml` lists it, but rustup installs a toolchain file's
//! targets only when it installs the toolchain itself, so a machine that
//! already had `stable` would otherwise fail here.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate, env var naming its `.wasm`). The first group is embedded.
const EMBEDDED: &[(&str, &str)] = &[
    ("cronium-executions", "CRONIUM_EXECUTIONS_WASM"),
    ("cronium-variables", "CRONIUM_VARIABLES_WASM"),
    ("cronium-tool-actions", "CRONIUM_TOOL_ACTIONS_WASM"),
    ("cronium-batch", "CRONIUM_BATCH_WASM"),
    ("cronium-tool-webhook", "CRONIUM_TOOL_WEBHOOK_WASM"),
    ("cronium-tool-slack", "CRONIUM_TOOL_SLACK_WASM"),
    ("cronium-tool-discord", "CRONIUM_TOOL_DISCORD_WASM"),
    ("cronium-tool-email", "CRONIUM_TOOL_EMAIL_WASM"),
];
const TEST_ONLY: &[(&str, &str)] = &[
    ("cronium-test-misbehave", "CRONIUM_TEST_MISBEHAVE_WASM"),
    (
        "cronium-test-misbehaving-tool",
        "CRONIUM_TEST_MISBEHAVING_TOOL_WASM",
    ),
    ("cronium-test-echo-tool", "CRONIUM_TEST_ECHO_TOOL_WASM"),
    ("cronium-test-hostile", "CRONIUM_TEST_HOSTILE_WASM"),
    ("cronium-bench-hello", "CRONIUM_BENCH_HELLO_WASM"),
    ("cronium-bench-floor", "CRONIUM_BENCH_FLOOR_WASM"),
    (
        "cronium-bench-growth-tool",
        "CRONIUM_BENCH_GROWTH_TOOL_WASM",
    ),
];

/// The cargo profile the components are built with (see the workspace `Cargo.toml`).
const PROFILE: &str = "component";
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace root");
    for watched in [
        "components",
        "crates",
        "wit",
        "tests/components",
        "bench/components",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = root.join("target").join("components");
    ensure_target_installed();

    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (krate, _) in EMBEDDED.iter().chain(TEST_ONLY) {
        cmd.args(["-p", krate]);
    }
    // The outer build's flags are for the host target, and a clippy run
    // would lint the guests through its wrapper: keep both out.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the components");
    assert!(
        status.success(),
        "building the wasm components failed: {status}"
    );

    for (krate, var) in EMBEDDED.iter().chain(TEST_ONLY) {
        let wasm = artifact(&target_dir, krate);
        assert!(wasm.exists(), "{} was not built", wasm.display());
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}

/// Adds the `wasm32-wasip2` target to the toolchain building us, unless
/// its standard library is already there.
fn ensure_target_installed() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::is_dir) {
        return;
    }
    println!("cargo:warning=adding the {TARGET} target with rustup (once per toolchain)");
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        outcome => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed ({outcome:?}); \
             install the target for this toolchain and build again"
        ),
    }
}

fn artifact(target_dir: &Path, krate: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{}.wasm", krate.replace('-', "_")))
}
