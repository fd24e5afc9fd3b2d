//! All SQL of Rampart, for SQLite and PostgreSQL.
//!
//! Both back ends share one implementation of [`rampart_core::Store`]
//! ([`SqlStore`]) over sqlx's `Any` driver: the query text is the same for
//! both (numbered `$N` parameters, standard SQL), and everything that does
//! differ (connection set-up, pragmas, migrations) lives in [`dialect`].
//! Every statement binds its inputs; none is built from input strings.

mod acme;
mod alerts;
mod audit;
mod backup;
mod data;
mod dialect;
mod fast_read;
mod incident;
mod lifecycle;
mod scan;
mod sql;

pub use backup::TABLES;
pub use dialect::{legacy_key_checks, open, open_as_is, Dialect, OpenError, SCHEMA_VERSION};
pub use fast_read::sqlite_path;
pub use sql::SqlStore;
