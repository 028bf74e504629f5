//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds
//! Leash's migration files (the storage ceiling's scratch database applies
//! them) at compile time. Nothing here may read or write anything but
//! Cargo's rerun directives.

fn main() {
    println!("cargo:rerun-if-changed=../migrations/postgres");
}
