//! What one entry of the shared table holds: its key (one row of the view)
//! and its data (the server's name, the counters, the last error). Plain
//! `repr(C)` values, copied in and out of shared memory as bytes.

use pgrx::pg_sys::{self, Oid};

/// Largest function name kept (a full ARN with a qualifier fits).
pub(super) const NAME_BYTES: usize = 320;
/// A server name (NAMEDATALEN).
pub(super) const SERVER_BYTES: usize = 64;
/// The start of the last error message kept.
pub(super) const ERROR_BYTES: usize = 256;

/// What an entry counts: one row of the view.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub dbid: Oid,
    pub userid: Oid,
    /// `InvalidOid`: no server (the default chain).
    pub serverid: Oid,
    /// The function with its qualifier, NUL-padded: the key is hashed and
    /// compared as bytes.
    pub function: [u8; NAME_BYTES],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Counters {
    pub calls: i64,
    /// The rows the calls carried: a batch's rows, else one a call.
    pub rows: i64,
    pub succeeded: i64,
    pub function_errors: i64,
    pub throttled: i64,
    pub client_errors: i64,
    pub service_errors: i64,
    pub timeouts: i64,
    pub connect_errors: i64,
    pub retries: i64,
    pub bytes_sent: i64,
    pub bytes_received: i64,
    pub total_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// 0: never.
    pub last_error_at: pg_sys::TimestampTz,
    pub last_call_at: pg_sys::TimestampTz,
}

impl Counters {
    pub(super) const ZERO: Counters = Counters {
        calls: 0,
        rows: 0,
        succeeded: 0,
        function_errors: 0,
        throttled: 0,
        client_errors: 0,
        service_errors: 0,
        timeouts: 0,
        connect_errors: 0,
        retries: 0,
        bytes_sent: 0,
        bytes_received: 0,
        total_ms: 0.0,
        min_ms: f64::INFINITY,
        max_ms: 0.0,
        last_error_at: 0,
        last_call_at: 0,
    };
}

/// Everything of an entry but its key: what the view shows of it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Data {
    /// The server's name when last counted (NUL-padded; empty for no server).
    pub server: [u8; SERVER_BYTES],
    pub counters: Counters,
    /// The start of the last error, NUL-padded; empty: none yet.
    pub last_error: [u8; ERROR_BYTES],
}

impl Data {
    /// A new entry's.
    pub(super) const NEW: Data = Data {
        server: [0; SERVER_BYTES],
        counters: Counters::ZERO,
        last_error: [0; ERROR_BYTES],
    };
}

/// `s` NUL-padded into `N` bytes, cut at a character boundary, leaving room
/// for the NUL.
pub(super) fn copy_str<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let mut end = s.len().min(N - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

/// The string `copy_str` stored.
pub(super) fn read_str(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_cut_at_a_character_boundary() {
        let s: [u8; 4] = copy_str("aé€");
        assert_eq!(read_str(&s), "aé");
        let s: [u8; 8] = copy_str("abc");
        assert_eq!(read_str(&s), "abc");
    }
}
