//! The batch endpoint group: `POST /executions/{id}/batch`, several calls in
//! one round trip (`docs/batch.md`).
//!
//! The component checks the batch's token once (401, 403, 429 and 503
//! answer the batch as a whole) and the whole batch's shape
//! (`cronium_rules::batch::parse`: a 400 naming the offending request,
//! before anything runs). Then it sends each request, in order, as an
//! outgoing `wasi:http` request to the endpoint group that serves it, at
//! `http://<group>.spin.internal`, with the batch's `Authorization`: Spin
//! answers that by service chaining, the custom host in process. So every
//! request is served by its own route's component exactly as if it had
//! come on its own (status, body, `ETag`, audit, rate limit, the path
//! guard), and one that fails does not stop the next.
//!
//! Two answers never leave the component: a path no group serves is the
//! host's JSON 404, and a body over its route's cap is that route's 413 (the
//! host answers both in front of any component, too).

mod outgoing;

use cronium_guest::{ApiError, Reply, Request, authorize, path};
use cronium_rules::batch::{self, Answer, Target};
use spin_sdk::http::Method;

cronium_guest::endpoint!(route);

fn route(request: Request) -> Result<Reply, ApiError> {
    let segments = path::segments(&request.path);
    let raw_id = match segments.as_slice() {
        ["executions", id, "batch"] if !id.is_empty() => *id,
        _ => return Err(ApiError::not_found("no such route")),
    };
    if request.method != Method::Post {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let execution_id = path::decode(raw_id)?;
    authorize(&request, &execution_id)?;
    let authorization = request
        .header("authorization")
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    let requests = batch::parse(&request.body, raw_id).map_err(|e| ApiError::bad_request(e.0))?;

    let mut answer = Answer::new();
    for sub in &requests {
        let group = match sub.target {
            Target::Group(group) => group,
            Target::NoRoute => {
                push_error(&mut answer, &sub.id, ApiError::not_found("no such route"));
                continue;
            }
            Target::TooLarge(limit) => {
                push_error(&mut answer, &sub.id, ApiError::payload_too_large(limit));
                continue;
            }
        };
        match outgoing::send(group, sub, authorization, answer.room()) {
            Ok(response) => answer.push(&sub.id, response.status, &response.headers, response.body),
            Err(why) => {
                eprintln!(
                    "batch request {:?} to {} was not answered: {why}",
                    sub.id,
                    group.name()
                );
                push_error(
                    &mut answer,
                    &sub.id,
                    ApiError::new(500, "the component serving this request failed"),
                );
            }
        }
    }
    Ok(Reply::serialized(200, answer.finish()))
}

/// Adds `error` as the answer to request `id`, as its route would write it.
fn push_error(answer: &mut Answer, id: &str, error: ApiError) {
    let (status, headers, body) = Reply::from(error).into_parts();
    let headers: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    answer.push(id, status, &headers, Some(body));
}
