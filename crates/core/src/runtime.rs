//! The per-backend async runtime and an interruptible `block_on`.
//!
//! A backend is single-threaded: we drive futures on a current-thread tokio
//! runtime from the backend's main thread. While waiting we wake every
//! [`INTERRUPT_POLL`] to ask the SQL layer whether an interrupt (query cancel,
//! `statement_timeout`, termination) is pending; if so the future is left
//! where it is and the SQL layer processes the interrupt on the main thread,
//! which normally raises an error and drops the future.

use std::cell::OnceCell;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

use crate::error::{CoreError, CoreResult};

/// How often a waiting call checks for a pending interrupt.
pub const INTERRUPT_POLL: Duration = Duration::from_millis(10);

/// How the SQL layer tells the core about interrupts, without the core
/// knowing about PostgreSQL.
#[derive(Clone, Copy)]
pub struct Interrupts {
    /// True when an interrupt is waiting to be processed.
    pub pending: fn() -> bool,
    /// Processes pending interrupts; may not return (raises an error).
    pub process: fn(),
}

impl Interrupts {
    /// For code outside a backend (unit tests, tools): never interrupted.
    pub const NONE: Interrupts = Interrupts {
        pending: || false,
        process: || {},
    };
}

thread_local! {
    static RUNTIME: OnceCell<Runtime> = const { OnceCell::new() };
}

/// Blocks every signal in the calling thread, so that signals meant for the
/// backend (cancel, timeout, terminate) are never delivered to a runtime thread.
fn block_all_signals() {
    // SAFETY: sigfillset/pthread_sigmask only write to the local set and the
    // calling thread's mask; both are plain libc calls with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn build_runtime() -> CoreResult<Runtime> {
    Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .on_thread_start(block_all_signals)
        .thread_name("lambda_fdw-blocking")
        .build()
        .map_err(|e| CoreError::Runtime(e.to_string()))
}

/// A multi-threaded runtime for a background worker that sends many calls
/// at once: the SDK's per-call work (signing, HTTP) runs on `threads`
/// threads of its own while the worker's main thread does its SQL. Its
/// threads block every signal, as the backend's runtime thread does.
pub fn sending_runtime(threads: usize) -> CoreResult<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_io()
        .enable_time()
        .on_thread_start(block_all_signals)
        .thread_name("lambda_fdw-sender")
        .build()
        .map_err(|e| CoreError::Runtime(e.to_string()))
}

fn with_runtime<R>(f: impl FnOnce(&Runtime) -> R) -> CoreResult<R> {
    RUNTIME.with(|cell| {
        if cell.get().is_none() {
            let rt = build_runtime()?;
            let _ = cell.set(rt);
        }
        let rt = cell
            .get()
            .ok_or_else(|| CoreError::Runtime("runtime missing after creation".into()))?;
        Ok(f(rt))
    })
}

async fn until_interrupt(pending: fn() -> bool) {
    loop {
        tokio::time::sleep(INTERRUPT_POLL).await;
        if pending() {
            return;
        }
    }
}

/// Runs `fut` to completion on the backend's runtime, processing interrupts
/// while it waits. If processing an interrupt raises an error, `fut` is
/// dropped during unwinding, which closes its connection.
pub fn block_on<F: Future>(fut: F, interrupts: &Interrupts) -> CoreResult<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let done = with_runtime(|rt| {
            rt.block_on(async {
                tokio::select! {
                    biased;
                    out = fut.as_mut() => Some(out),
                    _ = until_interrupt(interrupts.pending) => None,
                }
            })
        })?;
        match done {
            Some(out) => return Ok(out),
            // Outside the runtime now: only our own frames are on the stack.
            None => (interrupts.process)(),
        }
    }
}

/// Runs `fut` on the backend's runtime until it completes (`Some`) or
/// `stop` says to stop waiting (`None`; `fut` is dropped). `stop` is asked
/// every [`INTERRUPT_POLL`]. For a background worker, whose reasons to stop
/// waiting are its own (new work, shutdown), not a query's interrupts.
pub fn block_on_until<F: Future>(fut: F, stop: fn() -> bool) -> CoreResult<Option<F::Output>> {
    with_runtime(|rt| {
        rt.block_on(async {
            tokio::select! {
                biased;
                out = fut => Some(out),
                _ = until_interrupt(stop) => None,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[test]
    fn stops_waiting_when_asked() {
        let out = block_on_until(std::future::pending::<()>(), || true).unwrap();
        assert_eq!(out, None);
        assert_eq!(block_on_until(async { 5 }, || false).unwrap(), Some(5));
    }

    #[test]
    fn runs_a_future() {
        assert_eq!(block_on(async { 41 + 1 }, &Interrupts::NONE).unwrap(), 42);
    }

    static PENDING: AtomicBool = AtomicBool::new(false);
    static PROCESSED: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn processes_interrupts_while_waiting_and_resumes() {
        let intr = Interrupts {
            pending: || PENDING.load(Ordering::SeqCst),
            process: || {
                PROCESSED.fetch_add(1, Ordering::SeqCst);
                PENDING.store(false, Ordering::SeqCst);
            },
        };
        PENDING.store(true, Ordering::SeqCst);
        let out = block_on(
            async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                7
            },
            &intr,
        )
        .unwrap();
        assert_eq!(out, 7);
        assert_eq!(PROCESSED.load(Ordering::SeqCst), 1);
    }
}
