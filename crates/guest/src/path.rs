//! Path decoding.

use crate::ApiError;

/// Splits a raw path into its segments, without the leading `/`.
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// Percent-decodes `raw` into UTF-8 text; 400 on a bad escape or bytes
/// that are not UTF-8.
pub fn decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::bad_request("bad percent-encoding in the path"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the path is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_including_slashes_and_unicode() {
        assert_eq!(decode("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode("caf%C3%A9%20x").unwrap(), "café x");
        assert_eq!(decode("plain").unwrap(), "plain");
    }

    #[test]
    fn refuses_bad_escapes_and_invalid_utf8() {
        assert_eq!(decode("%zz").unwrap_err().status, 400);
        assert_eq!(decode("%4").unwrap_err().status, 400);
        assert_eq!(decode("%FF").unwrap_err().status, 400);
    }
}
