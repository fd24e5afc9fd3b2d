//! The commands of the `rampart` binary that have a module of their own
//! (the older ones are still in `main.rs`).

pub mod accounts;
pub mod drill;
pub mod incident;
pub mod install;
