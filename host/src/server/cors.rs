//! CORS, configured as in the Go service (`ENABLE_CORS`, `ALLOWED_ORIGINS`):
//! allowed origins get `Access-Control-Allow-Origin` on every answer, and
//! preflights are answered here without reaching a component.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
    HeaderMap, HeaderValue, ORIGIN, VARY,
};
use hyper::{Method, Request, Response, StatusCode};

const METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
const HEADERS: &str =
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID";
const EXPOSED: &str = "ETag, X-Request-ID, Retry-After";

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
fn allow(origins: &[String], origin: &HeaderValue) -> Option<HeaderValue> {
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin_text = origin.to_str().ok()?.trim_end_matches('/');
    origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin_text))
        .then(|| origin.clone())
}

/// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`),
/// when CORS is on. A disallowed origin gets the answer without the
/// allow headers, which the browser treats as a refusal.
pub fn preflight<B>(
    origins: Option<&[String]>,
    request: &Request<B>,
) -> Option<Response<Full<Bytes>>> {
    let origins = origins?;
    if request.method() != Method::OPTIONS
        || !request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("Origin"));
    if let Some(allowed) = request
        .headers()
        .get(ORIGIN)
        .and_then(|o| allow(origins, o))
    {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(HEADERS),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    Some(response)
}

/// Adds the CORS headers of an allowed `origin` to an answer.
pub fn decorate(origins: Option<&[String]>, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    let (Some(origins), Some(origin)) = (origins, origin) else {
        return;
    };
    if let Some(allowed) = allow(origins, origin) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_allows_any_origin_and_a_list_only_its_members() {
        let origin = HeaderValue::from_static("https://app.example.com");
        assert_eq!(allow(&["*".into()], &origin).unwrap(), "*");
        assert_eq!(
            allow(&["https://app.example.com".into()], &origin).unwrap(),
            origin
        );
        assert!(allow(&["https://other.example.com".into()], &origin).is_none());
    }
}
