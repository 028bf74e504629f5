//! Progress lines on stderr (`say!`), stamped with the seconds since the
//! first one.
//!
//! Must never happen: a progress line on stdout (the report goes there), or
//! one printed when the run was asked to be quiet (`Options::progress`).

use std::time::Instant;

/// When the first progress line was printed.
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Seconds since the first progress line.
pub(crate) fn elapsed() -> f64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Prints a progress line to stderr if `$opts.progress`.
macro_rules! say {
    ($opts:expr, $($arg:tt)*) => {
        if $opts.progress {
            eprintln!("leash-bench [{:>6.1}s] {}", $crate::progress::elapsed(), format_args!($($arg)*));
        }
    };
}
