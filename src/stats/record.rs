//! What a finished call adds to its entry, and counting a drain of calls
//! into the shared table (under its SHARED lock, each entry under its
//! spinlock; see `shmem`'s lock rules).

use pgrx::pg_sys::{self, Oid};

use super::entry::{copy_str, Counters, Key, ERROR_BYTES, NAME_BYTES, SERVER_BYTES};
use super::shmem;
use lambda_fdw_core::{CallClass, CallLog, CallStats};

/// Who made the calls: the database is the current one.
pub(crate) struct Caller<'a> {
    pub role: Oid,
    /// The server's OID and name; `None` for the default chain.
    pub server: Option<(Oid, &'a str)>,
}

impl Caller<'_> {
    /// The current user, through `server`.
    pub(crate) fn current(server: Option<(Oid, &str)>) -> Caller<'_> {
        Caller {
            // SAFETY: reads the backend's current user id.
            role: unsafe { pg_sys::GetUserId() },
            server,
        }
    }
}

/// Counts the calls finished in `log` since its last drain.
pub(crate) fn record_log(caller: &Caller, log: &CallLog) {
    let calls = log.drain();
    if !calls.is_empty() {
        record(caller, &calls);
    }
}

/// Counts `calls`; does nothing when the library is not preloaded. Each run
/// of calls of one function goes into its entry at once.
pub(crate) fn record(caller: &Caller, calls: &[CallStats]) {
    let Some(table) = shmem::table() else {
        return;
    };
    if calls.is_empty() {
        return;
    }
    let server = caller
        .server
        .map(|(_, name)| copy_str::<SERVER_BYTES>(name));
    // SAFETY: reads the clock and the backend's database id.
    let (now, dbid) = unsafe { (pg_sys::GetCurrentTimestamp(), pg_sys::MyDatabaseId) };
    let mut key = Key {
        dbid,
        userid: caller.role,
        serverid: caller.server.map_or(pg_sys::InvalidOid, |(oid, _)| oid),
        function: [0; NAME_BYTES],
    };
    // Everything that copies or allocates is done here, outside the
    // entry's spinlock; under it only stores and arithmetic.
    let mut held = table.lock_shared();
    for run in calls.chunk_by(|a, b| a.function == b.function) {
        key.function = copy_str(&run[0].function);
        let last_error = run
            .iter()
            .rev()
            .find_map(|s| s.error.as_deref())
            .map(copy_str::<ERROR_BYTES>);
        held.update(&key, |data| {
            if let Some(name) = server {
                data.server = name;
            }
            if let Some(error) = last_error {
                data.last_error = error;
            }
            for s in run {
                add(&mut data.counters, s, now);
            }
        });
    }
}

/// Adds one call (or retried attempt) that ended at `now`.
fn add(c: &mut Counters, s: &CallStats, now: pg_sys::TimestampTz) {
    c.retries += i64::from(s.retries);
    c.bytes_sent += s.bytes_sent as i64;
    c.bytes_received += s.bytes_received as i64;
    c.last_call_at = now;
    if s.error.is_some() {
        c.last_error_at = now;
    }
    let Some(class) = s.class else {
        return;
    };
    c.calls += 1;
    c.rows += s.rows as i64;
    let ms = s.elapsed.as_secs_f64() * 1000.0;
    c.total_ms += ms;
    c.min_ms = c.min_ms.min(ms);
    c.max_ms = c.max_ms.max(ms);
    *match class {
        CallClass::Succeeded => &mut c.succeeded,
        CallClass::FunctionError => &mut c.function_errors,
        CallClass::Throttled => &mut c.throttled,
        CallClass::ClientError => &mut c.client_errors,
        CallClass::ServiceError => &mut c.service_errors,
        CallClass::Timeout => &mut c.timeouts,
        CallClass::ConnectError => &mut c.connect_errors,
    } += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats(class: Option<CallClass>, ms: u64, error: Option<&str>) -> CallStats {
        CallStats {
            function: "f".into(),
            class,
            retries: 1,
            elapsed: Duration::from_millis(ms),
            bytes_sent: 10,
            bytes_received: 4,
            rows: 1,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn counters_add_calls_and_retries() {
        let mut c = Counters::ZERO;
        add(&mut c, &stats(Some(CallClass::Succeeded), 5, None), 100);
        add(
            &mut c,
            &stats(Some(CallClass::Throttled), 15, Some("slow")),
            200,
        );
        add(&mut c, &stats(None, 0, Some("again")), 300);
        assert_eq!((c.calls, c.succeeded, c.throttled, c.retries), (2, 1, 1, 3));
        assert_eq!((c.bytes_sent, c.bytes_received), (30, 12));
        assert_eq!((c.total_ms, c.min_ms, c.max_ms), (20.0, 5.0, 15.0));
        assert_eq!((c.last_call_at, c.last_error_at), (300, 300));
    }
}
