//! The end-to-end tests that need nothing beyond this repository and a
//! Valkey server: the real `cronium-runtime` binary, real Valkey servers
//! and the fake Cronium backend (`support`). One module per area of the
//! API (`cargo test --test end_to_end variables::` runs one). They share
//! one test binary, so that `support` is compiled once and the tests of
//! every area run side by side. The tests that need Docker, sshd, a Spin
//! CLI or Python have binaries of their own: `container`, `ssh_tunnel`,
//! `under_spin`, `api_fuzz`.

mod support;

mod authority;
mod batch;
mod cluster;
mod configuration;
mod executions;
mod exports;
mod operations;
mod rate_limits;
mod real_app;
mod resilience;
mod tls;
mod tool_actions;
mod variables;
mod warm_path;
