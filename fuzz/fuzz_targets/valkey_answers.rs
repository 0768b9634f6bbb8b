//! Valkey's replies as the rules read them: the access check
//! (`cronium_rules::access::CheckAccess`) and the lease machines
//! (`lease::protocol::{Acquire, AwaitRelease}`), driven as the host and
//! the Spin adapters drive them, with replies and failures chosen by the
//! fuzzer.
//!
//! Must hold: every machine ends (its waits are bounded by its patience)
//! in a verdict or a typed failure, never a panic; a rate-limited verdict
//! asks the client to wait at least a second.

#![no_main]

#[path = "common/drive.rs"]
mod common;

use std::time::Duration;

use cronium_rules::access::{Check, CheckAccess, Verdict};
use cronium_rules::lease::protocol::{Acquire, AwaitRelease};
use cronium_rules::protocol::{Machine, ValkeyError, ValkeyReply, ValkeyValue};
use cronium_rules::rate_limit::Quota;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Far more steps than a machine's patience allows.
const MOST_STEPS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    let mut input = Unstructured::new(data);
    let _ = run(&mut input);
});

fn run(input: &mut Unstructured<'_>) -> Result<()> {
    match input.int_in_range(0..=2)? {
        0 => {
            let check = Check {
                job_id: "job-1".into(),
                execution_id: "exec-1".into(),
                quota: if input.arbitrary()? {
                    Some(Quota::per_minute(input.int_in_range(1..=100_000)?))
                } else {
                    None
                },
                peek_record: input.arbitrary()?,
                split: input.arbitrary()?,
            };
            if let Verdict::RateLimited { retry_after_secs } =
                drive(CheckAccess::new(check), input)?
            {
                assert!(retry_after_secs >= 1, "Retry-After: {retry_after_secs}");
            }
        }
        1 => {
            let ttl = Duration::from_millis(input.int_in_range(0..=120_000)?);
            let patience = Duration::from_millis(input.int_in_range(0..=120_000)?);
            let _ = drive(Acquire::new("k", "owner-1", ttl, patience), input)?;
        }
        _ => {
            let patience = Duration::from_millis(input.int_in_range(0..=120_000)?);
            let _ = drive(AwaitRelease::new("k", patience), input)?;
        }
    }
    Ok(())
}

fn drive<M>(machine: M, input: &mut Unstructured<'_>) -> Result<M::Output>
where
    M: Machine<Reply = ValkeyReply>,
{
    common::drive(machine, input, MOST_STEPS, |_, input| {
        let took = Duration::from_micros(input.int_in_range(0..=500_000)?);
        let reply = if input.is_empty() {
            Err(ValkeyError::Unavailable("gone".into()))
        } else {
            value(input, 0)
        };
        Ok((took, reply))
    })
}

/// A reply: mostly integers near the ones the scripts answer, sometimes
/// anything else.
fn value(
    input: &mut Unstructured<'_>,
    depth: u32,
) -> std::result::Result<ValkeyValue, ValkeyError> {
    let pick = input.int_in_range(0..=9).unwrap_or(0);
    Ok(match pick {
        0 => return Err(ValkeyError::Unavailable("down".into())),
        1 => return Err(ValkeyError::Invalid("NOSCRIPT".into())),
        2 => ValkeyValue::Nil,
        3 => ValkeyValue::Bytes(input.arbitrary::<Vec<u8>>().unwrap_or_default()),
        4 if depth < 3 => {
            let len = input.int_in_range(0..=4).unwrap_or(0);
            let mut items = Vec::new();
            for _ in 0..len {
                items.push(value(input, depth + 1).unwrap_or(ValkeyValue::Nil));
            }
            ValkeyValue::Array(items)
        }
        5 => ValkeyValue::Int(input.arbitrary().unwrap_or(0)),
        _ => ValkeyValue::Int(input.int_in_range(-3..=70_000_000).unwrap_or(0)),
    })
}
