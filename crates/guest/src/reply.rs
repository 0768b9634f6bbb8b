//! Successful answers: the `{"success":true,...}` envelope.

use cronium_rules::wire::Success;
use serde::Serialize;
use serde_json::{Value, json};

use crate::ApiError;

/// A response to write: status, headers, JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// `None`: no body at all (204).
    body: Option<Body>,
}

/// A JSON body, as a value or already serialized.
#[derive(Debug, Clone, PartialEq)]
enum Body {
    Value(Value),
    Serialized(Vec<u8>),
}

impl Reply {
    /// `200 {"success":true}`.
    pub fn ok() -> Self {
        Self::json(200, json!({ "success": true }))
    }

    /// `200 {"success":true,"data":<data>}`.
    pub fn data(data: Value) -> Self {
        Self::json(200, json!({ "success": true, "data": data }))
    }

    /// `200 {"success":true,"data":<data>}`, with `data` serialized as it
    /// is: a raw JSON value (the input, the execution's metadata) goes out
    /// as written, never parsed into a tree and written again.
    pub fn serialized_data(data: &impl Serialize) -> Self {
        match serde_json::to_vec(&Success::new(data)) {
            Ok(bytes) => Reply {
                status: 200,
                headers: Vec::new(),
                body: Some(Body::Serialized(bytes)),
            },
            // Only a map with non-string keys fails; nothing of ours.
            Err(_) => ApiError::new(500, "the answer could not be written").into(),
        }
    }

    /// Any status with a JSON body already serialized (the caller vouches
    /// that `body` is JSON).
    pub fn serialized(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(Body::Serialized(body)),
        }
    }

    /// Any status with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(Body::Value(body)),
        }
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Status, headers (with `content-type`) and serialized body.
    pub fn into_parts(self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut headers = self.headers;
        let body = match self.body {
            Some(body) => {
                headers.push(("content-type".into(), "application/json".into()));
                match body {
                    Body::Value(value) => {
                        serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec())
                    }
                    Body::Serialized(bytes) => bytes,
                }
            }
            None => Vec::new(),
        };
        (self.status, headers, body)
    }
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Reply {
            status: error.status,
            body: Some(Body::Value(error.body())),
            headers: error.headers,
        }
    }
}
