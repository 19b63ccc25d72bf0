//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! files it finds at compile time, but only tells Cargo about files that
//! already existed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
