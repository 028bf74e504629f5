//! Scope patterns (Vault glob semantics) and the compiled segment trie that
//! matches canonical paths against them. Nothing here may do I/O, match
//! anything but a [`CanonicalPath`], or guess at a pattern it does not
//! understand: such patterns are rejected when the policy is loaded.
//!
//! Semantics, on the canonical resource path `<mount>/<path>`:
//! - segments are literal and case-sensitive (`.` is a literal dot, never a
//!   regex);
//! - a segment that is exactly `+` matches exactly one segment (a `+` inside
//!   a segment, as in `a+b`, is literal);
//! - `*` may only be the last character and matches zero or more characters
//!   of the rest of the path, across `/`: `secret/payments/*` matches
//!   `secret/payments/db`, `secret/payments/a/b` and the folder
//!   `secret/payments/`, but not `secret/payments`; `secret/pay*` matches
//!   `secret/payments/x` (a prefix match on the text, Vault's surprise);
//! - a pattern without `*` matches exactly one path; a trailing `/` in it
//!   matches only the folder (LIST) form.
//!
//! The trie has one node per pattern segment: a map of literal children, a
//! `+` child, and at each node the rules that end there (exact, folder) and
//! the globs that start there. A decision walks the path once; the work is
//! bounded by the path's length and the shape of one workload's patterns,
//! never by the number of workloads.

use std::collections::HashMap;

use leash_domain::text::escape_untrusted;

use crate::MAX_QUOTED;
use crate::path::{CanonicalPath, MAX_PATH_BYTES, MAX_SEGMENT_BYTES, MAX_SEGMENTS, is_path_byte};

/// One segment of a pattern before its tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A literal segment.
    Literal(String),
    /// `+`: any one segment.
    Plus,
}

/// How a pattern ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// No `*`: the path has exactly the pieces; `folder` if written with a
    /// trailing `/`.
    Exact { folder: bool },
    /// A `*` after the pieces (and a `/`, if there are any pieces): the rest
    /// of the path must start with this text, which holds no `/`.
    Glob(String),
}

/// A parsed scope pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) tail: Tail,
}

impl Pattern {
    /// Whether some path whose first segment is `mount` can match.
    pub(crate) fn may_match_under(&self, mount: &str) -> bool {
        match (self.pieces.first(), &self.tail) {
            (Some(Piece::Literal(l)), _) => l == mount,
            (Some(Piece::Plus), _) => true,
            // `*` or `sec*`: the whole path must start with the text, which
            // holds no `/`, so the mount must.
            (None, Tail::Glob(g)) => mount.starts_with(g.as_str()),
            (None, Tail::Exact { .. }) => false,
        }
    }

    /// Whether every path `inner` matches is matched by `self` too (exact
    /// for one pattern; a union of patterns is not considered).
    pub(crate) fn covers(&self, inner: &Pattern) -> bool {
        for (j, outer) in self.pieces.iter().enumerate() {
            match (outer, inner.pieces.get(j)) {
                (Piece::Plus, Some(_)) => {}
                (Piece::Literal(o), Some(Piece::Literal(i))) if o == i => {}
                // A literal does not cover `+`; and where `inner` ends or
                // globs, `self` still needs a segment that some of its paths
                // lack.
                _ => return false,
            }
        }
        let k = self.pieces.len();
        match (&self.tail, inner.pieces.get(k)) {
            (Tail::Exact { .. }, Some(_)) => false,
            // The rest starts with `inner`'s next segment (no `/` in `g`).
            (Tail::Glob(g), Some(next)) => {
                g.is_empty() || matches!(next, Piece::Literal(l) if l.starts_with(g.as_str()))
            }
            (Tail::Exact { folder }, None) => {
                matches!(inner.tail, Tail::Exact { folder: f } if f == *folder)
            }
            (Tail::Glob(g), None) => match &inner.tail {
                Tail::Exact { folder } => *folder && g.is_empty(),
                Tail::Glob(i) => i.starts_with(g.as_str()),
            },
        }
    }

    /// Whether some path matches both patterns.
    pub(crate) fn overlaps(&self, other: &Pattern) -> bool {
        let clash = self
            .pieces
            .iter()
            .zip(&other.pieces)
            .any(|pair| matches!(pair, (Piece::Literal(a), Piece::Literal(b)) if a != b));
        if clash {
            return false;
        }
        let (short, long) = if self.pieces.len() <= other.pieces.len() {
            (self, other)
        } else {
            (other, self)
        };
        let k = short.pieces.len();
        match (&short.tail, long.pieces.get(k)) {
            (Tail::Exact { .. }, Some(_)) => false,
            (Tail::Glob(g), Some(Piece::Literal(l))) => l.starts_with(g.as_str()),
            (Tail::Glob(_), Some(Piece::Plus)) => true,
            (Tail::Exact { folder }, None) => match &long.tail {
                Tail::Exact { folder: f } => f == folder,
                Tail::Glob(g) => *folder && g.is_empty(),
            },
            (Tail::Glob(g), None) => match &long.tail {
                Tail::Exact { folder } => *folder && g.is_empty(),
                Tail::Glob(h) => g.starts_with(h.as_str()) || h.starts_with(g.as_str()),
            },
        }
    }
}

fn bad_char(b: u8) -> String {
    match b {
        b'{' | b'}' => "templates (`{{...}}`) are not supported".to_owned(),
        b'%' => "percent-encoding is not allowed; write the decoded character".to_owned(),
        b'\\' => "backslash is not allowed".to_owned(),
        0x80..=0xff => "non-ASCII characters are not allowed".to_owned(),
        0x00..=0x20 | 0x7f => format!("control or space character 0x{b:02x} is not allowed"),
        _ => format!(
            "character `{}` is not allowed (paths use A-Z a-z 0-9 - _ . @ + = , : ~)",
            char::from(b)
        ),
    }
}

fn check_chars(s: &str) -> Result<(), String> {
    match s.bytes().find(|b| !is_path_byte(*b)) {
        Some(b) => Err(bad_char(b)),
        None => Ok(()),
    }
}

fn parse_piece(s: &str) -> Result<Piece, String> {
    if s.is_empty() {
        return Err("empty segment (`//`)".to_owned());
    }
    if s == "+" {
        return Ok(Piece::Plus);
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` segments are not allowed".to_owned());
    }
    if s.len() > MAX_SEGMENT_BYTES {
        return Err(format!("segment longer than {MAX_SEGMENT_BYTES} bytes"));
    }
    check_chars(s)?;
    Ok(Piece::Literal(s.to_owned()))
}

/// Parses a scope pattern. The error is a reason for a load problem.
pub(crate) fn parse_pattern(raw: &str) -> Result<Pattern, String> {
    parse_pattern_as(raw, "scope path")
}

/// Parses a pattern of the scope grammar written as `what` (e.g. a
/// canary); the error names it.
pub(crate) fn parse_pattern_as(raw: &str, what: &str) -> Result<Pattern, String> {
    parse_inner(raw).map_err(|why| {
        format!(
            "invalid {what} `{}`: {why}",
            escape_untrusted(raw, MAX_QUOTED)
        )
    })
}

fn parse_inner(raw: &str) -> Result<Pattern, String> {
    if raw.is_empty() {
        return Err("empty pattern".to_owned());
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(format!("longer than {MAX_PATH_BYTES} bytes"));
    }
    if raw.starts_with('/') {
        return Err("a leading `/` is not allowed".to_owned());
    }
    if raw.contains("**") {
        return Err("`**` is not supported; `*` at the end already matches across `/`".to_owned());
    }
    let stars = raw.bytes().filter(|b| *b == b'*').count();
    let (body, glob) = match raw.strip_suffix('*') {
        Some(b) if stars == 1 => (b, true),
        _ if stars == 0 => (raw, false),
        _ => return Err("`*` may only appear once, as the last character".to_owned()),
    };
    let (pieces, tail) = if glob {
        let mut parts: Vec<&str> = body.split('/').collect();
        let partial = parts.pop().unwrap_or("");
        if partial == "+" {
            return Err("`+*` is ambiguous: write `+/*` or a literal prefix".to_owned());
        }
        if partial.len() > MAX_SEGMENT_BYTES {
            return Err(format!("segment longer than {MAX_SEGMENT_BYTES} bytes"));
        }
        check_chars(partial)?;
        (parts, Tail::Glob(partial.to_owned()))
    } else {
        let (b, folder) = match body.strip_suffix('/') {
            Some(b) => (b, true),
            None => (body, false),
        };
        (b.split('/').collect(), Tail::Exact { folder })
    };
    if pieces.len() > MAX_SEGMENTS {
        return Err(format!("more than {MAX_SEGMENTS} segments"));
    }
    let pieces = pieces
        .into_iter()
        .map(parse_piece)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Pattern { pieces, tail })
}

#[derive(Debug, Default, Clone)]
struct Node {
    literal: HashMap<String, Node>,
    plus: Option<Box<Node>>,
    exact: Vec<u32>,
    folder: Vec<u32>,
    globs: Vec<(String, u32)>,
}

/// A compiled set of patterns, each tagged with a rule number.
#[derive(Debug, Default, Clone)]
pub(crate) struct Matcher {
    root: Node,
}

impl Matcher {
    /// Adds `pattern` as rule `rule`.
    pub(crate) fn insert(&mut self, pattern: &Pattern, rule: u32) {
        let mut node = &mut self.root;
        for piece in &pattern.pieces {
            node = match piece {
                Piece::Literal(l) => node.literal.entry(l.clone()).or_default(),
                Piece::Plus => node.plus.get_or_insert_with(Box::default),
            };
        }
        match &pattern.tail {
            Tail::Exact { folder: false } => node.exact.push(rule),
            Tail::Exact { folder: true } => node.folder.push(rule),
            Tail::Glob(g) => node.globs.push((g.clone(), rule)),
        }
    }

    /// Calls `f` with every rule whose pattern matches `path`.
    pub(crate) fn for_each_match(&self, path: &CanonicalPath, mut f: impl FnMut(u32)) {
        let segs = path.segments();
        let text = path.as_str();
        let n = segs.len();
        let folder = path.trailing_slash();
        // (node, segments consumed, byte offset of the next segment)
        let mut stack: Vec<(&Node, usize, usize)> = vec![(&self.root, 0, 0)];
        while let Some((node, depth, offset)) = stack.pop() {
            if !node.globs.is_empty()
                && (depth < n || folder)
                && let Some(rest) = text.get(offset..)
            {
                for (g, rule) in &node.globs {
                    if rest.starts_with(g.as_str()) {
                        f(*rule);
                    }
                }
            }
            let Some(seg) = segs.get(depth) else {
                let ending = if folder { &node.folder } else { &node.exact };
                ending.iter().copied().for_each(&mut f);
                continue;
            };
            let next = offset + seg.len() + 1;
            if let Some(child) = node.literal.get(seg.as_str()) {
                stack.push((child, depth + 1, next));
            }
            if let Some(child) = &node.plus {
                stack.push((child, depth + 1, next));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::canonicalize;

    fn matches(pattern: &str, path: &str) -> bool {
        let p = parse_pattern(pattern).unwrap();
        let mut m = Matcher::default();
        m.insert(&p, 7);
        let mut hit = false;
        m.for_each_match(&canonicalize(path).unwrap(), |r| {
            assert_eq!(r, 7);
            hit = true;
        });
        hit
    }

    #[test]
    fn folder_glob() {
        assert!(matches("secret/payments/*", "secret/payments/db"));
        assert!(matches("secret/payments/*", "secret/payments/a/b"));
        assert!(matches("secret/payments/*", "secret/payments/"));
        assert!(matches("secret/payments/*", "secret/payments/a/"));
        assert!(!matches("secret/payments/*", "secret/payments"));
        assert!(!matches("secret/payments/*", "secret/paymentsx/db"));
        assert!(!matches("secret/payments/*", "secret/"));
        assert!(!matches("secret/payments/*", "secret"));
        assert!(!matches("secret/payments/*", "Secret/payments/db"));
    }

    #[test]
    fn prefix_glob_surprise() {
        // Catalogue item 25.
        assert!(matches("secret/foo*", "secret/foobar"));
        assert!(matches("secret/foo*", "secret/foo"));
        assert!(matches("secret/foo*", "secret/foo/bar"));
        assert!(matches("secret/pay*", "secret/payments/x"));
        assert!(!matches("secret/foo*", "secret/fo"));
        assert!(!matches("secret/foo*", "secret/"));
        assert!(!matches("secret/bar/*", "secret/bars/zip"));
        assert!(matches("secret/bar*", "secret/bars/zip"));
    }

    #[test]
    fn plus_and_exact() {
        assert!(matches("secret/+/db", "secret/payments/db"));
        assert!(!matches("secret/+/db", "secret/a/b/db"));
        assert!(!matches("secret/+/db", "secret/db"));
        assert!(matches("secret/+/+/foo/*", "secret/a/b/foo/x"));
        assert!(!matches("secret/+/+/foo/*", "secret/a/foo/x"));
        assert!(matches("+/x", "kv/x"));
        assert!(matches("secret/+", "secret/a"));
        assert!(!matches("secret/+", "secret/a/"));
        assert!(matches("secret/+/", "secret/a/"));
        assert!(!matches("secret/+/", "secret/a"));
        assert!(matches("secret/db", "secret/db"));
        assert!(!matches("secret/db", "secret/db/"));
        assert!(!matches("secret/db", "secret/db/x"));
        assert!(matches("secret/a+b", "secret/a+b"));
        assert!(!matches("secret/a+b", "secret/axb"));
        assert!(matches("secret/+/*", "secret/a/"));
        assert!(matches("secret/+/*", "secret/a/b/c"));
        assert!(!matches("secret/+/*", "secret/a"));
    }

    #[test]
    fn star_alone_and_root_prefix() {
        assert!(matches("*", "secret/x"));
        assert!(matches("*", "a"));
        assert!(matches("sec*", "secret/x"));
        assert!(!matches("sec*", "kv/x"));
    }

    #[test]
    fn regex_metacharacters_are_literal_or_rejected() {
        // Catalogue item 26.
        assert!(matches("secret/a.b", "secret/a.b"));
        assert!(!matches("secret/a.b", "secret/axb"));
        for bad in [
            "secret/a(b)",
            "secret/[ab]",
            "secret/a$",
            "secret/^a",
            "secret/a?",
            "secret/a|b",
            "secret/.+",
        ] {
            if bad == "secret/.+" {
                // `.+` is an ordinary (literal) name.
                assert!(matches(bad, "secret/.+"));
                assert!(!matches(bad, "secret/xx"));
                continue;
            }
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejected_patterns() {
        // Catalogue items 26 and 29.
        for (bad, why) in [
            ("", "empty"),
            ("secret/*/db", "last character"),
            ("secret/a*b", "last character"),
            ("secret/**", "`**`"),
            ("**", "`**`"),
            ("*/x", "last character"),
            ("secret//a", "empty segment"),
            ("secret//*", "empty segment"),
            ("/secret/*", "leading"),
            ("secret/../admin/*", "`..`"),
            ("secret/./x", "`..`"),
            ("secret/+*", "ambiguous"),
            ("secret/{{identity.entity.id}}/*", "templates"),
            ("secret/%2e%2e/*", "percent"),
            ("secret/a b", "space"),
            ("secret/caf\u{e9}", "non-ASCII"),
            ("secret/a\\b", "backslash"),
            ("secret/a\0", "control"),
        ] {
            let e = parse_pattern(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.starts_with("invalid scope path `"), "{e}");
        }
        assert!(parse_pattern(&"a/".repeat(600)).is_err());
        assert!(parse_pattern(&vec!["a"; 65].join("/")).is_err());
    }

    #[test]
    fn covers_and_overlaps_agree_with_the_matcher() {
        // Every path over a small alphabet, up to four segments, both forms.
        let alphabet = ["a", "ab", "b", "x"];
        let mut paths: Vec<String> = Vec::new();
        let mut level: Vec<String> = alphabet.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..4 {
            paths.extend(level.iter().cloned());
            level = level
                .iter()
                .flat_map(|p| alphabet.iter().map(move |s| format!("{p}/{s}")))
                .collect();
        }
        let paths: Vec<CanonicalPath> = paths
            .iter()
            .flat_map(|p| [p.clone(), format!("{p}/")])
            .map(|p| canonicalize(&p).unwrap())
            .collect();
        let patterns = [
            "*", "a*", "a/*", "a/", "a", "a/b", "a/b/", "a/b*", "a/a*", "a/ab*", "+", "+/", "+/*",
            "a/+", "a/+/", "a/+/*", "+/b", "+/b/*", "a/+/b", "ab/*", "a/b/*", "+/+/+", "x/+/a*",
        ];
        let matched = |pat: &str| -> Vec<bool> {
            let p = parse_pattern(pat).unwrap();
            let mut m = Matcher::default();
            m.insert(&p, 0);
            paths
                .iter()
                .map(|path| {
                    let mut hit = false;
                    m.for_each_match(path, |_| hit = true);
                    hit
                })
                .collect()
        };
        for outer in patterns {
            let o = matched(outer);
            for inner in patterns {
                let i = matched(inner);
                let subset = i.iter().zip(&o).all(|(i, o)| !*i || *o);
                let meet = i.iter().zip(&o).any(|(i, o)| *i && *o);
                let (po, pi) = (parse_pattern(outer).unwrap(), parse_pattern(inner).unwrap());
                assert_eq!(po.covers(&pi), subset, "{outer} covers {inner}");
                assert_eq!(po.overlaps(&pi), meet, "{outer} overlaps {inner}");
                assert_eq!(pi.overlaps(&po), meet, "{inner} overlaps {outer}");
            }
        }
    }

    #[test]
    fn mount_preflight() {
        let p = |s| parse_pattern(s).unwrap();
        assert!(p("secret/payments/*").may_match_under("secret"));
        assert!(!p("secret/payments/*").may_match_under("kv"));
        assert!(p("+/x").may_match_under("kv"));
        assert!(p("*").may_match_under("kv"));
        assert!(p("sec*").may_match_under("secret"));
        assert!(!p("sec*").may_match_under("se"));
    }
}
