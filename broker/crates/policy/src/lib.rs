//! Leash policies: canonical secret paths, the workload model, loading
//! policy files with file/line problems, and the compiled scope matcher.
//!
//! Nothing in this crate may do I/O on the request path: only
//! [`PolicySet::load_dir`] reads files, when a set is loaded; every decision
//! ([`Workload::decide`], [`Workload::check_claims`],
//! [`Workload::check_conditions`], [`AppRoleLogin::secret_matches`],
//! [`AppRoleLogin::allows_source`]) is pure and takes the time and the peer
//! as arguments. Decisions deny by default and an explicit deny always wins;
//! a refusal is a [`Denial`] naming its kind (and the deny scope that
//! matched), rendered to text only by its `Display`. A workload logs in
//! with a JWT or with AppRole ([`Login`], one variant per method; AppRole
//! workloads are found through [`PolicySet::workload_by_role_id`]); an
//! AppRole secret id is known only by its SHA-256 digest, compared in
//! constant time and never printed. Durations and escaped text use the
//! domain crate's one grammar and one escaper.
//! A [`Grant`] can only come from [`Workload::decide`] or from an
//! [`Admitted`] workload (whose conditions [`Workload::admit`] checked once
//! for the request), or the grep-able test bypass
//! [`unchecked_grant_for_tests`].

pub mod capability;
pub mod claims;
pub mod conditions;
pub mod denial;
pub mod detection;
pub mod duration;
pub mod load;
pub mod login;
pub mod path;
mod pattern;
pub mod set;
pub mod workload;

pub use capability::{Capability, UnknownCapability};
pub use claims::BoundClaim;
pub use conditions::{Conditions, TimeWindow};
pub use denial::Denial;
pub use detection::{
    DetectionPolicy, DetectorKind, EnumerationRule, EventRule, Response, RevokeScope,
    ThresholdRule, VolumeRule,
};
pub use duration::{DurationError, parse_duration};
pub use load::{LoadContext, Problem};
pub use login::{AppRoleLogin, JwtLogin, Login, LoginMethod};
pub use path::{CanonicalPath, PathError, canonicalize};
pub use set::PolicySet;
pub use workload::{Admitted, Grant, LeaseLimits, Scope, Workload, unchecked_grant_for_tests};

/// Longest rendering of a value quoted in a problem or a denial (a name, a
/// claim, a pattern), in bytes of escaped output; the rest is cut with `…`.
pub(crate) const MAX_QUOTED: usize = 128;

/// Longest parser or operating-system message kept in a problem, in bytes
/// of escaped output.
pub(crate) const MAX_MESSAGE: usize = 512;
