//! Holds after throttling: when Lambda answers 429 (TooManyRequestsException)
//! or sends a Retry-After for a function, every caller that shares the hold
//! table waits before calling that function again until the time it named.
//!
//! A hold is keyed by a 64-bit hash of the region and the function's name,
//! not its qualifier: reserved concurrency, the usual reason for a 429, is
//! per function, shared by its versions and aliases. A hold lasts what the
//! service asked for, or [`DEFAULT_HOLD`] when it named nothing, and never
//! more than [`MAX_HOLD`] nor the client's request timeout.
//!
//! The table is a fixed array of [`Slot`]s of atomics (no lock), so tokio
//! threads that are not a PostgreSQL process's main thread may read and
//! write it. The extension hands the core a table in shared memory (every
//! backend and the queue worker see one another's holds) with
//! [`install`]; without one, each process keeps its own ([`local`]).
//! A key lives in one of [`PROBE`] slots from its hash; a slot whose hold
//! has expired is taken over by another key. When all of a key's slots hold
//! other functions, the new hold is dropped (the call still retries as
//! before). Two processes replacing the same expired slot at once can, at
//! worst, give one function another's hold, which is bounded by [`MAX_HOLD`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many slots a table has (shared memory holds exactly this many).
pub const SLOTS: usize = 1024;
/// How many neighbouring slots a key may use.
pub const PROBE: usize = 8;
/// The hold after a 429 that named no time.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);
/// The longest hold.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// One entry: a key (0 = never used) and the hold's end, in milliseconds
/// since the Unix epoch (wall clock: the processes share no monotonic
/// origin).
#[repr(C)]
pub struct Slot {
    key: AtomicU64,
    until_ms: AtomicU64,
}

impl Slot {
    pub const fn new() -> Self {
        Slot {
            key: AtomicU64::new(0),
            until_ms: AtomicU64::new(0),
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

/// A table of holds over `SLOTS` slots, wherever they live.
#[derive(Clone, Copy)]
pub struct Holds {
    slots: &'static [Slot],
}

impl Holds {
    /// A table over `slots` (of any non-zero length).
    pub fn over(slots: &'static [Slot]) -> Self {
        Holds { slots }
    }

    fn candidates(&self, key: u64) -> impl Iterator<Item = &'static Slot> {
        let n = self.slots.len();
        let first = (key % n as u64) as usize;
        let slots = self.slots;
        (0..PROBE.min(n)).map(move |i| &slots[(first + i) % n])
    }

    /// How long calls for `key` must still wait, at `now_ms`.
    pub fn held_for(&self, key: u64, now_ms: u64) -> Option<Duration> {
        self.candidates(key)
            .filter(|s| s.key.load(Ordering::Acquire) == key)
            .map(|s| s.until_ms.load(Ordering::Acquire))
            .filter(|&until| until > now_ms)
            .max()
            .map(|until| Duration::from_millis(until - now_ms))
    }

    /// Holds `key` until `until_ms` (a later hold already there stays).
    /// False when all of its slots hold other functions.
    pub fn hold(&self, key: u64, until_ms: u64, now_ms: u64) -> bool {
        for s in self.candidates(key) {
            if s.key.load(Ordering::Acquire) == key {
                s.until_ms.fetch_max(until_ms, Ordering::AcqRel);
                return true;
            }
        }
        for s in self.candidates(key) {
            let old = s.key.load(Ordering::Acquire);
            if s.until_ms.load(Ordering::Acquire) > now_ms && old != 0 {
                continue;
            }
            if s.key
                .compare_exchange(old, key, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // The slot's old hold has expired: this one replaces it.
                s.until_ms.store(until_ms, Ordering::Release);
                return true;
            }
        }
        false
    }
}

static INSTALLED: OnceLock<Holds> = OnceLock::new();

/// Makes `holds` the table every later call uses (the extension's shared
/// memory). Only the first call counts.
pub fn install(holds: Holds) {
    let _ = INSTALLED.set(holds);
}

/// This process's own table, used when none was installed.
fn local() -> Holds {
    static LOCAL: OnceLock<Holds> = OnceLock::new();
    *LOCAL.get_or_init(|| {
        let slots: Vec<Slot> = (0..SLOTS).map(|_| Slot::new()).collect();
        Holds::over(Box::leak(slots.into_boxed_slice()))
    })
}

/// The table in use: the installed one, else this process's.
pub fn table() -> Holds {
    INSTALLED.get().copied().unwrap_or_else(local)
}

/// Whether the installed table (shared) is in use.
pub fn shared() -> bool {
    INSTALLED.get().is_some()
}

/// The key of a function: FNV-1a of the region, a NUL and the name; never 0.
pub fn key(region: &str, function_name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in region
        .bytes()
        .chain(std::iter::once(0))
        .chain(function_name.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long a 429 holds its function: what the service asked, else
/// [`DEFAULT_HOLD`], at most [`MAX_HOLD`] and `timeout`.
pub fn hold_length(retry_after: Option<Duration>, timeout: Duration) -> Duration {
    retry_after
        .unwrap_or(DEFAULT_HOLD)
        .min(MAX_HOLD)
        .min(timeout.max(Duration::from_millis(1)))
}

/// Waits (on the caller's runtime, so interruptibly) while `key` is held.
pub async fn wait_while_held(key: u64) {
    while let Some(left) = table().held_for(key, now_ms()) {
        tokio::time::sleep(left.min(MAX_HOLD)).await;
    }
}

/// Functions this process has had an answer from (any answer but a 429),
/// by key: a fan-out to one of them starts at full concurrency, one to
/// any other starts slowly (see `fanout::Ordered::slow_start`).
fn answered() -> &'static Mutex<HashSet<u64>> {
    static ANSWERED: OnceLock<Mutex<HashSet<u64>>> = OnceLock::new();
    ANSWERED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Notes that `key`'s function answered (a bounded set: cleared when full).
pub fn note_answered(key: u64) {
    let mut set = answered().lock().unwrap_or_else(|p| p.into_inner());
    if set.len() >= SLOTS && !set.contains(&key) {
        set.clear();
    }
    set.insert(key);
}

/// Forgets that `key`'s function answered (it was throttled).
pub fn note_throttled(key: u64) {
    answered()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
}

/// Whether a fan-out to `key`'s function should start slowly: this process
/// has had no answer from it since it was last throttled, or it is held.
pub fn start_slowly(key: u64) -> bool {
    let known = answered()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&key);
    !known || table().held_for(key, now_ms()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(n: usize) -> Holds {
        let slots: Vec<Slot> = (0..n).map(|_| Slot::new()).collect();
        Holds::over(Box::leak(slots.into_boxed_slice()))
    }

    #[test]
    fn a_hold_lasts_until_its_time() {
        let t = table_of(SLOTS);
        let k = key("eu-west-1", "f");
        assert_eq!(t.held_for(k, 1000), None);
        assert!(t.hold(k, 2000, 1000));
        assert_eq!(t.held_for(k, 1000), Some(Duration::from_millis(1000)));
        assert_eq!(t.held_for(k, 1999), Some(Duration::from_millis(1)));
        assert_eq!(t.held_for(k, 2000), None);
        // Another function, or the same name in another region, is not held.
        assert_eq!(t.held_for(key("eu-west-1", "g"), 1000), None);
        assert_eq!(t.held_for(key("us-east-1", "f"), 1000), None);
    }

    #[test]
    fn a_shorter_hold_does_not_shorten_a_longer_one() {
        let t = table_of(SLOTS);
        let k = key("r", "f");
        assert!(t.hold(k, 5000, 0));
        assert!(t.hold(k, 3000, 0));
        assert_eq!(t.held_for(k, 0), Some(Duration::from_millis(5000)));
    }

    #[test]
    fn expired_slots_are_reused_and_a_full_neighbourhood_drops_the_hold() {
        // A table of PROBE slots: every key shares the same ones.
        let t = table_of(PROBE);
        let keys: Vec<u64> = (0..PROBE as u64 + 1).map(|i| i + 1).collect();
        for &k in &keys[..PROBE] {
            assert!(t.hold(k, 100, 0));
        }
        assert!(!t.hold(keys[PROBE], 100, 0), "no free slot while all hold");
        assert_eq!(t.held_for(keys[PROBE], 0), None);
        // Once they expire, a new key takes a slot.
        assert!(t.hold(keys[PROBE], 300, 200));
        assert_eq!(
            t.held_for(keys[PROBE], 200),
            Some(Duration::from_millis(100))
        );
        // It took the first expired slot of its neighbourhood, key 1's.
        assert_eq!(t.held_for(keys[0], 50), None);
    }

    #[test]
    fn hold_lengths_are_capped() {
        let long = Duration::from_secs(600);
        assert_eq!(hold_length(None, long), DEFAULT_HOLD);
        assert_eq!(
            hold_length(Some(Duration::from_secs(2)), long),
            Duration::from_secs(2)
        );
        assert_eq!(hold_length(Some(Duration::from_secs(3600)), long), MAX_HOLD);
        assert_eq!(
            hold_length(Some(Duration::from_secs(30)), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn keys_ignore_nothing_but_are_never_zero() {
        assert_ne!(key("a", "bc"), key("ab", "c"));
        assert_ne!(key("r", "f"), 0);
    }

    #[test]
    fn a_function_starts_slowly_until_it_answers_and_again_after_a_429() {
        let k = key("slow-start-test", "f");
        assert!(start_slowly(k));
        note_answered(k);
        assert!(!start_slowly(k));
        note_throttled(k);
        assert!(start_slowly(k));
    }

    #[test]
    fn threads_share_one_table() {
        let t = table_of(SLOTS);
        let k = key("r", "f");
        std::thread::scope(|s| {
            for i in 0..8u64 {
                s.spawn(move || t.hold(k, 1000 + i, 0));
            }
        });
        assert_eq!(t.held_for(k, 0), Some(Duration::from_millis(1007)));
    }
}
