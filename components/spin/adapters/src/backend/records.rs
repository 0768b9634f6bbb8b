//! Execution records as the adapter keeps them: in Valkey under
//! `keys::execution`, the custom host's own entry (its
//! `capabilities/backend/records.rs`), and the caller's user read from the
//! record. Here, not in `cache`, so that the cache capability depends on
//! the backend's records and nothing depends back.

use cronium_rules::backend::protocol as calls;
use cronium_rules::keys;
use cronium_rules::token::Claims;
use cronium_rules::wire::{Execution as Record, TokenFacts};
use cronium_spin_support::{drive, settings, valkey};

use super::{as_caller, client, error};
use crate::auth::VerifiedCaller;
use crate::exports::cronium::runtime::backend::BackendError;

/// The execution record of `claims`' execution, and whether this read
/// reached the backend: kept in Valkey under `keys::execution`, as the
/// custom host keeps it (the same entry, shared with it), since it does not
/// change while the execution runs. The auth check may have fetched it
/// already, in its own round trip.
pub(super) fn record(claims: &Claims) -> Result<(Record, bool), BackendError> {
    let key = keys::execution(&claims.execution_id);
    // A kept record that does not parse (another version wrote it) is a
    // miss, and gets overwritten; a Valkey that is away is one too.
    if let Ok(Some(bytes)) = valkey::get(&key)
        && let Ok(execution) = serde_json::from_slice::<Record>(&bytes)
    {
        return Ok((execution, false));
    }
    let (base, client) = client()?;
    let token = TokenFacts {
        user_id: claims.user_id.clone(),
        issued_at: claims.issued_at,
    };
    let call = calls::get_execution(&client, &as_caller(claims), token);
    let execution = drive::backend(&base, call).map_err(error)?;
    if let (Ok(text), Ok(ttl)) = (
        serde_json::to_string(&execution),
        settings::cache_ttl(settings::get("cache_ttl")),
    ) {
        // Not kept is not an error: the next read asks the backend again.
        let _ = valkey::command(&cronium_rules::valkey::set(&key, &text, ttl));
    }
    Ok((execution, true))
}

/// The user who owns `caller`'s execution, from its record (read once per
/// caller): whose variables and tool credentials the caller reaches.
pub(crate) fn user_of(caller: &VerifiedCaller) -> Result<String, BackendError> {
    if let Some(user) = caller.user.borrow().as_ref() {
        return Ok(user.clone());
    }
    let (execution, _) = record(&caller.claims)?;
    *caller.user.borrow_mut() = Some(execution.user_id.clone());
    Ok(execution.user_id)
}
