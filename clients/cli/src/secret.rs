//! Reads a token or a JWT from the environment, a file or stdin.
//!
//! The value is never echoed: errors name the source, not the content.
//! Surrounding whitespace (a trailing newline) is dropped; anything that
//! still holds whitespace or control characters is refused.

use std::io::Read;
use std::path::Path;

use crate::CliError;

/// Files larger than this are not a token or a JWT.
const MAX_LEN: u64 = 64 * 1024;

/// Reads a secret from `path`, or from `stdin` when `path` is `-`.
pub(crate) fn read_secret(
    path: &Path,
    what: &str,
    stdin: &mut dyn Read,
) -> Result<String, CliError> {
    let (source, bytes) = if path.as_os_str() == "-" {
        ("stdin".to_owned(), read_limited(stdin, what, "stdin")?)
    } else {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path)
            .map_err(|e| CliError::Usage(format!("cannot read the {what} from {shown}: {e}")))?;
        let bytes = read_limited(&mut &file, what, &shown)?;
        (shown, bytes)
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("the {what} in {source} is not UTF-8")))?;
    clean(&text, what, &source)
}

/// The token from `LEASH_TOKEN`, or `--token-file` (which wins when given).
pub(crate) fn resolve_token(
    token_file: Option<&Path>,
    env_token: Option<&str>,
    stdin: &mut dyn Read,
) -> Result<String, CliError> {
    match (token_file, env_token) {
        (Some(path), _) => read_secret(path, "token", stdin),
        (None, Some(t)) if !t.trim().is_empty() => clean(t, "token", "LEASH_TOKEN"),
        _ => Err(CliError::Usage(
            "no token: set LEASH_TOKEN or pass --token-file PATH (`-` reads stdin)".into(),
        )),
    }
}

fn read_limited(r: &mut dyn Read, what: &str, source: &str) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    r.take(MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Usage(format!("cannot read the {what} from {source}: {e}")))?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(CliError::Usage(format!(
            "the {what} in {source} is larger than {MAX_LEN} bytes"
        )));
    }
    Ok(bytes)
}

fn clean(text: &str, what: &str, source: &str) -> Result<String, CliError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(CliError::Usage(format!("the {what} in {source} is empty")));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::Usage(format!(
            "the {what} in {source} holds whitespace or control characters"
        )));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_stdin_and_files_trimmed() {
        let mut stdin: &[u8] = b"  tok-123\n";
        assert_eq!(
            read_secret(Path::new("-"), "token", &mut stdin).unwrap(),
            "tok-123"
        );
        let dir = std::env::temp_dir().join(format!("leash-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwt");
        std::fs::File::create(&file)
            .unwrap()
            .write_all(b"a.b.c\r\n")
            .unwrap();
        let mut empty: &[u8] = b"";
        assert_eq!(read_secret(&file, "JWT", &mut empty).unwrap(), "a.b.c");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_bad_input_without_echoing_it() {
        for bad in [&b""[..], b" \n", b"two\nlines", b"a b", b"\xff\xfe"] {
            let mut stdin = bad;
            let err = read_secret(Path::new("-"), "token", &mut stdin).unwrap_err();
            assert_eq!(err.exit(), crate::Exit::Usage);
            assert!(!err.to_string().contains("lines"), "{err}");
        }
        let big = vec![b'a'; 70 * 1024];
        let mut stdin = &big[..];
        assert!(read_secret(Path::new("-"), "token", &mut stdin).is_err());
        let err =
            read_secret(Path::new("/nonexistent/leash/tok"), "token", &mut &b""[..]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/leash/tok"));
    }

    #[test]
    fn token_resolution_order() {
        let mut stdin: &[u8] = b"from-stdin\n";
        assert_eq!(
            resolve_token(Some(Path::new("-")), Some("from-env"), &mut stdin).unwrap(),
            "from-stdin"
        );
        let mut none: &[u8] = b"";
        assert_eq!(
            resolve_token(None, Some("from-env\n"), &mut none).unwrap(),
            "from-env"
        );
        let err = resolve_token(None, None, &mut none).unwrap_err();
        assert!(err.to_string().contains("LEASH_TOKEN"));
        assert!(resolve_token(None, Some("  "), &mut none).is_err());
    }
}
