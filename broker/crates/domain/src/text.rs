//! Rendering text that came from outside (a path, a role name, a claim, a
//! parser's message) so that it can be recorded in an audit reason, a
//! problem or a log line. Nothing built here may contain a control
//! character, a non-ASCII character (bidi overrides, zero-width spaces,
//! look-alikes) or an unbounded amount of attacker-chosen text.

/// Renders text that came from a caller (a path, a role name) so it can be
/// logged safely: control characters, quotes, backslashes and non-ASCII are
/// escaped as `\u{..}`, and the result is capped at `max` characters.
pub fn escape_untrusted(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() && c != '\\' && c != '"' || c == ' ' {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    out
}
