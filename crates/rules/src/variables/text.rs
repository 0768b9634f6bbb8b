//! How a variable's JSON value is kept as text by the backend.
//!
//! The Cronium app keeps a variable in a Postgres `text NOT NULL` column,
//! so whatever the API writes must survive being a string, and whatever a
//! person types in the app's UI must read back as what they typed. One
//! encoding, applied by every backend (the app, the contract's JSON
//! backend and the embedded store alike, so a deployment can move between
//! them):
//!
//! * a string is stored as written (`hello world` stays `hello world`),
//!   unless it would read back as another value (`42`, `true`, `null`,
//!   `{"a":1}`, `"quoted"`): then it is stored as its JSON text (`"42"`);
//! * every other value is stored as its JSON text (`42`, `[1,"x"]`);
//! * reading: text that is JSON is that JSON value (a JSON string literal
//!   is the string inside it), any other text is itself, as a string
//!   (`007`, `a,b`, `{not json` read back as written).
//!
//! So [`decode`]`(`[`encode`]`(v)) == v` for every JSON value `v`, and the
//! text `null` is a variable without a value, which is how a backend
//! without a `DELETE` route is told to forget one.
//!
//! A backend that keeps JSON values rather than text (an older contract
//! backend) may answer a non-string value: [`from_backend`] takes it as
//! the value itself.

use serde_json::Value;

/// The text a backend keeps for `value`.
pub fn encode(value: &Value) -> String {
    match value {
        Value::String(text) if reads_back_as_itself(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The value of the text a backend keeps.
pub fn decode(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The value of a backend's answer: a string is decoded text, anything
/// else is taken as the value itself.
pub fn from_backend(stored: Value) -> Value {
    match stored {
        Value::String(text) => decode(&text),
        other => other,
    }
}

/// Whether `text`, kept as is, reads back as the same string.
fn reads_back_as_itself(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_strings_are_kept_as_a_person_typed_them() {
        for text in ["hello world", "007", "a,b", "{not json", "", "ünï ✓", "1 2"] {
            assert_eq!(encode(&json!(text)), text);
            assert_eq!(decode(text), json!(text));
        }
    }

    #[test]
    fn strings_that_look_like_other_values_are_kept_quoted() {
        assert_eq!(encode(&json!("42")), r#""42""#);
        assert_eq!(encode(&json!("true")), r#""true""#);
        assert_eq!(encode(&json!("null")), r#""null""#);
        assert_eq!(encode(&json!(r#"{"a":1}"#)), r#""{\"a\":1}""#);
        assert_eq!(encode(&json!(r#""quoted""#)), r#""\"quoted\"""#);
        assert_eq!(encode(&json!(" 42 ")), r#"" 42 ""#);
    }

    #[test]
    fn other_values_are_kept_as_their_json_text() {
        assert_eq!(encode(&json!(42)), "42");
        assert_eq!(encode(&json!(-1.5)), "-1.5");
        assert_eq!(encode(&json!(true)), "true");
        assert_eq!(encode(&json!([1, "x"])), r#"[1,"x"]"#);
        assert_eq!(encode(&json!({"a": {"b": null}})), r#"{"a":{"b":null}}"#);
        assert_eq!(encode(&Value::Null), "null");
    }

    #[test]
    fn text_typed_in_the_app_that_is_json_reads_as_that_value() {
        assert_eq!(decode("42"), json!(42));
        assert_eq!(decode("true"), json!(true));
        assert_eq!(decode("null"), Value::Null);
        assert_eq!(decode(r#""hi""#), json!("hi"));
    }

    #[test]
    fn a_non_string_answer_of_a_json_backend_is_the_value_itself() {
        assert_eq!(from_backend(json!(42)), json!(42));
        assert_eq!(from_backend(json!({"a": 1})), json!({"a": 1}));
        assert_eq!(from_backend(json!("42")), json!(42));
        assert_eq!(from_backend(json!("hello")), json!("hello"));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
            // Strings that are, or nearly are, JSON text themselves.
            prop_oneof![
                Just("42"),
                Just("-0"),
                Just("1e5"),
                Just("true"),
                Just("null"),
                Just("[]"),
                Just("{}"),
                Just(r#""x""#),
                Just(" 7 "),
                Just("{not json"),
                Just("007"),
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("\\PC{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn every_json_value_reads_back_identical(value in json_value()) {
            proptest::prop_assert_eq!(decode(&encode(&value)), value.clone());
            // As a JSON backend answers it, too.
            proptest::prop_assert_eq!(from_backend(Value::String(encode(&value))), value);
        }

        #[test]
        fn any_text_decodes_without_a_panic(text in "\\PC{0,40}") {
            let _ = decode(&text);
        }
    }
}
