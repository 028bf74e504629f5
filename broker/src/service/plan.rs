//! [`Pending`]: what a route hands back to be committed — the request's
//! mutation, if it changes state, and how to answer once its unit has
//! committed ([`Answer`]).
//!
//! Must never happen: an answer that depends on the commit (a count, a
//! version) guessed before it; a reply released for a unit whose mutation
//! did not apply.

use chrono::{DateTime, Utc};
use leash_domain::{Mutation, Outcome};

use super::IfNotApplied;
use crate::wire::{Envelope, KvMetadata, Reply};

/// A route's result, to be committed with the request's audit event.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The request's own change of state, if any.
    pub(crate) mutation: Option<Mutation>,
    /// What the caller gets once the unit has committed.
    pub(crate) answer: Answer,
    /// What the caller gets if the mutation's condition fails at commit.
    pub(crate) if_not_applied: IfNotApplied,
}

/// How to answer once the unit has committed.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A reply complete before the commit.
    Reply(Reply),
    /// `{"revoked": N}`: the rows the mutation changed.
    Count,
    /// `{"applied": N}`: the quarantines the mutation placed or released.
    Applied,
    /// KV v2 write metadata with the version the store assigned.
    Written,
}

impl Pending {
    /// Answers `reply`; nothing to change.
    pub(crate) fn reply(reply: Reply) -> Self {
        Self {
            mutation: None,
            answer: Answer::Reply(reply),
            if_not_applied: IfNotApplied::Denied,
        }
    }

    /// Applies `mutation`, then answers `answer`; `if_not_applied` is the
    /// answer if its condition fails.
    pub(crate) fn mutate(mutation: Mutation, answer: Answer, if_not_applied: IfNotApplied) -> Self {
        Self {
            mutation: Some(mutation),
            answer,
            if_not_applied,
        }
    }
}

impl Answer {
    /// The status the audit event records for an allowed request.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Answer::Reply(r) => r.status(),
            Answer::Count | Answer::Applied | Answer::Written => 200,
        }
    }

    /// The reply for a unit committed with `outcome` (which applied).
    pub(crate) fn render(self, request_id: &str, time: DateTime<Utc>, outcome: Outcome) -> Reply {
        match (self, outcome) {
            (Answer::Reply(r), _) => r,
            (Answer::Count, Outcome::Applied { affected }) => Reply::json(
                200,
                &Envelope::data(request_id, leash_api::Revoked { revoked: affected }),
            ),
            (Answer::Applied, Outcome::Applied { affected }) => Reply::json(
                200,
                &Envelope::data(request_id, leash_api::Applied { applied: affected }),
            ),
            (Answer::Written, Outcome::Written { version }) => Reply::json(
                200,
                &Envelope::data(request_id, KvMetadata::written(time, version)),
            ),
            // The store answered another outcome than the mutation's kind
            // gives; nothing to report beyond success.
            (Answer::Count | Answer::Applied | Answer::Written, _) => Reply::Empty { status: 200 },
        }
    }
}
