//! Valkey through Spin's Redis interface (`fermyon:spin/redis@2.0.0`),
//! which Valkey speaks. The address is the `valkey_url` variable
//! (`valkey://` meaning `redis://`, as for the custom host: it is passed
//! to Spin as written, since Spin checks its scheme against the allowed
//! outbound hosts and its Redis client reads `valkey://` itself), with
//! `valkey_password` and `valkey_db` added to it as `VALKEY_PASSWORD` and
//! `VALKEY_DB` are for the custom host. Spin lets the call through only if
//! the endpoint component's `allowed_outbound_hosts` names the address.
//!
//! The connection is opened on first use and kept for the rest of the
//! component instance, which under Spin is one request. A call fails
//! with the rules' own [`ValkeyError`], which the driver passes on as it is.

use std::cell::RefCell;

use cronium_rules::protocol::ValkeyError;
use cronium_rules::valkey::{self as commands, ScriptCall};
use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

use crate::settings;

thread_local! {
    static CONNECTION: RefCell<Option<Connection>> = const { RefCell::new(None) };
    /// A key's value fetched ahead, in another call's round trip, for the
    /// `GET` this request is about to make of it.
    static PREFETCHED: RefCell<Option<(String, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Keeps `value` of `key` for this instance's next [`get`] of it. Only for
/// values that do not change (the execution record): the instance lives
/// for one request, and the copy is used once.
pub fn prefetched(key: String, value: Vec<u8>) {
    PREFETCHED.with(|cell| *cell.borrow_mut() = Some((key, value)));
}

/// Runs `f` on this instance's connection, opening it first if needed.
fn with_connection<T>(f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, ValkeyError> {
    CONNECTION.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let url = settings::get("valkey_url")
                .ok_or_else(|| ValkeyError::Unavailable("no valkey_url is configured".into()))?;
            // Checked, but passed on as written: Spin matches the scheme
            // against `allowed_outbound_hosts` (`{{ valkey_url }}`), and its
            // Redis client speaks `valkey://` itself.
            if commands::normalize_url(&url).is_none() {
                return Err(ValkeyError::Unavailable(
                    "valkey_url is not a redis://, rediss://, valkey:// or valkeys:// URL".into(),
                ));
            }
            let url = connection_url(
                &url,
                settings::get("valkey_password").as_deref(),
                settings::get("valkey_db").as_deref(),
            )
            .map_err(ValkeyError::Unavailable)?;
            *slot = Some(Connection::open(&url).map_err(|e| {
                ValkeyError::Unavailable(format!("cannot connect: {}", describe(&e)))
            })?);
        }
        let connection = slot.as_ref().expect("opened above");
        f(connection).map_err(|e| {
            let error = classify(&e);
            if matches!(error, ValkeyError::Unavailable(_)) {
                // The connection may be broken: the next call reconnects.
                *slot = None;
            }
            error
        })
    })
}

/// The URL the connection is opened with: `valkey_url` resolved with
/// `valkey_password` and `valkey_db` by the rules' one resolution
/// ([`cronium_rules::settings::valkey_endpoints`], the custom host's too):
/// an explicit setting overrides what the URL carries. Spin's Redis
/// client takes one address: the first seed.
pub fn connection_url(
    url: &str,
    password: Option<&str>,
    db: Option<&str>,
) -> Result<String, String> {
    let db = db
        .map(|db| {
            db.parse::<i64>()
                .map_err(|_| format!("variable valkey_db: {db:?} is not a number"))
        })
        .transpose()?;
    let mut endpoints = cronium_rules::settings::valkey_endpoints(url, password, db)?;
    Ok(endpoints.remove(0).url)
}

/// `GET key` (or the value fetched ahead for it).
pub fn get(key: &str) -> Result<Option<Vec<u8>>, ValkeyError> {
    let ahead = PREFETCHED.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_ref() {
            Some((fetched, _)) if fetched == key => slot.take().map(|(_, value)| value),
            _ => None,
        }
    });
    if let Some(value) = ahead {
        return Ok(Some(value));
    }
    with_connection(|c| c.get(key))
}

/// `DEL key`; whether it existed.
pub fn delete(key: &str) -> Result<bool, ValkeyError> {
    with_connection(|c| c.del(&[key.to_owned()])).map(|n| n > 0)
}

/// Runs a command given as its words (`["SET", key, ...]`).
pub fn command(words: &[String]) -> Result<Vec<RedisResult>, ValkeyError> {
    let (name, args) = words
        .split_first()
        .ok_or_else(|| ValkeyError::Invalid("empty command".into()))?;
    let args: Vec<RedisParameter> = args
        .iter()
        .map(|a| RedisParameter::Binary(a.as_bytes().to_vec()))
        .collect();
    with_connection(|c| c.execute(name, &args))
}

/// Runs a script and returns its reply: `EVALSHA` with the script's digest,
/// and `EVAL` with its text only when Valkey does not have it yet, so the
/// text is sent (and compiled) once per Valkey, not once per request.
pub fn run_script(call: &ScriptCall) -> Result<Vec<RedisResult>, ValkeyError> {
    let mut args = call.eval_args();
    let script = std::mem::replace(
        &mut args[0],
        sha1_smol::Sha1::from(call.script.source())
            .digest()
            .to_string(),
    );
    let mut words = vec!["EVALSHA".to_owned()];
    words.extend(args.iter().cloned());
    match command(&words) {
        Err(ValkeyError::Invalid(why)) if is_missing_script(&why) => {
            args[0] = script;
            let mut words = vec!["EVAL".to_owned()];
            words.extend(args);
            command(&words)
        }
        other => other,
    }
}

/// Runs a script whose reply is an integer.
pub fn eval(call: &ScriptCall) -> Result<i64, ValkeyError> {
    match run_script(call)?.as_slice() {
        [RedisResult::Int64(n)] => Ok(*n),
        other => Err(ValkeyError::Invalid(format!(
            "the script answered {other:?}, not an integer"
        ))),
    }
}

/// Spin reports every failure after the connection is open as `other`
/// with the Redis client's text: replies Valkey sent on purpose (errors
/// such as `WRONGTYPE` or `ERR value is not an integer`) are refusals,
/// anything else a lost connection.
fn classify(error: &Error) -> ValkeyError {
    match error {
        Error::TypeError => ValkeyError::Invalid("a value is not of the expected type".into()),
        Error::Other(text) if is_server_reply(text) => ValkeyError::Invalid(text.clone()),
        other => ValkeyError::Unavailable(describe(other)),
    }
}

/// Whether Valkey said it does not have a script (`NOSCRIPT`, which Spin's
/// Redis client reports as `NoScriptError`).
fn is_missing_script(text: &str) -> bool {
    text.contains("NOSCRIPT") || text.contains("NoScriptError")
}

fn is_server_reply(text: &str) -> bool {
    [
        // The redis client's words for any error reply of the server.
        "signalled by the server",
        "WRONGTYPE",
        "ERR",
        "NOSCRIPT",
        "NoScriptError",
        "ResponseError",
        "not an integer",
        "ExecAbortError",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

fn describe(error: &Error) -> String {
    match error {
        Error::InvalidAddress => "invalid address".into(),
        Error::TooManyConnections => "too many connections".into(),
        Error::TypeError => "type error".into(),
        Error::Other(text) => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_replies_are_refusals_and_the_rest_is_unavailability() {
        assert!(matches!(
            classify(&Error::Other(
                "ResponseError: value is not an integer or out of range".into()
            )),
            ValkeyError::Invalid(_)
        ));
        assert!(matches!(
            classify(&Error::Other("Connection refused (os error 111)".into())),
            ValkeyError::Unavailable(_)
        ));
        assert!(matches!(
            classify(&Error::TooManyConnections),
            ValkeyError::Unavailable(_)
        ));
        // What Spin 4 reports for EVALSHA of a script Valkey does not have.
        let no_script = classify(&Error::Other(
            "An error was signalled by the server - NoScriptError: No matching script.".into(),
        ));
        assert!(matches!(&no_script, ValkeyError::Invalid(why) if is_missing_script(why)));
    }
}
