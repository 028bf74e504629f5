//! The one escaper of Leash for text that came from outside (a path, a
//! role name, a claim, a value in a policy file, a parser's message), so
//! that it can be recorded in an audit reason, an error body, a policy
//! problem or a log line. Nothing built here may contain a control
//! character, a non-ASCII character (bidi overrides, zero-width spaces,
//! look-alikes) other than the one `…` that marks a cut, or an unbounded
//! amount of attacker-chosen text.

use std::fmt::Write as _;

/// Renders text that came from a caller (a path, a role name, a value
/// from a policy file) so it can be logged or quoted safely: printable
/// ASCII is kept except `"` and `\`, which, like control characters and
/// non-ASCII, are escaped as `\u{..}` (`\u{22}`, `\u{5c}`), so the text
/// can neither end a `"…"` quotation nor forge an escape. Once the output
/// reaches `max` bytes the rest is cut and `…` appended. Backticks and
/// `'` are kept: they cannot break a line or a JSON string, and the
/// problems of a policy file that quote values in backticks read as the
/// operator wrote them.
pub fn escape_untrusted(s: &str, max: usize) -> String {
    escape(s, max, |c| c == '"' || c == '\\')
}

/// [`escape_untrusted`] for a parser's or the operating system's message,
/// which quotes values itself (serde's `invalid type: string "yes"`):
/// surrounding whitespace is trimmed and `"` is kept; everything else is
/// escaped as in [`escape_untrusted`]. Only for messages whose wording
/// comes from a library, never for a value on its own.
pub fn escape_message(s: &str, max: usize) -> String {
    escape(s.trim(), max, |c| c == '\\')
}

/// The common core: printable ASCII (and space) is kept unless `escaped`
/// says otherwise; every other character becomes `\u{..}`; output is cut
/// with `…` once it reaches `max` bytes.
fn escape(s: &str, max: usize, escaped: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if (c.is_ascii_graphic() || c == ' ') && !escaped(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_unicode_quotes_and_backslash() {
        assert_eq!(escape_untrusted("abc/def", 64), "abc/def");
        assert_eq!(escape_untrusted("a\nb", 64), "a\\u{a}b");
        assert_eq!(escape_untrusted("\u{202e}x", 64), "\\u{202e}x");
        assert_eq!(escape_untrusted("\u{200b}", 64), "\\u{200b}");
        assert_eq!(escape_untrusted("a\"b\\c", 64), "a\\u{22}b\\u{5c}c");
        assert_eq!(escape_untrusted("a`b'c", 64), "a`b'c");
        assert_eq!(escape_untrusted("\0", 64), "\\u{0}");
    }

    #[test]
    fn messages_keep_quotes() {
        assert_eq!(
            escape_message("unknown field `x`\n", 512),
            "unknown field `x`"
        );
        assert_eq!(
            escape_message("invalid type: string \"yes\"", 512),
            "invalid type: string \"yes\""
        );
        assert_eq!(escape_message("a\u{202e}b\\", 512), "a\\u{202e}b\\u{5c}");
    }

    #[test]
    fn truncates_long_input() {
        let e = escape_untrusted(&"x".repeat(10_000), 128);
        assert_eq!(e, format!("{}…", "x".repeat(128)));
        let e = escape_message(&"\u{202e}".repeat(10_000), 512);
        assert!(e.len() < 530 && e.ends_with('…'), "{e}");
        assert_eq!(escape_untrusted("short", 5), "short");
    }
}
