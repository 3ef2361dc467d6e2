//! Invocations that follow the transaction: queued in
//! `lambda_fdw.invocations` inside the caller's transaction (`enqueue`, and
//! INSERT into a foreign table), sent after COMMIT by a background worker
//! (`worker`), which the commit wakes (`wake`).

pub(crate) mod enqueue;
pub(crate) mod table;
pub(crate) mod wake;
pub(crate) mod worker;
