//! supabase-wrappers 0.1.28 reports every condition it cannot push down as a
//! WARNING carrying the expression's internal node dump. For lambda_fdw every
//! condition is checked again on the returned rows anyway, so these warnings
//! say nothing the user needs; an emit_log_hook drops them, and only them,
//! while a lambda_fdw scan is being planned.

use std::cell::Cell;
use std::ffi::CStr;
use std::sync::OnceLock;

use pgrx::pg_sys;

thread_local! {
    static PLANNING: Cell<bool> = const { Cell::new(false) };
}

static PREVIOUS_HOOK: OnceLock<pg_sys::emit_log_hook_type> = OnceLock::new();

/// Marks a lambda_fdw planning step; the mark goes when this is dropped.
pub struct Planning(bool);

impl Planning {
    pub fn start() -> Self {
        Planning(PLANNING.with(|p| p.replace(true)))
    }
}

impl Drop for Planning {
    fn drop(&mut self) {
        PLANNING.with(|p| p.set(self.0));
    }
}

/// Messages supabase-wrappers emits about conditions it does not push down.
const WRAPPERS_QUAL_WARNINGS: &[&str] = &[
    "unsupported qual: ",
    "unsupported operator expression in qual: ",
    "only support const scalar array in qual: ",
    "only support binary operator expression",
];

/// Installs the filter, keeping whatever hook was there before. Call once,
/// from _PG_init.
pub fn install() {
    // SAFETY: _PG_init runs on the backend's main thread before any query;
    // reading and setting the hook pointer is what every extension does there.
    unsafe {
        let _ = PREVIOUS_HOOK.set(pg_sys::emit_log_hook);
        pg_sys::emit_log_hook = Some(filter);
    }
}

fn is_wrappers_qual_warning(edata: &pg_sys::ErrorData) -> bool {
    if edata.elevel != pg_sys::WARNING as i32 || edata.message.is_null() || edata.detail.is_null() {
        return false;
    }
    // SAFETY: ErrorData's message and detail are NUL-terminated strings
    // while the report is being emitted.
    let (message, detail) =
        unsafe { (CStr::from_ptr(edata.message), CStr::from_ptr(edata.detail)) };
    detail.to_bytes() == b"Wrappers"
        && WRAPPERS_QUAL_WARNINGS
            .iter()
            .any(|p| message.to_bytes().starts_with(p.as_bytes()))
}

// No pg_guard: nothing here can fail or panic, and raising an error from
// inside error reporting is not allowed. Called by PostgreSQL's error
// reporting only, with the ErrorData being emitted.
unsafe extern "C-unwind" fn filter(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the ErrorData being emitted, or nothing.
    if let Some(e) = unsafe { edata.as_mut() } {
        if PLANNING.with(Cell::get) && is_wrappers_qual_warning(e) {
            e.output_to_client = false;
            e.output_to_server = false;
        }
    }
    if let Some(Some(previous)) = PREVIOUS_HOOK.get() {
        // SAFETY: the hook that was installed before ours, called as PostgreSQL would.
        unsafe { previous(edata) };
    }
}
