//! Resolving the client settings of a call from a server's options, the
//! caller's user mapping and the settings (GUCs). One function, both surfaces.

use pgrx::pg_sys;

use crate::core::settings::DEFAULT_MAX_ATTEMPTS;
use crate::core::{ClientSettings, Interrupts};
use crate::fdw::options::{ServerOptions, UserMappingOptions};
use crate::guc;

/// Server options override the settings; the user mapping gives credentials.
pub fn client_settings(
    region: &str,
    server: Option<&ServerOptions>,
    mapping: Option<&UserMappingOptions>,
) -> ClientSettings {
    let mut s = ClientSettings::new(region);
    s.endpoint_url = server
        .and_then(|o| o.endpoint_url.clone())
        .or_else(guc::endpoint_override);
    s.connect_timeout_ms = server
        .and_then(|o| o.connect_timeout_ms)
        .unwrap_or_else(guc::connect_timeout_ms);
    s.request_timeout_ms = server
        .and_then(|o| o.request_timeout_ms)
        .unwrap_or_else(guc::request_timeout_ms);
    s.max_attempts = server
        .and_then(|o| o.max_attempts)
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if let Some(m) = mapping {
        s.credentials = m.credentials.clone();
        s.assume_role = m.assume_role.clone();
    }
    s
}

fn interrupt_pending() -> bool {
    // SAFETY: InterruptPending is a sig_atomic_t flag that PostgreSQL's signal
    // handlers set; reading it from the main thread is what CHECK_FOR_INTERRUPTS does.
    unsafe { pg_sys::InterruptPending != 0 }
}

fn process_interrupts() {
    pgrx::check_for_interrupts!();
}

/// How the core learns of query cancel, statement_timeout and termination.
pub const PG_INTERRUPTS: Interrupts = Interrupts {
    pending: interrupt_pending,
    process: process_interrupts,
};
