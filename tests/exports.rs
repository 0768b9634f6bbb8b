//! The two exports of an endpoint component: the host calls the direct
//! `cronium:runtime/handler` export, falls back to `wasi:http` for a
//! component without it, and calls `wasi:http` (as Spin does) when told
//! to. Through either, every route answers the same.

use crate::support;

use support::call;
use support::parity::{self, HostWorld};

const MISBEHAVE: &str = env!("CRONIUM_TEST_MISBEHAVE_WASM");
/// A component with only the `wasi:http` export (`bench/components/hello`).
const HELLO: &str = env!("CRONIUM_BENCH_HELLO_WASM");

#[tokio::test]
async fn the_handler_export_is_called_unless_wasi_http_is_configured() {
    for (configured, called) in [
        (None, "handler"),
        (Some("handler"), "handler"),
        (Some("wasi-http"), "wasi-http"),
    ] {
        let world = HostWorld::start(|c| {
            let c = c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE);
            match configured {
                Some(export) => c.env("CRONIUM_COMPONENT_EXPORT", export),
                None => c,
            }
        })
        .await;
        let reply = call(
            "GET",
            &world.host.url("/executions/export/input"),
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json["data"], called, "configured {configured:?}");
    }
}

#[tokio::test]
async fn a_handler_answer_that_http_does_not_allow_is_a_json_500() {
    let world = HostWorld::start(|c| c.env("CRONIUM_COMPONENT_EXECUTIONS", MISBEHAVE)).await;
    let url = world.host.url("/executions/bad-header/input");
    let reply = call("GET", &url, &[], None).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert_eq!(reply.error_message(), "the component failed");
}

#[tokio::test]
async fn a_component_with_only_the_wasi_http_export_is_served_through_it() {
    let world = HostWorld::start(|c| c.env("CRONIUM_COMPONENT_EXECUTIONS", HELLO)).await;
    let reply = call("GET", &world.host.url("/executions/x/input"), &[], None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(&reply.body[..], b"hello");
}

#[tokio::test]
async fn every_route_answers_the_same_through_either_export_and_with_reuse_on_or_off() {
    let cases = parity::route_table();
    // The default (handler export, instances reused by credential), then
    // wasi:http as Spin calls it, then a fresh instance per request.
    let worlds = [
        HostWorld::start(|c| c).await,
        HostWorld::start(|c| c.env("CRONIUM_COMPONENT_EXPORT", "wasi-http")).await,
        HostWorld::start(|c| c.env("CRONIUM_INSTANCE_REUSE", "1")).await,
    ];
    for case in &cases {
        let mut answers = Vec::new();
        for world in &worlds {
            answers.push(parity::essence(
                &parity::ask(&world.host.base(), case).await,
            ));
        }
        assert_eq!(
            answers[0], answers[1],
            "{} {}: handler, then wasi:http",
            case.method, case.path
        );
        assert_eq!(
            answers[0], answers[2],
            "{} {}: reused instances, then fresh ones",
            case.method, case.path
        );
    }
}
