//! Invocation statistics across backends: a bounded hash table in shared
//! memory (like pg_stat_statements), one entry per database, role, server
//! and function, read through `lambda_fdw.stat_invocations`.
//!
//! It exists only when the library is in `shared_preload_libraries`; without
//! it nothing is counted, invocations work as ever, and reading the view is
//! an error that says so. Every path that invokes (foreign-table scans,
//! `aws_lambda.invoke`, the queue worker) drains its [`CallLog`] here, on
//! the process's main thread.
//!
//! What it offers:
//! - [`init_preloaded`]: from `_PG_init` while preloading, asks for the
//!   shared table (its size is `lambda_fdw.stat_max_entries`, a setting of
//!   `settings::guc`);
//! - [`record`], [`record_log`] and [`Caller`]: counting finished calls;
//! - the SQL-callable functions behind `lambda_fdw.stat_invocations` and
//!   `lambda_fdw.stat_invocations_reset()` (`view`).
//!
//! Inside, one concern per file, each importing only those before it:
//! `entry` (what an entry holds), `shmem` (the shared table, its hooks and
//! its lock rules), `record` (what a call adds), `view` (the SQL functions).
//!
//! [`CallLog`]: lambda_fdw_core::CallLog

mod entry;
mod record;
mod shmem;
mod view;

pub(crate) use record::{record, record_log, Caller};
pub(crate) use shmem::init_preloaded;
