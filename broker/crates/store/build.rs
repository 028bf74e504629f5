//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the
//! migration files at compile time. Nothing here may read or write anything
//! but Cargo's rerun directives.

fn main() {
    println!("cargo:rerun-if-changed=../../../migrations/postgres");
    println!("cargo:rerun-if-changed=../../../migrations/sqlite");
}
