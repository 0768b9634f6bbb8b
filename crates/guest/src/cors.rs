//! CORS when nothing stands in front of the component (Spin): the rules of
//! `cronium_rules::cors`, with the origins from the `cors` capability. The
//! custom host answers CORS itself, and its capability says `none`, so
//! there this adds nothing.

use crate::Reply;
use crate::bindings::cors;

/// What a request says about its origin, taken before its body is read so
/// that every answer, a 413 included, can carry the CORS headers.
#[derive(Debug, Clone, Default)]
pub(crate) struct CrossOrigin {
    origin: Option<String>,
    preflight: bool,
}

impl CrossOrigin {
    /// Reads the `Origin` and `Access-Control-Request-Method` headers.
    pub(crate) fn of(method: &str, headers: &[(String, Vec<u8>)]) -> Self {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        CrossOrigin {
            origin: find("origin"),
            preflight: cronium_rules::cors::is_preflight(
                method,
                find("access-control-request-method").is_some(),
            ),
        }
    }

    /// The answer to a preflight, when this request is one and the
    /// component answers CORS itself.
    pub(crate) fn preflight(&self) -> Option<Reply> {
        if !self.preflight {
            return None;
        }
        let origins = cors::allowed_origins()?;
        let headers = cronium_rules::cors::preflight_headers(&origins, self.origin.as_deref());
        Some(
            headers
                .into_iter()
                .fold(Reply::no_content(), |reply, (name, value)| {
                    reply.with_header(name, value)
                }),
        )
    }

    /// `reply` with the CORS headers its origin gets, if any.
    pub(crate) fn decorate(&self, reply: Reply) -> Reply {
        let Some(origin) = self.origin.as_deref() else {
            return reply;
        };
        let Some(origins) = cors::allowed_origins() else {
            return reply;
        };
        cronium_rules::cors::answer_headers(&origins, origin)
            .into_iter()
            .fold(reply, |reply, (name, value)| reply.with_header(name, value))
    }
}
