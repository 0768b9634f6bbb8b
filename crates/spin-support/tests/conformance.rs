//! Every case of the protocol machines' conformance suite
//! (`cronium_rules::conformance`), through the Spin adapters' blocking
//! driver.

use std::time::Duration;

use cronium_rules::conformance::{self, Case, Reply, Request, Script};
use cronium_rules::protocol::Now;
use cronium_spin_support::drive::{self, Io};

struct Scripted<'a>(&'a mut Script);

impl Io<Request, Reply> for Scripted<'_> {
    fn send(&mut self, request: Request) -> Reply {
        self.0.send(request)
    }

    fn sleep(&mut self, pause: Duration) {
        self.0.sleep(pause);
    }

    fn now(&mut self) -> Now {
        self.0.now()
    }
}

#[test]
fn every_conformance_case_passes_the_blocking_driver() {
    let cases = conformance::cases();
    let count = cases.len();
    for Case {
        machine,
        mut script,
        ..
    } in cases
    {
        let outcome = drive::drive(machine, &mut Scripted(&mut script));
        script.finish(outcome);
    }
    eprintln!("{count} conformance cases passed the blocking driver");
}
