//! The JSON Schema subset tool parameters are checked against.
//!
//! A tool declares one schema per action; the tool-actions component
//! checks a call's parameters against it before the tool runs, and the
//! host checks, when it loads a tool, that every schema compiles here. One
//! small validator in this crate keeps both sides agreeing and keeps the
//! components small: no regex engine, no remote `$ref`s.
//!
//! Supported keywords: `type` (a name or a list of names), `properties`,
//! `required`, `additionalProperties` (bool or schema), `items` (one
//! schema), `enum`, `const`, `minLength`, `maxLength` (in characters),
//! `minimum`, `maximum`, `minItems`, `maxItems`, `anyOf`, `oneOf`; and the
//! annotations `title`, `description`, `default`, `examples`, `format`,
//! `$schema`, `$comment`, which are not checked. Any other keyword makes
//! [`Schema::compile`] fail, so a tool never silently loses a rule.

use serde_json::{Map, Value};

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "format",
    "$schema",
    "$comment",
];

/// Nesting deeper than this is refused (schemas and values alike are
/// walked recursively).
const MAX_DEPTH: usize = 32;

/// Violations reported at most, so an error message stays readable.
const MAX_VIOLATIONS: usize = 8;

/// A JSON type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "integer" => Kind::Integer,
            "number" => Kind::Number,
            "string" => Kind::String,
            "array" => Kind::Array,
            "object" => Kind::Object,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }

    fn matches(self, value: &Value) -> bool {
        match self {
            Kind::Null => value.is_null(),
            Kind::Boolean => value.is_boolean(),
            Kind::Integer => match value {
                Value::Number(n) => {
                    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
                }
                _ => false,
            },
            Kind::Number => value.is_number(),
            Kind::String => value.is_string(),
            Kind::Array => value.is_array(),
            Kind::Object => value.is_object(),
        }
    }
}

/// What `additionalProperties` allows.
#[derive(Debug, Clone)]
enum Additional {
    Any,
    None,
    Schema(Box<Schema>),
}

/// A compiled schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `false` as a schema: nothing is valid.
    reject_all: bool,
    kinds: Option<Vec<Kind>>,
    properties: Vec<(String, Schema)>,
    required: Vec<String>,
    additional: Option<Additional>,
    items: Option<Box<Schema>>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    any_of: Option<Vec<Schema>>,
    one_of: Option<Vec<Schema>>,
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema at {at}: {problem}")]
pub struct SchemaError {
    /// JSON pointer into the schema.
    pub at: String,
    /// What is wrong there, for a person (`nests deeper than ...`).
    pub problem: String,
}

/// One way a value breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the value (`""` is the value itself).
    pub at: String,
    /// What is wrong with the value there, for a person (`must be object,
    /// not an array`).
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.at, self.problem)
        }
    }
}

/// Joins violations into one sentence for an error message.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Schema {
    /// Compiles `schema`, refusing unknown keywords and malformed values.
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        compile(schema, "", 0)
    }

    /// Checks `value`; on failure, up to a few violations (properties in
    /// name order).
    pub fn validate(&self, value: &Value) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        self.check(value, &mut String::new(), 0, &mut violations);
        if violations.is_empty() {
            Ok(())
        } else {
            violations.truncate(MAX_VIOLATIONS);
            Err(violations)
        }
    }

    fn check(&self, value: &Value, at: &mut String, depth: usize, out: &mut Vec<Violation>) {
        if out.len() >= MAX_VIOLATIONS {
            return;
        }
        let mut fail = |at: &str, problem: String| {
            out.push(Violation {
                at: at.to_owned(),
                problem,
            })
        };
        if self.reject_all {
            return fail(at, "is not allowed".into());
        }
        if depth > MAX_DEPTH {
            return fail(at, format!("nests deeper than {MAX_DEPTH} levels"));
        }
        if let Some(kinds) = &self.kinds
            && !kinds.iter().any(|k| k.matches(value))
        {
            let names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
            return fail(
                at,
                format!("must be {}, not {}", names.join(" or "), kind_of(value)),
            );
        }
        if let Some(constant) = &self.constant
            && value != constant
        {
            fail(at, format!("must be {constant}"));
        }
        if let Some(options) = &self.enumeration
            && !options.contains(value)
        {
            let listed: Vec<_> = options.iter().map(Value::to_string).collect();
            fail(at, format!("must be one of {}", listed.join(", ")));
        }
        match value {
            Value::String(s) => {
                let chars = s.chars().count() as u64;
                if let Some(min) = self.min_length
                    && chars < min
                {
                    fail(at, format!("must be at least {min} characters long"));
                }
                if let Some(max) = self.max_length
                    && chars > max
                {
                    fail(at, format!("must be at most {max} characters long"));
                }
            }
            Value::Number(n) => {
                // Without arbitrary precision every JSON number has an f64.
                let n = n.as_f64().unwrap_or_default();
                if let Some(min) = self.minimum
                    && n < min
                {
                    fail(at, format!("must be at least {min}"));
                }
                if let Some(max) = self.maximum
                    && n > max
                {
                    fail(at, format!("must be at most {max}"));
                }
            }
            Value::Array(items) => {
                let len = items.len() as u64;
                if let Some(min) = self.min_items
                    && len < min
                {
                    fail(at, format!("must have at least {min} items"));
                }
                if let Some(max) = self.max_items
                    && len > max
                {
                    fail(at, format!("must have at most {max} items"));
                }
                if let Some(item) = &self.items {
                    for (i, v) in items.iter().enumerate() {
                        with_segment(at, &i.to_string(), |at| item.check(v, at, depth + 1, out));
                    }
                }
            }
            Value::Object(map) => self.check_object(map, at, depth, out),
            _ => {}
        }
        if let Some(options) = &self.any_of
            && !options.iter().any(|s| s.validate_at(value, depth))
        {
            out.push(Violation {
                at: at.clone(),
                problem: "matches none of the allowed forms".into(),
            });
        }
        if let Some(options) = &self.one_of {
            let matching = options
                .iter()
                .filter(|s| s.validate_at(value, depth))
                .count();
            if matching != 1 {
                out.push(Violation {
                    at: at.clone(),
                    problem: if matching == 0 {
                        "matches none of the allowed forms".into()
                    } else {
                        "matches more than one of the exclusive forms".into()
                    },
                });
            }
        }
    }

    fn check_object(
        &self,
        map: &Map<String, Value>,
        at: &mut String,
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        for name in &self.required {
            if !map.contains_key(name) {
                out.push(Violation {
                    at: at.clone(),
                    problem: format!("is missing the required property \"{name}\""),
                });
            }
        }
        for (name, v) in map {
            let declared = self.properties.iter().find(|(p, _)| p == name);
            with_segment(at, name, |at| match (declared, &self.additional) {
                (Some((_, schema)), _) => schema.check(v, at, depth + 1, out),
                (None, Some(Additional::None)) => out.push(Violation {
                    at: at.clone(),
                    problem: "is not a known property".into(),
                }),
                (None, Some(Additional::Schema(schema))) => schema.check(v, at, depth + 1, out),
                (None, Some(Additional::Any) | None) => {}
            });
        }
    }

    fn validate_at(&self, value: &Value, depth: usize) -> bool {
        let mut violations = Vec::new();
        self.check(value, &mut String::new(), depth + 1, &mut violations);
        violations.is_empty()
    }
}

/// Runs `f` with `segment` appended to the pointer `at`, then restores it.
fn with_segment(at: &mut String, segment: &str, f: impl FnOnce(&mut String)) {
    let len = at.len();
    at.push('/');
    // RFC 6901 escaping.
    at.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    f(at);
    at.truncate(len);
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn compile(schema: &Value, at: &str, depth: usize) -> Result<Schema, SchemaError> {
    let error = |problem: String| SchemaError {
        at: if at.is_empty() { "/".into() } else { at.into() },
        problem,
    };
    if depth > MAX_DEPTH {
        return Err(error(format!("nests deeper than {MAX_DEPTH} levels")));
    }
    let map = match schema {
        Value::Bool(true) => return Ok(Schema::default()),
        Value::Bool(false) => {
            return Ok(Schema {
                reject_all: true,
                ..Schema::default()
            });
        }
        Value::Object(map) => map,
        _ => return Err(error("a schema must be an object or a boolean".into())),
    };
    let sub = |key: &str, value: &Value| compile(value, &format!("{at}/{key}"), depth + 1);
    let count = |key: &str, value: &Value| {
        value
            .as_u64()
            .ok_or_else(|| error(format!("\"{key}\" must be a non-negative integer")))
    };
    let number = |key: &str, value: &Value| {
        value
            .as_f64()
            .ok_or_else(|| error(format!("\"{key}\" must be a number")))
    };
    let list = |key: &str, value: &Value| -> Result<Vec<Schema>, SchemaError> {
        let items = value
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| error(format!("\"{key}\" must be a non-empty array")))?;
        items
            .iter()
            .enumerate()
            .map(|(i, s)| compile(s, &format!("{at}/{key}/{i}"), depth + 1))
            .collect()
    };

    let mut compiled = Schema::default();
    for (key, value) in map {
        match key.as_str() {
            "type" => {
                let names: Vec<&Value> = match value {
                    Value::Array(names) => names.iter().collect(),
                    one => vec![one],
                };
                let kinds = names
                    .iter()
                    .map(|n| n.as_str().and_then(Kind::parse))
                    .collect::<Option<Vec<_>>>()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| error(format!("unknown type {value}")))?;
                compiled.kinds = Some(kinds);
            }
            "properties" => {
                let properties = value
                    .as_object()
                    .ok_or_else(|| error("\"properties\" must be an object".into()))?;
                compiled.properties = properties
                    .iter()
                    .map(|(name, s)| Ok((name.clone(), sub(&format!("properties/{name}"), s)?)))
                    .collect::<Result<_, SchemaError>>()?;
            }
            "required" => {
                compiled.required = value
                    .as_array()
                    .and_then(|names| {
                        names
                            .iter()
                            .map(|n| n.as_str().map(str::to_owned))
                            .collect()
                    })
                    .ok_or_else(|| error("\"required\" must be a list of names".into()))?;
            }
            "additionalProperties" => {
                compiled.additional = Some(match value {
                    Value::Bool(true) => Additional::Any,
                    Value::Bool(false) => Additional::None,
                    schema => Additional::Schema(Box::new(sub(key, schema)?)),
                });
            }
            "items" => compiled.items = Some(Box::new(sub(key, value)?)),
            "enum" => {
                compiled.enumeration = Some(
                    value
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .cloned()
                        .ok_or_else(|| error("\"enum\" must be a non-empty array".into()))?,
                );
            }
            "const" => compiled.constant = Some(value.clone()),
            "minLength" => compiled.min_length = Some(count(key, value)?),
            "maxLength" => compiled.max_length = Some(count(key, value)?),
            "minItems" => compiled.min_items = Some(count(key, value)?),
            "maxItems" => compiled.max_items = Some(count(key, value)?),
            "minimum" => compiled.minimum = Some(number(key, value)?),
            "maximum" => compiled.maximum = Some(number(key, value)?),
            "anyOf" => compiled.any_of = Some(list(key, value)?),
            "oneOf" => compiled.one_of = Some(list(key, value)?),
            annotation if ANNOTATIONS.contains(&annotation) => {}
            unknown => {
                return Err(error(format!(
                    "the keyword \"{unknown}\" is not supported by the runtime's validator"
                )));
            }
        }
    }
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(value: Value) -> Schema {
        Schema::compile(&value).expect("schema compiles")
    }

    fn problems(schema: &Schema, value: Value) -> String {
        describe(&schema.validate(&value).expect_err("value is invalid"))
    }

    fn slack_like() -> Schema {
        schema(json!({
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "channel": {"type": "string"},
                "blocks": {"type": "array", "items": {"type": "object"}, "maxItems": 50},
                "retries": {"type": "integer", "minimum": 0, "maximum": 5}
            },
            "anyOf": [{"required": ["text"]}, {"required": ["blocks"]}],
            "additionalProperties": false
        }))
    }

    #[test]
    fn a_value_that_fits_passes() {
        let s = slack_like();
        assert!(
            s.validate(&json!({"text": "hi", "channel": "#ops"}))
                .is_ok()
        );
        assert!(
            s.validate(&json!({"blocks": [{"type": "section"}]}))
                .is_ok()
        );
    }

    #[test]
    fn violations_name_the_place_and_the_rule() {
        let s = slack_like();
        assert_eq!(
            problems(&s, json!({"text": 5})),
            "/text: must be string, not a number"
        );
        assert_eq!(
            problems(&s, json!({"text": "x", "chanel": "#ops"})),
            "/chanel: is not a known property"
        );
        assert_eq!(
            problems(&s, json!({"channel": "#ops"})),
            "matches none of the allowed forms"
        );
        assert_eq!(
            problems(&s, json!({"text": "x", "retries": 9})),
            "/retries: must be at most 5"
        );
        assert_eq!(
            problems(&s, json!({"text": "x", "retries": 1.5})),
            "/retries: must be integer, not a number"
        );
        assert_eq!(problems(&s, json!([])), "must be object, not an array");
    }

    #[test]
    fn required_enum_const_and_lengths_are_checked() {
        let s = schema(json!({
            "type": "object",
            "required": ["url", "method"],
            "properties": {
                "url": {"type": "string", "maxLength": 3},
                "method": {"enum": ["GET", "POST"]},
                "v": {"const": 1},
                "tags": {"type": "array", "minItems": 1, "items": {"type": ["string", "null"]}}
            }
        }));
        assert_eq!(
            problems(
                &s,
                json!({"url": "abcd", "method": "PUT", "v": 2, "tags": [1]})
            ),
            "/method: must be one of \"GET\", \"POST\"; /tags/0: must be string or null, not a number; \
             /url: must be at most 3 characters long; /v: must be 1"
        );
        assert_eq!(
            problems(&s, json!({})),
            "is missing the required property \"url\"; is missing the required property \"method\""
        );
    }

    #[test]
    fn one_of_wants_exactly_one_match() {
        let s = schema(json!({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 2}]}));
        assert!(s.validate(&json!("long")).is_ok());
        assert_eq!(
            problems(&s, json!("ab")),
            "matches more than one of the exclusive forms"
        );
    }

    #[test]
    fn unsupported_keywords_and_bad_values_refuse_the_schema() {
        let err = Schema::compile(&json!({"properties": {"a": {"pattern": "^x"}}})).unwrap_err();
        assert_eq!(err.at, "/properties/a");
        assert!(err.problem.contains("\"pattern\""));
        assert!(Schema::compile(&json!({"type": "text"})).is_err());
        assert!(Schema::compile(&json!({"required": "a"})).is_err());
        assert!(Schema::compile(&json!(3)).is_err());
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        let s = schema(json!({"additionalProperties": {"type": "string"}}));
        assert_eq!(
            problems(&s, json!({"a/b~": 1})),
            "/a~1b~0: must be string, not a number"
        );
    }

    #[test]
    fn deep_schemas_are_refused_rather_than_overflowing() {
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"items": deep});
        }
        assert!(Schema::compile(&deep).is_err());
    }
}
