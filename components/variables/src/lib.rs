//! The variables endpoint group: a user's shared variables
//! (`docs/api.md`, "Variables").
//!
//! | route                                   | what it does                            |
//! |-----------------------------------------|-----------------------------------------|
//! | `GET    /executions/{id}/variables/{key}` | the value (`null` if none) and its ETag |
//! | `PUT    /executions/{id}/variables/{key}` | writes `{"value":..}`                   |
//! | `DELETE /executions/{id}/variables/{key}` | deletes it (204)                        |
//!
//! Variables belong to the execution's user (from its context), never to
//! the execution. The key is everything after `/variables/`, decoded
//! (`a/b` and `a%2Fb` are one key). `GET ...?strict=true` answers 404 for
//! a missing variable instead of `null`.
//!
//! Writes hold the variable's lease while they run. A plain write waits
//! its turn for it (first come, first served). `If-Match` and
//! `If-None-Match` make a write conditional: it never waits its turn,
//! since a lease held or waited for means the value is about to change.
//! It answers 412 (with the cached ETag, when the cache has the value) at
//! once when the cached value already fails the precondition, and when
//! other writes hold or wait for the lease, as soon as the one holding it
//! (if any) is done; with the lease, it reads the current value from the
//! backend and answers 412 (with the current ETag) when the precondition
//! fails.
//! Without the cache, plain writes go straight to the backend; conditional
//! ones answer 503.
//!
//! The cache holds each variable (or its absence) in the user's scope of
//! this group's space (`keys::variable` names it; the host resolves the
//! user from the caller's execution record, as the backend capability does
//! for the variable itself). Writers clear it before the backend write and
//! rewrite it after; readers fill it only when empty (`add`), so a slow
//! reader never overwrites a newer value.

use cronium_guest::bindings::auth::Caller;
use cronium_guest::bindings::backend;
use cronium_guest::bindings::cache::{self, Lease, Scope};
use cronium_guest::{ApiError, Reply, Request, audit, authorize, execution, path};
use cronium_rules::keys;
use cronium_rules::variables::{self, Precondition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json, value::RawValue};
use spin_sdk::http::Method;

cronium_guest::endpoint!(route);

const ALLOWED: &str = "GET, PUT, DELETE";

/// Variables are the user's: two executions of one user share them.
const USER: Scope = Scope::User;

fn route(request: Request) -> Result<Reply, ApiError> {
    let (raw_id, raw_key) = request
        .path
        .strip_prefix("/executions/")
        .and_then(|rest| rest.split_once("/variables/"))
        .filter(|(id, _)| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| ApiError::not_found("no such route"))?;
    if !matches!(request.method, Method::Get | Method::Put | Method::Delete) {
        return Err(ApiError::method_not_allowed(ALLOWED));
    }
    let execution_id = path::decode(raw_id)?;
    let key = path::decode(raw_key)?;
    variables::validate_key(&key)
        .and_then(|()| variables::check_backend_key(&key, backend::variable_key_limit()))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let caller = authorize(&request, &execution_id)?;
    // Unknown executions are a 404 before anything else, and a record read
    // from the backend is audited; the host keeps it, and finds the user
    // whose variables these are in it.
    execution::load(&caller, "get_context")?;
    let variable = Variable {
        caller: &caller,
        key: &key,
        cache_key: keys::variable(&key),
    };
    match request.method {
        Method::Get => variable.get(strict(&request.query)),
        Method::Put => variable.put(&request),
        _ => variable.delete(&request),
    }
}

/// Whether the query asks for a 404 on a missing variable.
fn strict(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| matches!(pair, "strict" | "strict=true" | "strict=1"))
}

/// One variable of the caller's user.
struct Variable<'a> {
    caller: &'a Caller,
    key: &'a str,
    /// Its name in the user's scope of the cache.
    cache_key: String,
}

/// What the cache holds for a variable: its canonical JSON, or nothing.
#[derive(Serialize, Deserialize)]
struct Cached {
    value: Option<String>,
}

/// The body of a PUT.
#[derive(Deserialize)]
struct PutBody<'a> {
    #[serde(borrow)]
    value: &'a RawValue,
}

impl Variable<'_> {
    fn get(&self, strict: bool) -> Result<Reply, ApiError> {
        match self.read()? {
            Some(text) => {
                let value: Value = serde_json::from_str(&text).map_err(|_| corrupt())?;
                Ok(Reply::data(json!({ "key": self.key, "value": value }))
                    .with_header("etag", variables::etag(&text)))
            }
            None if strict => Err(ApiError::not_found("variable not found")),
            None => Ok(Reply::data(json!({ "key": self.key, "value": null }))),
        }
    }

    fn put(&self, request: &Request) -> Result<Reply, ApiError> {
        let body: PutBody = request.json()?;
        let value: Value = serde_json::from_str(body.value.get()).map_err(|_| corrupt())?;
        // `null` is how the older helpers delete; it stores no value.
        let new = (!value.is_null()).then(|| value.to_string());
        let etag = self.write(new, precondition(request), "set_variable")?;
        Ok(match etag {
            Some(etag) => Reply::ok().with_header("etag", etag),
            None => Reply::ok(),
        })
    }

    fn delete(&self, request: &Request) -> Result<Reply, ApiError> {
        self.write(None, precondition(request), "delete_variable")?;
        Ok(Reply::no_content())
    }

    /// The current value's canonical JSON: from the cache, else from the
    /// backend (then cached unless a writer got there first).
    fn read(&self) -> Result<Option<String>, ApiError> {
        if let Ok(Some(entry)) = cache::get(self.caller, USER, &self.cache_key)
            && let Ok(cached) = serde_json::from_str::<Cached>(&entry)
        {
            return Ok(cached.value);
        }
        let result = self.read_backend();
        audit::record(
            self.caller,
            "get_variable",
            &result,
            json!({ "key": self.key }),
        );
        let current = result?;
        let _ = cache::add(self.caller, USER, &self.cache_key, &cached(&current), None);
        Ok(current)
    }

    fn read_backend(&self) -> Result<Option<String>, ApiError> {
        let variable = backend::get_variable(self.caller, self.key)?;
        match variable {
            None => Ok(None),
            Some(v) => {
                let value: Value = serde_json::from_str(&v.value).map_err(|_| corrupt())?;
                Ok((!value.is_null()).then(|| value.to_string()))
            }
        }
    }

    /// Writes `new` (`None`: delete) under the variable's lease, when
    /// `precondition` holds. Returns the new ETag.
    fn write(
        &self,
        new: Option<String>,
        precondition: Precondition,
        action: &str,
    ) -> Result<Option<String>, ApiError> {
        let conditional = precondition.is_conditional();
        let result = self.lease(&precondition).and_then(|lease| {
            let written = self.write_leased(&new, &precondition, action);
            if let Some(lease) = lease {
                // An expired lease is released by its TTL anyway.
                let _ = cache::release(lease);
            }
            written
        });
        audit::record(
            self.caller,
            action,
            &result,
            json!({ "key": self.key, "conditional": conditional }),
        );
        result
    }

    fn write_leased(
        &self,
        new: &Option<String>,
        precondition: &Precondition,
        action: &str,
    ) -> Result<Option<String>, ApiError> {
        if precondition.is_conditional() {
            let current = self.read_backend()?;
            let etag = current.as_deref().map(variables::etag);
            if !precondition.holds(etag.as_deref()) {
                // Under the lease nobody writes, so the backend's value is
                // the one to cache: the next conditional writes check it.
                let _ = cache::set(self.caller, USER, &self.cache_key, &cached(&current), None);
                return Err(precondition_failed(etag));
            }
        }
        // Cleared first: should the rewrite below fail, no stale value
        // outlives the write.
        let _ = cache::delete(self.caller, USER, &self.cache_key);
        match (new, action) {
            (None, "delete_variable") => {
                backend::delete_variable(self.caller, self.key)?;
            }
            (None, _) => backend::set_variable(self.caller, self.key, "null")?,
            (Some(text), _) => backend::set_variable(self.caller, self.key, text)?,
        }
        let _ = cache::set(self.caller, USER, &self.cache_key, &cached(new), None);
        Ok(new.as_deref().map(variables::etag))
    }

    /// Takes the variable's lease for a write with `precondition`. A plain
    /// write waits its turn; without the cache it goes on unleased (the
    /// backend stays last-writer-wins).
    ///
    /// A conditional write never waits its turn. It answers 412 at once
    /// when the cached value already fails the precondition. When other
    /// writes hold or wait for the lease (the value is about to change) it
    /// answers 412 too, once the write holding the lease, if any, is done
    /// (up to [`variables::CONDITIONAL_WAIT_MS`]), so that the 412 carries
    /// the ETag of what that write stored. Else it takes the free lease and
    /// checks the backend's value. Without the cache it cannot be made
    /// safe: 503.
    fn lease(&self, precondition: &Precondition) -> Result<Option<Lease>, ApiError> {
        let ttl = variables::WRITE_LEASE_TTL_MS;
        if !precondition.is_conditional() {
            return match cache::acquire(
                self.caller,
                USER,
                &self.cache_key,
                ttl,
                variables::WRITE_LEASE_PATIENCE_MS,
            ) {
                Ok(Some(lease)) => Ok(Some(lease)),
                // The line stood still for longer than any lease lives.
                Ok(None) => Err(ApiError::unavailable("the variable is busy; try again")),
                Err(_) => Ok(None),
            };
        }
        let cached = self.cached();
        let cached_etag = cached.clone().flatten().as_deref().map(variables::etag);
        if cached.is_some() && !precondition.holds(cached_etag.as_deref()) {
            return Err(precondition_failed(cached_etag));
        }
        match cache::acquire(self.caller, USER, &self.cache_key, ttl, 0) {
            Ok(Some(lease)) => Ok(Some(lease)),
            Ok(None) => {
                // Whether or not the holder is done, the value has likely
                // changed: the client retries with the cached ETag.
                let _ = cache::await_release(
                    self.caller,
                    USER,
                    &self.cache_key,
                    variables::CONDITIONAL_WAIT_MS,
                );
                let current = self.cached().flatten();
                Err(precondition_failed(current.as_deref().map(variables::etag)))
            }
            Err(_) => Err(ApiError::unavailable(
                "conditional writes need the cache, which is unavailable; try again",
            )),
        }
    }

    /// What the cache holds for the variable: its value's canonical JSON
    /// or `Some(None)` (no variable); `None` when it holds nothing.
    fn cached(&self) -> Option<Option<String>> {
        let entry = cache::get(self.caller, USER, &self.cache_key).ok()??;
        serde_json::from_str::<Cached>(&entry)
            .ok()
            .map(|cached| cached.value)
    }
}

/// The 412 of a failed precondition, with the current ETag when known.
fn precondition_failed(current: Option<String>) -> ApiError {
    let error = ApiError::new(
        412,
        "the variable's current value does not match the precondition",
    );
    match current {
        Some(etag) => error.with_header("etag", etag),
        None => error,
    }
}

fn precondition(request: &Request) -> Precondition {
    Precondition::from_headers(request.header("if-match"), request.header("if-none-match"))
}

fn cached(value: &Option<String>) -> String {
    serde_json::to_string(&Cached {
        value: value.clone(),
    })
    .unwrap_or_default()
}

fn corrupt() -> ApiError {
    ApiError::bad_gateway("the variable's stored value is not valid JSON")
}
