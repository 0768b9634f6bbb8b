//! The settings both hosts share: their defaults, and how the Valkey
//! connection is resolved from `VALKEY_URL`, `VALKEY_PASSWORD` and
//! `VALKEY_DB` (the Spin variables `valkey_url`, `valkey_password`,
//! `valkey_db`). The custom host and the Spin adapters both call
//! [`valkey_endpoints`]; neither resolves a setting of its own.

use std::time::Duration;

use crate::rate_limit::Quota;

/// `RATE_LIMIT_PER_MIN`: requests an execution may make a minute.
pub const RATE_LIMIT_PER_MIN: u32 = 1000;

/// `CACHE_TTL`: the default TTL of cached entries.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

/// `BACKEND_TIMEOUT`: the budget of one backend call, retries included.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The quota of `per_minute` (`0` turns the rate limit off).
pub fn quota(per_minute: u32) -> Option<Quota> {
    (per_minute > 0).then(|| Quota::per_minute(per_minute))
}

/// One Valkey node to connect to, with the credentials and database it is
/// opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValkeyEndpoint {
    /// The seed's URL with the resolved credentials and database written
    /// into it (password percent-encoded), in the scheme it was given in
    /// (`valkey://` stays `valkey://`: Spin checks the scheme against the
    /// allowed outbound hosts). `unix://` seeds are left as written.
    pub url: String,
    /// The ACL user to authenticate as, from the URL (none: the default user).
    pub username: Option<String>,
    /// `VALKEY_PASSWORD` when set, else the URL's password (percent-decoded).
    pub password: Option<String>,
    /// The database to select: `VALKEY_DB` when set, else the URL's path.
    pub db: Option<i64>,
}

/// Resolves `url` (one URL, or the comma-separated seeds of a cluster)
/// with `password` and `db`: an explicit `VALKEY_PASSWORD`/`VALKEY_DB`
/// overrides what the URL carries (`redis://user:password@host/db`), as
/// the Go service's operators expect; what it does not set, the URL says.
/// Empty settings count as unset. `Err` names a seed that is not a
/// `redis://`, `rediss://`, `valkey://`, `valkeys://` or `unix://` URL.
pub fn valkey_endpoints(
    url: &str,
    password: Option<&str>,
    db: Option<i64>,
) -> Result<Vec<ValkeyEndpoint>, String> {
    let password = password.filter(|p| !p.is_empty());
    url.split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(|seed| endpoint(seed, password, db))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|seeds| {
            if seeds.is_empty() {
                Err("no Valkey URL".to_owned())
            } else {
                Ok(seeds)
            }
        })
}

fn endpoint(seed: &str, password: Option<&str>, db: Option<i64>) -> Result<ValkeyEndpoint, String> {
    if crate::valkey::normalize_url(seed).is_none() {
        return Err(format!(
            "{seed:?} is not a redis://, rediss://, valkey://, valkeys:// or unix:// URL"
        ));
    }
    let (scheme, rest) = seed
        .split_once("://")
        .expect("normalize_url checked the scheme");
    if !matches!(scheme, "redis" | "rediss" | "valkey" | "valkeys") {
        // A socket path: credentials and database are the settings'.
        return Ok(ValkeyEndpoint {
            url: seed.to_owned(),
            username: None,
            password: password.map(str::to_owned),
            db,
        });
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path).filter(|p| !p.is_empty())),
        None => (rest, None),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    let (url_user, url_password) = match userinfo {
        None => (None, None),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (Some(user), Some(password)),
            None => (Some(userinfo), None),
        },
    };
    let username = url_user.filter(|u| !u.is_empty()).map(percent_decode);
    let password = password
        .map(str::to_owned)
        .or_else(|| url_password.filter(|p| !p.is_empty()).map(percent_decode));
    let db = match db {
        Some(db) => Some(db),
        None => match path {
            None => None,
            Some(path) => Some(
                path.parse::<i64>()
                    .map_err(|_| format!("{seed:?}: the database {path:?} is not a number"))?,
            ),
        },
    };
    let mut url = format!("{scheme}://");
    if username.is_some() || password.is_some() {
        if let Some(user) = &username {
            url.push_str(&percent_encode(user));
        }
        if let Some(password) = &password {
            url.push(':');
            url.push_str(&percent_encode(password));
        }
        url.push('@');
    }
    url.push_str(host);
    if let Some(db) = db {
        url.push_str(&format!("/{db}"));
    }
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(ValkeyEndpoint {
        url,
        username,
        password,
        db,
    })
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(url: &str, password: Option<&str>, db: Option<i64>) -> ValkeyEndpoint {
        let mut seeds = valkey_endpoints(url, password, db).unwrap();
        assert_eq!(seeds.len(), 1);
        seeds.remove(0)
    }

    #[test]
    fn explicit_password_and_db_override_the_url() {
        let e = one("valkey://u:x@h:6379/1", Some("pw"), Some(2));
        assert_eq!(e.url, "valkey://u:pw@h:6379/2");
        assert_eq!((e.password.as_deref(), e.db), (Some("pw"), Some(2)));
        assert_eq!(
            one("redis://h:6379", Some("pw"), Some(2)).url,
            "redis://:pw@h:6379/2"
        );
    }

    #[test]
    fn without_settings_the_url_says() {
        let e = one("redis://u:x@h:6379/1", None, None);
        assert_eq!(e.url, "redis://u:x@h:6379/1");
        assert_eq!(
            (e.username.as_deref(), e.password.as_deref(), e.db),
            (Some("u"), Some("x"), Some(1))
        );
        assert_eq!(
            one("redis://h", Some(""), None).url,
            "redis://h",
            "empty is unset"
        );
    }

    #[test]
    fn passwords_are_encoded_into_the_url_and_decoded_from_it() {
        let e = one("redis://h:1", Some("p@ss:w/rd"), None);
        assert_eq!(e.url, "redis://:p%40ss%3Aw%2Frd@h:1");
        assert_eq!(
            one(&e.url, None, None).password.as_deref(),
            Some("p@ss:w/rd")
        );
    }

    #[test]
    fn every_seed_resolves_and_bad_ones_are_named() {
        let seeds = valkey_endpoints("redis://a:1,redis://b:2", Some("pw"), None).unwrap();
        assert_eq!(seeds[1].url, "redis://:pw@b:2");
        assert!(valkey_endpoints("http://h", None, None).is_err());
        assert!(valkey_endpoints("redis://h/x", None, None).is_err());
    }

    #[test]
    fn defaults() {
        assert_eq!(RATE_LIMIT_PER_MIN, 1000);
        assert_eq!(CACHE_TTL, Duration::from_secs(300));
        assert_eq!(quota(0), None);
        assert_eq!(quota(5).unwrap().limit, 5);
    }
}
