//! What the background workers' signal handlers and latch say, and how long
//! they sleep at most: the launcher and the queue worker both look here
//! between their steps.

use std::time::Duration;

use pgrx::pg_sys;

/// Longest sleep between two looks (at the queue, or for the database).
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// SIGTERM asked the process to exit.
pub(crate) fn shutdown_requested() -> bool {
    // SAFETY: a sig_atomic_t flag that the SIGTERM handler sets.
    unsafe { std::ptr::read_volatile(&raw const pg_sys::ShutdownRequestPending) != 0 }
}

/// The process's latch is set (a commit that queued, or a signal).
pub(crate) fn latch_set() -> bool {
    // SAFETY: MyLatch is this process's own latch; is_set is a sig_atomic_t.
    unsafe { std::ptr::read_volatile(&raw const (*pg_sys::MyLatch).is_set) != 0 }
}

/// Reloads the configuration file if SIGHUP asked for it.
pub(crate) fn reload_config_if_asked() {
    // SAFETY: the SIGHUP handler sets ConfigReloadPending; reloading the
    // configuration file between transactions is what it asks for.
    unsafe {
        if std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}
