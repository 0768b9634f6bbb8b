//! CORS as the contract states it (`ENABLE_CORS`, `ALLOWED_ORIGINS`): an
//! allowed origin gets `Access-Control-Allow-Origin` on every answer, and
//! a preflight is answered directly, without running the route.
//!
//! The custom host applies these rules in front of every component; under
//! Spin, which has nothing in front, the endpoint components apply them
//! (through `cronium-guest`) with the origins the Spin adapter reads from
//! the app's variables. Both answer the same headers.

/// The methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
/// The request headers a preflight allows.
pub const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID";
/// The response headers a page may read.
pub const EXPOSE_HEADERS: &str = "ETag, X-Request-ID, Retry-After";
/// How long a browser may keep a preflight's answer, in seconds.
pub const MAX_AGE: &str = "600";

/// The parsed `ALLOWED_ORIGINS` value: `*`, or a comma-separated list.
pub fn parse_origins(text: &str) -> Vec<String> {
    text.split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect()
}

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed:
/// `*` when any origin is, else the origin itself.
pub fn allow(origins: &[String], origin: &str) -> Option<String> {
    if origins.iter().any(|o| o == "*") {
        return Some("*".to_owned());
    }
    let trimmed = origin.trim_end_matches('/');
    origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(trimmed))
        .then(|| origin.to_owned())
}

/// Whether a request is a preflight: `OPTIONS` with
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, has_request_method: bool) -> bool {
    method.eq_ignore_ascii_case("OPTIONS") && has_request_method
}

/// The headers of the answer to a preflight (status 204, no body). An
/// origin that is not allowed gets only `Vary`, which the browser takes as
/// a refusal.
pub fn preflight_headers(origins: &[String], origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("vary", "Origin".to_owned())];
    if let Some(allowed) = origin.and_then(|o| allow(origins, o)) {
        headers.push(("access-control-allow-origin", allowed));
        headers.push(("access-control-allow-methods", ALLOW_METHODS.to_owned()));
        headers.push(("access-control-allow-headers", ALLOW_HEADERS.to_owned()));
        headers.push(("access-control-max-age", MAX_AGE.to_owned()));
    }
    headers
}

/// The headers to add to any other answer for a request from `origin`;
/// none when the origin is not allowed.
pub fn answer_headers(origins: &[String], origin: &str) -> Vec<(&'static str, String)> {
    match allow(origins, origin) {
        Some(allowed) => vec![
            ("access-control-allow-origin", allowed),
            ("access-control-expose-headers", EXPOSE_HEADERS.to_owned()),
            ("vary", "Origin".to_owned()),
        ],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_allows_any_origin_and_a_list_only_its_members() {
        let origin = "https://app.example.com";
        assert_eq!(allow(&["*".into()], origin).unwrap(), "*");
        assert_eq!(
            allow(&parse_origins("https://app.example.com/"), origin).unwrap(),
            origin
        );
        assert!(allow(&["https://other.example.com".into()], origin).is_none());
    }

    #[test]
    fn the_origin_list_is_comma_separated_and_trimmed() {
        assert_eq!(
            parse_origins(" https://a.example , https://b.example/ ,"),
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn a_preflight_from_a_refused_origin_gets_no_allow_headers() {
        let origins = parse_origins("https://a.example");
        assert_eq!(
            preflight_headers(&origins, Some("https://evil.example")),
            [("vary", "Origin".to_owned())]
        );
        let allowed = preflight_headers(&origins, Some("https://a.example"));
        assert!(
            allowed
                .iter()
                .any(|(n, v)| *n == "access-control-allow-methods" && v == ALLOW_METHODS)
        );
        assert!(answer_headers(&origins, "https://evil.example").is_empty());
    }

    #[test]
    fn only_options_with_a_requested_method_is_a_preflight() {
        assert!(is_preflight("OPTIONS", true));
        assert!(!is_preflight("OPTIONS", false));
        assert!(!is_preflight("GET", true));
    }
}
