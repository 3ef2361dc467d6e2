//! Sending: the calls in flight, on a tokio runtime of their own beside
//! the worker's main thread (which does the SQL). [`Sender::start`] hands
//! a round's requests over (a row alone, or a batch of rows: see
//! `batch`), a dispatcher task starts them as slots free up (one slot per
//! request, however many rows it carries), and [`Sender::wait`] collects
//! their rows' [`Outcome`]s and counts their statistics.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Semaphore};

use crate::stats;
use lambda_fdw_core::throttle;
use lambda_fdw_core::{
    block_on_until, client_for, sending_runtime, CallStats, ClientSettings, Interrupts,
    InvokeRequest, LambdaClient,
};

use super::batch::{self, Batch, Job};
use super::error::WorkerError;
use super::outcome::{classify, Outcome, Owner};
use super::signals::{latch_set, shutdown_requested, POLL};
use super::signing;
use super::state::RowState;
use super::transaction::panic_message;

/// Threads that run the calls (SigV4 signing and HTTP), beside the worker's
/// main thread, which does the SQL.
const SENDING_THREADS: usize = 2;

/// How many functions' slots are kept before unused ones are forgotten.
const MAX_FUNCTIONS: usize = 1024;

/// A claimed row with its request and client, waiting for a free slot.
struct ToSend {
    id: i64,
    attempts: i32,
    max_attempts: i32,
    request: InvokeRequest,
    client: LambdaClient,
    owner: Owner,
}

/// One request's worth of work, waiting for a free slot.
enum Work {
    One(Box<ToSend>),
    Batch(Box<Batch>, LambdaClient),
}

/// A request with its function's share of the slots: it starts only while
/// fewer than that function's limit of its calls are in flight and the
/// function is not held after a 429 (see `throttle`), so one slow or
/// throttled function cannot take every slot.
struct Queued {
    work: Work,
    /// The function's key (`throttle::key`).
    function: u64,
    function_slots: Arc<Semaphore>,
}

impl Work {
    /// The region and function name its calls go to.
    fn function(&self) -> (&str, &str) {
        match self {
            Work::One(job) => (&job.client.region, &job.request.target.function_name),
            Work::Batch(b, client) => (&client.region, b.function_name()),
        }
    }

    fn ids(&self) -> Vec<i64> {
        match self {
            Work::One(job) => vec![job.id],
            Work::Batch(b, _) => b.rows.iter().map(|r| r.id).collect(),
        }
    }
}

/// Sends one row alone, and gives its outcome with its statistics.
async fn send_one(job: ToSend) -> Outcome {
    let display = &job.request.target.display;
    let started = Instant::now();
    let result = job.client.send_once(&job.request).await;
    let stats = CallStats::of(
        result.as_ref().map_err(|(e, _)| e),
        display.clone(),
        1,
        started.elapsed(),
        job.request.payload.len() as u64,
    );
    let mut outcome = classify(job.id, job.attempts, job.max_attempts, display, result);
    // Each attempt is one send; earlier ones were counted as retries.
    let stats = if outcome.state == RowState::Queued {
        stats.to_be_retried()
    } else {
        CallStats {
            retries: 0,
            ..stats
        }
    };
    outcome.measured = Some((job.owner, vec![stats]));
    outcome
}

/// The calls in flight, on a runtime of their own: a dispatcher task starts
/// handed-over rows as slots free up, so a slot is refilled the moment its
/// call ends, whatever the worker's main thread is doing (its SQL).
pub(crate) struct Sender {
    runtime: Runtime,
    jobs: mpsc::UnboundedSender<Queued>,
    /// Each function's slots, by key and limit (a changed limit gets new
    /// ones).
    function_slots: HashMap<(u64, usize), Arc<Semaphore>>,
    outcomes: mpsc::UnboundedReceiver<Vec<Outcome>>,
    permits: Arc<Semaphore>,
    /// `lambda_fdw.queue_concurrency`, as last followed.
    pub(crate) slots: usize,
    /// Rows handed over and not yet answered.
    pub(crate) outstanding: usize,
    /// Requests handed over and not yet answered (a batch is one).
    pub(crate) requests: usize,
    /// Their ids.
    handed: HashSet<i64>,
    starts: Arc<Mutex<Starts>>,
}

/// Which handed-over rows the dispatcher has started (their request may
/// have left), and whether it may start more: a row claimed ahead that
/// never started is given its attempt back when the worker stops.
#[derive(Default)]
struct Starts {
    stopped: bool,
    started: HashSet<i64>,
}

fn lock_starts(starts: &Mutex<Starts>) -> std::sync::MutexGuard<'_, Starts> {
    starts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sender {
    pub(crate) fn new(slots: usize) -> Result<Self, WorkerError> {
        let runtime = sending_runtime(SENDING_THREADS)?;
        let (jobs, mut incoming) = mpsc::unbounded_channel::<Queued>();
        let (answers, outcomes) = mpsc::unbounded_channel::<Vec<Outcome>>();
        let permits = Arc::new(Semaphore::new(slots));
        let available = permits.clone();
        let starts = Arc::new(Mutex::new(Starts::default()));
        let starting = starts.clone();
        runtime.spawn(async move {
            while let Some(queued) = incoming.recv().await {
                let (available, starting, answers) =
                    (available.clone(), starting.clone(), answers.clone());
                let Queued {
                    work,
                    function,
                    function_slots,
                } = queued;
                // A request whose function has a free slot and is not held
                // starts in turn, as it always did: the dispatcher waits for
                // one of the worker's slots. One whose function is at its
                // limit or held waits apart, holding none of the worker's
                // slots, so the requests behind it go on.
                let ready = match function_slots.clone().try_acquire_owned() {
                    Ok(p)
                        if throttle::table()
                            .held_for(function, throttle::now_ms())
                            .is_none() =>
                    {
                        match available.clone().acquire_owned().await {
                            Ok(permit) => Some((p, permit)),
                            Err(_) => break,
                        }
                    }
                    _ => None,
                };
                tokio::spawn(async move {
                    let (function_permit, permit) = match ready {
                        Some(permits) => permits,
                        None => {
                            let Ok(function_permit) = function_slots.acquire_owned().await else {
                                return;
                            };
                            throttle::wait_while_held(function).await;
                            let Ok(permit) = available.acquire_owned().await else {
                                return;
                            };
                            (function_permit, permit)
                        }
                    };
                    let ids = work.ids();
                    {
                        let mut s = lock_starts(&starting);
                        if s.stopped {
                            // Stopping: nothing more starts; the rows go back.
                            return;
                        }
                        s.started.extend(ids.iter().copied());
                    }
                    let call = async move {
                        match work {
                            Work::One(job) => vec![send_one(*job).await],
                            Work::Batch(b, client) => batch::send(*b, &client).await,
                        }
                    };
                    // Every row handed over gets an outcome, even if the call
                    // panics (then it may have been sent: it is not retried).
                    let outcomes =
                        AssertUnwindSafe(call)
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|panic| {
                                let error = WorkerError::CallPanicked(panic_message(&*panic));
                                ids.iter()
                                    .map(|id| Outcome::failed(*id, error.to_string()))
                                    .collect()
                            });
                    let _ = answers.send(outcomes);
                    drop(permit);
                    drop(function_permit);
                });
            }
        });
        Ok(Self {
            runtime,
            jobs,
            outcomes,
            permits,
            slots,
            function_slots: HashMap::new(),
            outstanding: 0,
            requests: 0,
            handed: HashSet::new(),
            starts,
        })
    }

    /// Stops starting calls; returns the rows handed over that never
    /// started (no request of theirs left).
    pub(crate) fn stop(&mut self) -> Vec<i64> {
        let mut s = lock_starts(&self.starts);
        s.stopped = true;
        let mut unstarted: Vec<i64> = self
            .handed
            .iter()
            .filter(|id| !s.started.contains(id))
            .copied()
            .collect();
        unstarted.sort_unstable();
        unstarted
    }

    /// Follows a change of `lambda_fdw.queue_concurrency`.
    pub(crate) fn resize(&mut self, slots: usize) {
        if slots > self.slots {
            self.permits.add_permits(slots - self.slots);
        } else if slots < self.slots {
            let surplus = (self.slots - slots) as u32;
            let permits = self.permits.clone();
            // Taken as calls end, and never given back.
            self.runtime.spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        self.slots = slots;
    }

    fn submit(&mut self, work: Work) {
        let ids = work.ids();
        let (region, name) = work.function();
        let function = throttle::key(region, name);
        let limit = signing::function_limit(region, name).unwrap_or(self.slots.max(1));
        if self.function_slots.len() >= MAX_FUNCTIONS {
            // Forget the functions nothing is waiting for or sending to.
            self.function_slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let function_slots = self
            .function_slots
            .entry((function, limit))
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone();
        let queued = Queued {
            work,
            function,
            function_slots,
        };
        if self.jobs.send(queued).is_ok() {
            self.outstanding += ids.len();
            self.requests += 1;
            self.handed.extend(ids);
        }
    }

    /// Hands a round's requests over for sending; rows that cannot be sent
    /// are failed into `finished`.
    pub(crate) fn start(&mut self, jobs: Vec<Job>, finished: &mut Vec<Outcome>) {
        // Clients are keyed by settings: rows of one server and mapping share one.
        let mut clients: HashMap<ClientSettings, LambdaClient> = HashMap::new();
        let mut client = |settings: &ClientSettings| -> Result<LambdaClient, WorkerError> {
            if let Some(client) = clients.get(settings) {
                return Ok(client.clone());
            }
            let made = std::panic::catch_unwind(AssertUnwindSafe(|| {
                client_for(settings, &Interrupts::NONE).map_err(WorkerError::from)
            }))
            .unwrap_or_else(|panic| Err(WorkerError::PreparePanicked(panic_message(&*panic))))?;
            Ok(clients.entry(settings.clone()).or_insert(made).clone())
        };
        for job in jobs {
            match job {
                Job::One(r) => {
                    let (request, settings, owner) = match r.prepared {
                        Ok(v) => v,
                        Err(e) => {
                            finished.push(Outcome::failed(r.id, e.to_string()));
                            continue;
                        }
                    };
                    match client(&settings) {
                        Ok(client) => self.submit(Work::One(Box::new(ToSend {
                            id: r.id,
                            attempts: r.attempts,
                            max_attempts: r.max_attempts,
                            request,
                            client,
                            owner,
                        }))),
                        Err(e) => finished.push(Outcome::failed(r.id, e.to_string())),
                    }
                }
                Job::Batch(b) => match client(&b.settings) {
                    Ok(client) => self.submit(Work::Batch(Box::new(b), client)),
                    Err(e) => {
                        let e = e.to_string();
                        finished.extend(b.rows.iter().map(|r| Outcome::failed(r.id, e.clone())));
                    }
                },
            }
        }
    }

    /// Waits for outcomes until the requests handed over run low (time to
    /// claim more), a round's worth of requests has finished, new work is signalled, shutdown
    /// is asked for, or a second passes. Outcomes go straight into
    /// `finished`, so none is lost when the wait is cut short.
    pub(crate) fn wait(&mut self, finished: &mut Vec<Outcome>) {
        let low = self.slots + self.slots / 2;
        let slots = self.slots;
        let seen = finished.len();
        let (outcomes, outstanding, requests) = (
            &mut self.outcomes,
            &mut self.outstanding,
            &mut self.requests,
        );
        let sink = &mut *finished;
        let work = async move {
            let deadline = tokio::time::Instant::now() + POLL;
            let mut got = 0;
            let mut left = *requests;
            let mut take = |rows: Vec<Outcome>, got: &mut usize| {
                *outstanding = outstanding.saturating_sub(rows.len());
                *requests = requests.saturating_sub(1);
                sink.extend(rows);
                *got += 1;
                *requests
            };
            while left > 0 {
                match tokio::time::timeout_at(deadline, outcomes.recv()).await {
                    Ok(Some(rows)) => left = take(rows, &mut got),
                    Ok(None) | Err(_) => break,
                }
                while let Ok(rows) = outcomes.try_recv() {
                    left = take(rows, &mut got);
                }
                if left < low || got >= slots {
                    break;
                }
            }
        };
        let _ = block_on_until(work, || latch_set() || shutdown_requested());
        for outcome in &mut finished[seen..] {
            self.handed.remove(&outcome.id);
            lock_starts(&self.starts).started.remove(&outcome.id);
            if let Some((owner, calls)) = outcome.measured.take() {
                let server = owner
                    .server
                    .as_ref()
                    .map(|(oid, name)| (*oid, name.as_str()));
                stats::record(
                    &stats::Caller {
                        role: owner.role,
                        server,
                    },
                    &calls,
                );
            }
        }
    }
}
