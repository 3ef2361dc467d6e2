//! Rust state hung on an executor node (`fdw_state`, `ri_FdwState`), freed
//! when the node ends or, since PostgreSQL calls no end callback for a
//! query that fails or is cancelled, when the query's memory context goes.
//! Offers [`install`], [`get`] and [`release`].

use std::ffi::c_void;
use std::ptr;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Puts `state` at `*field` and arranges for it to be freed with `context`.
///
/// # Safety
/// `field` is a pointer field of a node allocated in `context` (so it lives
/// until that context's reset callbacks have run), currently NULL, and only
/// ever set through this module with the same `T`.
pub(crate) unsafe fn install<T>(context: pg_sys::MemoryContext, field: *mut *mut c_void, state: T) {
    // SAFETY: per the contract; the callback struct is allocated in the
    // same context, so it lives exactly as long as it is needed.
    unsafe {
        let callback = pg_sys::MemoryContextAllocZero(
            context,
            std::mem::size_of::<pg_sys::MemoryContextCallback>(),
        ) as *mut pg_sys::MemoryContextCallback;
        (*callback).func = Some(release_on_reset::<T>);
        (*callback).arg = field as *mut c_void;
        pg_sys::MemoryContextRegisterResetCallback(context, callback);
        *field = Box::into_raw(Box::new(state)) as *mut c_void;
    }
}

/// The state at `*field`, if it is there.
///
/// # Safety
/// As for [`install`]; the reference must not outlive the state.
pub(crate) unsafe fn get<'a, T>(field: *mut *mut c_void) -> Option<&'a mut T> {
    // SAFETY: per the contract, a non-NULL field holds a Box<T>.
    unsafe { (*field as *mut T).as_mut() }
}

/// Frees the state at `*field`, if any, and clears the field.
///
/// # Safety
/// As for [`install`].
pub(crate) unsafe fn release<T>(field: *mut *mut c_void) {
    // SAFETY: per the contract, a non-NULL field holds a Box<T>; it is
    // cleared before being dropped, so it is freed once.
    unsafe {
        let state = *field as *mut T;
        if !state.is_null() {
            *field = ptr::null_mut();
            drop(Box::from_raw(state));
        }
    }
}

/// Called when the query's memory context is reset or deleted: after a
/// normal end (nothing left to do) or an abort (frees the state).
#[pg_guard]
unsafe extern "C-unwind" fn release_on_reset<T>(arg: *mut c_void) {
    // SAFETY: `arg` is the field given to `install`, inside a node that is
    // freed only after this callback has run.
    unsafe { release::<T>(arg as *mut *mut c_void) }
}
