//! Resolving the client settings of a call from a server's options, the
//! caller's user mapping and the settings (GUCs). One function, both surfaces.

use super::guc;
use super::options::{ServerOptions, UserMappingOptions};
use lambda_fdw_core::settings::DEFAULT_MAX_ATTEMPTS;
use lambda_fdw_core::ClientSettings;

/// Server options override the settings; the user mapping gives credentials.
pub(crate) fn client_settings(
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
