//! A request path as the endpoint components read it: split into segments,
//! each percent-decoded (`cronium_guest::path`), and routed to its group
//! (`cronium_rules::routes`).
//!
//! Must hold: a decoded segment, encoded as the host encodes segments for
//! the backend (`backend::encode_segment`), decodes to itself; and a path
//! built from such a segment routes as the segment's position says.

#![no_main]

use cronium_guest::path;
use cronium_rules::backend::encode_segment;
use cronium_rules::routes::{self, RouteGroup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = routes::group_for_path(raw);
    for segment in path::segments(raw) {
        match path::decode(segment) {
            Ok(decoded) => {
                let encoded = encode_segment(&decoded);
                assert!(
                    !encoded.contains(['/', '?', '#', ' ']),
                    "{decoded:?} encoded as {encoded:?}"
                );
                assert_eq!(path::decode(&encoded).unwrap(), decoded);
                let variable = format!("/executions/e/variables/{encoded}");
                assert_eq!(
                    routes::group_for_path(&variable),
                    Some(RouteGroup::Variables),
                    "{variable}"
                );
            }
            Err(error) => assert_eq!(error.status, 400),
        }
    }
});
