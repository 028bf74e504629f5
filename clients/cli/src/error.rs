//! Exit codes and the CLI's error type. Messages never hold a token, a JWT
//! or secret data: they come from the client's errors, which carry none.

use std::fmt;
use std::process::ExitCode;

use leash_client::ClientError;

/// How `leash` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: the broker refused, or a check (audit verify) failed.
    Refused,
    /// 2: a usage error, or the broker could not be reached or understood.
    Usage,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Refused => 1,
            Exit::Usage => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// A client call failed: a broker refusal (exit 1) or a transport,
    /// decoding or input problem (exit 2).
    Client(ClientError),
    /// Bad input on our side: a missing token, an unreadable file, a bad
    /// path (exit 2).
    Usage(String),
    /// Something that must exit 2 whatever its cause (e.g. `audit verify`
    /// could not ask the broker).
    Other(String),
    /// Writing the output failed (exit 2).
    Output(std::io::Error),
}

impl CliError {
    /// The exit code this error maps to.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Client(ClientError::Api { .. }) => Exit::Refused,
            CliError::Client(_) | CliError::Usage(_) | CliError::Other(_) | CliError::Output(_) => {
                Exit::Usage
            }
        }
    }
}

impl fmt::Display for CliError {
    /// The message with its cause chain, each cause once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Client(e) => f.write_str(&with_causes(e)),
            CliError::Usage(m) | CliError::Other(m) => f.write_str(m),
            CliError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Output(e)
    }
}

/// `error: cause: cause`, skipping a cause whose text the message already
/// holds (thiserror's `{0}` plus `#[from]` would otherwise repeat it).
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let api = CliError::Client(ClientError::Api {
            status: 403,
            errors: vec!["permission denied".into()],
        });
        assert_eq!(api.exit(), Exit::Refused);
        assert_eq!(api.to_string(), "HTTP 403: permission denied");
        assert_eq!(
            CliError::Client(ClientError::Decode("x".into())).exit(),
            Exit::Usage
        );
        assert_eq!(CliError::Usage("x".into()).exit(), Exit::Usage);
        assert_eq!(CliError::Other("x".into()).exit(), Exit::Usage);
        assert_eq!(
            [Exit::Ok, Exit::Refused, Exit::Usage].map(Exit::code),
            [0, 1, 2]
        );
    }

    #[test]
    fn causes_are_listed_once() {
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connection refused")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner, bool);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.1 {
                    write!(f, "request failed: {}", self.0)
                } else {
                    f.write_str("request failed")
                }
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            with_causes(&Outer(Inner, true)),
            "request failed: connection refused"
        );
        assert_eq!(
            with_causes(&Outer(Inner, false)),
            "request failed: connection refused"
        );
    }
}
