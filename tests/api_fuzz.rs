//! The property-based API fuzzer schemathesis (from PyPI; installed into
//! `target/schemathesis` on first use) against the running host and its
//! own `/openapi.json`: no 5xx, and no answer that contradicts the
//! document (status codes, content types, headers, response schemas).

mod support;

use std::process::Command;

use serde_json::json;
use support::{FakeBackend, Host, HostConfig, Valkey, token};

#[tokio::test]
async fn the_api_fuzzer_finds_no_server_error_and_nothing_contrary_to_the_document() {
    let pythonpath = support::pip_target("schemathesis", "schemathesis==4.32.5", "schemathesis")
        .expect("schemathesis could not be installed with pip");
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.add_execution("exec-1", "user-1", Some(json!({"a": 1})));
    let host =
        Host::start(HostConfig::with(&valkey.url(), &backend.url()).env("RATE_LIMIT_PER_MIN", "0"))
            .await;
    let auth = format!("Authorization: Bearer {}", token("exec-1"));
    let schema = host.url("/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                "-m",
                "schemathesis.cli",
                "run",
                &schema,
                "--max-examples",
                "25",
                "--header",
                &auth,
            ])
            .args([
                "--generation-deterministic",
                "--request-timeout",
                "10",
                "--no-color",
            ])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,unsupported_method,\
                 allow_header_conformance,ignored_auth",
            ])
            .env("PYTHONPATH", pythonpath)
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    eprintln!("{report}");
}
