//! A variable's value as the Cronium app's text column keeps it
//! (`cronium_rules::variables::text`).
//!
//! Must hold: every JSON value comes back as itself after `encode` then
//! `decode`; any text the backend holds decodes to a value that encodes
//! back to text decoding to the same value; and a value from an older JSON
//! backend is read without loss.

#![no_main]

use cronium_rules::variables::text;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = serde_json::from_str::<Value>(raw) {
        let stored = text::encode(&value);
        assert_eq!(text::decode(&stored), value, "stored as {stored:?}");
        if !value.is_string() {
            assert_eq!(text::from_backend(value.clone()), value);
        }
    }
    let read = text::decode(raw);
    assert_eq!(text::decode(&text::encode(&read)), read, "read {raw:?}");
    assert_eq!(text::from_backend(Value::String(raw.to_owned())), read);
});
