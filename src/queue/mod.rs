//! Invocations that follow the transaction: queued in
//! `lambda_fdw.invocations` inside the caller's transaction, sent after
//! COMMIT by a background worker, which the commit wakes.
//!
//! What the queue offers the rest of the extension (all its modules are
//! private):
//! - `lambda_fdw.enqueue` (SQL), and [`queue`] / [`check_queued`] /
//!   [`Queued`] for INSERT into a foreign table (fdw/modify.rs);
//! - [`resolve_callback`]: the function a foreign table's `on_complete`
//!   option names (`callback` checks and calls callbacks);
//! - `lambda_fdw.retry`, `lambda_fdw.retry_failed` and `lambda_fdw.cancel`
//!   (SQL; `operations`);
//! - [`init_preloaded`] and [`preloaded`]: the shared memory (each
//!   database's worker) and the commit callback that wakes it;
//! - [`register_launcher`], from `_PG_init`, and the background workers'
//!   entry points (`lambda_fdw_launcher_main`, `lambda_fdw_queue_main`,
//!   found by name).
//!
//! Inside, as pg_net splits worker.c from core.c, imports pointing down:
//! - `worker`: the queue worker's lifecycle, its entry point and loop;
//!   `launcher`: the launcher, which starts one in every database with the
//!   extension; `database`: the databases listed, and whether one is being
//!   dropped, renamed or copied;
//! - `round`: one round in its transaction;
//! - `send`: the calls in flight, on their own runtime;
//! - `batch`: batched sends: the rows of a foreign table that batches,
//!   grouped into requests, and each row's outcome from its batch's;
//! - `signing`: each claimed row's request and signing, checked again;
//! - `sql`: the worker's statements on the queue table;
//! - `outcome`: what happened to a row ([`retry::decide`] deciding
//!   retries, as for every caller);
//! - `transaction`: transactions that report instead of ending the worker;
//! - `table`: the queue table as the extension made it, the pinned
//!   search_path and the owner's identity;
//! - `signals`, `state` (the row states of the CHECK constraint), `error`
//!   (the worker's error type): leaves.
//!
//! [`retry::decide`]: lambda_fdw_core::retry::decide

mod batch;
mod callback;
mod database;
mod error;
mod launcher;
mod outcome;
mod round;
mod send;
mod signals;
mod signing;
mod sql;
mod state;
mod table;
mod transaction;

mod enqueue;
mod operations;
mod wake;
mod worker;

pub(crate) use callback::resolve as resolve_callback;
pub(crate) use enqueue::{check_queued, queue, Queued};
pub(crate) use launcher::register_launcher;
pub(crate) use wake::init_preloaded;
#[cfg(any(test, feature = "pg_test"))]
pub(crate) use wake::preloaded;
