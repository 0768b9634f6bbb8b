//! A test-only endpoint component that misbehaves on request, to show
//! that the host contains it. Mounted in place of the executions group;
//! the `{id}` of `/executions/{id}/input` picks the behaviour:
//!
//! * `trap`: panics (a trap, since components abort on panic);
//! * `loop`: spins forever (stopped by the epoch deadline);
//! * `oom`: allocates until the memory cap is hit;
//! * `slow`: answers after two seconds;
//! * anything else: answers `200 {"success":true,"data":"fine"}`.

use cronium_guest::{ApiError, Reply, Request, path};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    cronium_guest::serve(request, out, misbehave).await
}

fn misbehave(request: Request) -> Result<Reply, ApiError> {
    match path::segments(&request.path).as_slice() {
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
