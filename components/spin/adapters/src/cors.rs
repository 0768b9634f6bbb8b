//! `cronium:runtime/cors`: the origins the endpoint components answer CORS
//! for, since under Spin nothing stands in front of them.
//!
//! Settings (Spin variables of the endpoint component), named and
//! defaulted as the custom host's environment: `enable_cors` (`true`),
//! `allowed_origins` (`*`, or a comma-separated list). An unreadable
//! `enable_cors` turns CORS off and says so in the app's log.

use cronium_spin_support::settings;

use crate::exports::cronium::runtime::cors::Guest;

impl Guest for crate::Adapters {
    fn allowed_origins() -> Option<Vec<String>> {
        match settings::boolean("enable_cors", true) {
            Ok(true) => Some(cronium_rules::cors::parse_origins(
                &settings::get("allowed_origins").unwrap_or_else(|| "*".to_owned()),
            )),
            Ok(false) => None,
            Err(why) => {
                eprintln!("CORS is off: {why}");
                None
            }
        }
    }
}
