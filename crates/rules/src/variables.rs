//! Rules of user variables: what a key may be, how big a value may be,
//! and the entity tags of compare-and-set.
//!
//! * A key is any UTF-8 text of 1 to [`MAX_KEY_BYTES`] bytes without
//!   control characters; `/`, spaces and any other Unicode are fine, but
//!   not a key of exactly `.` or `..`: it travels to the backend as one
//!   path segment, which a normalising router (Go's among them, even when
//!   percent-encoded) resolves to another resource.
//! * A value is any JSON; the request body that carries it is capped at
//!   [`crate::limits::BODY_MAX`] (413 above).
//! * A variable whose value is `null` does not exist: the Node and bash
//!   helpers delete by writing `null`.
//! * The ETag of a value is a strong tag over its canonical JSON text, so
//!   `If-Match` succeeds exactly when the value is unchanged.
//! * The backend keeps keys of at most [`BACKEND_KEY_MAX_CHARS`] characters
//!   (the Cronium app's `varchar(255)`; an operator setting), checked by
//!   [`check_backend_key`] before the backend is asked, and each value as
//!   text ([`text`]).

pub mod text;

use sha2::{Digest, Sha256};

/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;

/// The longest key the Cronium app stores, in characters (its key column
/// is `varchar(255)`, and a longer one is a 500 there): the default of the
/// operator's setting (`CRONIUM_VARIABLE_KEY_MAX`, Spin's
/// `variable_key_max`).
pub const BACKEND_KEY_MAX_CHARS: u32 = 255;

/// How long a write may hold a variable's lease. A holder that dies
/// blocks the variable for at most this long.
pub const WRITE_LEASE_TTL_MS: u64 = 15_000;

/// How long a plain write waits in line for a variable's lease without
/// the line moving before it answers 503 (see [`crate::lease::Wait`]).
/// Longer than a lease can be held, so a line that moves, however long,
/// is always served: running out means Valkey stopped handing leases out.
/// (A conditional write does not wait its turn: see [`CONDITIONAL_WAIT_MS`].)
pub const WRITE_LEASE_PATIENCE_MS: u64 = WRITE_LEASE_TTL_MS + 5_000;

/// How long a conditional write that finds another write holding the
/// variable's lease waits for that write to finish before it answers 412,
/// so that the 412 carries the ETag of the value just written (and racing
/// clients do not spin on 412s while it is being written). It never waits
/// its turn for the lease itself.
pub const CONDITIONAL_WAIT_MS: u64 = 1_000;

// A plain write outwaits any lease, within the patience the cache grants.
const _: () = assert!(
    WRITE_LEASE_PATIENCE_MS > WRITE_LEASE_TTL_MS
        && WRITE_LEASE_PATIENCE_MS <= crate::lease::MAX_WAIT.as_millis() as u64
);

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An empty key (nothing after `/variables/`).
    #[error("variable key is empty")]
    Empty,
    /// Longer than [`MAX_KEY_BYTES`] bytes of UTF-8.
    #[error("variable key is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    /// Holds a Unicode control character (a newline, a tab, ...).
    #[error("variable key contains a control character")]
    ControlCharacter,
    /// Exactly `.` or `..`, which a router resolves as a path segment.
    #[error("variable key may not be `.` or `..`")]
    DotSegment,
    /// Longer than the backend stores ([`check_backend_key`]); its limit,
    /// in characters.
    #[error("variable key is longer than the {0} characters the Cronium backend stores")]
    TooLongForBackend(u32),
}

/// Checks a decoded key.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong);
    }
    if key.chars().any(char::is_control) {
        return Err(KeyError::ControlCharacter);
    }
    if key == "." || key == ".." {
        return Err(KeyError::DotSegment);
    }
    Ok(())
}

/// Checks a decoded key against the backend's limit of `max_chars`
/// characters (Unicode scalar values, as Postgres counts a `varchar`).
pub fn check_backend_key(key: &str, max_chars: u32) -> Result<(), KeyError> {
    // Bytes bound characters from above: most keys need no count.
    if key.len() > max_chars as usize && key.chars().count() > max_chars as usize {
        return Err(KeyError::TooLongForBackend(max_chars));
    }
    Ok(())
}

/// The ETag (quoted, strong) of a value given as canonical JSON text.
pub fn etag(canonical_json: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(canonical_json.as_bytes());
    // Written digit by digit into one buffer: a `format!` per byte made
    // 13 allocations on every variable read (bench/instructions.rs).
    let mut tag = String::with_capacity(2 + 24);
    tag.push('"');
    for byte in &digest[..12] {
        tag.push(char::from(HEX[usize::from(byte >> 4)]));
        tag.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    tag.push('"');
    tag
}

/// A precondition of a write, from `If-Match` / `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No precondition: last writer wins.
    None,
    /// `If-Match: *`: the variable must exist.
    Exists,
    /// `If-Match: "a", "b"`: the current value's ETag must be one of these.
    Matches(Vec<String>),
    /// `If-None-Match: *`: the variable must not exist.
    Absent,
    /// `If-None-Match: "a"`: the current value's ETag must not be one of these.
    NoneMatch(Vec<String>),
}

impl Precondition {
    /// Reads the two headers; `If-Match` wins when both are sent (RFC 9110
    /// evaluates it first).
    pub fn from_headers(if_match: Option<&str>, if_none_match: Option<&str>) -> Self {
        if let Some(value) = if_match {
            return match tags(value) {
                None => Precondition::Exists,
                Some(list) => Precondition::Matches(list),
            };
        }
        if let Some(value) = if_none_match {
            return match tags(value) {
                None => Precondition::Absent,
                Some(list) => Precondition::NoneMatch(list),
            };
        }
        Precondition::None
    }

    /// Whether the write needs the current value (and so a lease).
    pub fn is_conditional(&self) -> bool {
        *self != Precondition::None
    }

    /// Whether the precondition holds for the current ETag (`None`: the
    /// variable does not exist).
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            Precondition::None => true,
            Precondition::Exists => current.is_some(),
            Precondition::Matches(list) => current.is_some_and(|c| list.iter().any(|t| t == c)),
            Precondition::Absent => current.is_none(),
            Precondition::NoneMatch(list) => current.is_none_or(|c| !list.iter().any(|t| t == c)),
        }
    }
}

/// The entity tags of a header value; `None` for `*`. Weak tags compare
/// by their opaque part (`W/"x"` matches `"x"`), as our tags are strong.
fn tags(value: &str) -> Option<Vec<String>> {
    if value.trim() == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/").to_owned())
            .filter(|t| !t.is_empty())
            .map(|t| {
                if t.starts_with('"') {
                    t
                } else {
                    format!("\"{t}\"")
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_may_hold_slashes_spaces_and_unicode_but_not_controls() {
        for key in [
            "a",
            "a/b/c",
            "with space",
            "ünïcödé ✓",
            &"k".repeat(MAX_KEY_BYTES),
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert_eq!(
            validate_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(KeyError::TooLong)
        );
        assert_eq!(validate_key("a\nb"), Err(KeyError::ControlCharacter));
    }

    #[test]
    fn a_key_of_one_or_two_dots_is_refused_but_dots_inside_a_key_are_fine() {
        assert_eq!(validate_key("."), Err(KeyError::DotSegment));
        assert_eq!(validate_key(".."), Err(KeyError::DotSegment));
        for key in ["...", ".a", "a..b", "./x", "../x"] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn the_backend_limit_counts_characters_not_bytes() {
        let max = BACKEND_KEY_MAX_CHARS;
        assert_eq!(check_backend_key(&"k".repeat(255), max), Ok(()));
        assert_eq!(check_backend_key(&"é".repeat(255), max), Ok(()));
        assert_eq!(
            check_backend_key(&"k".repeat(256), max),
            Err(KeyError::TooLongForBackend(255))
        );
        assert_eq!(
            check_backend_key("abc", 2),
            Err(KeyError::TooLongForBackend(2))
        );
    }

    #[test]
    fn etags_are_quoted_and_change_with_the_value() {
        let a = etag("1");
        assert!(a.starts_with('"') && a.ends_with('"'));
        assert_eq!(a, etag("1"));
        assert_ne!(a, etag("2"));
    }

    #[test]
    fn an_etag_is_the_first_12_bytes_of_the_sha256_in_lower_hex() {
        // Clients keep ETags across upgrades, and hosts of both kinds share
        // them: the format must never change. sha256("1") = 6b86b273ff34...
        assert_eq!(etag("1"), "\"6b86b273ff34fce19d6b804e\"");
    }

    #[test]
    fn if_match_holds_only_for_a_listed_current_tag() {
        let p = Precondition::from_headers(Some("\"x\", W/\"y\""), None);
        assert!(p.holds(Some("\"x\"")) && p.holds(Some("\"y\"")));
        assert!(!p.holds(Some("\"z\"")) && !p.holds(None));
        assert!(Precondition::from_headers(Some("*"), None).holds(Some("\"q\"")));
        assert!(!Precondition::from_headers(Some("*"), None).holds(None));
    }

    #[test]
    fn if_none_match_star_holds_only_when_absent() {
        let p = Precondition::from_headers(None, Some("*"));
        assert!(p.holds(None));
        assert!(!p.holds(Some("\"x\"")));
        assert!(p.is_conditional());
        assert!(!Precondition::from_headers(None, None).is_conditional());
    }
}
