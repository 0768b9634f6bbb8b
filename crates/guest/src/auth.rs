//! Authorization of a request for one execution.

use crate::ApiError;
use crate::Request;
use crate::bindings::auth::{self, Caller};

/// Verifies the request's token and that it was minted for
/// `execution_id` (the `{id}` of the path): 401 for a bad token, 403 for a
/// revoked job or another execution's token. The caller it answers is the
/// handle every capability acting for the token's holder takes.
pub fn authorize(request: &Request, execution_id: &str) -> Result<Caller, ApiError> {
    let caller = auth::verify(request.header("authorization"))?;
    if caller.execution_id() != execution_id {
        return Err(ApiError::forbidden("token is not valid for this execution"));
    }
    Ok(caller)
}
