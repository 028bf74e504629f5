//! `leash detections …` and `leash identity …`: containment's operator
//! commands, through the client's containment calls.

use leash_client::{IdentityRef, LeashClient, QuarantineRequest};
use serde_json::json;

use super::{Console, print, to_json};
use crate::output;
use crate::{CliError, DetectionsCommand, Exit, IdentityArgs, IdentityCommand, OutputFormat};

impl From<IdentityArgs> for IdentityRef {
    fn from(a: IdentityArgs) -> Self {
        IdentityRef {
            workload: a.workload,
            issuer: a.issuer,
            subject: a.subject,
        }
    }
}

pub(super) async fn detections_cmd(
    cmd: DetectionsCommand,
    client: &LeashClient,
    fmt: OutputFormat,
    c: &mut Console<'_>,
) -> Result<Exit, CliError> {
    match cmd {
        DetectionsCommand::List { after, limit } => {
            let page = client.detections(after, limit).await?;
            print(
                c,
                fmt,
                || page.detections.iter().map(output::detection_line).collect(),
                || to_json(&page),
            )?;
            Ok(Exit::Ok)
        }
        DetectionsCommand::Show { id } => match client.detection(&id).await? {
            Some(d) => {
                print(c, fmt, || output::detection_text(&d), || to_json(&d))?;
                Ok(Exit::Ok)
            }
            None => {
                use std::io::Write as _;
                writeln!(
                    c.stderr,
                    "leash: no detection with id {}",
                    output::sanitize(&id)
                )?;
                Ok(Exit::Refused)
            }
        },
    }
}

pub(super) async fn identity_cmd(
    cmd: IdentityCommand,
    client: &LeashClient,
    fmt: OutputFormat,
    c: &mut Console<'_>,
) -> Result<Exit, CliError> {
    match cmd {
        IdentityCommand::Show { who } => {
            let v = client.identity(&who.into()).await?;
            print(c, fmt, || output::identity_text(&v), || to_json(&v))?;
        }
        IdentityCommand::Quarantine {
            who,
            reason,
            duration,
        } => {
            let req = QuarantineRequest {
                workload: who.workload,
                issuer: who.issuer,
                subject: who.subject,
                reason,
                duration,
            };
            let n = client.quarantine(&req).await?;
            print(
                c,
                fmt,
                || output::quarantine_result(n),
                || json!({ "applied": n }),
            )?;
        }
        IdentityCommand::Release { who } => {
            let n = client.release(&who.into()).await?;
            print(
                c,
                fmt,
                || format!("released {n} quarantine(s)\n"),
                || json!({ "applied": n }),
            )?;
        }
    }
    Ok(Exit::Ok)
}
