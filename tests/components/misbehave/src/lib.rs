//! A test-only endpoint component that misbehaves on request, to show
//! that the host contains it. Mounted in place of the executions group;
//! the `{id}` of `/executions/{id}/input` picks the behaviour:
//!
//! * `trap`: panics (a trap, since components abort on panic);
//! * `loop`: spins forever (stopped by the epoch deadline);
//! * `oom`: allocates until the memory cap is hit;
//! * `slow`: answers after two seconds;
//! * `count`: answers how many requests this instance has served, itself
//!   included (1 for a fresh instance; more only when the host reuses it);
//! * `export`: answers the export the request came through, `handler` or
//!   `wasi-http`;
//! * `bad-header`: answers with a header name HTTP does not allow;
//! * anything else: answers `200 {"success":true,"data":"fine"}`.

use std::sync::atomic::{AtomicU64, Ordering};

use cronium_guest::bindings::exports::cronium::runtime::handler;
use cronium_guest::{ApiError, Reply, Request, path};

// The two exports of `cronium_guest::endpoint!`, each saying which it is.
#[spin_sdk::http_component]
fn handle(request: spin_sdk::http::IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
    cronium_guest::serve(request, out, |request| misbehave(request, "wasi-http"))
}

struct HandlerExport;

impl handler::Guest for HandlerExport {
    fn handle(request: handler::Request) -> handler::Response {
        cronium_guest::answer(request, |request| misbehave(request, "handler"))
    }
}

cronium_guest::bindings::export!(HandlerExport);

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

fn misbehave(request: Request, export: &str) -> Result<Reply, ApiError> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    match path::segments(&request.path).as_slice() {
        ["executions", "count", _] => Ok(Reply::data(served.into())),
        // Grows the instance's memory by 24 MiB, then answers like count.
        ["executions", "grow", _] => {
            let ballast = vec![1u8; 24 << 20];
            std::hint::black_box(&ballast);
            Ok(Reply::data(served.into()))
        }
        ["executions", "export", _] => Ok(Reply::data(export.into())),
        ["executions", "bad-header", _] => {
            Ok(Reply::data(export.into()).with_header("bad name", "x"))
        }
        ["executions", "trap", _] => panic!("asked to trap"),
        ["executions", "loop", _] => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        ["executions", "oom", _] => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        ["executions", "slow", _] => {
            std::thread::sleep(std::time::Duration::from_secs(2));
            Ok(Reply::data(serde_json::Value::String(
                "slow but fine".into(),
            )))
        }
        _ => Ok(Reply::data(serde_json::Value::String("fine".into()))),
    }
}
