//! A test-only endpoint component that tries to speak for someone else, as
//! a buggy or replaced component (`CRONIUM_COMPONENT_<GROUP>`) might.
//! Mounted in place of the variables group; the last segment of
//! `/executions/{id}/variables/{attempt}` picks the attempt, and the answer
//! reports what each try got, for the test to check against Valkey and the
//! backend:
//!
//! * `own`: its legitimate work: the caller's record, a key in each scope,
//!   a lease, and a variable of the caller's own user;
//! * `other-user`: reads and overwrites another user's variable `secret`
//!   by every name it can think of (path tricks, the real cache key);
//! * `forge`: verifies tokens it forged from the request's own (another
//!   execution and user in the claims, the signature kept; `alg: none`);
//! * `escape`: deletes and writes the runtime's own keys (another job's
//!   revocation, the rate limit, the execution record, the audit spool) by
//!   their real names, in every scope;
//! * `audit-as`: audits with another user and job in its details;
//! * `stash`, then `replay`: keeps the verified caller in its memory and,
//!   on a later request served by the same instance, writes a variable with
//!   it without verifying that request's token.

use std::cell::RefCell;

use cronium_guest::bindings::auth::{self, Caller};
use cronium_guest::bindings::cache::{self, Scope};
use cronium_guest::bindings::{audit, backend};
use cronium_guest::{ApiError, Reply, Request, authorize, path};
use serde_json::{Value, json};

cronium_guest::endpoint!(route);

thread_local! {
    /// A caller kept from an earlier request (`stash`).
    static STASHED: RefCell<Option<Caller>> = const { RefCell::new(None) };
}

const SCOPES: [(Scope, &str); 3] = [
    (Scope::Execution, "execution"),
    (Scope::User, "user"),
    (Scope::Group, "group"),
];

fn route(request: Request) -> Result<Reply, ApiError> {
    let (raw_id, attempt) = match path::segments(&request.path).as_slice() {
        ["executions", id, "variables", attempt] => (id.to_string(), attempt.to_string()),
        _ => return Err(ApiError::not_found("no such route")),
    };
    let execution_id = path::decode(&raw_id)?;
    if attempt == "replay" {
        return replay();
    }
    let caller = authorize(&request, &execution_id)?;
    let answer = match attempt.as_str() {
        "own" => own(&caller),
        "other-user" => other_user(&caller),
        "forge" => forge(&caller, request.header("authorization").unwrap_or_default()),
        "escape" => escape(&caller),
        "audit-as" => audit_as(&caller),
        "stash" => {
            STASHED.with(|slot| *slot.borrow_mut() = Some(caller));
            json!({ "stashed": true })
        }
        _ => return Err(ApiError::not_found("no such attempt")),
    };
    Ok(Reply::data(answer))
}

/// What a cache or backend call answered, as JSON.
fn outcome<T: Into<Value>, E: std::fmt::Debug>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value.into() }),
        Err(error) => json!({ "error": format!("{error:?}") }),
    }
}

fn own(caller: &Caller) -> Value {
    let record = backend::get_execution(caller).map(|read| read.execution.user_id);
    let mut written = serde_json::Map::new();
    for (scope, name) in SCOPES {
        let value = format!("{name}-mine");
        let set = cache::set(caller, scope, "note", &value, Some(60_000));
        let read = cache::get(caller, scope, "note");
        written.insert(
            name.into(),
            json!({ "set": outcome(set.map(|()| true)), "get": outcome(read) }),
        );
    }
    let lease = cache::acquire(caller, Scope::User, "note", 5_000, 0);
    let leased = match lease {
        Ok(Some(lease)) => {
            let fence = lease.fence();
            json!({ "fence": fence, "released": outcome(cache::release(lease)) })
        }
        other => json!({ "not-taken": format!("{:?}", other.map(|l| l.is_some())) }),
    };
    let set = backend::set_variable(caller, "hostile-own", "\"mine\"");
    let read = backend::get_variable(caller, "hostile-own").map(|v| v.map(|v| v.value));
    json!({
        "executionId": caller.execution_id(),
        "user": outcome(record),
        "cache": written,
        "lease": leased,
        "variable": { "set": outcome(set.map(|()| true)), "get": outcome(read) },
    })
}

/// The names another user's variable `secret` might be reached by.
const VICTIM_NAMES: &[&str] = &[
    "secret",
    "../user-2/secret",
    "..%2Fuser-2%2Fsecret",
    "user-2/secret",
    "var:secret",
    // Its real cache key (`keys::in_space`), and that key's insides.
    "cronium:{variables:u:6:user-2:var:secret}",
    "variables:u:6:user-2:var:secret",
    "}:u:6:user-2:var:secret",
];

fn other_user(caller: &Caller) -> Value {
    let mut tries = Vec::new();
    for name in VICTIM_NAMES {
        let read = backend::get_variable(caller, name).map(|v| v.map(|v| v.value));
        tries.push(json!({ "backend": name, "read": outcome(read) }));
        let overwritten = backend::set_variable(caller, name, "\"overwritten\"");
        tries.push(json!({ "backend": name, "write": outcome(overwritten.map(|()| true)) }));
        for (scope, scope_name) in SCOPES {
            let read = cache::get(caller, scope, name);
            tries.push(json!({ "cache": name, "scope": scope_name, "read": outcome(read) }));
            let written = cache::set(
                caller,
                scope,
                name,
                "{\"value\":\"\\\"overwritten\\\"\"}",
                None,
            );
            tries.push(json!({ "cache": name, "scope": scope_name, "write": outcome(written.map(|()| true)) }));
        }
    }
    Value::Array(tries)
}

fn forge(caller: &Caller, authorization: &str) -> Value {
    let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return json!({ "error": "the request's token is not a JWT" });
    };
    let mut claims: Value = base64url_decode(payload)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    claims["executionId"] = "exec-2".into();
    claims["userId"] = "user-2".into();
    claims["jobId"] = "job-exec-2".into();
    let forged_payload = base64url_encode(claims.to_string().as_bytes());
    let none_header = base64url_encode(br#"{"alg":"none","typ":"JWT"}"#);
    let forgeries = [
        format!("Bearer {header}.{forged_payload}.{signature}"),
        format!("Bearer {none_header}.{forged_payload}."),
        format!("Bearer {none_header}.{forged_payload}.{signature}"),
    ];
    let verdicts: Vec<Value> = forgeries
        .iter()
        .map(|forged| match auth::verify(Some(forged)) {
            Ok(forged_caller) => json!({ "accepted": forged_caller.execution_id() }),
            Err(error) => json!({ "refused": format!("{error:?}") }),
        })
        .collect();
    json!({ "executionId": caller.execution_id(), "forgeries": verdicts })
}

/// The runtime's own keys, by their real names.
const RUNTIME_KEYS: &[&str] = &[
    "cronium:exec-revoked:job-exec-2",
    "cronium:rl:exec:exec-1",
    "cronium:exec:exec-1",
    "cronium:{audit}:spool",
    "cronium:lease:cronium:{variables:u:6:user-2:var:secret}",
];

fn escape(caller: &Caller) -> Value {
    let mut tries = Vec::new();
    for name in RUNTIME_KEYS {
        for (scope, scope_name) in SCOPES {
            let deleted = cache::delete(caller, scope, name);
            let written = cache::set(caller, scope, name, "hostile", None);
            let counted = cache::increment(caller, scope, &format!("{name}:n"), 1, None);
            tries.push(json!({
                "key": name,
                "scope": scope_name,
                "delete": outcome(deleted),
                "set": outcome(written.map(|()| true)),
                "increment": outcome(counted),
            }));
        }
    }
    Value::Array(tries)
}

fn audit_as(caller: &Caller) -> Value {
    audit::emit(
        caller,
        &audit::AuditEvent {
            action: "hostile_audit".into(),
            outcome: "ok".into(),
            details: json!({ "userId": "user-2", "jobId": "job-exec-2" }).to_string(),
        },
    );
    json!({ "emitted": true })
}

/// Acts with the caller kept by `stash`, without verifying this request.
fn replay() -> Result<Reply, ApiError> {
    let stashed = STASHED.with(|slot| slot.borrow_mut().take());
    let Some(caller) = stashed else {
        return Ok(Reply::data(json!({ "stashed": false })));
    };
    let written = backend::set_variable(&caller, "replayed", "true");
    Ok(Reply::data(
        json!({ "stashed": true, "write": outcome(written.map(|()| true)) }),
    ))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}
