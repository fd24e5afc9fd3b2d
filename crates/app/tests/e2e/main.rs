//! End-to-end tests: each starts its own Rampart on 127.0.0.1 over real
//! HTTPS, on its own database. One test binary for link-time's sake.

mod accounts;
mod acme;
mod audit;
mod backup;
mod browser;
mod brute_force;
mod connections;
mod console;
mod data;
mod detect;
mod drill;
mod errors;
mod events;
mod guard;
mod incident;
mod install;
mod keys;
mod layers;
mod lifecycle;
mod limits;
mod mfa;
mod openapi;
mod postgres;
mod process;
mod scan;
mod sessions;
mod setup;
mod sinks;
mod stream;
mod support;
mod transport;
