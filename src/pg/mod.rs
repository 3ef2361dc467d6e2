//! PostgreSQL glue under the settings and the surfaces: catalog lookups
//! without SQL, datum conversions, and the interrupt hooks the core polls.
//! Nothing here imports a surface or the settings layer.
//!
//! What it offers:
//! - [`catalog`]: servers, user mappings, foreign tables and privileges,
//!   read from the syscache and catalog scans;
//! - [`convert`]: json/jsonb datums from and to Rust bytes;
//! - [`origin`]: the instance, database, statement and request ids that
//!   batch metadata carries;
//! - [`holds`]: the throttling holds' table in shared memory, shared by
//!   every backend and the queue worker when preloaded;
//! - [`PG_INTERRUPTS`]: query cancel and termination for the core's waits.

pub(crate) mod catalog;
pub(crate) mod convert;
pub(crate) mod holds;
mod interrupts;
pub(crate) mod origin;

pub(crate) use interrupts::PG_INTERRUPTS;
