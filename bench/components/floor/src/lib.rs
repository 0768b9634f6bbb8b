//! The floor of the benchmark: an endpoint component built like the real
//! ones (`cronium_guest::endpoint!`, both exports) whose route answers
//! GET input's shape at once, without verifying the token or calling any
//! capability. Served in place of the executions component, it measures
//! what one component call costs on our host with nothing inside it: no
//! real route can be cheaper, so `floor / native` bounds `host / native`.

use cronium_guest::{ApiError, Reply, Request};
use serde_json::json;

cronium_guest::endpoint!(route);

fn route(_request: Request) -> Result<Reply, ApiError> {
    Ok(Reply::data(
        json!({"threshold": 0.75, "labels": ["a", "b"]}),
    ))
}
