//! Turns caller-supplied mounts and paths into URL path text.
//!
//! Every segment is percent-encoded (anything outside the RFC 3986
//! unreserved characters), `/` separators are kept, and segments that a URL
//! parser would normalise away (`.`, `..`, empty) or control characters are
//! refused: no input can change which endpoint a request reaches.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::ClientError;

/// Everything except ALPHA / DIGIT / `-` / `.` / `_` / `~` is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes one segment after checking it.
pub(crate) fn segment(seg: &str, what: &str) -> Result<String, ClientError> {
    if seg.is_empty() {
        return Err(ClientError::InvalidInput(format!(
            "{what} has an empty path segment"
        )));
    }
    if seg == "." || seg == ".." {
        return Err(ClientError::InvalidInput(format!(
            "{what} may not contain `.` or `..` segments"
        )));
    }
    if seg.chars().any(char::is_control) {
        return Err(ClientError::InvalidInput(format!(
            "{what} may not contain control characters"
        )));
    }
    Ok(utf8_percent_encode(seg, SEGMENT).to_string())
}

/// Encodes a mount name: exactly one segment (surrounding `/` ignored).
pub(crate) fn mount(m: &str) -> Result<String, ClientError> {
    let m = m.trim_matches('/');
    if m.contains('/') {
        return Err(ClientError::InvalidInput(
            "a mount is a single path segment".into(),
        ));
    }
    segment(m, "the mount")
}

/// Encodes a multi-segment path. A leading `/` is dropped, one trailing `/`
/// (a "directory") is kept. An empty path is allowed only when `allow_empty`.
pub(crate) fn path(p: &str, what: &str, allow_empty: bool) -> Result<String, ClientError> {
    let p = p.strip_prefix('/').unwrap_or(p);
    if p.is_empty() {
        return if allow_empty {
            Ok(String::new())
        } else {
            Err(ClientError::InvalidInput(format!("{what} is empty")))
        };
    }
    let (body, trailing) = match p.strip_suffix('/') {
        Some(b) => (b, "/"),
        None => (p, ""),
    };
    let mut out = Vec::new();
    for seg in body.split('/') {
        out.push(segment(seg, what)?);
    }
    Ok(format!("{}{trailing}", out.join("/")))
}

/// Encodes a query parameter's value: everything but the unreserved
/// characters is percent-encoded (so `&`, `=`, `#` and `+` stay data);
/// control characters are refused.
pub(crate) fn query_value(v: &str, what: &str) -> Result<String, ClientError> {
    if v.chars().any(char::is_control) {
        return Err(ClientError::InvalidInput(format!(
            "{what} may not contain control characters"
        )));
    }
    Ok(utf8_percent_encode(v, SEGMENT).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments_and_keeps_separators() {
        assert_eq!(path("app/db", "p", false).unwrap(), "app/db");
        assert_eq!(path("/app/db/", "p", false).unwrap(), "app/db/");
        assert_eq!(
            path("a b/c?d#e/%2e", "p", false).unwrap(),
            "a%20b/c%3Fd%23e/%252e"
        );
        assert_eq!(path("ü~x.y_z-1", "p", false).unwrap(), "%C3%BC~x.y_z-1");
        assert_eq!(path("", "p", true).unwrap(), "");
        assert_eq!(mount("secret/").unwrap(), "secret");
    }

    #[test]
    fn refuses_traversal_and_odd_segments() {
        for bad in ["", "a/../b", "..", "a/./b", "a//b", "a/\nb", "//"] {
            assert!(path(bad, "p", false).is_err(), "{bad:?}");
        }
        for bad in ["", "a/b", "..", "\u{7f}"] {
            assert!(mount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_values_stay_data() {
        assert_eq!(
            query_value("a&b=c d#+/", "v").unwrap(),
            "a%26b%3Dc%20d%23%2B%2F"
        );
        assert_eq!(query_value("", "v").unwrap(), "");
        assert!(query_value("a\nb", "v").is_err());
    }
}
