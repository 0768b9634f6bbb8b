//! `cronium-fake-backend`: the tests' fake of the Cronium backend
//! (`tests/support/backend.rs`, the same code) as a program of its own,
//! for the container tests' compose stack (`deploy/compose.yaml`), where
//! the backend is a container too.
//!
//! * `FAKE_BACKEND_LISTEN`: the address to serve on (`0.0.0.0:3000`);
//! * `FAKE_BACKEND_PROFILE`: `contract` (the contract's backend, the
//!   default) or `cronium-app` (the Cronium app as it is);
//! * `FAKE_BACKEND_EXECUTIONS`: the executions it knows, as
//!   `<execution id>=<user id>` pairs separated by commas, each with the
//!   input `{"execution":"<id>"}`.
//!
//! It expects `Authorization: Bearer backend-token-for-tests`, as the
//! tests' hosts send. It runs until SIGTERM or SIGINT.

#![allow(dead_code)]

#[path = "../backend.rs"]
mod backend;
#[path = "../serve.rs"]
mod serve;

use std::net::SocketAddr;

use backend::{FakeBackend, Profile};

fn main() {
    let listen: SocketAddr = std::env::var("FAKE_BACKEND_LISTEN")
        .unwrap_or_else(|_| "0.0.0.0:3000".into())
        .parse()
        .expect("FAKE_BACKEND_LISTEN is not an address");
    let profile = match std::env::var("FAKE_BACKEND_PROFILE").as_deref() {
        Err(_) | Ok("" | "contract") => Profile::Contract,
        Ok("cronium-app") => Profile::CroniumApp,
        Ok(other) => panic!("FAKE_BACKEND_PROFILE {other:?} is neither contract nor cronium-app"),
    };
    let executions = std::env::var("FAKE_BACKEND_EXECUTIONS").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the async runtime");
    runtime.block_on(async {
        let fake = FakeBackend::start_on(listen, profile).await;
        for pair in executions.split(',').filter(|p| !p.trim().is_empty()) {
            let (id, user) = pair
                .trim()
                .split_once('=')
                .expect("FAKE_BACKEND_EXECUTIONS is <execution id>=<user id>,...");
            fake.add_execution(id, user, Some(serde_json::json!({ "execution": id })));
        }
        eprintln!("fake backend on {}", fake.url());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}
