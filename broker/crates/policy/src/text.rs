//! Escaping of untrusted text for reasons, problems and logs. Nothing built
//! here may contain a control character, a non-ASCII character (bidi
//! overrides, zero-width spaces, look-alikes) or an unbounded amount of
//! attacker-chosen text.

/// Longest escaped output, in characters of input, before it is cut off.
pub const MAX_ESCAPED_CHARS: usize = 128;

/// Escapes `s` so that it can be embedded in a reason, a problem or a log
/// line: printable ASCII except `\`, `` ` ``, `"` and `'` is kept, everything
/// else becomes `\u{..}` (or `\\`, `` \` ``, `\"`, `\'`), and input past
/// [`MAX_ESCAPED_CHARS`] characters is replaced by `…(truncated)`.
pub fn escape_untrusted(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_ESCAPED_CHARS) + 8);
    for (i, c) in s.chars().enumerate() {
        if i >= MAX_ESCAPED_CHARS {
            out.push_str("...(truncated)");
            break;
        }
        match c {
            '\\' | '`' | '"' | '\'' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out
}

/// Longest message kept by [`escape_message`], in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 512;

/// Like [`escape_untrusted`] but keeps quotes and backticks, for messages
/// (such as a TOML parser's) that quote things themselves.
pub(crate) fn escape_message(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_MESSAGE_CHARS) + 8);
    for (i, c) in s.trim().chars().enumerate() {
        if i >= MAX_MESSAGE_CHARS {
            out.push_str("...(truncated)");
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_unicode_and_quotes() {
        assert_eq!(escape_untrusted("abc/def"), "abc/def");
        assert_eq!(escape_untrusted("a\nb"), "a\\u{a}b");
        assert_eq!(escape_untrusted("\u{202e}x"), "\\u{202e}x");
        assert_eq!(escape_untrusted("\u{200b}"), "\\u{200b}");
        assert_eq!(escape_untrusted("a`b\"c\\"), "a\\`b\\\"c\\\\");
        assert_eq!(escape_untrusted("\0"), "\\u{0}");
    }

    #[test]
    fn messages_keep_quotes() {
        assert_eq!(escape_message("unknown field `x`\n"), "unknown field `x`");
        assert_eq!(escape_message("a\u{202e}b\\"), "a\\u{202e}b\\\\");
    }

    #[test]
    fn truncates_long_input() {
        let long = "x".repeat(10_000);
        let e = escape_untrusted(&long);
        assert!(e.len() < 200);
        assert!(e.ends_with("...(truncated)"));
    }
}
