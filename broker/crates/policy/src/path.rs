//! Canonical secret paths: the one form of a request path that is
//! authorized, stored and logged. Nothing here may "fix" a bad path (resolve
//! `..`, collapse `//`, decode twice, fold case or Unicode): a path is
//! decoded once, validated, and either accepted exactly or rejected.
//!
//! # Grammar
//!
//! [`canonicalize`] takes the still percent-encoded request path after the
//! `/v1/` prefix, with no leading slash and the query already removed, e.g.
//! `secret/data/payments/db`.
//!
//! 1. The raw path is at most [`MAX_PATH_BYTES`] bytes and not empty.
//! 2. A leading `/` is an error ([`PathError::LeadingSlash`]).
//! 3. One trailing `/` is allowed and recorded
//!    ([`CanonicalPath::trailing_slash`]; it marks a folder, used by LIST).
//! 4. The path is split on the literal `/` **first**, then each segment is
//!    percent-decoded **once**. An encoded `/` (`%2F`) therefore can never
//!    become a separator: it is rejected. A `%` that is not followed by two
//!    hex digits is rejected.
//! 5. At most [`MAX_SEGMENTS`] segments, each at most [`MAX_SEGMENT_BYTES`]
//!    bytes after decoding. An empty segment (`a//b`) is
//!    [`PathError::EmptySegment`] (a caller may redirect, as Vault does).
//! 6. Decoded segments are ASCII from `A-Z a-z 0-9 - _ . @ + = , : ~` only.
//!    Everything else is rejected with an error that names the problem by
//!    byte value, never by echoing it: NUL, control characters, backslash,
//!    a `%` after decoding (double encoding such as `%252e`), space, `*`,
//!    `?`, `#`, and every non-ASCII byte (so Unicode look-alikes such as
//!    fullwidth `．`, U+2215 `∕`, bidi overrides such as U+202E, zero-width
//!    characters such as U+200B, NFC/NFD variants, overlong UTF-8 such as
//!    `%C0%AE` and invalid UTF-8 are all rejected).
//! 7. `.` and `..` segments are rejected, whether written plainly or
//!    encoded (`%2e%2e`).
//!
//! Matching is case-sensitive, like Vault: `Secret/App` and `secret/app` are
//! different paths.
//!
//! The canonical form is the decoded segments joined by `/`, plus a `/` if
//! the path had a trailing slash. It only contains characters of the set
//! above, so it never contains `%` and canonicalizing it again yields the
//! same path: `canonicalize(p.as_str()) == Ok(p)`.

use std::fmt;
use std::str::FromStr;

/// Longest raw (still encoded) path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most segments in a path.
pub const MAX_SEGMENTS: usize = 64;
/// Longest decoded segment, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a path was rejected. Messages name the problem and the 1-based
/// segment, and show offending bytes only as hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("invalid path: the path is empty")]
    Empty,
    /// The raw path is longer than [`MAX_PATH_BYTES`].
    #[error("invalid path: longer than {MAX_PATH_BYTES} bytes ({0} bytes)")]
    TooLong(usize),
    /// More than [`MAX_SEGMENTS`] segments.
    #[error("invalid path: more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    /// A decoded segment is longer than [`MAX_SEGMENT_BYTES`].
    #[error("invalid path: segment {segment} is longer than {MAX_SEGMENT_BYTES} bytes")]
    SegmentTooLong {
        /// 1-based segment number.
        segment: usize,
    },
    /// The path starts with `/`.
    #[error("invalid path: a leading `/` is not allowed")]
    LeadingSlash,
    /// An empty segment, as in `a//b` or `a//`.
    #[error("invalid path: empty segment (`//`) at segment {segment}")]
    EmptySegment {
        /// 1-based segment number.
        segment: usize,
    },
    /// A `.` or `..` segment, plain or encoded.
    #[error("invalid path: `.` and `..` segments are not allowed (segment {segment})")]
    DotSegment {
        /// 1-based segment number.
        segment: usize,
    },
    /// A `%` not followed by two hex digits.
    #[error("invalid path: invalid percent escape in segment {segment}")]
    BadEscape {
        /// 1-based segment number.
        segment: usize,
    },
    /// `%2F` decoded to a `/` inside a segment.
    #[error("invalid path: encoded `/` (%2F) in segment {segment}")]
    EncodedSlash {
        /// 1-based segment number.
        segment: usize,
    },
    /// A `%` after decoding: the path was encoded twice.
    #[error("invalid path: `%` after decoding (double encoding) in segment {segment}")]
    DoubleEncoding {
        /// 1-based segment number.
        segment: usize,
    },
    /// A NUL byte.
    #[error("invalid path: NUL byte in segment {segment}")]
    Nul {
        /// 1-based segment number.
        segment: usize,
    },
    /// An ASCII control character (other than NUL) or DEL.
    #[error("invalid path: control character 0x{byte:02x} in segment {segment}")]
    ControlChar {
        /// 1-based segment number.
        segment: usize,
        /// The byte.
        byte: u8,
    },
    /// A backslash (raw or `%5C`).
    #[error("invalid path: backslash in segment {segment}")]
    Backslash {
        /// 1-based segment number.
        segment: usize,
    },
    /// A byte ≥ 0x80: Unicode, overlong or invalid UTF-8.
    #[error(
        "invalid path: non-ASCII byte 0x{byte:02x} in segment {segment} (only ASCII is allowed)"
    )]
    NonAscii {
        /// 1-based segment number.
        segment: usize,
        /// The first offending byte.
        byte: u8,
    },
    /// A printable ASCII character outside the allowed set.
    #[error("invalid path: character {} is not allowed in segment {segment}", show_byte(*.byte))]
    ForbiddenChar {
        /// 1-based segment number.
        segment: usize,
        /// The byte.
        byte: u8,
    },
}

/// Shows a printable ASCII byte as `'c' (0xNN)`, anything else as `0xNN`.
fn show_byte(b: u8) -> String {
    if b.is_ascii_alphanumeric() || (b.is_ascii_punctuation() && !matches!(b, b'\'' | b'\\')) {
        format!("'{}' (0x{b:02x})", char::from(b))
    } else {
        format!("0x{b:02x}")
    }
}

/// Whether `b` may appear in a decoded segment.
pub(crate) fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'@' | b'+' | b'=' | b',' | b':' | b'~'
        )
}

/// Validates one decoded segment; `segment` is 1-based, for messages.
pub(crate) fn validate_segment(bytes: &[u8], segment: usize) -> Result<(), PathError> {
    if bytes.is_empty() {
        return Err(PathError::EmptySegment { segment });
    }
    if bytes.len() > MAX_SEGMENT_BYTES {
        return Err(PathError::SegmentTooLong { segment });
    }
    for &b in bytes {
        if is_path_byte(b) {
            continue;
        }
        return Err(match b {
            0 => PathError::Nul { segment },
            b'/' => PathError::EncodedSlash { segment },
            b'%' => PathError::DoubleEncoding { segment },
            b'\\' => PathError::Backslash { segment },
            0x01..=0x1f | 0x7f => PathError::ControlChar { segment, byte: b },
            0x80..=0xff => PathError::NonAscii { segment, byte: b },
            _ => PathError::ForbiddenChar { segment, byte: b },
        });
    }
    if bytes == b"." || bytes == b".." {
        return Err(PathError::DotSegment { segment });
    }
    Ok(())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one raw segment, exactly once.
fn decode_segment(raw: &[u8], segment: usize) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_val);
            let lo = raw.get(i + 2).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(PathError::BadEscape { segment }),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// A path that passed [`canonicalize`]: decoded once, validated, never
/// empty. Its text form is the only form that is authorized and logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalPath {
    segments: Vec<String>,
    trailing_slash: bool,
    text: String,
}

/// Decodes and validates a raw request path. See the module documentation
/// for the rules.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(raw.len()));
    }
    if raw.starts_with('/') {
        return Err(PathError::LeadingSlash);
    }
    let (body, trailing_slash) = match raw.strip_suffix('/') {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let count = body.split('/').count();
    if count > MAX_SEGMENTS {
        return Err(PathError::TooManySegments);
    }
    let mut segments = Vec::with_capacity(count);
    for (i, seg) in body.split('/').enumerate() {
        let n = i + 1;
        if seg.is_empty() {
            return Err(PathError::EmptySegment { segment: n });
        }
        let decoded = decode_segment(seg.as_bytes(), n)?;
        validate_segment(&decoded, n)?;
        // Every byte is ASCII after validation, so this cannot fail; map the
        // impossible case to an error rather than panicking.
        let s = String::from_utf8(decoded).map_err(|e| PathError::NonAscii {
            segment: n,
            byte: e
                .as_bytes()
                .iter()
                .copied()
                .find(|b| *b >= 0x80)
                .unwrap_or(0x80),
        })?;
        segments.push(s);
    }
    Ok(CanonicalPath::build(segments, trailing_slash))
}

impl CanonicalPath {
    fn build(segments: Vec<String>, trailing_slash: bool) -> Self {
        let mut text = segments.join("/");
        if trailing_slash {
            text.push('/');
        }
        Self {
            segments,
            trailing_slash,
            text,
        }
    }

    /// Builds a path from segments that are already decoded (no percent
    /// decoding happens here: a `%` is rejected). For callers that rewrite a
    /// canonical path, e.g. to strip the KV v2 `data/` infix.
    pub fn from_segments<I, S>(segments: I, trailing_slash: bool) -> Result<Self, PathError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Vec::new();
        let mut len = 0usize;
        for (i, s) in segments.into_iter().enumerate() {
            if i >= MAX_SEGMENTS {
                return Err(PathError::TooManySegments);
            }
            let s = s.into();
            validate_segment(s.as_bytes(), i + 1)?;
            len += s.len() + 1;
            out.push(s);
        }
        if out.is_empty() {
            return Err(PathError::Empty);
        }
        if len > MAX_PATH_BYTES {
            return Err(PathError::TooLong(len));
        }
        Ok(Self::build(out, trailing_slash))
    }

    /// The canonical text: segments joined by `/`, plus `/` for a folder.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The decoded segments (never empty).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The first segment (the mount).
    pub fn first(&self) -> &str {
        self.segments.first().map(String::as_str).unwrap_or("")
    }

    /// The last segment.
    pub fn last(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or("")
    }

    /// How many segments there are (at least one).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Whether the path ended in `/` (a folder, as LIST uses).
    pub fn trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The same segments with the trailing slash set or cleared.
    pub fn with_trailing_slash(&self, trailing_slash: bool) -> Self {
        Self::build(self.segments.clone(), trailing_slash)
    }

    /// The path without the segment at `index` (0-based), or `None` if
    /// `index` is out of range or no segment would remain.
    pub fn remove_segment(&self, index: usize) -> Option<Self> {
        if index >= self.segments.len() || self.segments.len() == 1 {
            return None;
        }
        let mut segs = self.segments.clone();
        segs.remove(index);
        Some(Self::build(segs, self.trailing_slash))
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for CanonicalPath {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for CanonicalPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        canonicalize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> CanonicalPath {
        canonicalize(raw).unwrap_or_else(|e| panic!("{raw:?} rejected: {e}"))
    }

    fn err(raw: &str) -> PathError {
        match canonicalize(raw) {
            Ok(p) => panic!("{raw:?} accepted as {p}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_paths() {
        let p = ok("secret/data/payments/db");
        assert_eq!(p.as_str(), "secret/data/payments/db");
        assert_eq!(p.segments(), ["secret", "data", "payments", "db"]);
        assert_eq!(p.first(), "secret");
        assert_eq!(p.last(), "db");
        assert_eq!(p.segment_count(), 4);
        assert!(!p.trailing_slash());
        assert_eq!(p.to_string(), "secret/data/payments/db");
        let all = ok("A-Z_a.z0@9+=,:~");
        assert_eq!(all.as_str(), "A-Z_a.z0@9+=,:~");
    }

    #[test]
    fn trailing_slash_is_recorded() {
        let p = ok("secret/metadata/payments/");
        assert!(p.trailing_slash());
        assert_eq!(p.segments(), ["secret", "metadata", "payments"]);
        assert_eq!(p.as_str(), "secret/metadata/payments/");
        assert_ne!(p, ok("secret/metadata/payments"));
        assert_eq!(p.with_trailing_slash(false), ok("secret/metadata/payments"));
    }

    #[test]
    fn dot_segments_rejected() {
        // Catalogue item 17.
        assert_eq!(
            err("secret/app/../admin/db"),
            PathError::DotSegment { segment: 3 }
        );
        assert_eq!(err("secret/app/./x"), PathError::DotSegment { segment: 3 });
        assert_eq!(err(".."), PathError::DotSegment { segment: 1 });
        assert_eq!(err("secret/.."), PathError::DotSegment { segment: 2 });
        assert_eq!(err("secret/../"), PathError::DotSegment { segment: 2 });
        assert!(
            err("a/..")
                .to_string()
                .contains("`.` and `..` segments are not allowed")
        );
        // Three dots and dotted names are ordinary names.
        ok("secret/.../x");
        ok("secret/.hidden");
        ok("secret/a..b");
    }

    #[test]
    fn empty_and_leading_slash() {
        assert_eq!(err("secret//app"), PathError::EmptySegment { segment: 2 });
        assert_eq!(err("secret/app//"), PathError::EmptySegment { segment: 3 });
        assert_eq!(err("/secret/app"), PathError::LeadingSlash);
        assert_eq!(err("/"), PathError::LeadingSlash);
        assert_eq!(err("//"), PathError::LeadingSlash);
        assert_eq!(err(""), PathError::Empty);
    }

    #[test]
    fn percent_encoding_attacks() {
        // Catalogue item 18.
        assert_eq!(
            err("secret/%2e%2e/admin"),
            PathError::DotSegment { segment: 2 }
        );
        assert_eq!(
            err("secret/app/%2E%2E%2Fadmin"),
            PathError::EncodedSlash { segment: 3 }
        );
        assert_eq!(
            err("secret/%2E%2E%2F"),
            PathError::EncodedSlash { segment: 2 }
        );
        assert_eq!(err("secret/%2e"), PathError::DotSegment { segment: 2 });
        assert_eq!(
            err("secret%2fadmin"),
            PathError::EncodedSlash { segment: 1 }
        );
        assert_eq!(
            err("secret/%252e%252e"),
            PathError::DoubleEncoding { segment: 2 }
        );
        assert_eq!(
            err("secret/%252F"),
            PathError::DoubleEncoding { segment: 2 }
        );
        assert_eq!(
            err("secret/a%5c..%5cadmin"),
            PathError::Backslash { segment: 2 }
        );
        assert_eq!(err("secret/a\\b"), PathError::Backslash { segment: 2 });
        assert_eq!(err("secret/a%00b"), PathError::Nul { segment: 2 });
        assert_eq!(err("secret/a\0b"), PathError::Nul { segment: 2 });
        assert_eq!(err("secret/%"), PathError::BadEscape { segment: 2 });
        assert_eq!(err("secret/%2"), PathError::BadEscape { segment: 2 });
        assert_eq!(err("secret/%zz"), PathError::BadEscape { segment: 2 });
        assert_eq!(err("secret/%%32e"), PathError::BadEscape { segment: 2 });
        assert_eq!(
            err("secret/a%0ab"),
            PathError::ControlChar {
                segment: 2,
                byte: 0x0a
            }
        );
        assert_eq!(
            err("secret/a%7fb"),
            PathError::ControlChar {
                segment: 2,
                byte: 0x7f
            }
        );
        // Encoded ordinary characters decode once to themselves.
        assert_eq!(ok("secret/%61pp").as_str(), "secret/app");
        assert_eq!(ok("secret/a%2Eb").as_str(), "secret/a.b");
    }

    #[test]
    fn unicode_attacks() {
        // Catalogue item 19: fullwidth dots and solidus, division slash,
        // RTL override, zero-width space, overlong UTF-8, invalid UTF-8,
        // NFD combining marks, Cyrillic look-alikes.
        for raw in [
            "secret/\u{ff0e}\u{ff0e}\u{ff0f}admin",
            "secret/%EF%BC%8E%EF%BC%8E%EF%BC%8F",
            "secret/app\u{2215}admin",
            "secret/app%E2%88%95admin",
            "secret/\u{202e}nimda",
            "secret/%E2%80%AEnimda",
            "secret/ad\u{200b}min",
            "secret/ad%E2%80%8Bmin",
            "secret/%C0%AE%C0%AE/admin",
            "secret/%C0%AF",
            "secret/%FF%FE",
            "secret/%80",
            "secret/cafe\u{301}",
            "secret/caf\u{e9}",
            "secret/\u{0430}dmin",
        ] {
            match err(raw) {
                PathError::NonAscii { segment: 2, .. } => {}
                other => panic!("{raw:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn forbidden_ascii() {
        for (raw, byte) in [
            ("secret/a b", b' '),
            ("secret/a%20b", b' '),
            ("secret/*", b'*'),
            ("secret/a%2a", b'*'),
            ("secret/a?b", b'?'),
            ("secret/a#b", b'#'),
            ("secret/{{x}}", b'{'),
            ("secret/a;b", b';'),
            ("secret/a\"b", b'"'),
            ("secret/a'b", b'\''),
            ("secret/$x", b'$'),
            ("secret/a|b", b'|'),
        ] {
            assert_eq!(err(raw), PathError::ForbiddenChar { segment: 2, byte });
        }
    }

    #[test]
    fn error_messages_never_echo_raw_bytes() {
        for raw in [
            "secret/\u{202e}x",
            "secret/a%0ab",
            "secret/a\u{1b}[31mred",
            "secret/a'b",
            "secret/a%00",
        ] {
            let msg = err(raw).to_string();
            assert!(msg.starts_with("invalid path: "), "{msg}");
            assert!(
                msg.chars()
                    .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\'),
                "{msg:?}"
            );
        }
        assert_eq!(
            err("secret/a*").to_string(),
            "invalid path: character '*' (0x2a) is not allowed in segment 2"
        );
        assert_eq!(
            err("secret/a'b").to_string(),
            "invalid path: character 0x27 is not allowed in segment 2"
        );
    }

    #[test]
    fn size_limits() {
        // Catalogue item 24.
        let big = "a".repeat(64 * 1024);
        assert_eq!(err(&big), PathError::TooLong(64 * 1024));
        let many = vec!["a"; 10_000].join("/");
        assert!(matches!(err(&many), PathError::TooLong(_)));
        let sixty_five = vec!["a"; 65].join("/");
        assert_eq!(err(&sixty_five), PathError::TooManySegments);
        let sixty_four = vec!["a"; 64].join("/");
        assert_eq!(ok(&sixty_four).segment_count(), 64);
        assert_eq!(ok(&format!("{sixty_four}/")).segment_count(), 64);
        let long_seg = "b".repeat(256);
        assert_eq!(
            err(&format!("secret/{long_seg}")),
            PathError::SegmentTooLong { segment: 2 }
        );
        ok(&format!("secret/{}", "b".repeat(255)));
        // Encoded form may be up to the raw limit; decoded segment limit
        // still applies.
        let enc = "%61".repeat(256);
        assert_eq!(
            err(&format!("s/{enc}")),
            PathError::SegmentTooLong { segment: 2 }
        );
        assert_eq!(err(&"a".repeat(1025)), PathError::TooLong(1025));
    }

    #[test]
    fn case_sensitive() {
        // Catalogue item 21.
        assert_ne!(ok("Secret/App"), ok("secret/app"));
        assert_eq!(ok("Secret/App").as_str(), "Secret/App");
    }

    #[test]
    fn from_segments_and_remove() {
        let p = ok("secret/data/payments/db");
        let q = p.remove_segment(1).unwrap();
        assert_eq!(q.as_str(), "secret/payments/db");
        assert_eq!(p.remove_segment(9), None);
        assert_eq!(ok("x").remove_segment(0), None);
        let r = CanonicalPath::from_segments(["secret", "payments"], true).unwrap();
        assert_eq!(r, ok("secret/payments/"));
        assert_eq!(
            CanonicalPath::from_segments(["secret", "a/b"], false),
            Err(PathError::EncodedSlash { segment: 2 })
        );
        assert_eq!(
            CanonicalPath::from_segments(["secret", ".."], false),
            Err(PathError::DotSegment { segment: 2 })
        );
        assert_eq!(
            CanonicalPath::from_segments(["secret", "%2e"], false),
            Err(PathError::DoubleEncoding { segment: 2 })
        );
        assert_eq!(
            CanonicalPath::from_segments(Vec::<String>::new(), false),
            Err(PathError::Empty)
        );
        assert_eq!("a/b".parse::<CanonicalPath>(), Ok(ok("a/b")));
    }

    /// A small deterministic generator (xorshift), so the property test
    /// needs no extra dependency and is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "-",
        "_",
        ".",
        "..",
        "@",
        "+",
        "=",
        ",",
        ":",
        "~",
        "/",
        "//",
        "%",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%25",
        "%5c",
        "%00",
        "%41",
        "%7e",
        "%c0%ae",
        "%e2%80%ae",
        "\u{ff0e}",
        "\u{200b}",
        " ",
        "*",
        "?",
        "\\",
        "secret",
        "data",
        "é",
    ];

    #[test]
    fn canonicalize_is_idempotent_over_generated_inputs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for _ in 0..50_000 {
            let n = 1 + rng.below(12);
            let mut raw = String::new();
            for _ in 0..n {
                raw.push_str(PIECES[rng.below(PIECES.len())]);
            }
            if let Ok(p) = canonicalize(&raw) {
                accepted += 1;
                let again = canonicalize(p.as_str());
                assert_eq!(again.as_ref(), Ok(&p), "not idempotent for {raw:?}");
                // The canonical text only holds allowed bytes and `/`.
                assert!(
                    p.as_str().bytes().all(|b| is_path_byte(b) || b == b'/'),
                    "{raw:?}"
                );
                assert!(!p.as_str().starts_with('/'));
                assert!(!p.as_str().contains("//"));
                for s in p.segments() {
                    assert!(s != "." && s != "..");
                }
                assert_eq!(
                    CanonicalPath::from_segments(p.segments().to_vec(), p.trailing_slash()),
                    Ok(p.clone())
                );
            }
        }
        assert!(accepted > 1_000, "generator too hostile: {accepted}");
    }
}
