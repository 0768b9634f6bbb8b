//! Checks that `spin.toml` would run under Spin 4, without a Spin CLI:
//!
//! * [`manifest`]: the parts of `spin.toml` Spin reads, parsed as Spin
//!   reads them (unknown component fields are errors, as in Spin);
//! * [`build`]: runs the manifest's `[component.*.build]` commands, as
//!   `spin build` does, and the custom host's build of the embedded
//!   components, to compare the bytes;
//! * [`compose`]: composes a component with its `[component.*.dependencies]`
//!   the way Spin 4.0.2 does (`crates/compose`, on the same `wac-graph`);
//! * [`spin4`]: what Spin 4 provides to a composed component, and which
//!   capability set each of its interfaces belongs to.
//!
//! The tests in `tests/spin.rs` state the properties.

pub mod build;
pub mod compose;
pub mod manifest;
pub mod spin4;

use std::path::PathBuf;

/// The repository root (where `spin.toml` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}
