//! The backend's answers as the rules read them: every call of
//! `cronium_rules::backend::protocol`, driven as the host and the Spin
//! adapters drive it, with answers (status, body, transport failures) and
//! pauses chosen by the fuzzer.
//!
//! Must hold: every call ends, within its attempts, in a value or a typed
//! `BackendError` (never a panic or a loop); a variable read is JSON text and
//! never `null`; an execution read is the one asked for.

#![no_main]

#[path = "common/drive.rs"]
mod common;

use std::time::Duration;

use cronium_rules::backend::protocol::{self as calls, Call, Caller, Client};
use cronium_rules::protocol::{HttpReply, HttpResponse, TransportError};
use cronium_rules::wire::TokenFacts;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

/// More steps than any call's attempts and pauses can take.
const MOST_STEPS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let mut input = Unstructured::new(data);
    let _ = run(&mut input);
});

fn run(input: &mut Unstructured<'_>) -> Result<()> {
    let client = Client {
        token: "backend-token".into(),
        timeout: Duration::from_millis(input.int_in_range(0..=60_000)?),
    };
    let caller = Caller {
        execution_id: "exec-1".into(),
        capability: None,
    };
    let value = RawValue::from_string(r#"{"a":[1,"b"]}"#.into()).unwrap();
    match input.int_in_range(0..=7)? {
        0 => {
            let token = TokenFacts {
                user_id: Some("user-1".into()),
                issued_at: 1_800_000_000,
            };
            let execution = drive(calls::get_execution(&client, &caller, token), input)?;
            if let Ok(execution) = execution {
                assert_eq!(execution.execution_id, "exec-1");
            }
        }
        1 => {
            if let Ok(Some(variable)) =
                drive(calls::get_variable(&client, &caller, "user-1", "k"), input)?
            {
                let read: Value = serde_json::from_str(&variable.value)
                    .unwrap_or_else(|e| panic!("{:?} is not JSON: {e}", variable.value));
                assert!(!read.is_null(), "a variable read as null");
            }
        }
        2 => {
            let _ = drive(
                calls::set_variable(&client, &caller, "user-1", "k", &value),
                input,
            )?;
        }
        3 => {
            let _ = drive(
                calls::get_tool_credentials(&client, &caller, "user-1", "slack"),
                input,
            )?;
        }
        4 => {
            let _ = drive(
                calls::execute_tool(
                    &client,
                    &caller,
                    "user-1",
                    "slack",
                    "send",
                    &value,
                    Some("k-1"),
                ),
                input,
            )?;
        }
        5 => {
            let _ = drive(
                calls::set_output(&client, &caller, &value, "2027-01-15T00:00:00Z"),
                input,
            )?;
        }
        6 => {
            let _ = drive(
                calls::set_condition(&client, &caller, true, "2027-01-15T00:00:00Z"),
                input,
            )?;
        }
        _ => {
            let _ = drive(
                calls::record_audit(&client, br#"{"action":"a"}"#.to_vec()),
                input,
            )?;
        }
    }
    Ok(())
}

/// Steps `call` to its end, answering each request from `input`.
fn drive<T>(
    call: Call<T>,
    input: &mut Unstructured<'_>,
) -> Result<std::result::Result<T, cronium_rules::backend::BackendError>> {
    common::drive(call, input, MOST_STEPS, |request, input| {
        assert!(
            request.path.starts_with("/api/internal/"),
            "{}",
            request.path
        );
        assert!(
            request
                .headers
                .iter()
                .all(|(_, v)| calls::valid_header_value(v))
        );
        let took = Duration::from_millis(input.int_in_range(0..=5_000)?);
        Ok((took, answer(input)?))
    })
}

fn answer(input: &mut Unstructured<'_>) -> Result<HttpReply> {
    Ok(match input.int_in_range(0..=9)? {
        0 => Err(TransportError::TimedOut),
        1 => Err(TransportError::Failed("refused".into())),
        2 => Err(TransportError::Unreadable("cut off".into())),
        _ => Ok(HttpResponse {
            status: input.int_in_range(100..=599)?,
            body: input.arbitrary::<&[u8]>()?.to_vec(),
        }),
    })
}
