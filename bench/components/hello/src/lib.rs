//! The smallest useful `wasi:http` component: answers every request with
//! `200 hello`. It imports nothing of ours, so both our host and
//! `wasmtime serve` can run it, which makes it the reference point of the
//! benchmark.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_request: Request) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello")
        .build()
}
