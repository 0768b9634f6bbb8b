//! Successful answers: the `{"success":true,...}` envelope.

use serde_json::{Value, json};

use crate::ApiError;

/// A response to write: status, headers, JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// `None`: no body at all (204).
    body: Option<Value>,
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

    /// Any status with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
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
                serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
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
            body: Some(error.body()),
            headers: error.headers,
        }
    }
}
