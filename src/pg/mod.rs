//! PostgreSQL glue under the settings and the surfaces: catalog lookups
//! without SQL, datum conversions, and the interrupt hooks the core polls.
//! Nothing here imports a surface or the settings layer.
//!
//! What it offers:
//! - [`catalog`]: servers, user mappings, foreign tables and privileges,
//!   read from the syscache and catalog scans;
//! - [`convert`]: json/jsonb datums from and to Rust bytes;
//! - [`instance`]: what names this instance and its database in a batch's
//!   metadata ([`instance::cluster_label`], one rule for scan and queue);
//! - [`PG_INTERRUPTS`]: query cancel and termination for the core's waits.

pub(crate) mod catalog;
pub(crate) mod convert;
pub(crate) mod instance;
mod interrupts;

pub(crate) use interrupts::PG_INTERRUPTS;
