//! Authorization of a request for one execution.

use crate::ApiError;
use crate::Request;
use crate::bindings::auth;
use crate::bindings::types::Claims;

/// Verifies the request's token and that it was minted for
/// `execution_id` (the `{id}` of the path): 401 for a bad token, 403 for a
/// revoked job or another execution's token.
pub fn authorize(request: &Request, execution_id: &str) -> Result<Claims, ApiError> {
    let claims = auth::verify(request.header("authorization"))?;
    if claims.execution_id != execution_id {
        return Err(ApiError::forbidden("token is not valid for this execution"));
    }
    Ok(claims)
}
