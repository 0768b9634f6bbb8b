//! Steps a protocol machine of `cronium_rules` as the host and the Spin
//! adapters' drivers do, with the clock, the jitter and every reply chosen
//! by the fuzzer. Shared by the machine targets (`#[path]`-included).

use std::time::Duration;

use cronium_rules::protocol::{Machine, Now, Step};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// Steps `machine` to its end. `answer` checks each request and gives its
/// reply and how long it took; a machine still going after `most_steps`
/// is a bug (its waits and attempts are bounded).
pub fn drive<M: Machine>(
    mut machine: M,
    input: &mut Unstructured<'_>,
    most_steps: usize,
    mut answer: impl FnMut(&M::Request, &mut Unstructured<'_>) -> Result<(Duration, M::Reply)>,
) -> Result<M::Output> {
    let mut elapsed = Duration::ZERO;
    let mut reply = None;
    for _ in 0..most_steps {
        let now = Now {
            elapsed,
            jitter: f64::from(input.int_in_range(0..=999u16)?) / 1000.0,
        };
        match machine.next(reply.take(), now) {
            Step::Send(request) => {
                let (took, answered) = answer(&request, input)?;
                elapsed += took;
                reply = Some(answered);
            }
            Step::Wait(pause) => elapsed += pause,
            Step::Done(output) => return Ok(output),
        }
    }
    panic!("a machine did not end within {most_steps} steps");
}
