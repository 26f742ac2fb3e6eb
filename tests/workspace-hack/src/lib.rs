//! No code: see this crate's `Cargo.toml` (its dependencies unify the
//! features of `cargo build` and `cargo test`).
