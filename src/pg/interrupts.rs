//! How the invocation core learns of query cancel, statement_timeout and
//! termination: PostgreSQL's interrupt flag, and CHECK_FOR_INTERRUPTS.

use lambda_fdw_core::Interrupts;
use pgrx::pg_sys;

fn interrupt_pending() -> bool {
    // SAFETY: InterruptPending is a sig_atomic_t flag that PostgreSQL's signal
    // handlers set; reading it from the main thread is what CHECK_FOR_INTERRUPTS does.
    unsafe { pg_sys::InterruptPending != 0 }
}

fn process_interrupts() {
    pgrx::check_for_interrupts!();
}

/// How the core learns of query cancel, statement_timeout and termination.
pub(crate) const PG_INTERRUPTS: Interrupts = Interrupts {
    pending: interrupt_pending,
    process: process_interrupts,
};
