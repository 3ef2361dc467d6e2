//! Invocations that follow the transaction: queued in
//! `lambda_fdw.invocations` inside the caller's transaction (`enqueue`, and
//! INSERT into a foreign table), sent after COMMIT by a background worker
//! (`worker`), which the commit wakes (`wake`).

pub mod enqueue;
pub mod table;
pub mod wake;
pub mod worker;
