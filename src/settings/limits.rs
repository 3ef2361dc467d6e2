//! Every range a setting or an option accepts, written once: the option
//! validators (`super::options`) and the GUC definitions (`super::guc`) both
//! read them here.

pub(crate) use lambda_fdw_core::settings::MAX_TIMEOUT_MS;

/// Most attempts per invocation: the server option `max_attempts`.
pub(crate) const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// Most invocations in flight: the server and table option
/// `max_concurrency`, and the setting `lambda_fdw.queue_concurrency`.
pub(crate) const MAX_CONCURRENCY_LIMIT: usize = 1000;
/// Upper bound of `lambda_fdw.max_queue_workers`: the places in shared
/// memory (src/queue/wake.rs).
pub(crate) const MAX_QUEUE_WORKERS_LIMIT: usize = 64;

/// Most rows per invocation: the table option `batch_size` (Redshift's
/// own batches are bounded by bytes, 5 MB, not rows; 10,000 rows of a
/// 6 MB request leave each row about 600 bytes).
pub(crate) const MAX_BATCH_SIZE: usize = 10_000;

/// Default of `lambda_fdw.max_scan_invocations`.
pub(crate) const DEFAULT_MAX_SCAN_INVOCATIONS: i32 = 10_000;

/// The longest ordering key of a queued invocation, in bytes (SQS FIFO's
/// message group ids are at most 128 characters; a key is usually an id).
pub(crate) const MAX_ORDERING_KEY_BYTES: usize = 1024;
