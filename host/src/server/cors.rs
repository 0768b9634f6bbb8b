//! CORS in front of every component, with the rules of
//! [`cronium_rules::cors`] (which the components apply themselves under
//! Spin): allowed origins get `Access-Control-Allow-Origin` on every answer,
//! and preflights are answered here without reaching a component.

use bytes::Bytes;
use cronium_rules::cors;
use http_body_util::Full;
use hyper::header::{ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName, HeaderValue, ORIGIN};
use hyper::{Request, Response, StatusCode};

/// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`),
/// when CORS is on.
pub fn preflight<B>(
    origins: Option<&[String]>,
    request: &Request<B>,
) -> Option<Response<Full<Bytes>>> {
    let origins = origins?;
    let headers = request.headers();
    if !cors::is_preflight(
        request.method().as_str(),
        headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD),
    ) {
        return None;
    }
    let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    append(
        response.headers_mut(),
        cors::preflight_headers(origins, origin),
    );
    Some(response)
}

/// Adds the CORS headers of an allowed `origin` to an answer that is not
/// a preflight's.
pub fn decorate(origins: Option<&[String]>, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    let (Some(origins), Some(origin)) = (origins, origin.and_then(|o| o.to_str().ok())) else {
        return;
    };
    append(headers, cors::answer_headers(origins, origin));
}

fn append(headers: &mut HeaderMap, extra: Vec<(&'static str, String)>) {
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
}
